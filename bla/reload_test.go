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

// TestReloadRestoresStoredLine: a line of the database that a line of the
// file hides (at start, or taken over by a reload) is back in effect, with
// its stored members, as soon as a reload drops the file's line; the
// phones it keeps stay subscribed.
func TestReloadRestoresStoredLine(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, nil)
	fx.store.lines.Put(lineAoR, []string{phoneB})
	m, err := New(fx.m.cfg, Options{Subscriber: fx.eng, Publisher: fx.eng, Store: fx.store, Metrics: fx.met,
		Clock: fx.clock, Logger: fx.m.log})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	fx.m = m
	fx.register(phoneA, phoneB)
	if got, want := fx.eng.TakeCalls(), []string{"subscribe " + phoneA, "subscribe " + phoneB}; !sameSet(got, want) {
		t.Fatalf("file's line: calls %v, want %v", got, want)
	}
	if l := fx.m.Lines(); len(l) != 1 || l[0].Source != SourceConfig || len(l[0].Members) != 0 {
		t.Fatalf("file's line: %+v", l)
	}

	restored := func(step string) {
		t.Helper()
		ch, err := fx.m.SetConfigLines(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := (LinesChange{Updated: []string{lineAoR}}); !reflect.DeepEqual(ch, want) {
			t.Fatalf("%s: change %+v, want %+v", step, ch, want)
		}
		l := fx.m.Lines()
		if len(l) != 1 || l[0].AoR != lineAoR || l[0].Source != SourceDB || !reflect.DeepEqual(l[0].Members, []string{phoneB}) {
			t.Fatalf("%s: lines %+v, want the stored line", step, l)
		}
		if got, want := fx.eng.TakeCalls(), []string{"unsubscribe " + ContactID(phoneA)}; !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: calls %v, want %v", step, got, want)
		}
		if p := l[0].Phones; len(p) != 1 || p[0].Contact != phoneB || !p[0].Subscribed {
			t.Fatalf("%s: phones %+v", step, p)
		}
	}
	restored("line hidden at start dropped from the file")

	// A reload that names the stored line takes it over; dropping it from
	// the file again brings the stored line back again.
	ch, err := fx.m.SetConfigLines(ctx, []LineConfig{{AoR: "100"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := (LinesChange{Updated: []string{lineAoR}}); !reflect.DeepEqual(ch, want) {
		t.Fatalf("take-over: change %+v, want %+v", ch, want)
	}
	if got, want := fx.eng.TakeCalls(), []string{"subscribe " + phoneA}; !reflect.DeepEqual(got, want) {
		t.Fatalf("take-over: calls %v, want %v", got, want)
	}
	restored("line taken over by a reload dropped from the file")

	// Back from the database, the line is managed through it again.
	if err := fx.m.RemoveLine(ctx, lineAoR); err != nil {
		t.Fatal(err)
	}
	if l := fx.m.Lines(); len(l) != 0 {
		t.Fatalf("after removal: %+v", l)
	}

	// So is a line added through the management API and then taken over.
	const line200 = "sip:200@example.com"
	if err := fx.m.AddLine(ctx, line200, []string{"sip:200@10.0.0.5"}); err != nil {
		t.Fatal(err)
	}
	for _, lines := range [][]LineConfig{{{AoR: "200"}}, nil} {
		if _, err := fx.m.SetConfigLines(ctx, lines); err != nil {
			t.Fatal(err)
		}
	}
	if l := fx.m.Lines(); len(l) != 1 || l[0].AoR != line200 || l[0].Source != SourceDB ||
		!reflect.DeepEqual(l[0].Members, []string{"sip:200@10.0.0.5"}) {
		t.Fatalf("added line after take-over and drop: %+v", l)
	}
}
