package bla

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/internal/puatest/recorder"
	"github.com/puaside/puaside/pua"
)

// doc builds a dialog-info document; dialogs are "id:state:line".
func doc(version int, state string, dialogs ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0"?>`+"\n"+`<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="%d" state="%s" entity="%s">`,
		version, state, lineAoR)
	for _, d := range dialogs {
		f := strings.Split(d, ":")
		fmt.Fprintf(&b, `<dialog id="%s"><state>%s</state><local><target uri="%s"><param pname="x-line-id" pval="%s"/></target></local></dialog>`,
			f[0], f[1], phoneA, f[2])
	}
	b.WriteString("</dialog-info>")
	return []byte(b.String())
}

// relay sends a NOTIFY of phoneA in subscription dialog callID and returns
// the body published for it, nil when nothing was published.
func (fx *fixture) relay(t *testing.T, callID string, body []byte) []byte {
	t.Helper()
	n := fx.notifyMsg(phoneA, "active", 3600, body)
	n.Headers = func(name string) string {
		if strings.EqualFold(name, "Call-ID") {
			return callID
		}
		return ""
	}
	fx.eng.TakeCalls()
	if code, reason := fx.m.HandleNotify(context.Background(), n); code != 200 {
		t.Fatalf("NOTIFY answered %d %s", code, reason)
	}
	for _, c := range fx.eng.TakeCalls() {
		if strings.HasPrefix(c, "publish ") {
			return fx.eng.Last().Body
		}
	}
	return nil
}

// dialogsOf parses a published body and returns its state and "id:state".
func dialogsOf(t *testing.T, body []byte) (string, []string) {
	t.Helper()
	info, err := dialogdoc.Parse(body, DefaultMaxBodySize)
	if err != nil {
		t.Fatalf("published body: %v\n%s", err, body)
	}
	var ds []string
	for _, d := range info.Dialogs {
		ds = append(ds, d.ID+":"+d.State)
	}
	return info.State, ds
}

func TestOldVersionsIgnored(t *testing.T) {
	fx := newFixture(t, nil)
	fx.register(phoneA)
	if fx.relay(t, "sub-1", doc(5, "full", "a1:trying:1")) == nil {
		t.Fatal("version 5 not relayed")
	}
	for _, v := range []int{5, 4, 0} {
		if b := fx.relay(t, "sub-1", doc(v, "full")); b != nil {
			t.Fatalf("version %d after 5 relayed:\n%s", v, b)
		}
	}
	if got := fx.count(t, "ignored_old_version"); got != 3 {
		t.Errorf("ignored_old_version = %v, want 3", got)
	}
	// The ignored documents changed nothing: A still holds line 1.
	if got := seized(fx.m); !reflect.DeepEqual(got, []string{"1:" + phoneA}) {
		t.Errorf("seized %v", got)
	}
	if fx.relay(t, "sub-1", doc(7, "full")) == nil {
		t.Fatal("version 7 not relayed")
	}
	// A new subscription dialog starts a new sequence.
	if fx.relay(t, "sub-2", doc(0, "full", "a2:confirmed:2")) == nil {
		t.Fatal("version 0 of a new subscription not relayed")
	}
	if got := seized(fx.m); !reflect.DeepEqual(got, []string{"2:" + phoneA}) {
		t.Errorf("seized %v", got)
	}
}

func TestPartialRelayedAsFullState(t *testing.T) {
	fx := newFixture(t, nil)
	fx.register(phoneA)
	fx.relay(t, "sub-1", doc(10, "full", "a1:confirmed:1", "a3:early:3"))

	// A partial document names only what changed: the publication is the
	// whole state.
	body := fx.relay(t, "sub-1", doc(11, "partial", "a0:trying:0"))
	st, ds := dialogsOf(t, body)
	if st != dialogdoc.DocFull || !reflect.DeepEqual(ds, []string{"a0~7d8a9aa8:trying", "a1~7d8a9aa8:confirmed", "a3~7d8a9aa8:early"}) {
		t.Fatalf("after partial: %s %v\n%s", st, ds, body)
	}
	if d, err := dialogdoc.Parse(body, 0); err != nil || d.Version <= 1_800_000_000 {
		t.Errorf("version of the composed document: the line's own, from the clock:\n%s", body)
	}
	// A terminated dialog is shown once, then gone.
	_, ds = dialogsOf(t, fx.relay(t, "sub-1", doc(12, "partial", "a3:terminated:3")))
	if !reflect.DeepEqual(ds, []string{"a0~7d8a9aa8:trying", "a1~7d8a9aa8:confirmed", "a3~7d8a9aa8:terminated"}) {
		t.Fatalf("after terminating a3: %v", ds)
	}
	_, ds = dialogsOf(t, fx.relay(t, "sub-1", doc(13, "partial", "a0:confirmed:0")))
	if !reflect.DeepEqual(ds, []string{"a0~7d8a9aa8:confirmed", "a1~7d8a9aa8:confirmed"}) {
		t.Fatalf("after a0 confirmed: %v", ds)
	}
	if got := fx.count(t, "merged_partial"); got != 3 {
		t.Errorf("merged_partial = %v", got)
	}

	// A partial document of a new subscription has no base: only what it says.
	_, ds = dialogsOf(t, fx.relay(t, "sub-2", doc(0, "partial", "b1:trying:1")))
	if !reflect.DeepEqual(ds, []string{"b1~7d8a9aa8:trying"}) {
		t.Fatalf("first partial of a new subscription: %v", ds)
	}
}

// refreshEngine is the fake engine with Engine.Refresh.
type refreshEngine struct{ *recorder.Recorder }

func (r refreshEngine) Refresh(k pua.SubKey) error {
	r.Note("refresh " + k.ID)
	return nil
}

func TestPartialAfterGapAsksForFullState(t *testing.T) {
	fx := newFixture(t, nil)
	re := refreshEngine{fx.eng}
	m, err := New(fx.m.cfg, Options{Subscriber: re, Publisher: re, Metrics: fx.met, Clock: fx.clock,
		Logger: fx.m.log})
	if err != nil {
		t.Fatal(err)
	}
	fx.m = m
	fx.register(phoneA)
	fx.relay(t, "sub-1", doc(1, "full", "a1:confirmed:1"))
	n := fx.notifyMsg(phoneA, "active", 3600, doc(4, "partial", "a2:trying:2"))
	n.Headers = func(string) string { return "sub-1" }
	if code, _ := fx.m.HandleNotify(context.Background(), n); code != 200 {
		t.Fatalf("NOTIFY answered %d", code)
	}
	calls := fx.eng.TakeCalls()
	if len(calls) != 2 || calls[0] != "publish "+LinePublicationID || calls[1] != "refresh "+ContactID(phoneA) {
		t.Fatalf("calls %v, want publish then refresh", calls)
	}
	if _, ds := dialogsOf(t, fx.eng.Last().Body); !reflect.DeepEqual(ds, []string{"a1~7d8a9aa8:confirmed", "a2~7d8a9aa8:trying"}) {
		t.Fatalf("merged %v", ds)
	}
	if got := fx.count(t, "version_gap"); got != 1 {
		t.Errorf("version_gap = %v", got)
	}
}

// A document refused for a seize conflict was still received: the next one
// is no gap and asks for no full state.
func TestRefusedSeizeIsNoVersionGap(t *testing.T) {
	fx := newFixture(t, nil)
	re := refreshEngine{fx.eng}
	m, err := New(fx.m.cfg, Options{Subscriber: re, Publisher: re, Metrics: fx.met, Clock: fx.clock,
		Logger: fx.m.log})
	if err != nil {
		t.Fatal(err)
	}
	fx.m = m
	fx.register(phoneA, phoneB)
	fx.notify(t, phoneA, "active", 3600, "notify/a_trying_1.xml") // A seizes 1
	send := func(body []byte) int {
		n := fx.notifyMsg(phoneB, "active", 3600, body)
		code, _ := fx.m.HandleNotify(context.Background(), n)
		return code
	}
	if code := send(doc(0, "full")); code != 200 {
		t.Fatalf("B's first document: %d", code)
	}
	if code := send(bytes.ReplaceAll(doc(1, "partial", "b1:trying:1"), []byte(phoneA), []byte(phoneB))); code != 409 {
		t.Fatalf("B's seize of 1: %d, want 409", code)
	}
	fx.eng.TakeCalls()
	if code := send(doc(2, "partial", "b2:trying:2")); code != 200 {
		t.Fatalf("B's seize of 2: %d", code)
	}
	if calls := fx.eng.TakeCalls(); len(calls) != 1 || !strings.HasPrefix(calls[0], "publish ") {
		t.Fatalf("calls %v, want one publish and no refresh", calls)
	}
}

// Partial documents that keep adding dialogs cannot grow the phone's
// merged state past max_body_size.
func TestMergedStateBounded(t *testing.T) {
	fx := newFixture(t, func(c *Config) { c.MaxBodySize = 1024 })
	fx.register(phoneA)
	fx.relay(t, "sub-1", doc(0, "full"))
	refused := 0
	for v := 1; v <= 20; v++ {
		n := fx.notifyMsg(phoneA, "active", 3600, doc(v, "partial", fmt.Sprintf("d%d:confirmed:%d", v, v)))
		n.Headers = func(string) string { return "sub-1" }
		code, _ := fx.m.HandleNotify(context.Background(), n)
		switch {
		case code == 413:
			refused++
		case code != 200:
			t.Fatalf("version %d answered %d", v, code)
		case refused > 0:
			t.Fatalf("version %d accepted after a refusal", v)
		}
		if len(fx.eng.Last().Body) > 1024 {
			t.Fatalf("published %d bytes", len(fx.eng.Last().Body))
		}
	}
	if refused == 0 || refused == 20 || fx.count(t, "rejected_composed_too_large") != float64(refused) {
		t.Fatalf("refused %d of 20 (counted %v)", refused, fx.count(t, "rejected_composed_too_large"))
	}
}
