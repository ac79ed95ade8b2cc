package bla

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/puatest/recorder"
	"github.com/puaside/puaside/pua"
)

// resubscribeDelays are the pending resubscribe waits, from now.
func (fx *fixture) resubscribeDelays() []time.Duration {
	fx.m.mu.Lock()
	defer fx.m.mu.Unlock()
	var ds []time.Duration
	now := fx.clock.Now()
	for _, ln := range fx.m.lines {
		for _, p := range ln.phones {
			if at, ok := fx.m.retry.Due(p); ok {
				ds = append(ds, at.Sub(now))
			}
		}
	}
	return ds
}

// terminate sends phoneA's terminated NOTIFY with a Subscription-State.
func (fx *fixture) terminate(t *testing.T, subState string) {
	t.Helper()
	n := fx.notifyMsg(phoneA, "terminated", -1, nil)
	ss, err := pua.ParseSubscriptionState(subState)
	if err != nil {
		t.Fatal(err)
	}
	n.Reason = ss.Reason
	n.Headers = func(name string) string {
		if strings.EqualFold(name, "Subscription-State") {
			return subState
		}
		return ""
	}
	if code, _ := fx.m.HandleNotify(context.Background(), n); code != 200 {
		t.Fatalf("terminated NOTIFY answered %d", code)
	}
}

func TestResubscribeAfterRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		subState string
		want     time.Duration
	}{
		{"terminated;reason=probation;retry-after=120", 120 * time.Second},
		{"terminated;reason=giveup", 30 * time.Second},
		{"terminated;reason=probation;retry-after=99999", time.Hour}, // capped at subscribe_expires
	} {
		t.Run(tc.subState, func(t *testing.T) {
			fx := newFixture(t, nil)
			fx.register(phoneA)
			fx.notify(t, phoneA, "active", 3600, "notify/a_trying_1.xml")
			fx.eng.TakeCalls()
			fx.terminate(t, tc.subState)
			if got, want := fx.eng.TakeCalls(), []string{"remove " + LinePublicationID}; !reflect.DeepEqual(got, want) {
				t.Fatalf("calls %v, want %v (no subscribe yet)", got, want)
			}
			if got := fx.resubscribeDelays(); !reflect.DeepEqual(got, []time.Duration{tc.want}) {
				t.Fatalf("resubscribe armed for %v, want %v", got, tc.want)
			}
			// A registration change meanwhile does not subscribe early.
			fx.register(phoneA, phoneB)
			if got := fx.eng.TakeCalls(); !reflect.DeepEqual(got, []string{"subscribe " + phoneB}) {
				t.Fatalf("calls on a change while waiting %v", got)
			}
			fx.clock.Advance(tc.want - time.Second)
			if got := fx.eng.TakeCalls(); len(got) != 0 {
				t.Fatalf("calls before retry-after %v", got)
			}
			fx.clock.Advance(time.Second)
			if got := fx.eng.TakeCalls(); !reflect.DeepEqual(got, []string{"subscribe " + phoneA}) {
				t.Fatalf("calls after retry-after %v", got)
			}
		})
	}
}

func TestResubscribeCancelledWhenContactGoes(t *testing.T) {
	fx := newFixture(t, nil)
	fx.register(phoneA)
	fx.terminate(t, "terminated;reason=probation;retry-after=60")
	fx.register()
	fx.eng.TakeCalls()
	if n := fx.m.retry.Len(); n != 0 {
		t.Fatalf("%d resubscribe waits left after the contact went", n)
	}
	fx.clock.Advance(time.Minute)
	if got := fx.eng.TakeCalls(); len(got) != 0 {
		t.Fatalf("calls after the contact went %v", got)
	}
}

func TestNoResubscribeAfterRejected(t *testing.T) {
	for _, reason := range []string{"rejected", "noresource", "invariant"} {
		t.Run(reason, func(t *testing.T) {
			fx := newFixture(t, nil)
			fx.register(phoneA)
			fx.eng.TakeCalls()
			fx.terminate(t, "terminated;reason="+reason)
			// Not at once, nor on a later change of the line.
			fx.register(phoneA, phoneB)
			if got := fx.eng.TakeCalls(); !reflect.DeepEqual(got, []string{"subscribe " + phoneB}) {
				t.Fatalf("calls %v", got)
			}
			// A contact that goes and comes back is a new phone.
			fx.register(phoneB)
			fx.register(phoneA, phoneB)
			if got := fx.eng.TakeCalls(); !reflect.DeepEqual(got, []string{"subscribe " + phoneA}) {
				t.Fatalf("calls after re-registration %v", got)
			}
		})
	}
}

// lookupEngine is the fake engine with Engine.Subscription: subscriptions
// are active unless failed says otherwise.
type lookupEngine struct {
	*recorder.Recorder
	mu     *sync.Mutex
	failed map[string]bool
}

func (l lookupEngine) Subscription(k pua.SubKey) (pua.SubscriptionInfo, bool) {
	if !l.Subscribed(k) {
		return pua.SubscriptionInfo{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed[k.ID] {
		return pua.SubscriptionInfo{Key: k, State: pua.StateFailed}, true
	}
	return pua.SubscriptionInfo{Key: k, State: pua.StateActive}, true
}

func TestRefusedSubscriptionTriedAgain(t *testing.T) {
	fx := newFixture(t, nil)
	le := lookupEngine{Recorder: fx.eng, mu: &sync.Mutex{}, failed: map[string]bool{}}
	m, err := New(fx.m.cfg, Options{Subscriber: le, Publisher: le, Metrics: fx.met, Clock: fx.clock,
		Logger: fx.m.log})
	if err != nil {
		t.Fatal(err)
	}
	fx.m = m
	fx.register(phoneA)
	fx.eng.TakeCalls()
	// The phone answers 489 while booting: the engine's record is failed.
	le.mu.Lock()
	le.failed[ContactID(phoneA)] = true
	le.mu.Unlock()
	if ps := fx.m.Lines()[0].Phones; len(ps) != 1 || ps[0].SubscriptionState != pua.StateFailed {
		t.Fatalf("phones %+v", ps)
	}
	// The next change of the line subscribes it again (the engine re-arms
	// a failed subscription on Subscribe); the active one of B is left be.
	fx.register(phoneA, phoneB)
	if got := fx.eng.TakeCalls(); !sameSet(got, []string{"subscribe " + phoneA, "subscribe " + phoneB}) {
		t.Fatalf("calls %v", got)
	}
	le.mu.Lock()
	le.failed[ContactID(phoneA)] = false
	le.mu.Unlock()
	fx.register(phoneA, phoneB)
	if got := fx.eng.TakeCalls(); len(got) != 0 {
		t.Fatalf("calls with both active %v", got)
	}
	if got := fx.count(t, "resubscribe_failed"); got != 1 {
		t.Errorf("resubscribe_failed = %v", got)
	}
}
