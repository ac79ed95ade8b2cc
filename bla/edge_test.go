package bla

import (
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/pua"
)

// TestLateNotifyOfDroppedPhone: a phone that unregistered mid-call is
// dropped from the line; a NOTIFY its ending subscription still sends is
// refused (481) and does not bring its call back onto the line.
func TestLateNotifyOfDroppedPhone(t *testing.T) {
	fx := newFixture(t, nil)
	fx.register(phoneA, phoneB)
	fx.send(t, phoneA, "a", doc(1, "full", "1:confirmed:1"))
	fx.register(phoneB) // A unregisters mid-call
	lineKey := pua.Key{PresURI: lineAoR, Event: EventSLA, ID: LinePublicationID}
	if _, ok := fx.eng.Live()[lineKey]; ok {
		t.Fatal("line still published after A left")
	}
	fx.eng.TakeCalls()
	if code := fx.send(t, phoneA, "a", doc(2, "full", "1:confirmed:1")); code != 481 {
		t.Errorf("late NOTIFY answered %d, want 481", code)
	}
	if r, ok := fx.eng.Live()[lineKey]; ok {
		t.Errorf("the unregistered phone's call published again:\n%s", r.Body)
	}
	if ps := fx.m.Lines()[0].Phones; len(ps) != 1 {
		t.Errorf("phones %+v, want only B", ps)
	}
}

// TestProbationRetryAfterZeroNotLooped: a phone that ends every
// subscription with probation;retry-after=0 is subscribed again at once
// the first time only, then after resubscribe_delay: not in a loop.
func TestProbationRetryAfterZeroNotLooped(t *testing.T) {
	fx := newFixture(t, nil)
	fx.register(phoneA)
	fx.eng.TakeCalls()
	subs := 0
	for range 20 {
		fx.terminate(t, "terminated;reason=probation;retry-after=0")
		deadline := time.Now().Add(200 * time.Millisecond)
		for time.Now().Before(deadline) {
			got := false
			for _, c := range fx.eng.TakeCalls() {
				if strings.HasPrefix(c, "subscribe ") {
					got = true
				}
			}
			if got {
				subs++
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	if subs != 1 {
		t.Errorf("%d SUBSCRIBEs for 20 terminations with the clock still, want 1", subs)
	}
}

// TestRestoredPhonePartialAsksFullState: after a restart, the first
// NOTIFY of a restored subscription is a partial document: with nothing
// for it to update, the phone is asked for its full state (a refresh), so
// its other dialogs do not stay dark until its next full document.
func TestRestoredPhonePartialAsksFullState(t *testing.T) {
	fx := newFixture(t, nil)
	re := refreshEngine{fx.eng}
	m, err := New(fx.m.cfg, Options{Subscriber: re, Publisher: re, Metrics: fx.met, Clock: fx.clock, Logger: fx.m.log})
	if err != nil {
		t.Fatal(err)
	}
	fx.m = m
	fx.m.RestoreSubscriptions([]pua.SubscriptionInfo{
		{Key: fx.m.subKey(lineAoR, ContactID(phoneA)), Flag: pua.FlagBLASubscribe, Target: phoneA},
	})
	fx.register(phoneA)
	fx.eng.TakeCalls()
	if c := fx.send(t, phoneA, "a", doc(11, "partial", "a2:trying:2")); c != 200 {
		t.Fatalf("partial NOTIFY answered %d", c)
	}
	refreshed := false
	for _, c := range fx.eng.TakeCalls() {
		if strings.HasPrefix(c, "refresh ") {
			refreshed = true
		}
	}
	if !refreshed {
		t.Error("a partial document with no base: no full state asked for")
	}
}
