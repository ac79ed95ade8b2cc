package mgmt

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/metrics"
	"github.com/puaside/puaside/pua"
)

// Pagination bounds of the listings.
const (
	defaultLimit = 100
	maxLimit     = 10000
)

// ---- publish and subscribe (shared by the JSON API and JSON-RPC) ----

func checkSIPURI(field, s string) *apiError {
	if s == "" {
		return badField(field, "required")
	}
	if strings.ContainsAny(s, " \t\r\n<>\"") {
		return badField(field, "not a SIP URI: %q", s)
	}
	ls := strings.ToLower(s)
	if !strings.HasPrefix(ls, "sip:") && !strings.HasPrefix(ls, "sips:") {
		return badField(field, "not a SIP URI (sip: or sips:): %q", s)
	}
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil || u.Host == "" {
		return badField(field, "not a SIP URI: %q", s)
	}
	return nil
}

func parseHeaders(field string, lines []string) ([]pua.Header, *apiError) {
	var out []pua.Header
	for _, l := range lines {
		name, value, ok := strings.Cut(l, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" || !isToken(name) {
			return nil, badField(field, "not a \"Name: value\" header: %q", l)
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return nil, badField(field, "header %s: value contains a line break", name)
		}
		if canon, reserved := pua.ReservedHeader(name); reserved {
			e := badField(field, "header %s: %s is set by puaside itself and cannot be an extra header", name, canon)
			e.refusal = metrics.RefusedReservedHeader
			return nil, e
		}
		out = append(out, pua.Header{Name: name, Value: value})
	}
	return out, nil
}

// isToken reports whether s is an RFC 3261 token (a header name).
func isToken(s string) bool {
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return s != ""
}

func checkExpires(field string, e *int) (time.Duration, *apiError) {
	if e == nil {
		return 0, nil
	}
	if *e < 0 || *e > 1<<31-1 {
		return 0, badField(field, "must be between 0 and 2147483647 seconds, got %d", *e)
	}
	return time.Duration(*e) * time.Second, nil
}

func (s *Server) findPublication(key pua.Key) (pua.PublicationInfo, bool) {
	for _, p := range s.deps.Engine.Publications() {
		if p.Key == key {
			return p, true
		}
	}
	return pua.PublicationInfo{}, false
}

// publish validates p and runs it through the engine, waiting for the final
// reply when wait is set.
func (s *Server) publish(ctx context.Context, p PublishParams, wait bool) (SIPResult, *apiError) {
	if s.deps.Engine == nil {
		return SIPResult{}, notEnabled("pua engine")
	}
	if e := checkSIPURI("presentity_uri", p.PresentityURI); e != nil {
		return SIPResult{}, e
	}
	if p.Event == "" {
		return SIPResult{}, badField("event", "required")
	}
	if strings.ContainsAny(p.Event, " \t\r\n") {
		return SIPResult{}, badField("event", "not an event package name: %q", p.Event)
	}
	exp, e := checkExpires("expires", p.Expires)
	if e != nil {
		return SIPResult{}, e
	}
	hdrs, e := parseHeaders("extra_headers", p.ExtraHeaders)
	if e != nil {
		if e.refusal != "" {
			s.metrics.HTTPRefused(e.refusal)
		}
		return SIPResult{}, e
	}
	if p.OutboundProxy != "" {
		if e := checkSIPURI("outbound_proxy", p.OutboundProxy); e != nil {
			return SIPResult{}, e
		}
	}
	if strings.ContainsAny(p.ContentType, "\r\n") {
		return SIPResult{}, badField("content_type", "contains a line break")
	}
	if strings.ContainsAny(p.ETag, "\r\n \t") {
		return SIPResult{}, badField("etag", "not an entity tag: %q", p.ETag)
	}
	key := pua.Key{PresURI: p.PresentityURI, Event: p.Event, ID: p.ID}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WaitTimeout)
	defer cancel()

	if p.Expires != nil && *p.Expires == 0 {
		if p.ETag != "" {
			if cur, ok := s.findPublication(key); !ok || p.ETag != cur.ETag {
				return SIPResult{}, wrongETag()
			}
		}
		if !wait {
			// Fire and forget: the engine removes in order with the rest;
			// the outcome is logged.
			go func() {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.WaitTimeout)
				defer cancel()
				if _, err := s.deps.Engine.RemoveWait(ctx, key); err != nil {
					s.log.Warn("mgmt: remove failed", "aor", key.PresURI, "event", key.Event, "err", err)
				}
			}()
			return SIPResult{}, nil
		}
		res, err := s.deps.Engine.RemoveWait(ctx, key)
		return resultOf(ctx, res, err)
	}

	body, ct := []byte(p.Body), p.ContentType
	if len(body) == 0 {
		if p.ETag == "" {
			return SIPResult{}, badField("body", "required (it may be left out only with the etag of an existing publication)")
		}
		cur, ok := s.findPublication(key)
		if !ok || cur.ETag != p.ETag {
			return SIPResult{}, wrongETag()
		}
		body = cur.Body
		if ct == "" {
			ct = cur.ContentType
		}
	}
	req := pua.PublishRequest{
		Key:           key,
		Body:          body,
		ContentType:   ct,
		Expires:       exp,
		ExtraHeaders:  hdrs,
		OutboundProxy: p.OutboundProxy,
		Flag:          pua.FlagRPCPublish,
		IfMatch:       p.ETag,
	}
	if !wait {
		if err := s.deps.Engine.Publish(req); err != nil {
			return SIPResult{}, engineError(err)
		}
		return SIPResult{}, nil
	}
	res, err := s.deps.Engine.PublishWait(ctx, req)
	out, e := resultOf(ctx, res, err)
	if e != nil {
		s.endManualPublish(key, res, e, p.KeepOnTimeout)
	}
	return out, e
}

// endManualPublish ends a manual publication that did not succeed, so
// that it neither retries in the background forever nor keeps the entity
// tag of a state it no longer holds: after a refusal (the presence server
// answered 3xx-6xx) always, after a timeout or a transport failure unless
// keep is set. The removal withdraws the publication's accepted state at
// the server, if any; one never accepted is dropped without a request.
func (s *Server) endManualPublish(key pua.Key, res pua.Result, e *apiError, keep bool) {
	refused := res.Err == nil && res.Status >= 300
	sent := refused || e.code == http.StatusGatewayTimeout || e.code == http.StatusBadGateway
	if !sent || (keep && !refused) {
		return
	}
	why := "no final reply in time"
	if refused {
		why = fmt.Sprintf("refused with %d", res.Status)
	}
	if err := s.deps.Engine.Remove(key); err != nil {
		s.log.Warn("mgmt: manual publish failed and could not be ended", "aor", key.PresURI, "event", key.Event, "id", key.ID, "why", why, "err", err)
		return
	}
	s.log.Info("mgmt: manual publish failed, publication ended", "aor", key.PresURI, "event", key.Event, "id", key.ID, "why", why)
}

func wrongETag() *apiError {
	return &apiError{code: http.StatusPreconditionFailed, field: "etag", msg: "etag: Wrong ETag (not the publication's current entity tag)"}
}

func (s *Server) subscribe(ctx context.Context, p SubscribeParams) (SIPResult, *apiError) {
	if s.deps.Engine == nil {
		return SIPResult{}, notEnabled("pua engine")
	}
	if e := checkSIPURI("presentity_uri", p.PresentityURI); e != nil {
		return SIPResult{}, e
	}
	if e := checkSIPURI("watcher_uri", p.WatcherURI); e != nil {
		return SIPResult{}, e
	}
	if p.Event == "" {
		return SIPResult{}, badField("event", "required")
	}
	if strings.ContainsAny(p.Event, " \t\r\n") {
		return SIPResult{}, badField("event", "not an event package name: %q", p.Event)
	}
	exp, e := checkExpires("expires", p.Expires)
	if e != nil {
		return SIPResult{}, e
	}
	key := pua.SubKey{PresURI: p.PresentityURI, WatcherURI: p.WatcherURI, Event: p.Event, ID: p.ID}
	if p.Expires != nil && *p.Expires == 0 {
		if err := s.deps.Engine.Unsubscribe(key); err != nil {
			return SIPResult{}, engineError(err)
		}
		return SIPResult{Status: 200, Reason: "Unsubscribed"}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WaitTimeout)
	defer cancel()
	res, err := s.deps.Engine.SubscribeWait(ctx, pua.SubscribeRequest{SubKey: key, Expires: exp, Flag: pua.FlagRPCSubscribe})
	return resultOf(ctx, res, err)
}

// isTimeout reports whether err means no final reply arrived in time.
func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sip.ErrTransactionTimeout) ||
		errors.Is(err, os.ErrDeadlineExceeded)
}

// engineError maps an error returned by an engine or tracker call (not a
// SIP reply) to an answer.
func engineError(err error) *apiError {
	switch {
	case isTimeout(err):
		return &apiError{code: http.StatusGatewayTimeout, msg: "no final reply in time: " + err.Error()}
	case errors.Is(err, pua.ErrReservedHeader):
		return &apiError{code: http.StatusBadRequest, field: "extra_headers", msg: "extra_headers: " + err.Error()}
	case errors.Is(err, pua.ErrUnknownEvent):
		return &apiError{code: http.StatusBadRequest, field: "event", msg: "event: " + err.Error()}
	case errors.Is(err, pua.ErrWrongETag):
		e := wrongETag()
		e.msg = "etag: " + err.Error()
		return e
	case errors.Is(err, pua.ErrNotFound), errors.Is(err, ErrNotFound):
		return &apiError{code: http.StatusNotFound, msg: err.Error()}
	case errors.Is(err, pua.ErrStopped), errors.Is(err, context.Canceled):
		return &apiError{code: http.StatusServiceUnavailable, msg: err.Error()}
	case errors.Is(err, ErrInvalid):
		return &apiError{code: http.StatusBadRequest, msg: err.Error()}
	case errors.Is(err, ErrConflict):
		return &apiError{code: http.StatusConflict, msg: err.Error()}
	}
	return &apiError{code: http.StatusInternalServerError, msg: err.Error()}
}

// resultOf maps a waited-for engine outcome to an answer: 2xx → result;
// SIP failure → 502 with the SIP status; no reply → 504.
func resultOf(ctx context.Context, res pua.Result, err error) (SIPResult, *apiError) {
	if err != nil && res.Err == nil {
		return SIPResult{}, engineError(err) // refused before sending, or no outcome in time
	}
	if res.Err != nil { // the engine returns (res, res.Err) for a transport failure
		if isTimeout(res.Err) || ctx.Err() != nil {
			return SIPResult{}, &apiError{code: http.StatusGatewayTimeout, sip: res.Status, reason: res.Reason, msg: "no final reply in time: " + res.Err.Error()}
		}
		return SIPResult{}, &apiError{code: http.StatusBadGateway, sip: res.Status, reason: res.Reason, msg: "sending failed: " + res.Err.Error()}
	}
	switch {
	case res.Status >= 200 && res.Status < 300:
		return SIPResult{Status: res.Status, Reason: res.Reason, ETag: res.ETag, Expires: int(res.Expires / time.Second)}, nil
	case res.Status >= 300:
		return SIPResult{}, &apiError{code: http.StatusBadGateway, sip: res.Status, reason: res.Reason,
			msg: fmt.Sprintf("presence server answered %d %s", res.Status, res.Reason)}
	}
	return SIPResult{}, &apiError{code: http.StatusGatewayTimeout, msg: "no final reply"}
}

func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) {
	var p PublishParams
	if e := decodeJSON(r.Body, &p, s.cfg.MaxBody); e != nil {
		s.fail(w, r, e)
		return
	}
	res, e := s.publish(r.Context(), p, true)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) handleSubscribe(w http.ResponseWriter, r *http.Request) {
	var p SubscribeParams
	if e := decodeJSON(r.Body, &p, s.cfg.MaxBody); e != nil {
		s.fail(w, r, e)
		return
	}
	res, e := s.subscribe(r.Context(), p)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
