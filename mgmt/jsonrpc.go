package mgmt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// JSON-RPC 2.0 error codes.
const (
	rpcParseError     = -32700
	rpcInvalidRequest = -32600
	rpcMethodNotFound = -32601
	rpcInvalidParams  = -32602
	rpcInternalError  = -32603
)

// publishParamNames are the parameters of Kamailio pua_rpc's pua.publish
// and pua.send_publish in their positional order; the first eight are
// required, body is optional.
func publishParamNames() []string {
	return []string{"presentity_uri", "expires", "event", "content_type", "id", "etag", "outbound_proxy", "extra_headers", "body"}
}

// subscribeParamNames are the parameters of pua.subscribe, in order.
func subscribeParamNames() []string {
	return []string{"presentity_uri", "watcher_uri", "event", "expires"}
}

type rpcRequest struct {
	JSONRPC *string         `json:"jsonrpc"`
	Method  *string         `json:"method"`
	Params  json.RawMessage `json:"params"`
	ID      json.RawMessage `json:"id"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

type rpcResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	Result  any             `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
	ID      json.RawMessage `json:"id"`
}

// MarshalJSON writes "result": null for a successful call without data.
func (r rpcResponse) MarshalJSON() ([]byte, error) {
	m := map[string]any{"jsonrpc": "2.0", "id": r.ID}
	if r.ID == nil {
		m["id"] = nil
	}
	if r.Error != nil {
		m["error"] = r.Error
	} else {
		m["result"] = r.Result
	}
	return json.Marshal(m)
}

func (s *Server) handleRPC(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.fail(w, r, tooLarge(s.cfg.MaxBody))
			return
		}
		s.fail(w, r, &apiError{code: http.StatusBadRequest, msg: "read body: " + err.Error()})
		return
	}
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		var batch []json.RawMessage
		if err := json.Unmarshal(body, &batch); err != nil {
			writeJSON(w, http.StatusOK, rpcResponse{Error: &rpcError{Code: rpcParseError, Message: "Parse error: " + err.Error()}})
			return
		}
		if len(batch) == 0 {
			writeJSON(w, http.StatusOK, rpcResponse{Error: &rpcError{Code: rpcInvalidRequest, Message: "Invalid Request: empty batch"}})
			return
		}
		var out []rpcResponse
		for _, one := range batch {
			if resp, ok := s.rpcCall(r, one); ok {
				out = append(out, resp)
			}
		}
		if len(out) == 0 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	resp, ok := s.rpcCall(r, body)
	if !ok {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// rpcCall runs one request; ok is false for a notification (no id), which
// gets no response.
func (s *Server) rpcCall(r *http.Request, raw []byte) (rpcResponse, bool) {
	if !json.Valid(raw) {
		return rpcResponse{Error: &rpcError{Code: rpcParseError, Message: "Parse error: not valid JSON"}}, true
	}
	var req rpcRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return rpcResponse{Error: &rpcError{Code: rpcInvalidRequest, Message: "Invalid Request: not a request object"}}, true
	}
	if req.ID != nil && !validID(req.ID) {
		return rpcResponse{Error: &rpcError{Code: rpcInvalidRequest, Message: "Invalid Request: id must be a string, number or null"}}, true
	}
	resp := rpcResponse{ID: req.ID}
	if req.JSONRPC != nil && *req.JSONRPC != "2.0" {
		resp.Error = &rpcError{Code: rpcInvalidRequest, Message: `Invalid Request: jsonrpc must be "2.0"`}
		return resp, true
	}
	if req.Method == nil || *req.Method == "" {
		resp.Error = &rpcError{Code: rpcInvalidRequest, Message: "Invalid Request: method missing"}
		return resp, true
	}
	result, rerr := s.rpcDispatch(r, *req.Method, req.Params)
	if req.ID == nil {
		if rerr != nil {
			s.log.Info("mgmt: rpc notification failed", "method", *req.Method, "code", rerr.Code, "err", rerr.Message)
		}
		return rpcResponse{}, false
	}
	if rerr != nil {
		s.log.Info("mgmt: rpc call failed", "method", *req.Method, "code", rerr.Code, "err", rerr.Message)
		resp.Error = rerr
		return resp, true
	}
	resp.Result = result
	return resp, true
}

func validID(id json.RawMessage) bool {
	switch t := bytes.TrimSpace(id); {
	case len(t) == 0:
		return false
	case t[0] == '"', t[0] == '-', t[0] >= '0' && t[0] <= '9', string(t) == "null":
		return true
	}
	return false
}

func (s *Server) rpcDispatch(r *http.Request, method string, params json.RawMessage) (any, *rpcError) {
	switch method {
	case "pua.publish", "pua.send_publish":
		p, perr := rpcPublishParams(params)
		if perr != nil {
			return nil, perr
		}
		wait := method == "pua.publish"
		res, e := s.publish(r.Context(), p, wait)
		if e != nil {
			return nil, rpcErrorOf(e)
		}
		if !wait {
			return nil, nil
		}
		return map[string]any{"SIP-ETag": res.ETag, "Expires": res.Expires}, nil
	case "pua.subscribe":
		p, perr := rpcSubscribeParams(params)
		if perr != nil {
			return nil, perr
		}
		res, e := s.subscribe(r.Context(), p)
		if e != nil {
			return nil, rpcErrorOf(e)
		}
		return map[string]any{"Status": res.Status, "Reason": res.Reason, "Expires": res.Expires}, nil
	}
	return nil, &rpcError{Code: rpcMethodNotFound, Message: "Method not found: " + method}
}

// rpcErrorOf maps an API error: a SIP failure keeps its SIP status as the
// code, a wrong etag is Kamailio's fault 500 "Wrong ETag", bad parameters
// are -32602.
func rpcErrorOf(e *apiError) *rpcError {
	var data any
	if e.field != "" {
		data = map[string]string{"field": e.field}
	}
	switch {
	case e.sip >= 300:
		reason := e.reason
		if reason == "" {
			reason = e.msg
		}
		return &rpcError{Code: e.sip, Message: reason, Data: data}
	case e.code == http.StatusPreconditionFailed:
		return &rpcError{Code: 500, Message: "Wrong ETag", Data: data}
	case e.code == http.StatusGatewayTimeout:
		return &rpcError{Code: 408, Message: "Request Timeout: " + e.msg}
	case e.code == http.StatusBadRequest:
		return &rpcError{Code: rpcInvalidParams, Message: "Invalid params: " + e.msg, Data: data}
	case e.code == http.StatusNotFound && strings.HasPrefix(e.msg, "feature not enabled"):
		return &rpcError{Code: rpcMethodNotFound, Message: "Method not found: " + e.msg}
	case e.code == http.StatusNotFound:
		return &rpcError{Code: 404, Message: "Not Found: " + e.msg}
	case e.code == http.StatusBadGateway:
		return &rpcError{Code: 500, Message: e.msg}
	}
	return &rpcError{Code: rpcInternalError, Message: "Internal error: " + e.msg}
}

// rpcArgs reads params (positional array or named object) into a map by
// name; the first required (positional) or requiredNamed (named) names must
// be present. Strings are taken as they are, numbers as their text, null as
// absent; "." is kept for the caller to treat as none.
func rpcArgs(params json.RawMessage, names []string, required, requiredNamed int) (map[string]string, *rpcError) {
	out := map[string]string{}
	t := bytes.TrimSpace(params)
	if len(t) == 0 || string(t) == "null" {
		if required > 0 {
			return nil, invalidParams(names[0], "missing")
		}
		return out, nil
	}
	put := func(name string, v json.RawMessage) *rpcError {
		str, ok := scalar(v)
		if !ok {
			return invalidParams(name, "must be a string or number")
		}
		if str != nil {
			out[name] = *str
		}
		return nil
	}
	switch t[0] {
	case '[':
		var list []json.RawMessage
		if err := json.Unmarshal(t, &list); err != nil {
			return nil, &rpcError{Code: rpcInvalidParams, Message: "Invalid params: " + err.Error()}
		}
		if len(list) > len(names) {
			return nil, &rpcError{Code: rpcInvalidParams, Message: fmt.Sprintf("Invalid params: at most %d parameters (%s), got %d", len(names), strings.Join(names, ", "), len(list))}
		}
		for i, v := range list {
			if e := put(names[i], v); e != nil {
				return nil, e
			}
		}
	case '{':
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(t, &obj); err != nil {
			return nil, &rpcError{Code: rpcInvalidParams, Message: "Invalid params: " + err.Error()}
		}
		for k, v := range obj {
			known := false
			for _, n := range names {
				known = known || n == k
			}
			if !known {
				return nil, invalidParams(k, "unknown parameter")
			}
			if e := put(k, v); e != nil {
				return nil, e
			}
		}
		required = requiredNamed
	default:
		return nil, &rpcError{Code: rpcInvalidParams, Message: "Invalid params: must be an array or an object"}
	}
	for _, n := range names[:required] {
		if _, ok := out[n]; !ok {
			return nil, invalidParams(n, "missing")
		}
	}
	return out, nil
}

func invalidParams(field, msg string) *rpcError {
	return &rpcError{Code: rpcInvalidParams, Message: "Invalid params: " + field + ": " + msg, Data: map[string]string{"field": field}}
}

// scalar converts a JSON string or number to text; nil for null.
func scalar(v json.RawMessage) (*string, bool) {
	t := bytes.TrimSpace(v)
	if string(t) == "null" {
		return nil, true
	}
	var s string
	if json.Unmarshal(t, &s) == nil {
		return &s, true
	}
	var n json.Number
	if json.Unmarshal(t, &n) == nil {
		str := n.String()
		return &str, true
	}
	return nil, false
}

// none maps Kamailio's "." placeholder to empty.
func none(s string) string {
	if s == "." {
		return ""
	}
	return s
}

func rpcExpires(a map[string]string, name string) (*int, *rpcError) {
	v, ok := a[name]
	if !ok {
		return nil, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return nil, invalidParams(name, fmt.Sprintf("not an integer: %q", v))
	}
	return &n, nil
}

func rpcPublishParams(params json.RawMessage) (PublishParams, *rpcError) {
	a, e := rpcArgs(params, publishParamNames(), 8, 3)
	if e != nil {
		return PublishParams{}, e
	}
	exp, e := rpcExpires(a, "expires")
	if e != nil {
		return PublishParams{}, e
	}
	p := PublishParams{
		PresentityURI: a["presentity_uri"],
		Expires:       exp,
		Event:         a["event"],
		ContentType:   none(a["content_type"]),
		ID:            none(a["id"]),
		ETag:          none(a["etag"]),
		OutboundProxy: none(a["outbound_proxy"]),
		Body:          none(a["body"]),
	}
	// Kamailio's extra_headers is one string of CRLF-separated headers.
	for _, l := range strings.Split(strings.ReplaceAll(none(a["extra_headers"]), "\r\n", "\n"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			p.ExtraHeaders = append(p.ExtraHeaders, l)
		}
	}
	return p, nil
}

func rpcSubscribeParams(params json.RawMessage) (SubscribeParams, *rpcError) {
	a, e := rpcArgs(params, subscribeParamNames(), 4, 4)
	if e != nil {
		return SubscribeParams{}, e
	}
	exp, e := rpcExpires(a, "expires")
	if e != nil {
		return SubscribeParams{}, e
	}
	return SubscribeParams{PresentityURI: a["presentity_uri"], WatcherURI: a["watcher_uri"], Event: a["event"], Expires: exp}, nil
}
