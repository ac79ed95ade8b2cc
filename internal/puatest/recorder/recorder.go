// Package recorder is the test kit's recording publisher and subscriber:
// what the trackers (usrloc, dialoginfo, bla) and reconcile hand to the
// pua engine, recorded instead of sent, with the live publications and
// subscriptions kept as a presence server would. It sits in place of the
// engine at the end of the trackers' part of the flow. It is a package of
// its own beside puatest because it speaks pua's types and pua's own tests
// use puatest. Test support only: no production package imports it.
package recorder

import (
	"errors"
	"maps"
	"sync"

	"github.com/puaside/puaside/pua"
)

// Kind is what an Op did.
type Kind uint8

// The kinds of Op.
const (
	Publish Kind = iota + 1
	Remove
	Subscribe
	Unsubscribe
	Note // a line a test adds with Recorder.Note
)

// Op is one recorded call.
type Op struct {
	Kind Kind
	// Req is the request of a Publish.
	Req pua.PublishRequest
	// Key is the publication of a Publish or Remove.
	Key pua.Key
	// Sub is the request of a Subscribe.
	Sub pua.SubscribeRequest
	// SubKey is the subscription of a Subscribe or Unsubscribe.
	SubKey pua.SubKey
	// Text is a Note's text.
	Text string
}

// String renders the call compactly: "publish <id>", "remove <id>",
// "subscribe <target>", "unsubscribe <id>", or a Note's text.
func (o Op) String() string {
	switch o.Kind {
	case Publish:
		return "publish " + o.Key.ID
	case Remove:
		return "remove " + o.Key.ID
	case Subscribe:
		return "subscribe " + o.Sub.Target
	case Unsubscribe:
		return "unsubscribe " + o.SubKey.ID
	default:
		return o.Text
	}
}

// ErrEmptyBody is what Publish returns for a request without a body, as
// the engine refuses one.
var ErrEmptyBody = errors.New("recorder: publish: empty body")

// Recorder records Publish, Remove, Subscribe and Unsubscribe calls. Its
// methods are safe for concurrent use.
type Recorder struct {
	mu           sync.Mutex
	ops          []Op
	live         map[pua.Key]pua.PublishRequest
	subs         map[pua.SubKey]pua.SubscribeRequest
	last         pua.PublishRequest
	subscribeErr error
}

// New returns an empty Recorder.
func New() *Recorder {
	return &Recorder{live: map[pua.Key]pua.PublishRequest{}, subs: map[pua.SubKey]pua.SubscribeRequest{}}
}

// Publish records r and keeps it as the live state of r.Key.
func (r *Recorder) Publish(req pua.PublishRequest) error {
	if len(req.Body) == 0 {
		return ErrEmptyBody
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, Op{Kind: Publish, Req: req, Key: req.Key})
	r.live[req.Key] = req
	r.last = req
	return nil
}

// Remove records the removal and forgets the live state of k.
func (r *Recorder) Remove(k pua.Key) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, Op{Kind: Remove, Key: k})
	delete(r.live, k)
	return nil
}

// Subscribe records req and keeps the subscription, unless FailSubscribe
// set an error: then it returns that and records nothing.
func (r *Recorder) Subscribe(req pua.SubscribeRequest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.subscribeErr != nil {
		return r.subscribeErr
	}
	r.ops = append(r.ops, Op{Kind: Subscribe, Sub: req, SubKey: req.SubKey})
	r.subs[req.SubKey] = req
	return nil
}

// Unsubscribe records the call and forgets the subscription.
func (r *Recorder) Unsubscribe(k pua.SubKey) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, Op{Kind: Unsubscribe, SubKey: k})
	delete(r.subs, k)
	return nil
}

// FailSubscribe makes Subscribe return err (nil: accept again).
func (r *Recorder) FailSubscribe(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.subscribeErr = err
}

// Note records a line of the test's own (a call of an interface the
// Recorder does not implement, such as a refresh).
func (r *Recorder) Note(text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, Op{Kind: Note, Text: text})
}

// Ops returns the recorded calls, oldest first.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.ops...)
}

// Take returns the recorded calls and forgets them.
func (r *Recorder) Take() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.ops
	r.ops = nil
	return o
}

// TakeCalls is Take rendered with Op.String.
func (r *Recorder) TakeCalls() []string {
	var out []string
	for _, o := range r.Take() {
		out = append(out, o.String())
	}
	return out
}

// Live returns the live publications by key.
func (r *Recorder) Live() map[pua.Key]pua.PublishRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.live)
}

// Last is the last request published.
func (r *Recorder) Last() pua.PublishRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// Subscriptions returns the live subscriptions by key.
func (r *Recorder) Subscriptions() map[pua.SubKey]pua.SubscribeRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.subs)
}

// Subscribed reports whether k is subscribed.
func (r *Recorder) Subscribed(k pua.SubKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.subs[k]
	return ok
}

// Nop is a publisher that does nothing, for benchmarks.
type Nop struct{}

// Publish does nothing.
func (Nop) Publish(pua.PublishRequest) error { return nil }

// Remove does nothing.
func (Nop) Remove(pua.Key) error { return nil }
