package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/puaside/puaside/aor"
	"github.com/puaside/puaside/event"
)

// maxEventsBody is the largest JSON body accepted by the events handler.
const maxEventsBody = 1 << 20

// Dialog states accepted in native dialog events (RFC 4235, lowercase).
var dialogStates = map[string]bool{
	"trying": true, "proceeding": true, "early": true, "confirmed": true, "terminated": true,
}

// eventError is a rejected event: the message and the JSON field at fault.
type eventError struct {
	Field string `json:"field,omitempty"`
	Msg   string `json:"error"`
	// reason is the drop reason counted for it; "" means parse_error.
	reason string
}

func (e *eventError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func errField(field, format string, args ...any) *eventError {
	return &eventError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// jsonContact is a contact of a native registration event.
type jsonContact struct {
	URI       string   `json:"uri"`
	Expires   *int     `json:"expires"`
	Q         *float64 `json:"q"`
	CallID    string   `json:"callid"`
	CSeq      uint32   `json:"cseq"`
	Received  string   `json:"received"`
	Instance  string   `json:"instance"`
	UserAgent string   `json:"user_agent"`
}

// jsonRegistration is a native registration event.
type jsonRegistration struct {
	Type      string        `json:"type"`
	AoR       string        `json:"aor"`
	Contacts  []jsonContact `json:"contacts"`
	Complete  bool          `json:"complete"`
	RemoveAll bool          `json:"remove_all"`
	Publish   *bool         `json:"publish"`
	Time      string        `json:"time"`
}

// jsonDialog is a native dialog event.
type jsonDialog struct {
	Type        string `json:"type"`
	CallID      string `json:"call_id"`
	FromTag     string `json:"from_tag"`
	ToTag       string `json:"to_tag"`
	From        string `json:"from"`
	To          string `json:"to"`
	RequestURI  string `json:"request_uri"`
	FromDisplay string `json:"from_display"`
	ToDisplay   string `json:"to_display"`
	State       string `json:"state"`
	Event       string `json:"event"`
	Code        int    `json:"code"`
	Hold        bool   `json:"hold"`
	Time        string `json:"time"`
}

// EventsHandler returns the handler of POST /v1/events: one JSON event
// or an array of events (schema in EVENTS.md). It answers 202 with the
// number of queued events, 400 naming the bad field (nothing of the body is
// queued then), 403 to an untrusted client, 413 above 1 MiB, 503 when the
// queue is full or the ingest is stopped.
func (in *Ingest) EventsHandler() http.Handler {
	return http.HandlerFunc(in.serveEvents)
}

func (in *Ingest) serveEvents(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, &eventError{Msg: "method not allowed, use POST"})
		return
	}
	src, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !in.allowed(InputJSON, src.Addr()) {
		writeJSON(w, http.StatusForbidden, &eventError{Msg: "source not trusted"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEventsBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			in.bad(InputJSON, reasonOversize, src, err)
			writeJSON(w, http.StatusRequestEntityTooLarge, &eventError{Msg: fmt.Sprintf("body larger than %d bytes", maxEventsBody)})
			return
		}
		in.bad(InputJSON, reasonParse, src, err)
		writeJSON(w, http.StatusBadRequest, &eventError{Msg: "cannot read body"})
		return
	}
	items, err := in.parseEvents(body)
	if err != nil {
		var ee *eventError
		if !errors.As(err, &ee) {
			ee = &eventError{Msg: err.Error()}
		}
		reason := reasonParse
		if ee.reason != "" {
			reason = ee.reason
		}
		in.bad(InputJSON, reason, src, err)
		writeJSON(w, http.StatusBadRequest, ee)
		return
	}
	accepted, ignored := 0, 0
	for _, q := range items {
		if q.it == nil || (q.it.reg != nil && in.h.Registration == nil) || (q.it.dlg != nil && in.h.Dialog == nil) {
			in.m.Ingest(InputJSON, kindEvent, resultIgnored)
			ignored++
			continue
		}
		if ok, _ := in.enqueue(q.key, *q.it, false); !ok {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{
				"error": "queue full or stopping, retry later", "accepted": accepted,
			})
			return
		}
		accepted++
	}
	writeJSON(w, http.StatusAccepted, map[string]int{"accepted": accepted, "ignored": ignored})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// queued is a parsed event: the item and its ordering key, or it == nil
// for an event that is valid but ignored.
type queued struct {
	key string
	it  *item
}

// parseEvents decodes a body holding one event object or an array of
// them. Any invalid event rejects the whole body.
func (in *Ingest) parseEvents(body []byte) ([]queued, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, &eventError{Msg: "empty body"}
	}
	var raws []json.RawMessage
	single := body[0] != '['
	if single {
		raws = []json.RawMessage{body}
	} else if err := json.Unmarshal(body, &raws); err != nil {
		return nil, &eventError{Msg: "malformed JSON: " + err.Error()}
	}
	out := make([]queued, 0, len(raws))
	for i, raw := range raws {
		prefix := ""
		if !single {
			prefix = "[" + strconv.Itoa(i) + "]"
		}
		q, err := in.parseEvent(raw, prefix)
		if err != nil {
			return nil, err
		}
		if e := in.eventBounds(q); e != nil {
			return nil, &eventError{Field: prefix, Msg: e.Error(), reason: e.reason}
		}
		out = append(out, q)
	}
	return out, nil
}

// eventBounds applies the length bounds to a parsed event.
func (in *Ingest) eventBounds(q queued) *tooLong {
	switch {
	case q.it == nil:
		return nil
	case q.it.reg != nil:
		return in.cfg.checkRegistration(q.it.reg)
	case q.it.dlg != nil:
		return in.cfg.checkDialog(q.it.dlg)
	}
	return nil
}

func joinField(prefix, f string) string {
	switch {
	case prefix == "":
		return f
	case f == "":
		return prefix
	}
	return prefix + "." + f
}

// parseEvent decodes one event object, native or OpenSIPS.
func (in *Ingest) parseEvent(raw json.RawMessage, prefix string) (queued, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return queued{}, errField(prefix, "an event must be a JSON object")
		}
		return queued{}, errField(prefix, "malformed JSON: %v", err)
	}
	name := func(key string) (string, bool, error) {
		v, ok := probe[key]
		if !ok {
			return "", false, nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", true, errField(joinField(prefix, key), "must be a string")
		}
		return s, true, nil
	}
	if typ, ok, err := name("type"); err != nil {
		return queued{}, err
	} else if ok {
		switch typ {
		case "registration":
			return in.nativeRegistration(raw, prefix)
		case "dialog":
			return in.nativeDialog(raw, prefix)
		}
		return queued{}, errField(joinField(prefix, "type"), "unknown event type %q (want registration or dialog)", typ)
	}
	ev, ok, err := name("event")
	if err != nil {
		return queued{}, err
	}
	field := "event"
	if !ok {
		if ev, ok, err = name("method"); err != nil {
			return queued{}, err
		}
		field = "method"
	}
	if !ok {
		return queued{}, errField(prefix, "no event type: want a \"type\", \"event\" or JSON-RPC \"method\" field")
	}
	params := map[string]json.RawMessage{}
	if p, ok := probe["params"]; ok && string(p) != "null" {
		if err := json.Unmarshal(p, &params); err != nil {
			return queued{}, errField(joinField(prefix, "params"), "must be an object")
		}
	}
	return in.openSIPSEvent(ev, field, params, prefix)
}

// decodeStrict decodes raw into v rejecting unknown fields, and maps the
// decoder's error to the field at fault.
func decodeStrict(raw json.RawMessage, v any, prefix string) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return errField(joinField(prefix, te.Field), "wrong type: got JSON %s, want %s", te.Value, te.Type)
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return errField(joinField(prefix, strings.Trim(f, `"`)), "unknown field")
	}
	return errField(prefix, "malformed JSON: %v", err)
}

func (in *Ingest) eventTime(s, field string) (time.Time, error) {
	if s == "" {
		return in.now(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errField(field, "not an RFC 3339 time: %q", s)
	}
	return t, nil
}

func (in *Ingest) nativeRegistration(raw json.RawMessage, prefix string) (queued, error) {
	var j jsonRegistration
	if err := decodeStrict(raw, &j, prefix); err != nil {
		return queued{}, err
	}
	if strings.TrimSpace(j.AoR) == "" {
		return queued{}, errField(joinField(prefix, "aor"), "required")
	}
	if len(j.Contacts) == 0 && !j.RemoveAll && !j.Complete && j.Publish == nil {
		return queued{}, errField(joinField(prefix, "contacts"), "required unless remove_all, complete or publish is set")
	}
	t, err := in.eventTime(j.Time, joinField(prefix, "time"))
	if err != nil {
		return queued{}, err
	}
	reg := event.Registration{
		AoR: j.AoR, Complete: j.Complete, RemoveAll: j.RemoveAll, Publish: j.Publish,
		Source: event.SourceJSON, Time: t,
	}
	for i, c := range j.Contacts {
		f := joinField(prefix, "contacts["+strconv.Itoa(i)+"]")
		if strings.TrimSpace(c.URI) == "" {
			return queued{}, errField(joinField(f, "uri"), "required")
		}
		ct := event.Contact{URI: c.URI, Expires: -1, Q: -1, CallID: c.CallID, CSeq: c.CSeq,
			Received: c.Received, Instance: c.Instance, UserAgent: c.UserAgent}
		if c.Expires != nil {
			if *c.Expires < 0 {
				return queued{}, errField(joinField(f, "expires"), "must be >= 0 (seconds)")
			}
			ct.Expires = *c.Expires
		}
		if c.Q != nil {
			if *c.Q < 0 || *c.Q > 1 || math.IsNaN(*c.Q) {
				return queued{}, errField(joinField(f, "q"), "must be in [0, 1]")
			}
			ct.Q = *c.Q
		}
		reg.Contacts = append(reg.Contacts, ct)
	}
	return queued{key: aor.Key(reg.AoR), it: &item{input: InputJSON, kind: kindEvent, reg: &reg}}, nil
}

func (in *Ingest) nativeDialog(raw json.RawMessage, prefix string) (queued, error) {
	var j jsonDialog
	if err := decodeStrict(raw, &j, prefix); err != nil {
		return queued{}, err
	}
	if strings.TrimSpace(j.CallID) == "" {
		return queued{}, errField(joinField(prefix, "call_id"), "required")
	}
	if !dialogStates[j.State] {
		return queued{}, errField(joinField(prefix, "state"), "unknown state %q (want trying, proceeding, early, confirmed or terminated)", j.State)
	}
	if j.Code != 0 && (j.Code < 100 || j.Code > 699) {
		return queued{}, errField(joinField(prefix, "code"), "not a SIP status: %d", j.Code)
	}
	t, err := in.eventTime(j.Time, joinField(prefix, "time"))
	if err != nil {
		return queued{}, err
	}
	d := event.DialogState{
		CallID: j.CallID, FromTag: j.FromTag, ToTag: j.ToTag, From: j.From, To: j.To,
		RequestURI: j.RequestURI, FromDisplay: j.FromDisplay, ToDisplay: j.ToDisplay,
		State: j.State, Event: j.Event, Code: j.Code, Hold: j.Hold, Source: event.SourceJSON, Time: t,
	}
	return queued{key: d.CallID, it: &item{input: InputJSON, kind: kindEvent, dlg: &d}}, nil
}

// OpenSIPS dialog states (modules/dialog/dlg_hash.h).
var openSIPSDialogStates = map[int64]string{
	1: "trying",    // DLG_STATE_UNCONFIRMED: INVITE seen, no reply
	2: "early",     // DLG_STATE_EARLY: provisional reply
	3: "confirmed", // DLG_STATE_CONFIRMED_NA: 2xx, ACK not yet seen
	4: "confirmed", // DLG_STATE_CONFIRMED
	5: "terminated",
}

// osParams reads OpenSIPS event parameters leniently: OpenSIPS sends
// integers as JSON numbers, but scripts that build the JSON by hand often
// quote them, so a numeric string is accepted too; null counts as absent.
type osParams struct {
	p      map[string]json.RawMessage
	prefix string
}

func (o osParams) str(name string) (string, error) {
	v, ok := o.p[name]
	if !ok || string(v) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		var n json.Number
		if json.Unmarshal(v, &n) == nil {
			return n.String(), nil
		}
		return "", errField(joinField(o.prefix, "params."+name), "must be a string")
	}
	return s, nil
}

// num returns the integer parameter, ok=false when absent.
func (o osParams) num(name string) (n int64, ok bool, err error) {
	v, present := o.p[name]
	if !present || string(v) == "null" {
		return 0, false, nil
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		var jn json.Number
		if err := json.Unmarshal(v, &jn); err != nil {
			return 0, false, errField(joinField(o.prefix, "params."+name), "must be an integer")
		}
		s = jn.String()
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true, nil
	}
	// qval is a signed int printed unsigned by some transports
	// (18446744073709551615 for -1).
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return int64(u), true, nil
	}
	return 0, false, errField(joinField(o.prefix, "params."+name), "must be an integer, got %s", s)
}

// openSIPSEvent converts an OpenSIPS event (EVI name and parameters).
func (in *Ingest) openSIPSEvent(name, field string, params map[string]json.RawMessage, prefix string) (queued, error) {
	o := osParams{p: params, prefix: prefix}
	now := in.now()
	switch name {
	case "E_UL_CONTACT_INSERT", "E_UL_CONTACT_UPDATE", "E_UL_CONTACT_DELETE":
		aorText, err := o.str("aor")
		if err != nil {
			return queued{}, err
		}
		uri, err := o.str("uri")
		if err != nil {
			return queued{}, err
		}
		if aorText == "" {
			return queued{}, errField(joinField(prefix, "params.aor"), "required")
		}
		if uri == "" {
			return queued{}, errField(joinField(prefix, "params.uri"), "required")
		}
		c := event.Contact{URI: uri, Expires: -1, Q: -1}
		if c.CallID, err = o.str("callid"); err != nil {
			return queued{}, err
		}
		if c.Received, err = o.str("received"); err != nil {
			return queued{}, err
		}
		if c.UserAgent, err = o.str("user_agent"); err != nil {
			return queued{}, err
		}
		cseq, ok, err := o.num("cseq")
		if err != nil {
			return queued{}, err
		}
		if ok && cseq >= 0 && cseq <= math.MaxUint32 {
			c.CSeq = uint32(cseq)
		}
		// qval is OpenSIPS' qvalue_t: 0..1000 for q 0.000..1.000, -1 unset.
		q, ok, err := o.num("qval")
		if err != nil {
			return queued{}, err
		}
		if ok && q >= 0 && q <= 1000 {
			c.Q = float64(q) / 1000
		}
		exp, ok, err := o.num("expires")
		if err != nil {
			return queued{}, err
		}
		switch {
		case name == "E_UL_CONTACT_DELETE":
			c.Expires = 0
		case !ok || exp == 0:
			// 0 is a permanent contact in OpenSIPS: let the tracker decide.
		case exp > 1_000_000_000:
			// Absolute UNIX time of expiry, as usrloc raises it.
			left := time.Unix(exp, 0).Sub(now)
			c.Expires = max(0, int((left+time.Second-1)/time.Second))
		case exp > 0:
			c.Expires = int(exp) // relative seconds, from a hand-built event
		default:
			return queued{}, errField(joinField(prefix, "params.expires"), "negative")
		}
		reg := event.Registration{AoR: aorText, Contacts: []event.Contact{c}, Source: event.SourceJSON, Time: now}
		return queued{key: aor.Key(reg.AoR), it: &item{input: InputJSON, kind: kindEvent, reg: &reg}}, nil
	case "E_UL_AOR_DELETE":
		aorText, err := o.str("aor")
		if err != nil {
			return queued{}, err
		}
		if aorText == "" {
			return queued{}, errField(joinField(prefix, "params.aor"), "required")
		}
		reg := event.Registration{AoR: aorText, RemoveAll: true, Source: event.SourceJSON, Time: now}
		return queued{key: aor.Key(reg.AoR), it: &item{input: InputJSON, kind: kindEvent, reg: &reg}}, nil
	case "E_UL_AOR_INSERT", "E_UL_AOR_CREATE":
		// Nothing to do: the contact events that follow carry the bindings.
		return queued{}, nil
	case "E_DLG_STATE_CHANGED":
		callID, err := o.str("callid")
		if err != nil {
			return queued{}, err
		}
		if callID == "" {
			return queued{}, errField(joinField(prefix, "params.callid"), "required")
		}
		ns, ok, err := o.num("new_state")
		if err != nil {
			return queued{}, err
		}
		state, known := openSIPSDialogStates[ns]
		if !ok || !known {
			return queued{}, errField(joinField(prefix, "params.new_state"), "want 1..5")
		}
		d := event.DialogState{CallID: callID, State: state, Source: event.SourceJSON, Time: now}
		if d.FromTag, err = o.str("from_tag"); err != nil {
			return queued{}, err
		}
		if d.ToTag, err = o.str("to_tag"); err != nil {
			return queued{}, err
		}
		// Optional extras a script may add to its own JSON.
		if d.From, err = o.str("from"); err != nil {
			return queued{}, err
		}
		if d.To, err = o.str("to"); err != nil {
			return queued{}, err
		}
		return queued{key: callID, it: &item{input: InputJSON, kind: kindEvent, dlg: &d}}, nil
	}
	return queued{}, errField(joinField(prefix, field), "unknown event %q", name)
}
