package bla

import (
	"context"
	"reflect"
	"testing"
)

// TestSetConfigLines reloads the configured lines: a removed line's phones
// are unsubscribed, a new line subscribes its phones once fed the
// registrations, a bad line changes nothing.
func TestSetConfigLines(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, nil)
	fx.register(phoneA)
	if got, want := fx.eng.TakeCalls(), []string{"subscribe " + phoneA}; !reflect.DeepEqual(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}

	if _, err := fx.m.SetConfigLines(ctx, []LineConfig{{AoR: "100"}, {AoR: "sip:bad@"}}); err == nil {
		t.Fatal("a bad line was accepted")
	}
	if got := fx.eng.TakeCalls(); len(got) != 0 || len(fx.m.Lines()) != 1 {
		t.Fatalf("bad reload: calls %v, lines %d", got, len(fx.m.Lines()))
	}

	ch, err := fx.m.SetConfigLines(ctx, []LineConfig{{AoR: "200"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := (LinesChange{Added: []string{"sip:200@example.com"}, Removed: []string{lineAoR}}); !reflect.DeepEqual(ch, want) {
		t.Fatalf("change %+v, want %+v", ch, want)
	}
	if got, want := fx.eng.TakeCalls(), []string{"unsubscribe " + ContactID(phoneA)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("line removed: calls %v, want %v", got, want)
	}
	const phone200 = "sip:200@10.0.0.3:5100"
	fx.m.ContactsChanged(ctx, "sip:200@example.com", []Contact{{URI: "<" + phone200 + ">", Expires: fx.clock.Now().Add(120e9)}})
	if got, want := fx.eng.TakeCalls(), []string{"subscribe " + phone200}; !reflect.DeepEqual(got, want) {
		t.Fatalf("line added: calls %v, want %v", got, want)
	}
	fx.register(phoneA)
	if got := fx.eng.TakeCalls(); len(got) != 0 {
		t.Fatalf("removed line still subscribes: %v", got)
	}

	ch, err = fx.m.SetConfigLines(ctx, []LineConfig{{AoR: "200"}})
	if err != nil || !ch.Empty() {
		t.Fatalf("same lines: change %+v, err %v", ch, err)
	}
}
