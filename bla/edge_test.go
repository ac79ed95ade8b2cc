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
