package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/puatest"
)

// polSLA is the event package of Polycom bridged line appearance.
const polSLA = "dialog;sla"

// polycom emulates a Polycom phone on a shared line (BLA): one UDP socket
// on 127.0.0.1 for everything, a Contact whose user is the line's user. It
// registers the line AoR, accepts a `dialog;sla` SUBSCRIBE (200 with Expires
// and Contact, then an initial NOTIFY), sends NOTIFYs in that dialog and
// records their response codes, and subscribes itself to `dialog;sla` for
// the line at a presence server, collecting the NOTIFYs.
type polycom struct {
	tb   testing.TB
	line sip.Uri // the shared line's AoR
	host string
	port int
	ua   *sipgo.UserAgent
	srv  *sipgo.Server
	cl   *sipgo.Client
	conn net.PacketConn
	wg   sync.WaitGroup

	// initialNotify is sent after a new subscription is accepted; false
	// leaves the first NOTIFY to the test.
	initialNotify bool

	mu sync.Mutex
	// refuse are the codes answered to the next new subscriptions (a
	// booting Polycom answers 489), then they are accepted.
	refuse  []int
	changed chan struct{}
	subs    []polSubscribe
	dlg     *polDialog
	codes   []int
	reg     struct {
		callID, fromTag string
		cseq            uint32
	}
	watch *polWatch
}

// polSubscribe is a SUBSCRIBE received by the phone.
type polSubscribe struct {
	RURI, From, To   string
	FromTag, ToTag   string
	CallID, Event    string
	Expires          int // -1: no Expires header
	Contacts         []string
	InDialog, Answer bool
}

// polDialog is the subscription accepted by the phone (notifier side).
type polDialog struct {
	callID, localTag, remoteTag string
	local, remote, target       sip.Uri
	cseq                        uint32
	expires                     int
	ended                       bool
}

// polNote is one NOTIFY received by the phone's own subscription.
type polNote struct {
	State, Body string
	seq         uint32 // CSeq
}

// polWatch is the phone's subscription at the presence server.
type polWatch struct {
	callID, fromTag, toTag string
	server                 string
	notes                  []polNote
	next                   int
}

// newPolycom starts a phone of the shared line user@domain.
func newPolycom(tb testing.TB, user, domain string) *polycom {
	tb.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("polycom: listen: %v", err)
	}
	p := &polycom{
		tb: tb, line: sip.Uri{Scheme: "sip", User: user, Host: domain},
		host: "127.0.0.1", port: conn.LocalAddr().(*net.UDPAddr).Port, conn: conn,
		initialNotify: true, changed: make(chan struct{}),
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p.ua, err = sipgo.NewUA(sipgo.WithUserAgent("PolycomSoundPointIP-emu"), sipgo.WithUserAgentHostname(domain),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerUnhandledResponseHandler(func(*sip.Response) {})))
	if err != nil {
		conn.Close()
		tb.Fatalf("polycom: ua: %v", err)
	}
	if p.srv, err = sipgo.NewServer(p.ua, sipgo.WithServerLogger(log)); err != nil {
		tb.Fatalf("polycom: server: %v", err)
	}
	if p.cl, err = sipgo.NewClient(p.ua, sipgo.WithClientConnectionAddr(conn.LocalAddr().String()),
		sipgo.WithClientHostname(p.host), sipgo.WithClientPort(p.port), sipgo.WithClientLogger(log)); err != nil {
		tb.Fatalf("polycom: client: %v", err)
	}
	p.srv.OnSubscribe(p.onSubscribe)
	p.srv.OnNotify(p.onNotify)
	p.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	})
	serveUDP(tb, "polycom", p.ua, p.srv, conn, &p.wg)
	tb.Cleanup(p.close)
	return p
}

func (p *polycom) close() {
	_ = p.ua.Close()
	_ = p.conn.Close()
	p.wg.Wait()
}

// contact is sip:<line user>@127.0.0.1:port, the phone's Contact.
func (p *polycom) contact() sip.Uri {
	return sip.Uri{Scheme: "sip", User: p.line.User, Host: p.host, Port: p.port}
}

// contactString is the contact as puaside relays it (Sender header).
func (p *polycom) contactString() string {
	c := p.contact()
	return c.String()
}

// signal wakes waiters; p.mu is held.
func (p *polycom) signal() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// waitUntil waits until cond (called with p.mu held) holds.
func (p *polycom) waitUntil(ctx context.Context, what string, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	for {
		p.mu.Lock()
		ok, ch := cond(), p.changed
		p.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("polycom %s: waiting for %s: %w", p.contactString(), what, ctx.Err())
		}
	}
}

// register sends REGISTER for the line AoR with the phone's contact to
// registrar ("host:port"); successive calls share a Call-ID.
func (p *polycom) register(ctx context.Context, registrar string, expires int) (*sip.Response, error) {
	p.mu.Lock()
	if p.reg.callID == "" {
		p.reg.callID, p.reg.fromTag = sip.GenerateTagN(16)+"@"+p.host, sip.GenerateTagN(10)
	}
	p.reg.cseq++
	cid, tag, cseq := p.reg.callID, p.reg.fromTag, p.reg.cseq
	p.mu.Unlock()
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: p.line.Host})
	from := &sip.FromHeader{Address: p.line, Params: sip.NewParams()}
	from.Params.Add("tag", tag)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: p.line, Params: sip.NewParams()})
	h := sip.CallIDHeader(cid)
	req.AppendHeader(&h)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.REGISTER})
	req.AppendHeader(&sip.ContactHeader{Address: p.contact()})
	exp := sip.ExpiresHeader(expires)
	req.AppendHeader(&exp)
	req.AppendHeader(sip.NewHeader("User-Agent", "PolycomSoundPointIP-emu"))
	req.SetDestination(registrar)
	return p.do(ctx, req)
}

func (p *polycom) do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	res, err := p.cl.Do(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("polycom: %s %s: %w", req.Method, req.Recipient.String(), err)
	}
	return res, nil
}

// onSubscribe accepts a dialog;sla subscription (or refreshes/ends it).
func (p *polycom) onSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	rec := polSubscribe{RURI: req.Recipient.String(), Expires: -1}
	if f := req.From(); f != nil {
		rec.From = f.Address.String()
		rec.FromTag, _ = f.Params.Get("tag")
	}
	if t := req.To(); t != nil {
		rec.To = t.Address.String()
		rec.ToTag, _ = t.Params.Get("tag")
	}
	if c := req.CallID(); c != nil {
		rec.CallID = c.Value()
	}
	if h := req.GetHeader("Event"); h != nil {
		rec.Event = h.Value()
	}
	if h := req.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil {
			rec.Expires = n
		}
	}
	for _, h := range req.GetHeaders("Contact") {
		if c, ok := h.(*sip.ContactHeader); ok {
			rec.Contacts = append(rec.Contacts, c.Address.String())
		} else {
			rec.Contacts = append(rec.Contacts, h.Value())
		}
	}
	rec.InDialog = rec.ToTag != ""

	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	code := 200
	p.mu.Lock()
	switch {
	case !strings.EqualFold(strings.ReplaceAll(rec.Event, " ", ""), polSLA):
		code = 489
	case !rec.InDialog && len(p.refuse) > 0:
		code, p.refuse = p.refuse[0], p.refuse[1:]
	case !rec.InDialog:
		tag, _ := res.To().Params.Get("tag")
		d := &polDialog{callID: rec.CallID, localTag: tag, remoteTag: rec.FromTag,
			local: req.To().Address, remote: req.From().Address, expires: rec.Expires}
		if c := req.Contact(); c != nil {
			d.target = c.Address
		}
		p.dlg = d
	case p.dlg == nil || p.dlg.callID != rec.CallID || p.dlg.localTag != rec.ToTag:
		code = 481
	default:
		p.dlg.expires = rec.Expires
		if c := req.Contact(); c != nil {
			p.dlg.target = c.Address
		}
		if rec.Expires == 0 {
			p.dlg.ended = true
		}
	}
	rec.Answer = code == 200
	p.subs = append(p.subs, rec)
	p.signal()
	initial := p.initialNotify
	p.mu.Unlock()

	if code != 200 {
		res = sip.NewResponseFromRequest(req, code, "Refused", nil)
		_ = tx.Respond(res)
		return
	}
	res.AppendHeader(&sip.ContactHeader{Address: p.contact()})
	exp := sip.ExpiresHeader(max(rec.Expires, 0))
	res.AppendHeader(&exp)
	if err := tx.Respond(res); err != nil {
		return
	}
	// RFC 6665: a NOTIFY follows every accepted SUBSCRIBE.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	switch {
	case rec.Expires == 0:
		_, _ = p.notify(ctx, "terminated;reason=timeout", "")
	case !rec.InDialog && initial:
		_, _ = p.notify(ctx, fmt.Sprintf("active;expires=%d", rec.Expires),
			blaDoc(p.line.String(), 0, "full"))
	}
}

// notify sends a NOTIFY in the accepted subscription and returns the
// response code (also recorded).
func (p *polycom) notify(ctx context.Context, state, body string) (int, error) {
	p.mu.Lock()
	d := p.dlg
	if d == nil {
		p.mu.Unlock()
		return 0, fmt.Errorf("polycom %s: no subscription", p.contactString())
	}
	d.cseq++
	cseq, callID, localTag, remoteTag, local, remote, target := d.cseq, d.callID, d.localTag, d.remoteTag, d.local, d.remote, d.target
	p.mu.Unlock()

	req := sip.NewRequest(sip.NOTIFY, target)
	from := &sip.FromHeader{Address: local, Params: sip.NewParams()}
	from.Params.Add("tag", localTag)
	req.AppendHeader(from)
	to := &sip.ToHeader{Address: remote, Params: sip.NewParams()}
	to.Params.Add("tag", remoteTag)
	req.AppendHeader(to)
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.NOTIFY})
	req.AppendHeader(&sip.ContactHeader{Address: p.contact()})
	req.AppendHeader(sip.NewHeader("Event", polSLA))
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	if body != "" {
		ct := sip.ContentTypeHeader("application/dialog-info+xml")
		req.AppendHeader(&ct)
		req.SetBody([]byte(body))
	}
	res, err := p.do(ctx, req)
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	p.codes = append(p.codes, res.StatusCode)
	p.signal()
	p.mu.Unlock()
	return res.StatusCode, nil
}

// subscribes returns the SUBSCRIBEs received so far.
func (p *polycom) subscribes() []polSubscribe {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]polSubscribe(nil), p.subs...)
}

// responses returns the response codes of the phone's NOTIFYs so far.
func (p *polycom) responses() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.codes...)
}

// watchLine subscribes at the presence server ("host:port") to dialog;sla
// for the line, with the phone's contact (user = the line user).
func (p *polycom) watchLine(ctx context.Context, server string, expires int) error {
	w := &polWatch{callID: sip.GenerateTagN(16) + "@" + p.host, fromTag: sip.GenerateTagN(10), server: server}
	p.mu.Lock()
	p.watch = w
	p.mu.Unlock()
	req := sip.NewRequest(sip.SUBSCRIBE, p.line)
	from := &sip.FromHeader{Address: p.line, Params: sip.NewParams()}
	from.Params.Add("tag", w.fromTag)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: p.line, Params: sip.NewParams()})
	cid := sip.CallIDHeader(w.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.SUBSCRIBE})
	req.AppendHeader(&sip.ContactHeader{Address: p.contact()})
	req.AppendHeader(sip.NewHeader("Event", polSLA))
	req.AppendHeader(sip.NewHeader("Accept", "application/dialog-info+xml"))
	exp := sip.ExpiresHeader(expires)
	req.AppendHeader(&exp)
	req.SetDestination(server)
	res, err := p.do(ctx, req)
	if err != nil {
		return err
	}
	if !res.IsSuccess() {
		return fmt.Errorf("polycom: subscribe %s at %s: %d %s", p.line.String(), server, res.StatusCode, res.Reason)
	}
	p.mu.Lock()
	if tag, ok := res.To().Params.Get("tag"); ok && w.toTag == "" {
		w.toTag = tag
	}
	p.mu.Unlock()
	return nil
}

// onNotify records the NOTIFYs of the phone's own subscription.
func (p *polycom) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	cid := ""
	if c := req.CallID(); c != nil {
		cid = c.Value()
	}
	p.mu.Lock()
	w := p.watch
	if w == nil || w.callID != cid {
		p.mu.Unlock()
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Subscription Does Not Exist", nil))
		return
	}
	n := polNote{Body: string(req.Body())}
	if h := req.GetHeader("Subscription-State"); h != nil {
		n.State = h.Value()
	}
	if c := req.CSeq(); c != nil {
		n.seq = c.SeqNo
	}
	// sipgo runs each request's handler in a goroutine of its own, so two
	// NOTIFYs that arrived in order can get here the other way round:
	// keep them in CSeq order, the order the notifier sent them in.
	i := len(w.notes)
	for i > 0 && n.seq != 0 && w.notes[i-1].seq > n.seq {
		i--
	}
	w.notes = slices.Insert(w.notes, i, n)
	if i < w.next {
		w.next++
	}
	p.signal()
	p.mu.Unlock()
	_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
}

// notes returns the NOTIFYs of the phone's own subscription so far.
func (p *polycom) notes() []polNote {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.watch == nil {
		return nil
	}
	return append([]polNote(nil), p.watch.notes...)
}

// waitNote waits for the next NOTIFY of the phone's own subscription,
// after the one matched by the previous wait, that satisfies match.
func (p *polycom) waitNote(ctx context.Context, what string, match func(polNote) bool) (polNote, error) {
	var got polNote
	err := p.waitUntil(ctx, what, func() bool {
		w := p.watch
		if w == nil {
			return false
		}
		for i := w.next; i < len(w.notes); i++ {
			if match(w.notes[i]) {
				w.next, got = i+1, w.notes[i]
				return true
			}
		}
		return false
	})
	return got, err
}

// blaDialog is one dialog of a dialog;sla document.
type blaDialog struct {
	id, state, line string
}

// blaDoc builds a Polycom-style dialog-info document.
func blaDoc(entity string, version int, docState string, dialogs ...blaDialog) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<?xml version=\"1.0\"?>\n<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"%d\" state=\"%s\" entity=\"%s\">", version, docState, entity)
	for _, d := range dialogs {
		fmt.Fprintf(&b, "<dialog id=\"%s\" direction=\"initiator\"><state>%s</state><local><target uri=\"%s\"><param pname=\"x-line-id\" pval=\"%s\"/></target></local></dialog>",
			d.id, d.state, entity, d.line)
	}
	b.WriteString("</dialog-info>\n")
	return b.String()
}

// newBLAFakePresence starts a fake presence server that answers every
// PUBLISH with 200, a SIP-ETag and the asked Expires; on is called with
// each PUBLISH and its arrival time before it is answered. It listens on
// TCP at the same port too: a line's composed document outgrows a UDP
// datagram (RFC 3261 §18.1.1: over 1300 bytes a request goes over TCP).
func newBLAFakePresence(tb testing.TB, on func(req *sip.Request, at time.Time)) *puatest.PresenceServer {
	tb.Helper()
	var f *puatest.PresenceServer
	ready := make(chan struct{}) // closed once f is set
	f = puatest.NewPresenceServer(tb, puatest.ServerOptions{Name: "fake-presence", Publish: func(req *sip.Request, tx sip.ServerTransaction) {
		<-ready
		now := time.Now()
		if on != nil {
			on(req, now)
		}
		puatest.AcceptPublish(req, tx, f.NextETag("e"))
	}})
	close(ready)
	return f
}

// serveUDP serves srv on conn in a goroutine counted in wg, and waits until
// the socket is in ua's connection pool: requests sent by a client of ua
// reuse the listening socket only once it is there.
func serveUDP(tb testing.TB, what string, ua *sipgo.UserAgent, srv *sipgo.Server, conn net.PacketConn, wg *sync.WaitGroup) {
	tb.Helper()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = srv.ServeUDP(conn)
	}()
	for i := 0; ; i++ {
		if c, err := ua.TransportLayer().GetConnection("udp", conn.LocalAddr().String()); err == nil && c != nil {
			return
		}
		if i == 1000 {
			tb.Fatalf("%s: listener %s not ready", what, conn.LocalAddr())
		}
		time.Sleep(time.Millisecond)
	}
}
