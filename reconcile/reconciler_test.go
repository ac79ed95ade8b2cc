package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/puaside/puaside/dialoginfo"
	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/puatest/recorder"
	"github.com/puaside/puaside/proxyrpc"
	"github.com/puaside/puaside/usrloc"
)

// proxy is a Source with settable snapshots.
type proxy struct {
	mu       sync.Mutex
	bindings proxyrpc.Bindings
	dialogs  proxyrpc.Dialogs
	err      error
	asked    int
}

func (p *proxy) Bindings(context.Context) (proxyrpc.Bindings, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked++
	return p.bindings, p.err
}

func (p *proxy) Dialogs(context.Context) (proxyrpc.Dialogs, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dialogs, p.err
}

// server is the kit's recording publisher: it keeps the live documents,
// like a presence server.
type server struct{ *recorder.Recorder }

func (s *server) doc(presURI, ev string) string {
	var b strings.Builder
	for k, v := range s.Live() {
		if k.PresURI == presURI && k.Event == ev {
			b.Write(v.Body)
		}
	}
	return b.String()
}

type rig struct {
	px  *proxy
	srv *server
	ul  *usrloc.Tracker
	di  *dialoginfo.Tracker
	r   *Reconciler
}

func newRig(t *testing.T) *rig {
	t.Helper()
	g := &rig{px: &proxy{}, srv: &server{recorder.New()}}
	var err error
	if g.ul, err = usrloc.New(usrloc.DefaultConfig(), usrloc.Options{Publisher: g.srv}); err != nil {
		t.Fatal(err)
	}
	if g.di, err = dialoginfo.New(dialoginfo.DefaultConfig(), dialoginfo.Options{Publisher: g.srv}); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Enabled, cfg.DefaultDomain, cfg.Grace = true, "example.com", 0
	if g.r, err = New(cfg, Options{Source: g.px, Registrations: g.ul, Calls: g.di}); err != nil {
		t.Fatal(err)
	}
	return g
}

func TestPassCorrectsTrackers(t *testing.T) {
	g := newRig(t)
	ctx := context.Background()
	// puaside knows bob (registered) and a call alice → bob.
	if err := g.ul.ApplyRegistration(ctx, event.Registration{AoR: "sip:bob@example.com",
		Contacts: []event.Contact{{URI: "sip:bob@10.0.0.2", Expires: 600, Q: -1}}}); err != nil {
		t.Fatal(err)
	}
	if err := g.di.ApplyDialogState(ctx, event.DialogState{CallID: "c1", FromTag: "ft", ToTag: "tt",
		From: "sip:alice@example.com", To: "sip:bob@example.com", State: "confirmed"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // the snapshot is taken after what puaside saw
	// While puaside was "down": bob unregistered, alice registered, the call ended.
	g.px.bindings = proxyrpc.Bindings{AoRs: []proxyrpc.AoR{
		{Name: "alice", Contacts: []proxyrpc.Contact{{URI: "sip:alice@10.0.0.1", Remaining: 300, Q: -1}}},
	}}
	res := g.r.Pass(ctx)
	if res.Err != nil || res.Added != 1 || res.Gone != 1 || res.Ended != 1 {
		t.Fatalf("pass %+v", res)
	}
	if d := g.srv.doc("sip:alice@example.com", "presence"); !strings.Contains(d, "<basic>open</basic>") {
		t.Errorf("alice's presence %q, want open", d)
	}
	if d := g.srv.doc("sip:bob@example.com", "presence"); !strings.Contains(d, "<basic>closed</basic>") {
		t.Errorf("bob's presence %q, want closed", d)
	}
	for _, who := range []string{"sip:alice@example.com", "sip:bob@example.com"} {
		if d := g.srv.doc(who, "dialog"); !strings.Contains(d, "<state>terminated</state>") {
			t.Errorf("%s's dialog %q, want terminated", who, d)
		}
	}
	// A second pass over the same state changes nothing.
	if res := g.r.Pass(ctx); res.Added+res.Removed+res.Changed+res.Gone+res.Ended+res.Adopted != 0 {
		t.Fatalf("second pass %+v", res)
	}
}

func TestPassAdoptsAnsweredCall(t *testing.T) {
	g := newRig(t)
	answered := time.Now().Add(-time.Minute)
	g.px.bindings = proxyrpc.Bindings{}
	g.px.dialogs = proxyrpc.Dialogs{Dialogs: []proxyrpc.Dialog{{CallID: "c2", FromTag: "ft", ToTag: "tt",
		FromURI: "sip:carol@example.com", ToURI: "sip:dave@example.com", State: proxyrpc.DialogConfirmed,
		Created: answered, Answered: answered}}}
	if res := g.r.Pass(context.Background()); res.Adopted != 1 {
		t.Fatalf("pass %+v", res)
	}
	for _, who := range []string{"sip:carol@example.com", "sip:dave@example.com"} {
		if d := g.srv.doc(who, "dialog"); !strings.Contains(d, "<state>confirmed</state>") {
			t.Errorf("%s's dialog %q, want confirmed", who, d)
		}
	}
	// Then the proxy loses it: it is ended.
	g.px.dialogs = proxyrpc.Dialogs{}
	time.Sleep(2 * time.Millisecond)
	if res := g.r.Pass(context.Background()); res.Ended != 1 {
		t.Fatalf("pass after the end %+v", res)
	}
}

func TestPassYieldsToNewerInput(t *testing.T) {
	g := newRig(t)
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Enabled, cfg.DefaultDomain, cfg.Grace = true, "example.com", time.Minute
	r, err := New(cfg, Options{Source: g.px, Registrations: g.ul, Calls: g.di})
	if err != nil {
		t.Fatal(err)
	}
	// Input seen within the grace before the proxy was asked wins.
	if err := g.ul.ApplyRegistration(ctx, event.Registration{AoR: "sip:bob@example.com",
		Contacts: []event.Contact{{URI: "sip:bob@10.0.0.2", Expires: 600, Q: -1}}}); err != nil {
		t.Fatal(err)
	}
	if err := g.di.ApplyDialogState(ctx, event.DialogState{CallID: "c1", FromTag: "ft", ToTag: "tt",
		From: "sip:alice@example.com", To: "sip:bob@example.com", State: "confirmed"}); err != nil {
		t.Fatal(err)
	}
	res := r.Pass(ctx)
	if res.Gone != 0 || res.Ended != 0 || res.Yielded != 2 {
		t.Fatalf("pass %+v, want both corrections refused", res)
	}
	if d := g.srv.doc("sip:bob@example.com", "presence"); !strings.Contains(d, "<basic>open</basic>") {
		t.Errorf("bob's presence %q, want still open", d)
	}
}

func TestPassRPCErrorChangesNothing(t *testing.T) {
	g := newRig(t)
	ctx := context.Background()
	if err := g.ul.ApplyRegistration(ctx, event.Registration{AoR: "sip:bob@example.com",
		Contacts: []event.Contact{{URI: "sip:bob@10.0.0.2", Expires: 600, Q: -1}}}); err != nil {
		t.Fatal(err)
	}
	g.px.err = errors.New("connection refused")
	if res := g.r.Pass(ctx); res.Err == nil || res.Gone != 0 {
		t.Fatalf("pass %+v", res)
	}
	if d := g.srv.doc("sip:bob@example.com", "presence"); !strings.Contains(d, "<basic>open</basic>") {
		t.Errorf("bob's presence %q after a failed pass", d)
	}
}

func TestRunAsksAtStartAndEveryInterval(t *testing.T) {
	g := newRig(t)
	asked := func() int {
		g.px.mu.Lock()
		defer g.px.mu.Unlock()
		return g.px.asked
	}
	waitAsked := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); asked() < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("asked %d times, want %d", asked(), n)
			}
		}
	}
	cfg := DefaultConfig()
	cfg.Enabled, cfg.Interval, cfg.Timeout = true, time.Second, time.Second
	r, err := New(cfg, Options{Source: g.px, Registrations: g.ul})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	waitAsked(3) // at start, then every interval
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}

	// With an interval of an hour, the first pass still runs at once.
	g.px.mu.Lock()
	g.px.asked = 0
	g.px.mu.Unlock()
	cfg.Interval, cfg.Timeout = time.Hour, time.Second
	if r, err = New(cfg, Options{Source: g.px, Registrations: g.ul}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- r.Run(ctx) }()
	waitAsked(1)
	cancel()
	<-done
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"kind":     func(c *Config) { c.Kind = "opensips" },
		"url":      func(c *Config) { c.RPCURL = "127.0.0.1:5071" },
		"interval": func(c *Config) { c.Interval = 0 },
		"timeout":  func(c *Config) { c.Timeout = time.Hour },
		"grace":    func(c *Config) { c.Grace = time.Hour },
		"size":     func(c *Config) { c.MaxResponseSize = 10 },
		"table":    func(c *Config) { c.ULTable = "" },
	} {
		c := DefaultConfig()
		mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}

// TestPassAddedAoRIsStable: an AoR added from the registrar's answer reads
// back the same on the next pass, whatever the grace (the expiry counts
// from when the registrar was asked, not from the grace's cutoff).
func TestPassAddedAoRIsStable(t *testing.T) {
	g := newRig(t)
	cfg := DefaultConfig()
	cfg.Enabled, cfg.DefaultDomain, cfg.Grace = true, "example.com", 5*time.Second
	r, err := New(cfg, Options{Source: g.px, Registrations: g.ul, Calls: g.di})
	if err != nil {
		t.Fatal(err)
	}
	g.px.bindings = proxyrpc.Bindings{AoRs: []proxyrpc.AoR{
		{Name: "alice", Contacts: []proxyrpc.Contact{{URI: "sip:alice@10.0.0.1", Remaining: 300, Q: -1}}},
	}}
	if res := r.Pass(context.Background()); res.Added != 1 {
		t.Fatalf("first pass %+v", res)
	}
	if res := r.Pass(context.Background()); res.Added+res.Changed+res.Removed+res.Gone != 0 {
		t.Fatalf("second pass over the same answer %+v", res)
	}
}

// TestRunHintsAtAnUnansweredDump: a pass that got no whole answer (the
// call timed out, the connection closed before the response, as when a
// Kamailio registrar lacks the private memory for its ul.dump answer, or in
// the middle of it, as when the answer outgrows its write queue) is logged
// with the hint naming those limits; another RPC failure is logged without
// it.
func TestRunHintsAtAnUnansweredDump(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		hint bool
	}{
		{"timeout", fmt.Errorf("proxyrpc: ul.dump: Post \"http://127.0.0.1/RPC\": %w", context.DeadlineExceeded), true},
		{"closed", fmt.Errorf("proxyrpc: ul.dump: Post \"http://127.0.0.1/RPC\": %w", io.EOF), true},
		{"cut", fmt.Errorf("proxyrpc: ul.dump: read response: %w", io.ErrUnexpectedEOF), true},
		{"refused", errors.New("proxyrpc: ul.dump: connection refused"), false},
		{"rpc error", &proxyrpc.Error{Method: "ul.dump", Code: -32601, Message: "Method Not Found"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t)
			g.px.err = tc.err
			var logs kamailiotest.SyncBuffer
			cfg := DefaultConfig()
			cfg.Enabled, cfg.Interval, cfg.Timeout = true, time.Hour, time.Second
			r, err := New(cfg, Options{Source: g.px, Registrations: g.ul,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "proxy not read"); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("no warning logged")
				}
			}
			cancel()
			<-done
			if got := strings.Contains(logs.String(), "tcp_conn_wq_max"); got != tc.hint {
				t.Fatalf("hint logged %v, want %v: %s", got, tc.hint, logs.String())
			}
		})
	}
}
