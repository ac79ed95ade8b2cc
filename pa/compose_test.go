package pa

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/bla"
	"github.com/puaside/puaside/clock/clocktest"
	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/pua"
)

var update = flag.Bool("update", false, "rewrite the golden documents")

// golden compares got with testdata/name, rewriting it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func dialogBody(entity string, version uint64, ds ...dialogdoc.Dialog) []byte {
	return dialogdoc.Build(dialogdoc.Document{Version: version, Entity: entity, Dialogs: ds})
}

// The dialogs of every publication are composed, with a version counted
// per watcher.
func TestDialogComposition(t *testing.T) {
	s, addr := startServer(t, DefaultConfig(), Options{})
	pres := "sip:alice@example.com"
	_ = s.Publish(pua.PublishRequest{Key: pua.Key{PresURI: pres, Event: "dialog", ID: "c1"},
		Body: dialogBody(pres, 7, dialogdoc.Dialog{ID: "c1", CallID: "c1", Direction: "initiator", State: "early"})})
	bob := sipphone.NewPhone(t, "bob", "example.com")
	w, err := bob.Watch(context.Background(), addr, uri(pres), "dialog", sipphone.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := wait(t, w, has(`id="c1"`))
	golden(t, "dialog_one.xml", []byte(n.Body))
	_ = s.Publish(pua.PublishRequest{Key: pua.Key{PresURI: pres, Event: "dialog", ID: "c2"},
		Body: dialogBody(pres, 1, dialogdoc.Dialog{ID: "c2", CallID: "c2", Direction: "recipient", State: "confirmed"})})
	n = wait(t, w, has(`id="c2"`))
	golden(t, "dialog_two.xml", []byte(n.Body))
	doc, err := dialogdoc.Parse([]byte(n.Body), 0)
	if err != nil {
		t.Fatal(err)
	}
	if doc.Version != 2 || len(doc.Dialogs) != 2 {
		t.Fatalf("version %d with %d dialogs, want 2 with 2", doc.Version, len(doc.Dialogs))
	}
	_ = s.Remove(pua.Key{PresURI: pres, Event: "dialog", ID: "c1"})
	n = wait(t, w, func(n sipphone.Notification) bool { return !strings.Contains(n.Body, `id="c1"`) })
	if doc, _ := dialogdoc.Parse([]byte(n.Body), 0); doc == nil || doc.Version != 3 {
		t.Fatalf("third document %s", n.Body)
	}
}

// dialog;sla: the line's one publication, without the watching phone's
// own dialogs.
func TestSLAWithoutOwnDialogs(t *testing.T) {
	s, addr := startServer(t, DefaultConfig(), Options{OwnDialog: bla.OwnDialog})
	line := "sip:line@example.com"
	p1 := sipphone.NewPhone(t, "line", "example.com")
	p2 := sipphone.NewPhone(t, "line", "example.com")
	u1, u2 := p1.ContactURI("line"), p2.ContactURI("line")
	c1, c2 := u1.String(), u2.String()
	own1 := "d1~" + strings.TrimPrefix(bla.ContactID(c1), "bla-")[:8]
	own2 := "d1~" + strings.TrimPrefix(bla.ContactID(c2), "bla-")[:8]
	_ = s.Publish(pua.PublishRequest{Key: pua.Key{PresURI: line, Event: "dialog;sla", ID: bla.LinePublicationID},
		Body: dialogBody(line, 1, dialogdoc.Dialog{ID: own1, State: "confirmed"}, dialogdoc.Dialog{ID: own2, State: "early"})})
	w1, err := p1.Watch(context.Background(), addr, uri(line), "dialog;sla", sipphone.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w2, err := p2.Watch(context.Background(), addr, uri(line), "dialog;sla", sipphone.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n1 := wait(t, w1, has("dialog-info"))
	n2 := wait(t, w2, has("dialog-info"))
	if strings.Contains(n1.Body, own1) || !strings.Contains(n1.Body, own2) {
		t.Fatalf("phone 1 sees %s", n1.Body)
	}
	if strings.Contains(n2.Body, own2) || !strings.Contains(n2.Body, own1) {
		t.Fatalf("phone 2 sees %s", n2.Body)
	}
	if n1.Event != "dialog;sla" {
		t.Fatalf("Event %q", n1.Event)
	}
}

// PUBLISH from outside (RFC 3903): ETags, refresh, modify, 412, 423, remove.
func TestESC(t *testing.T) {
	s, addr := startServer(t, DefaultConfig(), Options{})
	bob := sipphone.NewPhone(t, "bob", "example.com")
	ctx := context.Background()
	w, err := bob.Watch(ctx, addr, uri("sip:alice@example.com"), "presence", sipphone.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, w, has("closed"))
	alice := sipphone.NewPhone(t, "alice", "example.com")
	publish := func(expires int, ifMatch string, body []byte) *sip.Response {
		req := sip.NewRequest(sip.PUBLISH, uri("sip:alice@example.com"))
		req.AppendHeader(&sip.FromHeader{Address: alice.AoR(), Params: tagged(sip.GenerateTagN(8))})
		req.AppendHeader(&sip.ToHeader{Address: alice.AoR(), Params: sip.NewParams()})
		req.AppendHeader(sip.NewHeader("Event", "presence"))
		req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
		if ifMatch != "" {
			req.AppendHeader(sip.NewHeader("SIP-If-Match", ifMatch))
		}
		if body != nil {
			req.AppendHeader(sip.NewHeader("Content-Type", "application/pidf+xml"))
			req.SetBody(body)
		}
		res, err := alice.Request(ctx, addr, req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	etagOf := func(res *sip.Response) string {
		if h := res.GetHeader("SIP-ETag"); h != nil {
			return h.Value()
		}
		return ""
	}
	res := publish(600, "", presenceBody("sip:alice@example.com", "pc", "open"))
	e1 := etagOf(res)
	if res.StatusCode != 200 || e1 == "" {
		t.Fatalf("initial PUBLISH: %d etag %q", res.StatusCode, e1)
	}
	wait(t, w, has(`id="pc"`))
	res = publish(600, e1, nil)
	e2 := etagOf(res)
	if res.StatusCode != 200 || e2 == "" || e2 == e1 {
		t.Fatalf("refresh: %d etag %q after %q", res.StatusCode, e2, e1)
	}
	if res := publish(600, e1, nil); res.StatusCode != 412 {
		t.Fatalf("stale If-Match: %d, want 412", res.StatusCode)
	}
	if res := publish(5, e2, nil); res.StatusCode != 423 || res.GetHeader("Min-Expires") == nil {
		t.Fatalf("short Expires: %d, want 423 with Min-Expires", res.StatusCode)
	}
	if res := publish(600, "", []byte("<presence>not pidf")); res.StatusCode != 400 {
		t.Fatalf("bad body: %d, want 400", res.StatusCode)
	}
	res = publish(600, e2, presenceBody("sip:alice@example.com", "pc", "closed"))
	e3 := etagOf(res)
	if res.StatusCode != 200 || e3 == e2 {
		t.Fatalf("modify: %d", res.StatusCode)
	}
	wait(t, w, func(n sipphone.Notification) bool {
		return strings.Contains(n.Body, `id="pc"`) && strings.Contains(n.Body, "closed")
	})
	if res := publish(0, e3, nil); res.StatusCode != 200 {
		t.Fatalf("remove: %d", res.StatusCode)
	}
	wait(t, w, has(`id="pa-offline"`))
	if len(s.Presentities()) != 0 {
		t.Fatalf("publications left: %+v", s.Presentities())
	}
}

// Watchers of another domain are pending; the owner's presence.winfo
// subscription lists every watcher with its status.
func TestPendingAndWinfo(t *testing.T) {
	_, addr := startServer(t, DefaultConfig(), Options{})
	ctx := context.Background()
	alice := sipphone.NewPhone(t, "alice", "example.com")
	winfo, err := alice.Watch(ctx, addr, uri("sip:alice@example.com"), "presence.winfo", sipphone.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, winfo, has("watcher-list"))
	eve := sipphone.NewPhone(t, "eve", "elsewhere.org")
	we, err := eve.Watch(ctx, addr, uri("sip:alice@example.com"), "presence", sipphone.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := wait(t, we, func(sipphone.Notification) bool { return true })
	if !strings.HasPrefix(n.State, "pending") || n.Body != "" {
		t.Fatalf("foreign watcher got %+v, want pending without state", n)
	}
	wi := wait(t, winfo, has("sip:eve@elsewhere.org"))
	if !strings.Contains(wi.Body, `status="pending"`) {
		t.Fatalf("winfo %s", wi.Body)
	}
	bob := sipphone.NewPhone(t, "bob", "example.com")
	if _, err := bob.Watch(ctx, addr, uri("sip:alice@example.com"), "presence", sipphone.WatchOptions{}); err != nil {
		t.Fatal(err)
	}
	wi = wait(t, winfo, has("sip:bob@example.com"))
	golden(t, "winfo.xml", []byte(versionRE.ReplaceAllString(stripIDs(wi.Body), `version="N"`)))
}

var versionRE = regexp.MustCompile(`version="\d+"`)

// stripIDs blanks the generated watcher ids and version of a winfo body.
func stripIDs(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, `id="`)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := strings.IndexByte(s[i+4:], '"')
		b.WriteString(s[:i] + `id="X"`)
		s = s[i+4+j+1:]
	}
}

// An expired subscription gets a final NOTIFY and is purged; so is an
// expired publication.
func TestExpiry(t *testing.T) {
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	s, addr := startServer(t, DefaultConfig(), Options{Clock: clk})
	bob := sipphone.NewPhone(t, "bob", "example.com")
	w, err := bob.Watch(context.Background(), addr, uri("sip:alice@example.com"), "presence", sipphone.WatchOptions{Expires: 120})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, w, has("closed"))
	clk.Advance(121 * time.Second)
	n := wait(t, w, func(n sipphone.Notification) bool { return n.Terminated() })
	if n.State != "terminated;reason=timeout" {
		t.Fatalf("state %q", n.State)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(s.Watchers()) != 0 || s.subscriptionCount() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("expired subscription not purged")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = s.Publish(pua.PublishRequest{Key: pua.Key{PresURI: "sip:alice@example.com", Event: "presence", ID: "x"},
		Body: presenceBody("sip:alice@example.com", "t", "open"), Lifetime: time.Minute})
	clk.Advance(61 * time.Second)
	if len(s.Presentities()) != 0 {
		t.Fatal("expired publication kept")
	}
}

// presence.winfo is for the presentity's owner only.
func TestWinfoOwnerOnly(t *testing.T) {
	_, addr := startServer(t, DefaultConfig(), Options{})
	bob := sipphone.NewPhone(t, "bob", "example.com")
	_, err := bob.Watch(context.Background(), addr, uri("sip:alice@example.com"), "presence.winfo", sipphone.WatchOptions{})
	if err == nil || !strings.Contains(err.Error(), ": 403 ") {
		t.Fatalf("bob watching alice's watchers: %v, want 403", err)
	}
}

// message-summary is passed through; without a publication the account
// has no messages. dialog;ma watchers see the dialog publications.
func TestMessageSummaryAndMA(t *testing.T) {
	s, addr := startServer(t, DefaultConfig(), Options{})
	bob := sipphone.NewPhone(t, "bob", "example.com")
	ctx := context.Background()
	w, err := bob.Watch(ctx, addr, uri("sip:bob@example.com"), "message-summary", sipphone.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := wait(t, w, has("Messages-Waiting: no"))
	if n.ContentType != "application/simple-message-summary" {
		t.Fatalf("content type %q", n.ContentType)
	}
	mwi := "Messages-Waiting: yes\r\nMessage-Account: sip:bob@example.com\r\nVoice-Message: 2/8 (0/2)\r\n"
	if err := s.Publish(pua.PublishRequest{Key: pua.Key{PresURI: "sip:bob@example.com", Event: "message-summary", ID: "vm"}, Body: []byte(mwi)}); err != nil {
		t.Fatal(err)
	}
	if n := wait(t, w, has("Messages-Waiting: yes")); n.Body != mwi {
		t.Fatalf("body %q, want it as published", n.Body)
	}
	ma, err := bob.Watch(ctx, addr, uri("sip:alice@example.com"), "dialog;ma", sipphone.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Publish(pua.PublishRequest{Key: pua.Key{PresURI: "sip:alice@example.com", Event: "dialog", ID: "c1"},
		Body: dialogBody("sip:alice@example.com", 1, dialogdoc.Dialog{ID: "c1", State: "confirmed"})})
	if n := wait(t, ma, has(`id="c1"`)); n.Event != "dialog;ma" {
		t.Fatalf("Event %q", n.Event)
	}
}

// A watcher subscribing over TCP gets its NOTIFYs over TCP.
func TestTCPWatcher(t *testing.T) {
	s, _ := startServer(t, DefaultConfig(), Options{})
	tcpAddr := strings.TrimPrefix(s.Addrs()[1], "tcp:")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ua, _ := sipgo.NewUA()
	defer ua.Close()
	srv, _ := sipgo.NewServer(ua)
	got := make(chan *sip.Request, 4)
	srv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) {
		got <- req
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	go func() { _ = srv.ServeTCP(ln) }()
	cl, _ := sipgo.NewClient(ua)
	req := sip.NewRequest(sip.SUBSCRIBE, uri("sip:alice@example.com;transport=tcp"))
	req.AppendHeader(&sip.FromHeader{Address: uri("sip:bob@example.com"), Params: tagged("ft")})
	req.AppendHeader(&sip.ToHeader{Address: uri("sip:alice@example.com"), Params: sip.NewParams()})
	req.AppendHeader(&sip.ContactHeader{Address: uri("sip:bob@" + ln.Addr().String() + ";transport=tcp")})
	req.AppendHeader(sip.NewHeader("Event", "presence"))
	req.SetDestination(tcpAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := cl.Do(ctx, req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE over TCP: %v %v", res, err)
	}
	select {
	case n := <-got:
		if v := n.Via(); v == nil || v.Transport != "TCP" {
			t.Fatalf("NOTIFY Via %v, want TCP", v)
		}
	case <-ctx.Done():
		t.Fatal("no NOTIFY over TCP")
	}
}

// The owner's decision turns a pending watcher active (its first NOTIFY
// with state follows) or ends it.
func TestAuthorizePending(t *testing.T) {
	s, addr := startServer(t, DefaultConfig(), Options{})
	publishOpen(t, s, "sip:alice@example.com", "u", "t1")
	ctx := context.Background()
	eve := sipphone.NewPhone(t, "eve", "elsewhere.org")
	we, err := eve.Watch(ctx, addr, uri("sip:alice@example.com"), "presence", sipphone.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, we, func(n sipphone.Notification) bool { return strings.HasPrefix(n.State, "pending") })
	ws := s.Watchers()
	if len(ws) != 1 || ws[0].Status != "pending" {
		t.Fatalf("watchers %+v", ws)
	}
	if !s.Authorize(ws[0].CallID, true) {
		t.Fatal("pending subscription not found")
	}
	n := wait(t, we, has(`id="t1"`))
	if !strings.HasPrefix(n.State, "active") {
		t.Fatalf("state after authorization %q", n.State)
	}
	mallory := sipphone.NewPhone(t, "mallory", "elsewhere.org")
	wm, err := mallory.Watch(ctx, addr, uri("sip:alice@example.com"), "presence", sipphone.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, wm, func(n sipphone.Notification) bool { return strings.HasPrefix(n.State, "pending") })
	var id string
	for _, w := range s.Watchers() {
		if w.WatcherURI == "sip:mallory@elsewhere.org" {
			id = w.CallID
		}
	}
	if !s.Authorize(id, false) {
		t.Fatal("mallory's subscription not found")
	}
	if n := wait(t, wm, func(n sipphone.Notification) bool { return n.Terminated() }); n.State != "terminated;reason=rejected" || n.Body != "" {
		t.Fatalf("denied watcher got %+v", n)
	}
	if s.Authorize("nosuch", true) {
		t.Fatal("an unknown Call-ID was authorized")
	}
}

// An answer naming the presentity and the watcher (the XMPP gateway's)
// decides that watcher's pending subscriptions.
func TestAuthorizeByWatcher(t *testing.T) {
	s, addr := startServer(t, DefaultConfig(), Options{})
	eve := sipphone.NewPhone(t, "eve", "elsewhere.org")
	we, err := eve.Watch(context.Background(), addr, uri("sip:alice@example.com"), "presence", sipphone.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, we, func(n sipphone.Notification) bool { return strings.HasPrefix(n.State, "pending") })
	if n := s.AuthorizeWatcher("sip:bob@example.com", "sip:eve@elsewhere.org", true); n != 0 {
		t.Fatalf("%d subscriptions to bob decided", n)
	}
	if n := s.AuthorizeWatcher("alice@example.com", "sip:eve@elsewhere.org", true); n != 1 {
		t.Fatalf("%d subscriptions decided, want 1", n)
	}
	wait(t, we, func(n sipphone.Notification) bool {
		return strings.HasPrefix(n.State, "active") && strings.Contains(n.Body, "closed")
	})
}

// OnWatchers is told a presentity's watchers as they come and go.
func TestOnWatchers(t *testing.T) {
	var mu sync.Mutex
	seen := map[string][]WatcherState{}
	_, addr := startServer(t, DefaultConfig(), Options{OnWatchers: func(uri string, ws []WatcherState) {
		mu.Lock()
		seen[uri] = ws
		mu.Unlock()
	}})
	bob := sipphone.NewPhone(t, "bob", "example.com")
	w, err := bob.Watch(context.Background(), addr, uri("sip:alice@example.com"), "dialog", sipphone.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := fmt.Sprint(seen["sip:alice@example.com"])
	mu.Unlock()
	if got != "[{sip:bob@example.com dialog active}]" {
		t.Fatalf("watchers told %s", got)
	}
	if err := w.Unsubscribe(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got = fmt.Sprint(seen["sip:alice@example.com"])
	mu.Unlock()
	if got != "[]" {
		t.Fatalf("after the unsubscribe: %s", got)
	}
}
