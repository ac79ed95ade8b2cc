package dialoginfo

import (
	"context"
	"reflect"
	"sort"
	"testing"

	"github.com/puaside/puaside/internal/puatest/recorder"
	"github.com/puaside/puaside/pua"
)

// claimPub is a recorder that also records claims.
type claimPub struct {
	*recorder.Recorder
	claimed []string
	done    []int
	// lost makes Claim report that the engine does not hold the key.
	lost bool
}

func (c *claimPub) Claim(k pua.Key) bool {
	c.claimed = append(c.claimed, k.PresURI+" "+k.ID)
	return !c.lost
}

func (c *claimPub) ClaimsDone(flag int) { c.done = append(c.done, flag) }

// TestStartClaimsLoadedCalls: the publications of a stored confirmed call
// are claimed at start; an unknown call's are not (the engine sweeps them).
func TestStartClaimsLoadedCalls(t *testing.T) {
	st := newMemStore()
	clk := newFakeClock()
	pub1 := recorder.New()
	tr1, err := New(DefaultConfig(), Options{Publisher: pub1, Store: st, Clock: clk, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	feed(t, tr1, "basic", "01.sip", "02.sip", "03.sip", "04.sip", "05.sip", "06.sip", "07.sip", "08.sip")
	if err := tr1.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var want []string
	for k := range pub1.Live() {
		want = append(want, k.PresURI+" "+k.ID)
	}
	sort.Strings(want)
	if len(want) != 2 {
		t.Fatalf("%d live publications before the restart, want 2", len(want))
	}

	cp := &claimPub{Recorder: recorder.New()}
	tr2, err := New(DefaultConfig(), Options{Publisher: cp, Store: st, Clock: clk, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	sort.Strings(cp.claimed)
	if !reflect.DeepEqual(cp.claimed, want) {
		t.Fatalf("claimed %q, want %q", cp.claimed, want)
	}
	if !reflect.DeepEqual(cp.done, []int{pua.FlagDialogPublish}) {
		t.Fatalf("claims done %v", cp.done)
	}

	// Without stored calls nothing is claimed, and the claims are done.
	cp3 := &claimPub{Recorder: recorder.New()}
	tr3, _ := New(DefaultConfig(), Options{Publisher: cp3, Store: newMemStore(), Clock: clk, Logger: quietLog()})
	if err := tr3.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(cp3.claimed) != 0 || !reflect.DeepEqual(cp3.done, []int{pua.FlagDialogPublish}) {
		t.Fatalf("claimed %q, done %v", cp3.claimed, cp3.done)
	}
}

// TestRestartDuringLinger: puaside restarts while the terminated documents
// of a call linger. The stored call is claimed; when the engine still holds
// the publications (left to lapse) nothing is sent, when it lost them the
// terminated documents are published again for what is left of the
// linger. Either way nothing is removed at the end of the linger and no
// lamp stays lit.
func TestRestartDuringLinger(t *testing.T) {
	for _, lost := range []bool{false, true} {
		st := newMemStore()
		clk := newFakeClock()
		tr1, err := New(DefaultConfig(), Options{Publisher: recorder.New(), Store: st, Clock: clk, Logger: quietLog()})
		if err != nil {
			t.Fatal(err)
		}
		feed(t, tr1, "basic", "01.sip", "02.sip", "03.sip", "04.sip", "05.sip", "06.sip", "07.sip", "08.sip", "09.sip")
		if err := tr1.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		linger := DefaultConfig().TerminatedLinger
		clk.Advance(linger / 2)
		cp := &claimPub{Recorder: recorder.New(), lost: lost}
		tr2, err := New(DefaultConfig(), Options{Publisher: cp, Store: st, Clock: clk, Logger: quietLog()})
		if err != nil {
			t.Fatal(err)
		}
		if err := tr2.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(cp.claimed) != 2 {
			t.Fatalf("lost=%v: claimed %q, want caller and callee", lost, cp.claimed)
		}
		ops := cp.Take()
		want := 0
		if lost {
			want = 2
		}
		if len(ops) != want {
			t.Fatalf("lost=%v: %d operations at start, want %d", lost, len(ops), want)
		}
		for _, op := range ops {
			if op.Kind != recorder.Publish || op.Req.Lifetime <= 0 || op.Req.Lifetime > linger/2 {
				t.Fatalf("lost=%v: %+v, want a terminated document for the rest of the linger", lost, op)
			}
		}
		tr2.Expire(clk.Advance(linger))
		if ops := cp.Take(); len(ops) != 0 {
			t.Fatalf("lost=%v: operations after the linger: %+v", lost, ops)
		}
		if n := stuck(cp.Recorder); n != 0 || len(tr2.calls) != 0 {
			t.Fatalf("lost=%v: %d publications stuck, %d calls", lost, n, len(tr2.calls))
		}
	}
}
