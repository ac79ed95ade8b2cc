package sipphone

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// Notification is one NOTIFY received by a Watcher.
type Notification struct {
	// State is the Subscription-State value (e.g. "active;expires=600").
	State string
	// Event is the Event header value.
	Event string
	// ContentType is the Content-Type value ("" without a body).
	ContentType string
	// Body is the NOTIFY body.
	Body string
	// CSeq is the NOTIFY's CSeq number.
	CSeq uint32
	// Tag is the NOTIFY's From tag (the notifier's tag of the dialog).
	Tag string
	// Transport is what the NOTIFY came over ("UDP", "TLS", "WSS", ...)
	// and Source the address it came from.
	Transport, Source string
}

// Terminated reports whether the subscription state is terminated.
func (n Notification) Terminated() bool {
	return strings.HasPrefix(strings.TrimSpace(n.State), "terminated")
}

// WatchOptions tunes a subscription.
type WatchOptions struct {
	// ContactUser is the user part of the SUBSCRIBE Contact (default: the
	// phone's user). A Kamailio dialog;sla watcher is matched on it: set
	// it to the shared line's user.
	ContactUser string
	// Expires is the subscription duration (default 600); negative sends
	// Expires: 0 (a fetch).
	Expires int
	// Accept is the Accept header value (default: none).
	Accept string
}

// Watcher is a subscription of the phone at a presence server; it answers
// every NOTIFY with 200 and records it.
type Watcher struct {
	p       *Phone
	target  sip.Uri
	event   string
	callID  string
	fromTag string
	contact sip.Uri

	mu       sync.Mutex
	server   string
	cseq     uint32
	toTag    string
	remote   sip.Uri
	routes   []sip.Uri // the dialog's route set, from the 2xx's Record-Route
	notes    []Notification
	next     int
	changed  chan struct{}
	response *sip.Response
}

// Watch subscribes at server ("host:port") to event for target with the
// phone's AoR as watcher. It returns once the SUBSCRIBE has a 2xx answer.
func (p *Phone) Watch(ctx context.Context, server string, target sip.Uri, event string, o WatchOptions) (*Watcher, error) {
	if o.Expires == 0 {
		o.Expires = 600
	}
	if o.Expires < 0 {
		o.Expires = 0
	}
	if o.ContactUser == "" {
		o.ContactUser = p.User
	}
	w := &Watcher{
		p: p, server: server, target: target, event: event,
		callID:  sip.GenerateTagN(16) + "@" + p.host,
		fromTag: sip.GenerateTagN(12),
		contact: p.ContactURI(o.ContactUser),
		remote:  target,
		changed: make(chan struct{}),
	}
	p.mu.Lock()
	p.watchers[w.callID] = w
	p.mu.Unlock()

	res, err := p.do(ctx, w.subscribe(o.Expires, o.Accept))
	if err != nil {
		return nil, err
	}
	if !res.IsSuccess() {
		return nil, fmt.Errorf("sipphone: subscribe %s %s: %d %s", event, target.String(), res.StatusCode, res.Reason)
	}
	w.mu.Lock()
	w.response = res
	if tag, ok := res.To().Params.Get("tag"); ok && w.toTag == "" {
		w.toTag = tag
	}
	if c := res.Contact(); c != nil {
		w.remote = c.Address
	}
	// RFC 3261 §12.1.2: the route set is the Record-Route in reverse.
	rrs := res.GetHeaders("Record-Route")
	for i := len(rrs) - 1; i >= 0; i-- {
		if rr, ok := rrs[i].(*sip.RecordRouteHeader); ok {
			w.routes = append(w.routes, rr.Address)
		}
	}
	w.mu.Unlock()
	return w, nil
}

// SetServer sends the watcher's further requests to server ("host:port"),
// e.g. another instance of a presence server sharing its dialogs.
func (w *Watcher) SetServer(server string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.server = server
}

// Response returns the 2xx that accepted the SUBSCRIBE.
func (w *Watcher) Response() *sip.Response {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.response
}

// subscribe builds a new SUBSCRIBE in the watcher's dialog.
func (w *Watcher) subscribe(expires int, accept string) *sip.Request {
	w.mu.Lock()
	w.cseq++
	cseq, toTag, remote, routes, server := w.cseq, w.toTag, w.remote, w.routes, w.server
	w.mu.Unlock()

	ruri := w.target
	if toTag != "" {
		ruri = remote
	}
	req := sip.NewRequest(sip.SUBSCRIBE, ruri)
	from := &sip.FromHeader{Address: w.p.AoR(), Params: sip.NewParams()}
	from.Params.Add("tag", w.fromTag)
	req.AppendHeader(from)
	to := &sip.ToHeader{Address: w.target, Params: sip.NewParams()}
	if toTag != "" {
		to.Params.Add("tag", toTag)
	}
	req.AppendHeader(to)
	cid := sip.CallIDHeader(w.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.SUBSCRIBE})
	req.AppendHeader(&sip.ContactHeader{Address: w.contact})
	req.AppendHeader(sip.NewHeader("Event", w.event))
	exp := sip.ExpiresHeader(expires)
	req.AppendHeader(&exp)
	if accept != "" {
		req.AppendHeader(sip.NewHeader("Accept", accept))
	}
	if toTag != "" {
		for _, r := range routes {
			req.AppendHeader(&sip.RouteHeader{Address: r})
		}
	}
	req.SetDestination(server)
	return req
}

// Unsubscribe sends SUBSCRIBE with Expires 0 in the dialog.
func (w *Watcher) Unsubscribe(ctx context.Context) error {
	res, err := w.p.do(ctx, w.subscribe(0, ""))
	if err != nil {
		return err
	}
	if !res.IsSuccess() {
		return fmt.Errorf("sipphone: unsubscribe %s: %d %s", w.target.String(), res.StatusCode, res.Reason)
	}
	return nil
}

// Notifications returns every NOTIFY received so far, oldest first.
func (w *Watcher) Notifications() []Notification {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Notification(nil), w.notes...)
}

// WaitFor waits for the next NOTIFY, after the one matched by the previous
// wait, whose body satisfies match, and returns it.
func (w *Watcher) WaitFor(ctx context.Context, match func(body string) bool) (Notification, error) {
	return w.WaitNotify(ctx, func(n Notification) bool { return match(n.Body) })
}

// WaitNotify is WaitFor on the whole Notification.
func (w *Watcher) WaitNotify(ctx context.Context, match func(Notification) bool) (Notification, error) {
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	for {
		w.mu.Lock()
		for i := w.next; i < len(w.notes); i++ {
			if match(w.notes[i]) {
				w.next = i + 1
				n := w.notes[i]
				w.mu.Unlock()
				return n, nil
			}
		}
		ch := w.changed
		seen := len(w.notes)
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Notification{}, fmt.Errorf("sipphone: no matching NOTIFY for %s %s among %d: %w",
				w.event, w.target.String(), seen, ctx.Err())
		}
	}
}

func (w *Watcher) add(req *sip.Request) {
	n := Notification{Body: string(req.Body()), Transport: req.Transport(), Source: req.Source()}
	if cs := req.CSeq(); cs != nil {
		n.CSeq = cs.SeqNo
	}
	if f := req.From(); f != nil {
		n.Tag, _ = f.Params.Get("tag")
	}
	if h := req.GetHeader("Subscription-State"); h != nil {
		n.State = h.Value()
	}
	if h := req.GetHeader("Event"); h != nil {
		n.Event = h.Value()
	} else if h := req.GetHeader("o"); h != nil {
		n.Event = h.Value()
	}
	if h := req.ContentType(); h != nil {
		n.ContentType = h.Value()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.toTag == "" {
		if tag, ok := req.From().Params.Get("tag"); ok {
			w.toTag = tag
		}
	}
	if c := req.Contact(); c != nil {
		w.remote = c.Address
	}
	w.notes = append(w.notes, n)
	close(w.changed)
	w.changed = make(chan struct{})
}

func (p *Phone) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	var w *Watcher
	if cid := req.CallID(); cid != nil {
		p.mu.Lock()
		w = p.watchers[cid.Value()]
		p.mu.Unlock()
	}
	if w == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Subscription Does Not Exist", nil))
		return
	}
	w.add(req)
	_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
}

// Refresh sends SUBSCRIBE with the given Expires in the watcher's dialog
// and returns the reply, whatever its status.
func (w *Watcher) Refresh(ctx context.Context, expires int) (*sip.Response, error) {
	return w.p.do(ctx, w.subscribe(expires, ""))
}
