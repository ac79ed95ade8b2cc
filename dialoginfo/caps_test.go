package dialoginfo

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/puatest"
	"github.com/puaside/puaside/internal/puatest/recorder"
	"github.com/puaside/puaside/metrics"
	"github.com/puaside/puaside/pua"
)

// msg parses a SIP message written with \n line ends.
func msg(t *testing.T, s string) event.SIP {
	t.Helper()
	return event.SIP{Msg: puatest.ParseSIP(t, []byte(strings.ReplaceAll(s, "\n", "\r\n"))), Source: event.SourceTrace}
}

// invite is the initial INVITE of call id from caller to callee.
func invite(t *testing.T, id, caller, callee string) event.SIP {
	return msg(t, "INVITE sip:"+callee+" SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK"+id+"\n"+
		"From: <sip:"+caller+">;tag=ft-"+id+"\nTo: <sip:"+callee+">\nCall-ID: "+id+"\nCSeq: 1 INVITE\nContent-Length: 0\n\n")
}

// reply is a response to that INVITE from the fork with to-tag tag.
func reply(t *testing.T, id, caller, callee string, code int, tag string) event.SIP {
	return msg(t, fmt.Sprintf("SIP/2.0 %d X\nVia: SIP/2.0/UDP h;branch=z9hG4bK%s\n"+
		"From: <sip:%s>;tag=ft-%s\nTo: <sip:%s>;tag=%s\nCall-ID: %s\nCSeq: 1 INVITE\nContact: <sip:%s@10.0.0.2>\nContent-Length: 0\n\n",
		code, id, caller, id, callee, tag, id, tag))
}

// livePublications counts the dialog publications held at the fake server.
func livePublications(p *recorder.Recorder) int { return len(p.Live()) }

// TestMaxBranches: 2,000 forks ringing with distinct To-tags keep at most
// max_branches dialogs (two publications each); the first 2xx, from a fork
// past the cap, is still taken and ends the others.
func TestMaxBranches(t *testing.T) {
	var logs bytes.Buffer
	pub := recorder.New()
	clk := newFakeClock()
	cfg := DefaultConfig()
	met := metrics.New()
	tr, err := New(cfg, Options{Publisher: pub, Clock: clk, Metrics: met, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const a, b = "alice@example.com", "bob@example.com"
	tr.HandleSIP(ctx, invite(t, "fork", a, b))
	for i := 0; i < 2000; i++ {
		tr.HandleSIP(ctx, reply(t, "fork", a, b, 180, fmt.Sprintf("tt%d", i)))
	}
	if n := len(tr.Dialogs()); n != cfg.MaxBranches {
		t.Fatalf("%d dialogs for one call, want max_branches %d", n, cfg.MaxBranches)
	}
	if n := livePublications(pub); n != 2*cfg.MaxBranches {
		t.Fatalf("%d live publications, want %d", n, 2*cfg.MaxBranches)
	}
	if n := strings.Count(logs.String(), "cap reached"); n != 1 {
		t.Errorf("%d cap log lines, want 1 (rate-limited):\n%s", n, logs.String())
	}
	// The first 180 takes the untagged branch of the INVITE; every one past
	// max_branches is counted.
	if n, want := puatest.TrackerEvents(t, met, "dialoginfo", "ignored_branch_cap"), float64(2000-cfg.MaxBranches); n != want {
		t.Errorf("ignored_branch_cap = %v, want %v", n, want)
	}
	if n := puatest.TrackerEvents(t, met, "dialoginfo", "ignored_call_cap"); n != 0 {
		t.Errorf("ignored_call_cap = %v for one call, want 0", n)
	}
	tr.HandleSIP(ctx, reply(t, "fork", a, b, 200, "answering-fork"))
	confirmed := 0
	for _, d := range tr.Dialogs() {
		switch d.State {
		case "confirmed":
			confirmed++
			if d.ToTag != "answering-fork" {
				t.Errorf("confirmed dialog %s", d.ToTag)
			}
		case "terminated":
		default:
			t.Errorf("dialog %s still %s after the answer", d.ToTag, d.State)
		}
	}
	if confirmed != 1 {
		t.Fatalf("%d confirmed dialogs, want the answering fork", confirmed)
	}
	if n, want := puatest.TrackerEvents(t, met, "dialoginfo", "ignored_branch_cap"), float64(2000-cfg.MaxBranches); n != want {
		t.Errorf("ignored_branch_cap = %v after the answer past the cap, want still %v (a 2xx is never ignored)", n, want)
	}
	tr.HandleSIP(ctx, reply(t, "fork", a, b, 200, "second-answer"))
	if n := len(tr.Dialogs()); n != cfg.MaxBranches+1 {
		t.Errorf("%d dialogs after a second answer past the cap, want %d", n, cfg.MaxBranches+1)
	}
}

// TestMaxCalls: past max_calls new calls are not tracked; once a call
// ends there is room again.
func TestMaxCalls(t *testing.T) {
	pub := recorder.New()
	clk := newFakeClock()
	cfg := DefaultConfig()
	cfg.MaxCalls = 3
	met := metrics.New()
	tr, err := New(cfg, Options{Publisher: pub, Clock: clk, Metrics: met, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		tr.HandleSIP(ctx, invite(t, fmt.Sprintf("c%d", i), fmt.Sprintf("u%d@example.com", i), "bob@example.com"))
	}
	if n := len(tr.Dialogs()); n != 3 {
		t.Fatalf("%d calls tracked, want max_calls 3", n)
	}
	if err := tr.ApplyDialogState(ctx, event.DialogState{CallID: "json", FromTag: "f", From: "sip:x@example.com",
		To: "sip:y@example.com", State: "early"}); err != nil {
		t.Fatal(err)
	}
	if n := len(tr.Dialogs()); n != 3 {
		t.Fatalf("%d calls after a JSON call past the cap, want 3", n)
	}
	// Seven INVITEs and one JSON call past the cap, each counted.
	if n := puatest.TrackerEvents(t, met, "dialoginfo", "ignored_call_cap"); n != 8 {
		t.Errorf("ignored_call_cap = %v, want 8", n)
	}
	if n := puatest.TrackerEvents(t, met, "dialoginfo", "ignored_branch_cap"); n != 0 {
		t.Errorf("ignored_branch_cap = %v with one branch a call, want 0", n)
	}
	tr.HandleSIP(ctx, reply(t, "c0", "u0@example.com", "bob@example.com", 486, "busy"))
	tr.Expire(clk.Advance(cfg.TerminatedLinger + 1))
	tr.HandleSIP(ctx, invite(t, "later", "later@example.com", "bob@example.com"))
	found := false
	for _, d := range tr.Dialogs() {
		found = found || d.CallID == "later"
	}
	if !found {
		t.Fatal("no room for a new call after one ended")
	}
}

// domainSet is a fixed DomainSet.
type domainSet map[string]bool

func (d domainSet) HasDomain(host string) bool { return d[host] }

// TestEmptyDomainsMeansRegisteredDomains: with domains empty, only
// entities of a domain the registrations know are published; without a
// domain source, every entity is (and a warning says so).
func TestEmptyDomainsMeansRegisteredDomains(t *testing.T) {
	ctx := context.Background()
	pub := recorder.New()
	tr, err := New(DefaultConfig(), Options{Publisher: pub, Logger: quietLog(), LocalDomains: domainSet{"example.com": true}})
	if err != nil {
		t.Fatal(err)
	}
	tr.HandleSIP(ctx, invite(t, "in", "mallory@foreign.net", "bob@example.com"))
	tr.HandleSIP(ctx, reply(t, "in", "mallory@foreign.net", "bob@example.com", 180, "t1"))
	tr.HandleSIP(ctx, invite(t, "out", "alice@example.com", "carol@elsewhere.org"))
	tr.HandleSIP(ctx, invite(t, "transit", "x@foreign.net", "y@elsewhere.org"))
	entities := map[string]bool{}
	for _, op := range pub.Take() {
		entities[op.Key.PresURI] = true
	}
	want := map[string]bool{"sip:bob@example.com": true, "sip:alice@example.com": true}
	if fmt.Sprint(entities) != fmt.Sprint(want) {
		t.Fatalf("published for %v, want only the local entities %v", entities, want)
	}
	if n := len(tr.Dialogs()); n != 2 {
		t.Errorf("%d dialogs tracked, want 2 (the transit call is not)", n)
	}

	var logs bytes.Buffer
	pub2 := recorder.New()
	tr2, err := New(DefaultConfig(), Options{Publisher: pub2, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "every entity") {
		t.Errorf("no warning about publishing every entity: %q", logs.String())
	}
	tr2.HandleSIP(ctx, invite(t, "transit", "x@foreign.net", "y@elsewhere.org"))
	if ops := pub2.Take(); len(ops) != 1 || ops[0].Key != (pua.Key{PresURI: "sip:x@foreign.net", Event: "dialog", ID: ops[0].Key.ID}) {
		t.Errorf("without a domain source: %+v", ops)
	}

	// An explicit list wins over the registrations.
	cfg := DefaultConfig()
	cfg.Domains = []string{"elsewhere.org"}
	pub3 := recorder.New()
	tr3, err := New(cfg, Options{Publisher: pub3, Logger: quietLog(), LocalDomains: domainSet{"example.com": true}})
	if err != nil {
		t.Fatal(err)
	}
	tr3.HandleSIP(ctx, invite(t, "out", "alice@example.com", "carol@elsewhere.org"))
	tr3.HandleSIP(ctx, reply(t, "out", "alice@example.com", "carol@elsewhere.org", 180, "t1"))
	for _, op := range pub3.Take() {
		if op.Key.PresURI != "sip:carol@elsewhere.org" {
			t.Errorf("published for %s with domains [elsewhere.org]", op.Key.PresURI)
		}
	}
}
