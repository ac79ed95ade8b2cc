// Package mgmttest provides in-memory fakes of the components the management
// API drives (the pua engine, the usrloc, dialoginfo and bla trackers), for
// tests of the API, its client and the command line. The fakes follow the
// documented semantics of the real components: unknown events and wrong
// etags are refused with pua's sentinel errors, removals of unknown records
// with pua.ErrNotFound, and a waited-for request records the SIP outcome.
package mgmttest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/puaside/puaside/pua"
)

// DefaultEvents are the event packages the fake engine knows, with their
// content types (the engine's defaults).
func DefaultEvents() map[string]string {
	return map[string]string{
		"presence":        "application/pidf+xml",
		"dialog":          "application/dialog-info+xml",
		"dialog;sla":      "application/dialog-info+xml",
		"message-summary": "application/simple-message-summary",
		"presence.winfo":  "application/watcherinfo+xml",
		"reg":             "application/reginfo+xml",
	}
}

// Engine is a fake pua engine.
type Engine struct {
	// Now is the clock; nil means a fixed instant (2026-01-01 UTC).
	Now func() time.Time
	// PublishReply decides the final reply to a PUBLISH; nil means 200 OK
	// with a fresh etag and the requested expires (3600 s by default).
	PublishReply func(req pua.PublishRequest) pua.Result
	// SubscribeReply decides the final reply to a SUBSCRIBE; nil means 202.
	SubscribeReply func(req pua.SubscribeRequest) pua.Result
	// Block makes waited-for requests hang until their context ends, as an
	// unanswered transaction does; they then return the context's error.
	Block bool

	mu     sync.Mutex
	events map[string]string
	pubs   map[pua.Key]pua.PublicationInfo
	subs   map[pua.SubKey]pua.SubscriptionInfo
	calls  []string
	seq    int
}

// NewEngine returns a fake engine knowing DefaultEvents.
func NewEngine() *Engine {
	return &Engine{events: DefaultEvents(), pubs: map[pua.Key]pua.PublicationInfo{}, subs: map[pua.SubKey]pua.SubscriptionInfo{}}
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
}

// Calls returns the engine methods called so far ("PublishWait presence
// sip:a@x", ...): a test checks that refused input reached nothing.
func (e *Engine) Calls() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.calls...)
}

func (e *Engine) record(format string, args ...any) {
	e.calls = append(e.calls, fmt.Sprintf(format, args...))
}

// SetPublication stores a publication snapshot as if the engine held it.
func (e *Engine) SetPublication(p pua.PublicationInfo) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pubs[p.Key] = p
}

// SetSubscription stores a subscription snapshot (e.g. with a NOTIFY body).
func (e *Engine) SetSubscription(s pua.SubscriptionInfo) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subs[s.Key] = s
}

// validate checks a request as the engine does before queueing it.
func (e *Engine) validate(req pua.PublishRequest) error {
	if req.PresURI == "" {
		return errors.New("pua: publish: empty presentity")
	}
	if _, ok := e.events[req.Event]; !ok {
		return fmt.Errorf("pua: publish %s: %w %q", req.PresURI, pua.ErrUnknownEvent, req.Event)
	}
	if len(req.Body) == 0 {
		return fmt.Errorf("pua: publish %s: empty body", req.PresURI)
	}
	if req.IfMatch != "" {
		if cur, ok := e.pubs[req.Key]; !ok || cur.ETag != req.IfMatch {
			return fmt.Errorf("pua: publish %s: %w", req.PresURI, pua.ErrWrongETag)
		}
	}
	return nil
}

func (e *Engine) store(req pua.PublishRequest, state string) pua.PublicationInfo {
	ct := req.ContentType
	if ct == "" {
		ct = e.events[req.Event]
	}
	p := e.pubs[req.Key]
	p.Key, p.Flag, p.ContentType, p.Body, p.ExtraHeaders = req.Key, req.Flag, ct, req.Body, req.ExtraHeaders
	if p.State == "" || state != pua.StatePending {
		p.State = state
	}
	e.pubs[req.Key] = p
	return p
}

// Publish implements mgmt.Engine.
func (e *Engine) Publish(req pua.PublishRequest) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.record("Publish %s %s", req.Event, req.PresURI)
	if err := e.validate(req); err != nil {
		return err
	}
	e.store(req, pua.StatePending)
	return nil
}

func (e *Engine) block(ctx context.Context) error {
	if !e.Block {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

// PublishWait implements mgmt.Engine.
func (e *Engine) PublishWait(ctx context.Context, req pua.PublishRequest) (pua.Result, error) {
	e.mu.Lock()
	e.record("PublishWait %s %s", req.Event, req.PresURI)
	if err := e.validate(req); err != nil {
		e.mu.Unlock()
		return pua.Result{}, err
	}
	e.store(req, pua.StatePending)
	e.mu.Unlock()
	if err := e.block(ctx); err != nil {
		return pua.Result{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var res pua.Result
	if e.PublishReply != nil {
		res = e.PublishReply(req)
	} else {
		e.seq++
		exp := req.Expires
		if exp == 0 {
			exp = time.Hour
		}
		res = pua.Result{Status: 200, Reason: "OK", ETag: fmt.Sprintf("etag-%d", e.seq), Expires: exp}
	}
	p := e.pubs[req.Key]
	p.LastStatus, p.LastReason = res.Status, res.Reason
	switch {
	case res.Status >= 200 && res.Status < 300:
		p.State, p.ETag, p.Expires = pua.StateActive, res.ETag, e.now().Add(res.Expires)
		p.NextRefresh = e.now().Add(res.Expires * 9 / 10)
	case res.Err != nil || res.Status == 0:
		p.State = pua.StateRetrying
	default:
		p.State = pua.StateFailed
	}
	e.pubs[req.Key] = p
	return res, res.Err
}

// RemoveWait implements mgmt.Engine.
func (e *Engine) RemoveWait(ctx context.Context, key pua.Key) (pua.Result, error) {
	e.mu.Lock()
	e.record("RemoveWait %s %s", key.Event, key.PresURI)
	if _, ok := e.events[key.Event]; !ok {
		e.mu.Unlock()
		return pua.Result{}, fmt.Errorf("pua: remove %s: %w %q", key.PresURI, pua.ErrUnknownEvent, key.Event)
	}
	if _, ok := e.pubs[key]; !ok {
		e.mu.Unlock()
		return pua.Result{}, fmt.Errorf("pua: remove %s: %w", key.PresURI, pua.ErrNotFound)
	}
	e.mu.Unlock()
	if err := e.block(ctx); err != nil {
		return pua.Result{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.pubs, key)
	return pua.Result{Status: 200, Reason: "OK"}, nil
}

// Remove implements mgmt.Engine: the publication is gone at once.
func (e *Engine) Remove(key pua.Key) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.record("Remove %s %s", key.Event, key.PresURI)
	delete(e.pubs, key)
	return nil
}

// SubscribeWait implements mgmt.Engine.
func (e *Engine) SubscribeWait(ctx context.Context, req pua.SubscribeRequest) (pua.Result, error) {
	e.mu.Lock()
	e.record("SubscribeWait %s %s %s", req.Event, req.PresURI, req.WatcherURI)
	if _, ok := e.events[req.Event]; !ok {
		e.mu.Unlock()
		return pua.Result{}, fmt.Errorf("pua: subscribe %s: %w %q", req.PresURI, pua.ErrUnknownEvent, req.Event)
	}
	e.subs[req.SubKey] = pua.SubscriptionInfo{Key: req.SubKey, Flag: req.Flag, Target: req.Target, State: pua.StatePending}
	e.mu.Unlock()
	if err := e.block(ctx); err != nil {
		return pua.Result{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	res := pua.Result{Status: 202, Reason: "Accepted", Expires: req.Expires}
	if e.SubscribeReply != nil {
		res = e.SubscribeReply(req)
	}
	if res.Expires == 0 && res.Status < 300 {
		res.Expires = time.Hour
	}
	s := e.subs[req.SubKey]
	s.LastStatus, s.LastReason = res.Status, res.Reason
	if res.Status >= 200 && res.Status < 300 {
		s.State, s.Expires = pua.StateActive, e.now().Add(res.Expires)
		e.seq++
		s.CallID, s.LocalTag = fmt.Sprintf("call-%d", e.seq), fmt.Sprintf("tag-%d", e.seq)
	} else {
		s.State = pua.StateFailed
	}
	e.subs[req.SubKey] = s
	return res, nil
}

// Unsubscribe implements mgmt.Engine.
func (e *Engine) Unsubscribe(key pua.SubKey) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.record("Unsubscribe %s %s %s", key.Event, key.PresURI, key.WatcherURI)
	if _, ok := e.subs[key]; !ok {
		return fmt.Errorf("pua: unsubscribe %s: %w", key.PresURI, pua.ErrNotFound)
	}
	delete(e.subs, key)
	return nil
}

// Publications implements mgmt.Engine.
func (e *Engine) Publications() []pua.PublicationInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]pua.PublicationInfo, 0, len(e.pubs))
	for _, p := range e.pubs {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i].Key) < fmt.Sprint(out[j].Key) })
	return out
}

// PublicationStates implements mgmt.Engine.
func (e *Engine) PublicationStates() []pua.StateCount {
	counts := map[[2]string]int{}
	for _, p := range e.Publications() {
		counts[[2]string{p.Key.Event, p.State}]++
	}
	return countList(counts)
}

// SubscriptionStates implements mgmt.Engine.
func (e *Engine) SubscriptionStates() []pua.StateCount {
	counts := map[[2]string]int{}
	for _, s := range e.Subscriptions() {
		counts[[2]string{s.Key.Event, s.State}]++
	}
	return countList(counts)
}

// countList lists counts by event package and state.
func countList(counts map[[2]string]int) []pua.StateCount {
	out := make([]pua.StateCount, 0, len(counts))
	for k, n := range counts {
		out = append(out, pua.StateCount{Event: k[0], State: k[1], N: n})
	}
	return out
}

// Subscriptions implements mgmt.Engine.
func (e *Engine) Subscriptions() []pua.SubscriptionInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]pua.SubscriptionInfo, 0, len(e.subs))
	for _, s := range e.subs {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i].Key) < fmt.Sprint(out[j].Key) })
	return out
}
