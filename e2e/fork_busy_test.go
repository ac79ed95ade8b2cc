package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/sipphone"
)

// TestForkedCallOneForkBusy: bob's call forks to his desk phone and his
// mobile through a Kamailio proxy tracing with siptrace (and with HEP);
// the desk (do not disturb) rings and answers 486 at once, the mobile
// rings later and is answered. The proxy absorbs the desk's 486 (it answers the call only
// when every fork has), so the call goes on: both lamps show the answered
// call confirmed, then terminated after the BYE. (The tracker used to take
// the fork's 486, as the proxy received it, for the call's final answer
// and ignore the mobile's ringing and answer: no lamp for the whole call.)
// The same with every fork busy: the call ends with the proxy's answer.
func TestForkedCallOneForkBusy(t *testing.T) {
	for _, input := range []string{"WITH_SIPTRACE", "WITH_HEP"} {
		t.Run(input, func(t *testing.T) { forkBusy(t, input) })
	}
}

func forkBusy(t *testing.T, input string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := baseConfig(t, nil)
	cfg.Features.BLA = false
	cfg.Dialoginfo.TerminatedLinger = time.Second
	startPuaside(t, cfg)
	server := hostPort(cfg.PA.Listen[0])
	reg := registrar(t, input, cfg)
	fr := newForkRig(ctx, t, server, reg.Addr())
	alice, desk, mobile, wA, wB := fr.alice, fr.desk, fr.mobile, fr.wA, fr.wB

	desk.SetPolicy(sipphone.RejectWith(486))
	mobile.SetPolicy(sipphone.KeepRinging)
	mobile.SetRingDelay(700 * time.Millisecond)
	call, err := alice.Invite(ctx, reg.Addr(), desk.AoR())
	if err != nil {
		t.Fatal(err)
	}
	inDesk, inMobile := ringing(ctx, t, desk, call.CallID()), ringing(ctx, t, mobile, call.CallID())
	<-inDesk.Done()
	if inDesk.Code() != 486 {
		t.Fatalf("the desk answered %d, want 486", inDesk.Code())
	}
	time.Sleep(1200 * time.Millisecond) // the mobile rings after the desk's 486
	inMobile.Answer()
	if err := call.WaitAnswer(ctx); err != nil {
		t.Fatalf("answer: %v", err)
	}
	dlgWaitState(ctx, t, wB, "bob", call.CallID(), "confirmed")
	dlgWaitState(ctx, t, wA, "alice", call.CallID(), "confirmed")
	if err := call.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	dlgWaitState(ctx, t, wA, "alice", call.CallID(), "terminated")
	dlgWaitState(ctx, t, wB, "bob", call.CallID(), "terminated")

	// Every fork busy: the proxy's 486 ends the call on both lamps.
	mobile.SetRingDelay(0)
	mobile.SetPolicy(sipphone.RejectWith(486))
	busy, err := alice.Invite(ctx, reg.Addr(), desk.AoR())
	if err != nil {
		t.Fatal(err)
	}
	if err := busy.WaitAnswer(ctx); err == nil {
		t.Fatal("a call to two busy phones was answered")
	}
	dlgWaitState(ctx, t, wA, "alice", busy.CallID(), "terminated")
	dlgWaitState(ctx, t, wB, "bob", busy.CallID(), "terminated")
}
