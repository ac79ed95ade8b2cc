package sipphone

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// ringTimeout ends an unanswered incoming call (480) when the test does not.
const ringTimeout = 60 * time.Second

// sdp is a minimal offer/answer body (no media is ever sent).
func sdp(host string) []byte { return sdpDir(host, "sendrecv", 1) }

// sdpDir is sdp with a media direction (sendrecv, sendonly, recvonly,
// inactive) and an o= version.
func sdpDir(host, dir string, version int) []byte {
	return []byte(fmt.Sprintf("v=0\r\no=- 1 %d IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=%s\r\n",
		version, host, host, dir))
}

// Call is an outgoing call.
type Call struct {
	p      *Phone
	sess   *sipgo.DialogClientSession
	cancel context.CancelCauseFunc
	done   chan struct{}
	err    error
	// reinvites counts the re-INVITEs sent (the SDP o= version).
	reinvites int
}

// Invite calls target (e.g. sip:bob@example.com) through proxy ("host:port",
// put in a preloaded Route) and returns at once; use WaitAnswer, Cancel and
// Bye on the result.
func (p *Phone) Invite(ctx context.Context, proxy string, target sip.Uri) (*Call, error) {
	req := sip.NewRequest(sip.INVITE, target)
	from := &sip.FromHeader{Address: p.AoR(), Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(12))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: target, Params: sip.NewParams()})
	req.AppendHeader(&sip.RouteHeader{Address: routeURI(proxy)})
	req.AppendHeader(&sip.ContactHeader{Address: p.ContactURI(p.User)})
	ct := sip.ContentTypeHeader("application/sdp")
	req.AppendHeader(&ct)
	req.SetBody(sdp(p.host))

	sess, err := p.dcc.WriteInvite(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("sipphone: invite %s: %w", target.String(), err)
	}
	wctx, cancel := context.WithCancelCause(context.Background())
	c := &Call{p: p, sess: sess, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		tctx, tcancel := context.WithTimeout(wctx, 64*sip.T1)
		defer tcancel()
		err := sess.WaitAnswer(tctx, sipgo.AnswerOptions{})
		if err == nil {
			err = sess.Ack(context.Background())
		}
		c.err = err
	}()
	return c, nil
}

func routeURI(hostport string) sip.Uri {
	var u sip.Uri
	if err := sip.ParseUri("sip:"+hostport+";lr", &u); err != nil {
		return sip.Uri{Scheme: "sip", Host: hostport}
	}
	return u
}

// WaitAnswer waits for the final response: nil after a 2xx (already
// ACKed), a *sipgo.ErrDialogResponse for a rejection, context.Canceled
// after Cancel.
func (c *Call) WaitAnswer(ctx context.Context) error {
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return fmt.Errorf("sipphone: wait answer: %w", ctx.Err())
	}
}

// Code returns the final status code once WaitAnswer has returned (0 if none).
func (c *Call) Code() int {
	select {
	case <-c.done:
	default:
		return 0
	}
	if c.sess.InviteResponse == nil {
		return 0
	}
	return c.sess.InviteResponse.StatusCode
}

// Cancel sends CANCEL (after the first provisional response) and waits
// until the INVITE transaction ends.
func (c *Call) Cancel(ctx context.Context) error {
	c.cancel(errors.New("sipphone: cancel"))
	err := c.WaitAnswer(ctx)
	if err == nil {
		return errors.New("sipphone: cancel: call was answered")
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Bye ends an answered call.
func (c *Call) Bye(ctx context.Context) error {
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	if err := c.sess.Bye(ctx); err != nil {
		return fmt.Errorf("sipphone: bye: %w", err)
	}
	return nil
}

// Reinvite sends a re-INVITE within the answered call offering media
// direction dir ("sendonly" or "inactive" put the call on hold,
// "sendrecv" resumes it), ACKs a 2xx and returns the final status.
func (c *Call) Reinvite(ctx context.Context, dir string) (int, error) {
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	res := c.sess.InviteResponse
	if res == nil || res.Contact() == nil {
		return 0, errors.New("sipphone: re-INVITE: the call is not answered")
	}
	c.reinvites++
	req := sip.NewRequest(sip.INVITE, res.Contact().Address)
	ct := sip.ContentTypeHeader("application/sdp")
	req.AppendHeader(&ct)
	req.SetBody(sdpDir(c.p.host, dir, 1+c.reinvites))
	r, err := c.sess.Do(ctx, req)
	if err != nil {
		return 0, fmt.Errorf("sipphone: re-INVITE: %w", err)
	}
	if r.IsSuccess() {
		ack := sip.NewRequest(sip.ACK, res.Contact().Address)
		if err := c.sess.WriteRequest(ack); err != nil {
			return r.StatusCode, fmt.Errorf("sipphone: re-INVITE ACK: %w", err)
		}
	}
	return r.StatusCode, nil
}

// CallID returns the call's Call-ID.
func (c *Call) CallID() string { return c.sess.InviteRequest.CallID().Value() }

// IncomingCall is a call received by the phone.
type IncomingCall struct {
	// Request is the received INVITE.
	Request *sip.Request
	sess    *sipgo.DialogServerSession
	cmd     chan int
	done    chan struct{}
	code    int
}

// Answer answers a call left ringing by the policy.
func (ic *IncomingCall) Answer() { ic.send(200) }

// Reject rejects a call left ringing by the policy with code (300-699).
func (ic *IncomingCall) Reject(code int) { ic.send(code) }

func (ic *IncomingCall) send(code int) {
	select {
	case ic.cmd <- code:
	case <-ic.done:
	}
}

// Done is closed when the INVITE transaction has its final response
// (answered, rejected or cancelled).
func (ic *IncomingCall) Done() <-chan struct{} { return ic.done }

// Code returns the final status sent (487 when cancelled), after Done.
func (ic *IncomingCall) Code() int { return ic.code }

// Bye ends an answered incoming call from the callee side.
func (ic *IncomingCall) Bye(ctx context.Context) error {
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	if err := ic.sess.Bye(ctx); err != nil {
		return fmt.Errorf("sipphone: bye: %w", err)
	}
	return nil
}

func (p *Phone) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if req.To() != nil && req.To().Params.Has("tag") {
		// re-INVITE: accept without change.
		_ = tx.Respond(sip.NewSDPResponseFromRequest(req, sdp(p.host)))
		return
	}
	sess, err := p.dsc.ReadInvite(req, tx)
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusBadRequest, err.Error(), nil))
		return
	}
	ic := &IncomingCall{Request: req, sess: sess, cmd: make(chan int, 1), done: make(chan struct{})}
	defer close(ic.done)
	select {
	case p.incoming <- ic:
	default:
	}
	p.mu.Lock()
	delay := p.ringDelay
	p.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-sess.Context().Done():
			ic.code = 487
			return
		case <-tx.Done():
			ic.code = 487
			return
		}
	}
	_ = sess.Respond(sip.StatusRinging, "Ringing", nil)

	p.mu.Lock()
	code := p.policy(req)
	p.mu.Unlock()
	if code == 0 {
		select {
		case code = <-ic.cmd:
		case <-sess.Context().Done():
			// Cancelled: sipgo has answered 487.
			ic.code = 487
			return
		case <-tx.Done():
			ic.code = 487
			return
		case <-time.After(ringTimeout):
			code = 480
		}
	}
	ic.code = code
	if code >= 200 && code < 300 {
		_ = sess.RespondSDP(sdp(p.host))
		return
	}
	_ = sess.Respond(code, reason(code), nil)
}

func (p *Phone) onAck(req *sip.Request, tx sip.ServerTransaction) {
	_ = p.dsc.ReadAck(req, tx)
}

func (p *Phone) onBye(req *sip.Request, tx sip.ServerTransaction) {
	if err := p.dcc.ReadBye(req, tx); err == nil {
		return
	}
	if err := p.dsc.ReadBye(req, tx); err == nil {
		return
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
}

func reason(code int) string {
	switch code {
	case 404:
		return "Not Found"
	case 480:
		return "Temporarily Unavailable"
	case 486:
		return "Busy Here"
	case 603:
		return "Decline"
	default:
		return "Rejected"
	}
}
