package bla

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/pua"
)

// send is a NOTIFY of contact in subscription dialog callID; it returns
// the reply code.
func (fx *fixture) send(t testing.TB, contact, callID string, body []byte) int {
	t.Helper()
	n := fx.notifyMsg(contact, "active", 3600, body)
	n.Headers = func(name string) string {
		if strings.EqualFold(name, "Call-ID") {
			return callID
		}
		return ""
	}
	code, _ := fx.m.HandleNotify(context.Background(), n)
	return code
}

// line parses the line's composed publication: its version and
// "id:state" of every dialog in document order.
func (fx *fixture) line(t testing.TB) (uint64, []string) {
	t.Helper()
	r, ok := fx.eng.Live()[pua.Key{PresURI: lineAoR, Event: EventSLA, ID: LinePublicationID}]
	if !ok {
		t.Fatalf("no line publication; calls %v", fx.eng.Ops())
	}
	d, err := dialogdoc.Parse(r.Body, 0)
	if err != nil {
		t.Fatalf("composed document: %v\n%s", err, r.Body)
	}
	if d.State != dialogdoc.DocFull || d.Entity != lineAoR {
		t.Fatalf("composed document state %q entity %q", d.State, d.Entity)
	}
	ds := make([]string, 0, len(d.Dialogs))
	for _, x := range d.Dialogs {
		ds = append(ds, x.ID+":"+x.State)
	}
	return d.Version, ds
}

var (
	tagA = phoneTag(ContactID(phoneA))
	tagB = phoneTag(ContactID(phoneB))
)

// TestComposeTwoPhones: one publication for the line holds both phones'
// calls, each phone's part its latest state, with its own increasing
// version; a phone's hang-up leaves the other's call.
func TestComposeTwoPhones(t *testing.T) {
	fx := newFixture(t, func(c *Config) { c.HeaderName = "Sender" })
	fx.register(phoneA, phoneB)
	if c := fx.send(t, phoneA, "a", doc(1, "full", "1:confirmed:1")); c != 200 {
		t.Fatal(c)
	}
	v1, ds := fx.line(t)
	if !reflect.DeepEqual(ds, []string{"1~" + tagA + ":confirmed"}) {
		t.Fatalf("after A: %v", ds)
	}
	// B uses the same dialog id: the two must not merge.
	if c := fx.send(t, phoneB, "b", doc(1, "full", "1:confirmed:2")); c != 200 {
		t.Fatal(c)
	}
	v2, ds := fx.line(t)
	want := []string{"1~" + tagA + ":confirmed", "1~" + tagB + ":confirmed"}
	if tagB < tagA {
		want[0], want[1] = want[1], want[0]
	}
	if !reflect.DeepEqual(ds, want) {
		t.Fatalf("both calls: %v, want %v", ds, want)
	}
	if len(fx.eng.Live()) != 1 {
		t.Fatalf("%d publications, want the line's one", len(fx.eng.Live()))
	}
	if hdr := fx.eng.Last().ExtraHeaders; !reflect.DeepEqual(hdr, []pua.Header{{Name: "Sender", Value: phoneB}}) {
		t.Errorf("headers %v, want Sender: B", hdr)
	}
	// B hangs up (partial): A's call stays, B's shown terminated once.
	fx.send(t, phoneB, "b", doc(2, "partial", "1:terminated:2"))
	v3, ds := fx.line(t)
	if !reflect.DeepEqual(ds, []string{"1~" + tagA + ":confirmed", "1~" + tagB + ":terminated"}) {
		t.Fatalf("after B hangs up: %v", ds)
	}
	// A's next partial document: B's ended call is gone.
	fx.send(t, phoneA, "a", doc(2, "partial", "2:early:3"))
	v4, ds := fx.line(t)
	if !reflect.DeepEqual(ds, []string{"1~" + tagA + ":confirmed", "2~" + tagA + ":early"}) {
		t.Fatalf("after A's second call: %v", ds)
	}
	if !(v1 < v2 && v2 < v3 && v3 < v4) {
		t.Errorf("versions %d %d %d %d: not increasing", v1, v2, v3, v4)
	}
	// An old document of A changes nothing, publishes nothing.
	fx.eng.TakeCalls()
	fx.send(t, phoneA, "a", doc(2, "partial", "9:trying:9"))
	if calls := fx.eng.TakeCalls(); len(calls) != 0 {
		t.Errorf("old document published: %v", calls)
	}
}

// TestComposeMapsQualifiedIDsBack: a phone that writes an id it read in a
// composed document (its own, qualified) updates its dialog, not a new one.
func TestComposeMapsQualifiedIDsBack(t *testing.T) {
	fx := newFixture(t, nil)
	fx.register(phoneA)
	fx.send(t, phoneA, "a", doc(1, "full", "x:confirmed:1"))
	fx.send(t, phoneA, "a", doc(2, "partial", "x~"+tagA+":terminated:1"))
	_, ds := fx.line(t)
	if !reflect.DeepEqual(ds, []string{"x~" + tagA + ":terminated"}) {
		t.Fatalf("after the qualified id: %v", ds)
	}
	if p := fx.m.lines[lineAoR].phones[ContactID(phoneA)]; len(p.dialogs) != 0 {
		t.Fatalf("phone dialogs %v, want none", p.dialogs)
	}
}

// TestComposeStalePhones: a phone whose subscription ends or whose contact
// goes leaves the line's document at once (published without a Sender, so
// every phone is told); the last one's going removes the publication.
func TestComposeStalePhones(t *testing.T) {
	fx := newFixture(t, nil)
	fx.register(phoneA, phoneB)
	fx.send(t, phoneA, "a", doc(1, "full", "1:confirmed:1"))
	fx.send(t, phoneB, "b", doc(1, "full", "2:confirmed:2"))

	// B's subscription ends: its call leaves the document.
	n := fx.notifyMsg(phoneB, "terminated", -1, nil)
	n.Reason = "noresource"
	fx.m.HandleNotify(context.Background(), n)
	_, ds := fx.line(t)
	if !reflect.DeepEqual(ds, []string{"1~" + tagA + ":confirmed"}) {
		t.Fatalf("after B's subscription ended: %v", ds)
	}
	if len(fx.eng.Last().ExtraHeaders) != 0 {
		t.Errorf("headers %v, want none (by default, and no phone changed the line)", fx.eng.Last().ExtraHeaders)
	}

	// A's contact goes: nothing is left to show, the publication goes.
	fx.eng.TakeCalls()
	fx.register(phoneB)
	calls := fx.eng.TakeCalls()
	if !reflect.DeepEqual(calls, []string{"unsubscribe " + ContactID(phoneA), "remove " + LinePublicationID}) {
		t.Fatalf("A gone: calls %v", calls)
	}
}

// TestComposeVanishingPhoneMidCall: with two phones in calls, one
// unregistering leaves the other's call in the document.
func TestComposeVanishingPhoneMidCall(t *testing.T) {
	fx := newFixture(t, nil)
	fx.register(phoneA, phoneB)
	fx.send(t, phoneA, "a", doc(1, "full", "1:confirmed:1"))
	fx.send(t, phoneB, "b", doc(1, "full", "1:confirmed:2"))
	fx.register(phoneA)
	_, ds := fx.line(t)
	if !reflect.DeepEqual(ds, []string{"1~" + tagA + ":confirmed"}) {
		t.Fatalf("after B unregistered: %v", ds)
	}
}

// TestComposeArbitration: a seize of an index another phone holds is
// refused on the composed state and changes nothing.
func TestComposeArbitration(t *testing.T) {
	fx := newFixture(t, nil)
	fx.register(phoneA, phoneB)
	fx.send(t, phoneA, "a", doc(1, "full", "1:confirmed:1"))
	v, before := fx.line(t)
	if c := fx.send(t, phoneB, "b", doc(1, "full", "1:trying:1")); c != 409 {
		t.Fatalf("seize of a held index answered %d, want 409", c)
	}
	if v2, after := fx.line(t); v2 != v || !reflect.DeepEqual(after, before) {
		t.Fatalf("refused seize changed the line: %d %v", v2, after)
	}
	if c := fx.send(t, phoneB, "b", doc(2, "full", "1:trying:2")); c != 200 {
		t.Fatalf("seize of a free index answered %d", c)
	}
}

// FuzzCompose: any sequence of documents from two phones gives a composed
// document that parses, is full, has unique dialog ids, versions that
// increase, and only dialogs of the phones.
func FuzzCompose(f *testing.F) {
	files, _ := filepath.Glob("testdata/compose/*")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, b)
	}
	f.Add(doc(1, "full", "1:confirmed:1"), doc(1, "partial", "1:trying:1"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		fx := newFixture(t, nil)
		fx.register(phoneA, phoneB)
		var last uint64
		for i, body := range [][]byte{a, b, a, b} {
			ph, cid := phoneA, "a"
			if i%2 == 1 {
				ph, cid = phoneB, "b"
			}
			fx.send(t, ph, cid, body)
			r, ok := fx.eng.Live()[pua.Key{PresURI: lineAoR, Event: EventSLA, ID: LinePublicationID}]
			if !ok {
				continue
			}
			d, err := dialogdoc.Parse(r.Body, 1<<20)
			if err != nil {
				t.Fatalf("composed document does not parse: %v\n%s", err, r.Body)
			}
			if d.State != dialogdoc.DocFull || d.Version < last {
				t.Fatalf("state %q version %d after %d", d.State, d.Version, last)
			}
			last = d.Version
			seen := map[string]bool{}
			for _, x := range d.Dialogs {
				if seen[x.ID] {
					t.Fatalf("dialog id %q twice:\n%s", x.ID, r.Body)
				}
				seen[x.ID] = true
				if !strings.HasSuffix(x.ID, idSep+tagA) && !strings.HasSuffix(x.ID, idSep+tagB) {
					t.Fatalf("dialog id %q not qualified by a phone", x.ID)
				}
			}
		}
	})
}

// BenchmarkComposedRelay8Phones: NOTIFY → composed PUBLISH through the
// manager with 8 phones on one line, each holding one confirmed call; each
// NOTIFY is a phone's next partial document, in turn, and each publication
// is the whole line (8 dialogs).
func BenchmarkComposedRelay8Phones(b *testing.B) {
	const phones = 8
	fx := newFixture(b, nil)
	fx.m.log = slog.New(slog.DiscardHandler)
	contacts := make([]string, phones)
	for i := range contacts {
		contacts[i] = fmt.Sprintf("sip:100@10.0.1.%d:5100", i+1)
	}
	fx.register(contacts...)
	ctx := context.Background()
	versions := make([]int, phones)
	notes := make([]pua.Notify, phones)
	for i, c := range contacts {
		notes[i] = fx.notifyMsg(c, "active", 3600, nil)
		notes[i].Headers = func(string) string { return "sub" }
	}
	var size int
	fx.m.pub = benchPublisher{size: &size}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	i := 0
	for b.Loop() {
		p := i % phones
		i++
		versions[p]++
		state := "confirmed"
		if versions[p]%2 == 0 {
			state = "early"
		}
		notes[p].Body = doc(versions[p], "partial", fmt.Sprintf("c%d:%s:%d", p, state, p+1))
		if code, _ := fx.m.HandleNotify(ctx, notes[p]); code != 200 {
			b.Fatal(code)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "relays/s")
	b.ReportMetric(float64(size), "doc-bytes")
}

// benchPublisher records the size of the last composed document.
type benchPublisher struct{ size *int }

func (p benchPublisher) Publish(r pua.PublishRequest) error { *p.size = len(r.Body); return nil }
func (benchPublisher) Remove(pua.Key) error                 { return nil }

// TestRefusedSeizeKeepsOtherDialogs: a document refused for a seize
// conflict still applies its other dialogs (a hang-up of another call of
// the phone, in a partial document, or that call's absence from a full
// one); only the refused seize is left out, and the reply is 409.
func TestRefusedSeizeKeepsOtherDialogs(t *testing.T) {
	asB := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte(phoneA), []byte(phoneB)) }
	for _, tc := range []struct {
		name string
		body []byte
		want []string // the line's dialogs after B's refused document
	}{
		{"partial hang-up", asB(doc(2, "partial", "b2:terminated:2", "b3:trying:1")),
			[]string{"a1~" + tagA + ":confirmed", "b2~" + tagB + ":terminated"}},
		{"full without the call", asB(doc(2, "full", "b3:trying:1")),
			[]string{"a1~" + tagA + ":confirmed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			fx.register(phoneA, phoneB)
			if c := fx.send(t, phoneA, "a", doc(1, "full", "a1:confirmed:1")); c != 200 {
				t.Fatalf("A's call on 1 answered %d", c)
			}
			if c := fx.send(t, phoneB, "b", asB(doc(1, "full", "b2:confirmed:2"))); c != 200 {
				t.Fatalf("B's call on 2 answered %d", c)
			}
			if c := fx.send(t, phoneB, "b", tc.body); c != 409 {
				t.Fatalf("B's seize of 1 with its hang-up of 2 answered %d, want 409", c)
			}
			if _, ds := fx.line(t); !reflect.DeepEqual(ds, tc.want) {
				t.Fatalf("line after the refused seize: %v, want %v", ds, tc.want)
			}
			if got, want := seized(fx.m), []string{"1:" + phoneA}; !reflect.DeepEqual(got, want) {
				t.Fatalf("seized %v, want %v", got, want)
			}
			// B's next document is no gap after the refused one.
			if c := fx.send(t, phoneB, "b", asB(doc(3, "partial", "b4:trying:2"))); c != 200 {
				t.Fatalf("B's seize of the freed 2 answered %d", c)
			}
			if _, ds := fx.line(t); !reflect.DeepEqual(ds, []string{"b4~" + tagB + ":trying", "a1~" + tagA + ":confirmed"}) {
				t.Fatalf("line after B's next seize: %v", ds)
			}
		})
	}
}
