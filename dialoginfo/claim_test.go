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
}

func (c *claimPub) Claim(k pua.Key) bool {
	c.claimed = append(c.claimed, k.PresURI+" "+k.ID)
	return true
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
