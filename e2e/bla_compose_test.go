package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/bla"
	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/dialogdoc"
)

// lineRig is one shared line at real Kamailios (registrar with t_replicate
// to puaside, presence server with dialog;sla enabled), its phones and a
// watcher of the line that is not a phone of it.
type lineRig struct {
	t       *testing.T
	ctx     context.Context
	reg     string
	phones  []*polycom
	watcher *polycom
	version map[*polycom]int
}

// newLineRig starts the rig with n phones, each watching its line at the
// presence server too, as Polycom phones do.
func newLineRig(t *testing.T, n int, mod func(*config.Config)) *lineRig {
	presence := presenceServer(t)
	cfg := baseConfig(t, presence)
	cfg.Features.Dialoginfo = false
	cfg.BLA.Lines = []bla.LineConfig{{AoR: blaLine}}
	cfg.BLA.ServerAddress = ""
	if mod != nil {
		mod(&cfg)
	}
	reg := registrar(t, "WITH_REPLICATE", cfg)
	startPuaside(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	r := &lineRig{t: t, ctx: ctx, reg: reg.Addr(), version: map[*polycom]int{}}
	r.watcher = newPolycom(t, "line100", "example.com")
	if err := r.watcher.watchLine(ctx, presence.Addr(), 600); err != nil {
		t.Fatalf("watcher: %v", err)
	}
	for i := 0; i < n; i++ {
		p := newPolycom(t, "line100", "example.com")
		if err := p.watchLine(ctx, presence.Addr(), 600); err != nil {
			t.Fatalf("phone %d: %v", i, err)
		}
		if res, err := p.register(ctx, reg.Addr(), 300); err != nil || res.StatusCode != 200 {
			t.Fatalf("phone %d: register: %v %v", i, res, err)
		}
		r.phones = append(r.phones, p)
	}
	for i, p := range r.phones {
		if err := p.waitUntil(ctx, "an initial NOTIFY answered", func() bool { return len(p.codes) >= 1 }); err != nil {
			t.Fatalf("phone %d: %v", i, err)
		}
	}
	return r
}

// call sends phone i's partial document with its dialog id in state on
// line index i+1.
func (r *lineRig) call(i int, id, state string) {
	r.t.Helper()
	p := r.phones[i]
	r.version[p]++
	code, err := p.notify(r.ctx, "active;expires=300", blaDoc(blaLine, r.version[p], "partial",
		blaDialog{id, state, fmt.Sprint(i + 1)}))
	if err != nil || code != 200 {
		r.t.Fatalf("phone %d: NOTIFY %s %s: %d %v", i, id, state, code, err)
	}
}

// step sends phone i's change of call id to state and waits for the
// watcher to be notified of the line showing exactly the calls want.
func (r *lineRig) step(i int, id, state, what string, want ...string) {
	r.t.Helper()
	r.call(i, id, state)
	r.waitLine(r.watcher, what, want...)
}

// overlapTwo plays two overlapping calls, A's then B's, B hanging up first,
// each step seen by the watcher.
func (r *lineRig) overlapTwo() {
	r.t.Helper()
	r.step(0, "a-call", "confirmed", "A's call", "a-call")
	r.step(1, "b-call", "confirmed", "both calls in one NOTIFY", "a-call", "b-call")
	r.step(1, "b-call", "terminated", "A's call only", "a-call")
	r.step(0, "a-call", "terminated", "the line idle")
}

// heldCalls is the sorted ids (phone qualifier stripped) of the dialogs a
// NOTIFY body shows holding the line; an empty body is an idle line.
func heldCalls(t *testing.T, body string) []string {
	t.Helper()
	if strings.TrimSpace(body) == "" {
		return []string{}
	}
	doc, err := dialogdoc.Parse([]byte(body), 1<<20)
	if err != nil {
		t.Fatalf("watcher NOTIFY body: %v\n%s", err, body)
	}
	ids := []string{}
	for _, d := range doc.Dialogs {
		if d.Holds() {
			id, _, _ := strings.Cut(d.ID, "~")
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// waitLine waits for a NOTIFY of p's line subscription showing exactly the
// calls want.
func (r *lineRig) waitLine(p *polycom, what string, want ...string) {
	r.t.Helper()
	if want == nil {
		want = []string{}
	}
	if _, err := p.waitNote(r.ctx, what, func(n polNote) bool {
		return slices.Equal(heldCalls(r.t, n.Body), want)
	}); err != nil {
		r.t.Fatalf("%v; NOTIFYs:\n%s", err, noteStates(r.t, p))
	}
}

// views is the sequence of line states p was notified, consecutive
// repeats and the idle states before the first call left out.
func views(t *testing.T, p *polycom) [][]string {
	var out [][]string
	for _, n := range p.notes() {
		h := heldCalls(t, n.Body)
		if len(out) == 0 && len(h) == 0 {
			continue
		}
		if len(out) > 0 && slices.Equal(out[len(out)-1], h) {
			continue
		}
		out = append(out, h)
	}
	return out
}

func noteStates(t *testing.T, p *polycom) string {
	return fmt.Sprint(views(t, p))
}

// checkViews compares the watcher's sequence of line states with want:
// in that order, never idle while a call is up. The last NOTIFYs may still
// be on their way (the steps wait for another watcher): it waits for them,
// within waitLimit.
func (r *lineRig) checkViews(p *polycom, who string, want ...[]string) {
	r.t.Helper()
	deadline := time.Now().Add(waitLimit)
	got := views(r.t, p)
	for fmt.Sprint(got) != fmt.Sprint(want) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		got = views(r.t, p)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		r.t.Errorf("%s saw the line as %v, want %v", who, got, want)
	}
}

// TestBLAComposedLineTwoPhones: two phones of one line with overlapping
// calls; a dialog;sla watcher of the line at Kamailio sees both calls in
// one NOTIFY, then A's only after B hangs up, then the line idle.
func TestBLAComposedLineTwoPhones(t *testing.T) {
	r := newLineRig(t, 2, nil)
	r.overlapTwo()
	r.checkViews(r.watcher, "the watcher", []string{"a-call"}, []string{"a-call", "b-call"}, []string{"a-call"}, []string{})
}

// TestBLAComposedLineThreePhones: three overlapping calls, hung up out of
// order.
func TestBLAComposedLineThreePhones(t *testing.T) {
	r := newLineRig(t, 3, nil)
	r.step(0, "a-call", "confirmed", "A's call", "a-call")
	r.step(1, "b-call", "confirmed", "A's and B's calls", "a-call", "b-call")
	r.step(2, "c-call", "confirmed", "three calls", "a-call", "b-call", "c-call")
	r.step(1, "b-call", "terminated", "A's and C's calls", "a-call", "c-call")
	r.step(0, "a-call", "terminated", "C's call", "c-call")
	r.step(2, "c-call", "terminated", "the line idle")
	r.checkViews(r.watcher, "the watcher", []string{"a-call"}, []string{"a-call", "b-call"},
		[]string{"a-call", "b-call", "c-call"}, []string{"a-call", "c-call"}, []string{"c-call"}, []string{})
}

// TestBLAComposedLineUnregisterMidCall: a phone unregistering in a call
// leaves the line's document; the other phone's call stays shown.
func TestBLAComposedLineUnregisterMidCall(t *testing.T) {
	r := newLineRig(t, 2, nil)
	r.step(0, "a-call", "confirmed", "A's call", "a-call")
	r.step(1, "b-call", "confirmed", "both calls", "a-call", "b-call")
	if res, err := r.phones[1].register(r.ctx, r.reg, 0); err != nil || res.StatusCode != 200 {
		t.Fatalf("phone B: unregister: %v %v", res, err)
	}
	r.waitLine(r.watcher, "A's call after B left", "a-call")
	r.step(0, "a-call", "terminated", "the line idle")
	r.checkViews(r.watcher, "the watcher", []string{"a-call"}, []string{"a-call", "b-call"}, []string{"a-call"}, []string{})
}

// TestBLAComposedLineSender pins down what a phone of the line is told of
// the line, watching it at Kamailio like a Polycom phone, with the Sender
// header that Kamailio's handle_publish("$hdr(Sender)") uses to leave the
// phone whose change it is out, and without it (the header under another
// name, which the project's presence.cfg does not look at).
func TestBLAComposedLineSender(t *testing.T) {
	run := func(t *testing.T, header string) (a, b [][]string) {
		r := newLineRig(t, 2, func(c *config.Config) { c.BLA.HeaderName = header })
		r.overlapTwo()
		// The phones' NOTIFYs are sent before the watcher's (one
		// transaction each at the presence server); settle for a moment.
		time.Sleep(300 * time.Millisecond)
		return views(t, r.phones[0]), views(t, r.phones[1])
	}
	t.Run("Sender", func(t *testing.T) {
		a, b := run(t, "Sender")
		// Each phone misses the documents of its own changes: A never
		// hears of the line idle after its own hang-up, its last view
		// shows its own ended call up. That is why bla sends no Sender
		// by default.
		if got, want := fmt.Sprint(a), "[[a-call b-call] [a-call]]"; got != want {
			t.Errorf("phone A saw %s, want %s", got, want)
		}
		if got, want := fmt.Sprint(b), "[[a-call] []]"; got != want {
			t.Errorf("phone B saw %s, want %s", got, want)
		}
	})
	t.Run("none", func(t *testing.T) {
		a, b := run(t, "X-Line-Sender")
		// Every phone is told every document: each one's last view is the
		// line as it is.
		want := "[[a-call] [a-call b-call] [a-call] []]"
		if fmt.Sprint(a) != want || fmt.Sprint(b) != want {
			t.Errorf("phones saw A %v, B %v; want both %s", a, b, want)
		}
	})
}
