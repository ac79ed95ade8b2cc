package bla

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/puaside/puaside/clock/clocktest"
	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/internal/puatest"
	"github.com/puaside/puaside/internal/puatest/recorder"
	"github.com/puaside/puaside/metrics"
	"github.com/puaside/puaside/pua"
	"gopkg.in/yaml.v3"
)

// versionRE matches the version attribute of a dialog-info root.
var versionRE = regexp.MustCompile(`(<dialog-info[^>]*\s)version="\d+"`)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// fakeEngine is the kit's recording engine: it records the calls and keeps
// the current publications and subscriptions.
type fakeEngine = recorder.Recorder

func newFakeEngine() *fakeEngine { return recorder.New() }

type fixture struct {
	m     *Manager
	eng   *fakeEngine
	met   *metrics.Metrics
	clock *clocktest.Fake
	store *memStore
	// versions numbers each phone's documents sent by notify (the testdata
	// files are reused in any order; the manager ignores old versions).
	versions map[string]int
}

const (
	phoneA  = "sip:100@10.0.0.1:5100"
	phoneB  = "sip:100@10.0.0.2:5100"
	lineAoR = "sip:100@example.com"
)

func newFixture(t testing.TB, mod func(*Config)) *fixture {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DefaultDomain = "example.com"
	cfg.Lines = []LineConfig{{AoR: "100"}}
	if mod != nil {
		mod(&cfg)
	}
	fx := &fixture{eng: newFakeEngine(), met: metrics.New(), clock: clocktest.New(time.Unix(1_800_000_000, 0)), store: newMemStore(),
		versions: map[string]int{}}
	m, err := New(cfg, Options{Subscriber: fx.eng, Publisher: fx.eng, Store: fx.store, Metrics: fx.met,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)), Clock: fx.clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	fx.m = m
	return fx
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// register reports the line's contacts (each for 120 s).
func (fx *fixture) register(contacts ...string) {
	cs := make([]Contact, len(contacts))
	for i, c := range contacts {
		cs[i] = Contact{URI: "<" + c + ">", Expires: fx.clock.Now().Add(120 * time.Second)}
	}
	fx.m.ContactsChanged(context.Background(), lineAoR, cs)
}

// notify sends a phone's NOTIFY with a testdata body, numbered as the
// phone's next document.
func (fx *fixture) notify(t testing.TB, contact, state string, expires int, file string) (int, string) {
	t.Helper()
	var body []byte
	if file != "" {
		fx.versions[contact]++
		body = versionRE.ReplaceAll(readTestdata(t, file), []byte(fmt.Sprintf(`${1}version="%d"`, fx.versions[contact])))
	}
	return fx.m.HandleNotify(context.Background(), fx.notifyMsg(contact, state, expires, body))
}

func (fx *fixture) notifyMsg(contact, state string, expires int, body []byte) pua.Notify {
	return pua.Notify{
		Key:         pua.SubKey{PresURI: lineAoR, WatcherURI: lineAoR, Event: EventSLA, ID: ContactID(contact)},
		State:       state,
		Expires:     expires,
		ContentType: ContentType,
		Body:        body,
		Contact:     "<" + contact + ">",
		From:        lineAoR, To: lineAoR,
		Headers: func(name string) string {
			if strings.EqualFold(name, "Call-ID") {
				return "call-" + contact
			}
			return ""
		},
	}
}

// count returns the bla tracker counter for what.
func (fx *fixture) count(t testing.TB, what string) float64 {
	t.Helper()
	return puatest.TrackerEvents(t, fx.met, "bla", what)
}

func TestContactsChanged(t *testing.T) {
	fx := newFixture(t, nil)
	idA, idB := ContactID(phoneA), ContactID(phoneB)

	// Two phones register: two subscriptions.
	fx.register(phoneA, phoneB)
	if got, want := fx.eng.TakeCalls(), []string{"subscribe " + phoneA, "subscribe " + phoneB}; !sameSet(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
	wantA := pua.SubscribeRequest{
		SubKey:  pua.SubKey{PresURI: lineAoR, WatcherURI: lineAoR, Event: EventSLA, ID: idA},
		Target:  phoneA,
		Expires: 120 * time.Second, // capped by the contact's lifetime
		Flag:    pua.FlagBLASubscribe,
	}
	if got := fx.eng.Subscriptions()[wantA.SubKey]; !reflect.DeepEqual(got, wantA) {
		t.Errorf("subscribe A = %+v\nwant %+v", got, wantA)
	}

	// Re-registration of the same contacts: nothing (idempotent).
	fx.clock.Advance(60 * time.Second)
	fx.register(phoneA, phoneB)
	if got := fx.eng.TakeCalls(); len(got) != 0 {
		t.Fatalf("re-register: calls %v, want none", got)
	}

	// Phone A publishes, then its contact goes: unsubscribe and remove.
	if code, _ := fx.notify(t, phoneA, "active", 3600, "notify/a_confirmed_1.xml"); code != 200 {
		t.Fatalf("notify A = %d", code)
	}
	fx.eng.TakeCalls()
	fx.register(phoneB)
	if got, want := fx.eng.TakeCalls(), []string{"unsubscribe " + idA, "remove " + LinePublicationID}; !reflect.DeepEqual(got, want) {
		t.Fatalf("contact gone: calls %v, want %v", got, want)
	}

	// Other AoRs are ignored; unknown syntax too.
	fx.m.ContactsChanged(context.Background(), "sip:200@example.com", []Contact{{URI: "sip:200@10.0.0.9"}})
	fx.m.ContactsChanged(context.Background(), "", nil)
	if got := fx.eng.TakeCalls(); len(got) != 0 {
		t.Fatalf("other aor: calls %v", got)
	}

	// usrloc reports an expired contact by leaving it out of the set;
	// "100" normalises to the line.
	fx.m.ContactsChanged(context.Background(), "100", nil)
	if got, want := fx.eng.TakeCalls(), []string{"unsubscribe " + idB}; !reflect.DeepEqual(got, want) {
		t.Fatalf("expired: calls %v, want %v", got, want)
	}
	if fx.count(t, "subscribe") != 2 || fx.count(t, "unsubscribe") != 2 {
		t.Errorf("subscribe/unsubscribe counts %v/%v", fx.count(t, "subscribe"), fx.count(t, "unsubscribe"))
	}
}

// TestSubscribeSIPSContactReceived: the received address of a sips:
// contact becomes a sips: next hop, so the SUBSCRIBE goes over TLS.
func TestSubscribeSIPSContactReceived(t *testing.T) {
	const phone = "sips:polycom@192.0.2.9:5061"
	fx := newFixture(t, nil)
	fx.m.ContactsChanged(context.Background(), lineAoR, []Contact{{URI: phone, Received: "192.0.2.9:40001"}})
	r, ok := fx.eng.Subscriptions()[pua.SubKey{PresURI: lineAoR, WatcherURI: lineAoR, Event: EventSLA, ID: ContactID(phone)}]
	if !ok {
		t.Fatal("no subscription to the sips: contact")
	}
	if r.Target != phone || r.OutboundProxy != "sips:192.0.2.9:40001" {
		t.Fatalf("target %q via %q, want %q via sips:192.0.2.9:40001", r.Target, r.OutboundProxy, phone)
	}
}

func TestSubscribeOptions(t *testing.T) {
	for _, tc := range []struct {
		name      string
		mod       func(*Config)
		contact   Contact
		wantProxy string
		wantExp   time.Duration
		wantCtc   string
	}{
		{"received", nil, Contact{URI: phoneA, Received: "192.0.2.7:40000"}, "sip:192.0.2.7:40000", 3600 * time.Second, ""},
		{"received uri", nil, Contact{URI: phoneA, Received: "sip:192.0.2.7:40000;transport=tcp"},
			"sip:192.0.2.7:40000;transport=tcp", 3600 * time.Second, ""},
		{"outbound proxy wins", func(c *Config) { c.OutboundProxy = "sip:proxy.example.com" },
			Contact{URI: phoneA, Received: "192.0.2.7:40000"}, "sip:proxy.example.com", 3600 * time.Second, ""},
		{"short registration", func(c *Config) { c.SubscribeExpires = 300 * time.Second },
			Contact{URI: phoneA, Expires: time.Unix(1_800_000_000, 0).Add(90500 * time.Millisecond)}, "", 91 * time.Second, ""},
		{"long registration", func(c *Config) { c.SubscribeExpires = 300 * time.Second },
			Contact{URI: phoneA, Expires: time.Unix(1_800_000_000, 0).Add(time.Hour)}, "", 300 * time.Second, ""},
		{"server address", func(c *Config) { c.ServerAddress = "sip:bla@192.0.2.1:5080" },
			Contact{URI: phoneA}, "", 3600 * time.Second, "sip:bla@192.0.2.1:5080"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, tc.mod)
			fx.m.ContactsChanged(context.Background(), lineAoR, []Contact{tc.contact})
			r, ok := fx.eng.Subscriptions()[pua.SubKey{PresURI: lineAoR, WatcherURI: lineAoR, Event: EventSLA, ID: ContactID(phoneA)}]
			if !ok {
				t.Fatal("no subscription")
			}
			if r.OutboundProxy != tc.wantProxy || r.Expires != tc.wantExp || r.Contact != tc.wantCtc || len(r.ExtraHeaders) != 0 {
				t.Errorf("got proxy %q expires %v contact %q headers %v; want %q %v %q", r.OutboundProxy, r.Expires, r.Contact,
					r.ExtraHeaders, tc.wantProxy, tc.wantExp, tc.wantCtc)
			}
		})
	}
}

func TestReceivedChangeResubscribes(t *testing.T) {
	fx := newFixture(t, nil)
	fx.m.ContactsChanged(context.Background(), lineAoR, []Contact{{URI: phoneA, Received: "192.0.2.7:1000"}})
	fx.m.ContactsChanged(context.Background(), lineAoR, []Contact{{URI: phoneA, Received: "192.0.2.7:2000"}})
	if got := fx.eng.TakeCalls(); len(got) != 2 {
		t.Fatalf("calls %v, want two subscribes", got)
	}
}

func TestMembers(t *testing.T) {
	fx := newFixture(t, func(c *Config) {
		c.Lines = []LineConfig{{AoR: "sip:100@example.com", Members: []string{"sip:100@10.0.0.1", "100@10.0.0.3:5100"}}}
	})
	fx.register(phoneA, phoneB, "sip:100@10.0.0.3:5100;transport=udp", "sip:100@10.0.0.3:5200")
	want := []string{"subscribe " + phoneA, "subscribe sip:100@10.0.0.3:5100;transport=udp"}
	if got := fx.eng.TakeCalls(); !sameSet(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
}

func TestSubscribeFailureRetriedOnNextChange(t *testing.T) {
	fx := newFixture(t, nil)
	fx.eng.FailSubscribe(errors.New("fake: refused"))
	fx.register(phoneA)
	if fx.count(t, "subscribe_error") != 1 {
		t.Fatal("subscribe error not counted")
	}
	fx.eng.FailSubscribe(nil)
	fx.register(phoneA)
	if got := fx.eng.TakeCalls(); !reflect.DeepEqual(got, []string{"subscribe " + phoneA}) {
		t.Fatalf("calls %v", got)
	}
}

// goldenPublish compares a PublishRequest with testdata/golden/NAME.json.
func goldenPublish(t *testing.T, name string, r pua.PublishRequest) {
	t.Helper()
	type golden struct {
		Key          pua.Key
		Body         string
		ContentType  string
		Expires      string
		Lifetime     string
		ExtraHeaders []pua.Header
		Flag         int
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(golden{r.Key, string(r.Body), r.ContentType, r.Expires.String(),
		r.Lifetime.String(), r.ExtraHeaders, r.Flag}); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("PUBLISH request differs from %s:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestRelayWire(t *testing.T) {
	// The NOTIFY of the Kamailio pua_bla capture, a partial document:
	// relayed as the phone's full state (pua_bla relays it as it is),
	// no Sender header by default (see Config.HeaderName).
	fx := newFixture(t, func(c *Config) { c.Lines = []LineConfig{{AoR: lineAoR}} })
	fx.register(phoneA)
	code, reason := fx.notify(t, phoneA, "active", 3600, "notify/wire_trying.xml")
	if code != 200 || reason != "OK" {
		t.Fatalf("reply %d %s", code, reason)
	}
	r := fx.eng.Live()[pua.Key{PresURI: lineAoR, Event: EventSLA, ID: LinePublicationID}]
	if r.Flag != pua.FlagBLAPublish || r.Expires != 3600*time.Second ||
		len(r.ExtraHeaders) != 0 {
		t.Errorf("publish = %+v", r)
	}
	// The line's document: the dialog as the phone wrote it, its id
	// qualified by the phone, in a full document of the line.
	doc, err := dialogdoc.Parse(r.Body, 0)
	if err != nil || doc.State != dialogdoc.DocFull || doc.Entity != lineAoR || len(doc.Dialogs) != 1 ||
		doc.Dialogs[0].ID != qualifyID(ContactID(phoneA), "d1") || doc.Dialogs[0].LineID != "0" {
		t.Errorf("composed document %+v, %v:\n%s", doc, err, r.Body)
	}
	goldenPublish(t, "relay_wire_trying", r)
	if fx.count(t, "relayed") != 1 {
		t.Errorf("relayed = %v", fx.count(t, "relayed"))
	}
}

func TestRelayGolden(t *testing.T) {
	for _, tc := range []struct {
		golden  string
		file    string
		expires int
		mod     func(*Config)
	}{
		{"relay_a_confirmed_1", "notify/a_confirmed_1.xml", 1800, nil},
		{"relay_full_two", "notify/a_full_two.xml", 3600, nil},
		{"relay_sipxsaa", "notify/sipxsaa_confirmed_0.xml", 600, nil},
		{"relay_missing_expires", "notify/a_trying_1.xml", -1, func(c *Config) { c.SubscribeExpires = 900 * time.Second }},
		{"relay_dialog_ma", "notify/ma_trying_1.xml", 300, func(c *Config) { c.Event = EventMA; c.HeaderName = "X-BLA-Sender" }},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			fx := newFixture(t, tc.mod)
			fx.register(phoneA)
			n := fx.notifyMsg(phoneA, "active", tc.expires, readTestdata(t, tc.file))
			n.Key.Event = fx.m.cfg.Event
			if code, reason := fx.m.HandleNotify(context.Background(), n); code != 200 {
				t.Fatalf("reply %d %s", code, reason)
			}
			goldenPublish(t, tc.golden, fx.eng.Last())
		})
	}
}

func TestArbitration(t *testing.T) {
	steps := []struct {
		name     string
		phone    string
		state    string
		file     string
		wantCode int
		wantPub  bool // a publish or remove call is expected
		seized   []string
	}{
		{"A seizes 1", phoneA, "active", "notify/a_trying_1.xml", 200, true, []string{"1:" + phoneA}},
		{"B seizes 1 while A holds it", phoneB, "active", "notify/b_trying_1.xml", 409, false, []string{"1:" + phoneA}},
		{"B seizes 2", phoneB, "active", "notify/b_trying_2.xml", 200, true, []string{"1:" + phoneA, "2:" + phoneB}},
		{"A connects on 1", phoneA, "active", "notify/a_confirmed_1.xml", 200, true, []string{"1:" + phoneA, "2:" + phoneB}},
		{"B seizes 1 again", phoneB, "active", "notify/b_trying_1.xml", 409, false, []string{"1:" + phoneA, "2:" + phoneB}},
		{"A hangs up 1", phoneA, "active", "notify/a_terminated_1.xml", 200, true, []string{"2:" + phoneB}},
		{"B seizes freed 1", phoneB, "active", "notify/b_trying_1.xml", 200, true, []string{"1:" + phoneB, "2:" + phoneB}},
		{"A re-seizes 1", phoneA, "active", "notify/a_trying_1.xml", 409, false, []string{"1:" + phoneB, "2:" + phoneB}},
		{"B's subscription ends", phoneB, "terminated", "", 200, true, nil},
		{"A seizes 1 after B left", phoneA, "active", "notify/a_trying_1.xml", 200, true, []string{"1:" + phoneA}},
	}
	fx := newFixture(t, nil)
	fx.register(phoneA, phoneB)
	fx.eng.TakeCalls()
	conflicts := 0
	for _, st := range steps {
		before := fmt.Sprint(fx.eng.Live())
		code, reason := fx.notify(t, st.phone, st.state, 3600, st.file)
		if code != st.wantCode {
			t.Fatalf("%s: reply %d %s, want %d", st.name, code, reason, st.wantCode)
		}
		var calls []string
		for _, c := range fx.eng.TakeCalls() {
			if !strings.HasPrefix(c, "subscribe ") { // a terminated phone is subscribed again
				calls = append(calls, c)
			}
		}
		if st.wantPub != (len(calls) == 1) {
			t.Fatalf("%s: engine calls %v", st.name, calls)
		}
		if code == 409 {
			conflicts++
			if reason != "Conflict" || fmt.Sprint(fx.eng.Live()) != before {
				t.Fatalf("%s: refused seize changed publications or reason %q", st.name, reason)
			}
		}
		if got := seized(fx.m); !reflect.DeepEqual(got, st.seized) {
			t.Fatalf("%s: seized %v, want %v", st.name, got, st.seized)
		}
	}
	if got := fx.count(t, "seize_conflict"); got != float64(conflicts) {
		t.Errorf("seize_conflict = %v, want %d", got, conflicts)
	}
}

func TestArbitrationOff(t *testing.T) {
	fx := newFixture(t, func(c *Config) { c.Arbitration = false })
	fx.register(phoneA, phoneB)
	fx.notify(t, phoneA, "active", 3600, "notify/a_trying_1.xml")
	if code, _ := fx.notify(t, phoneB, "active", 3600, "notify/b_trying_1.xml"); code != 200 {
		t.Fatalf("reply %d with arbitration off", code)
	}
}

func TestPartialAndFullMerge(t *testing.T) {
	fx := newFixture(t, nil)
	fx.register(phoneA, phoneB)
	// A full document with dialogs on 1 (held) and 3; then a partial one
	// adding nothing on those indexes keeps them.
	fx.notify(t, phoneA, "active", 3600, "notify/a_full_two.xml")
	if got, want := seized(fx.m), []string{"1:" + phoneA, "3:" + phoneA}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after full: %v", got)
	}
	// B's dialog;ma-style seize of index 1 (appearance element) conflicts.
	n := fx.notifyMsg(phoneB, "active", 3600, readTestdata(t, "notify/ma_trying_1.xml"))
	if code, _ := fx.m.HandleNotify(context.Background(), n); code != 409 {
		t.Fatalf("appearance seize: %d", code)
	}
	// A partial update for another dialog keeps the others.
	fx.notify(t, phoneA, "active", 3600, "notify/sipxsaa_confirmed_0.xml")
	if got, want := seized(fx.m), []string{"0:" + phoneA, "1:" + phoneA, "3:" + phoneA}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after partial: %v", got)
	}
	// An empty full document clears everything.
	fx.notify(t, phoneA, "active", 3600, "notify/a_full_empty.xml")
	if got := seized(fx.m); got != nil {
		t.Fatalf("after empty full: %v", got)
	}
	if code, _ := fx.m.HandleNotify(context.Background(), n); code != 200 {
		t.Fatalf("appearance seize after clear: %d", code)
	}
}

func TestTerminatedSubscription(t *testing.T) {
	fx := newFixture(t, nil)
	fx.register(phoneA)
	fx.notify(t, phoneA, "active", 3600, "notify/wire_trying.xml")
	fx.eng.TakeCalls()
	n := fx.notifyMsg(phoneA, "terminated", -1, readTestdata(t, "notify/wire_terminated.xml"))
	n.Reason = "timeout"
	if code, _ := fx.m.HandleNotify(context.Background(), n); code != 200 {
		t.Fatalf("reply %d", code)
	}
	// The publication goes; the phone, still registered, is subscribed
	// again (the engine dropped the terminated subscription).
	if got, want := fx.eng.TakeCalls(), []string{"remove " + LinePublicationID, "subscribe " + phoneA}; !reflect.DeepEqual(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
	// A second terminated NOTIFY removes nothing more; so soon after the
	// first one, the phone is subscribed again after resubscribe_delay,
	// not at once: a phone ending every subscription is not looped on.
	fx.m.HandleNotify(context.Background(), n)
	if got := fx.eng.TakeCalls(); len(got) != 0 {
		t.Fatalf("calls %v at once after a second termination", got)
	}
	if got := fx.resubscribeDelays(); !reflect.DeepEqual(got, []time.Duration{30 * time.Second}) {
		t.Fatalf("resubscribe armed for %v", got)
	}
	fx.clock.Advance(30 * time.Second)
	if got, want := fx.eng.TakeCalls(), []string{"subscribe " + phoneA}; !reflect.DeepEqual(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
	// Terminated again, well after the last termination: at once.
	fx.clock.Advance(time.Minute)
	fx.m.HandleNotify(context.Background(), n)
	if got, want := fx.eng.TakeCalls(), []string{"subscribe " + phoneA}; !reflect.DeepEqual(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
	// rejected (RFC 6665): no new subscription.
	n.Reason = "rejected"
	fx.m.HandleNotify(context.Background(), n)
	if got := fx.eng.TakeCalls(); len(got) != 0 {
		t.Fatalf("after rejected: calls %v", got)
	}
}

func TestBadNotify(t *testing.T) {
	huge := bytes.Repeat([]byte("x"), 1<<20)
	for _, tc := range []struct {
		name   string
		edit   func(*pua.Notify)
		code   int
		reason string
		what   string
	}{
		{"empty body", func(n *pua.Notify) { n.Body = nil }, 400, "Empty dialog-info body", "rejected_empty_body"},
		{"non-XML", func(n *pua.Notify) { n.Body = []byte("hello, world") }, 400, "Malformed dialog-info body", "rejected_malformed"},
		{"billion laughs", func(n *pua.Notify) { n.Body = readTestdata(t, "../../dialogdoc/testdata/bad/billion_laughs.xml") }, 400, "Malformed dialog-info body", "rejected_doctype"},
		{"external entity", func(n *pua.Notify) { n.Body = readTestdata(t, "../../dialogdoc/testdata/bad/external_entity.xml") }, 400, "Malformed dialog-info body", "rejected_doctype"},
		{"megabyte", func(n *pua.Notify) { n.Body = huge }, 413, "Request Entity Too Large", "rejected_too_large"},
		{"content type", func(n *pua.Notify) { n.ContentType = "application/pidf+xml" }, 415, "Unsupported Media Type", "rejected_content_type"},
		{"no content type", func(n *pua.Notify) { n.ContentType = "" }, 415, "Unsupported Media Type", "rejected_content_type"},
		{"bad state", func(n *pua.Notify) { n.State = "" }, 400, "Bad Subscription-State", "rejected_bad_state"},
		{"no contact", func(n *pua.Notify) { n.Contact = ""; n.Key.ID = "unknown-phone" }, 400, "Missing Contact", "rejected_no_contact"},
		{"unknown line", func(n *pua.Notify) { n.Key.PresURI = "sip:999@example.com" }, 481, "Subscription Does Not Exist", "rejected_unknown_line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			fx.register(phoneA)
			if code, _ := fx.notify(t, phoneA, "active", 3600, "notify/a_confirmed_1.xml"); code != 200 {
				t.Fatal(code)
			}
			fx.eng.TakeCalls()
			before := fmt.Sprint(fx.eng.Live())
			seizedBefore := seized(fx.m)
			n := fx.notifyMsg(phoneA, "active", 3600, readTestdata(t, "notify/a_terminated_1.xml"))
			tc.edit(&n)
			code, reason := fx.m.HandleNotify(context.Background(), n)
			if code != tc.code || reason != tc.reason {
				t.Fatalf("reply %d %q, want %d %q", code, reason, tc.code, tc.reason)
			}
			if calls := fx.eng.TakeCalls(); len(calls) != 0 || fmt.Sprint(fx.eng.Live()) != before {
				t.Fatalf("publication changed: %v", calls)
			}
			if !reflect.DeepEqual(seized(fx.m), seizedBefore) {
				t.Fatalf("dialog state changed")
			}
			if fx.count(t, tc.what) != 1 {
				t.Errorf("%s not counted", tc.what)
			}
		})
	}
}

func TestMissingExpiresTolerated(t *testing.T) {
	fx := newFixture(t, func(c *Config) { c.SubscribeExpires = 1200 * time.Second })
	fx.register(phoneA)
	if code, _ := fx.notify(t, phoneA, "active", -1, "notify/a_trying_1.xml"); code != 200 {
		t.Fatal(code)
	}
	if fx.eng.Last().Expires != 1200*time.Second || fx.count(t, "missing_expires") != 1 {
		t.Errorf("expires %v, counted %v", fx.eng.Last().Expires, fx.count(t, "missing_expires"))
	}
}

func TestPendingWithoutBody(t *testing.T) {
	fx := newFixture(t, nil)
	fx.register(phoneA)
	fx.eng.TakeCalls()
	if code, _ := fx.notify(t, phoneA, "pending", 3600, ""); code != 200 {
		t.Fatal(code)
	}
	if calls := fx.eng.TakeCalls(); len(calls) != 0 {
		t.Fatalf("calls %v", calls)
	}
}

func TestLinesAPI(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t, nil)
	if err := fx.m.AddLine(ctx, "sip:200@example.com", []string{"sip:200@10.0.0.5"}); err != nil {
		t.Fatal(err)
	}
	if err := fx.m.AddLine(ctx, "100", nil); !errors.Is(err, ErrStaticLine) {
		t.Errorf("add static: %v", err)
	}
	if err := fx.m.RemoveLine(ctx, "100"); !errors.Is(err, ErrStaticLine) {
		t.Errorf("remove static: %v", err)
	}
	if err := fx.m.RemoveLine(ctx, "300"); !errors.Is(err, ErrUnknownLine) {
		t.Errorf("remove unknown: %v", err)
	}
	if err := fx.m.AddLine(ctx, "tel:+123", nil); err == nil {
		t.Error("tel URI accepted")
	}
	fx.m.ContactsChanged(ctx, "sip:200@example.com", []Contact{{URI: "sip:200@10.0.0.5"}, {URI: "sip:200@10.0.0.6"}})
	if got := fx.eng.TakeCalls(); !reflect.DeepEqual(got, []string{"subscribe sip:200@10.0.0.5"}) {
		t.Fatalf("calls %v", got)
	}
	// Changing the members re-evaluates the known contacts at once.
	if err := fx.m.AddLine(ctx, "sip:200@example.com", []string{"sip:200@10.0.0.6"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"unsubscribe " + ContactID("sip:200@10.0.0.5"), "subscribe sip:200@10.0.0.6"}
	if got := fx.eng.TakeCalls(); !reflect.DeepEqual(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
	fx.register(phoneA)
	fx.notify(t, phoneA, "active", 3600, "notify/a_trying_1.xml")

	got := fx.m.Lines()
	if len(got) != 2 || got[0].AoR != lineAoR || got[0].Source != SourceConfig || got[1].Source != SourceDB {
		t.Fatalf("lines %+v", got)
	}
	if p := got[0].Phones; len(p) != 1 || p[0].Contact != phoneA || !p[0].Published || !p[0].Subscribed || p[0].Dialogs != 1 {
		t.Errorf("phones %+v", p)
	}
	if s := got[0].Seized; len(s) != 1 || s[0] != (SeizedIndex{Index: "1", PhoneID: ContactID(phoneA), Contact: phoneA, DialogID: "a1", State: "trying"}) {
		t.Errorf("seized %+v", s)
	}
	if !reflect.DeepEqual(got[1].Members, []string{"sip:200@10.0.0.6"}) || len(got[1].Phones) != 1 {
		t.Errorf("line 200: %+v", got[1])
	}

	// A restarted manager loads the stored line.
	m2, err := New(fx.m.cfg, Options{Subscriber: fx.eng, Publisher: fx.eng, Store: fx.store})
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if l := m2.Lines(); len(l) != 2 || l[1].AoR != "sip:200@example.com" {
		t.Fatalf("reloaded %+v", l)
	}

	fx.eng.TakeCalls()
	if err := fx.m.RemoveLine(ctx, "sip:200@example.com"); err != nil {
		t.Fatal(err)
	}
	if got := fx.eng.TakeCalls(); !reflect.DeepEqual(got, []string{"unsubscribe " + ContactID("sip:200@10.0.0.6")}) {
		t.Fatalf("calls %v", got)
	}
	if _, ok := fx.store.lines.Get("sip:200@example.com"); ok || len(fx.m.Lines()) != 1 {
		t.Fatal("line not removed")
	}
}

func TestRestoreSubscriptions(t *testing.T) {
	fx := newFixture(t, nil)
	idA := ContactID(phoneA)
	fx.m.RestoreSubscriptions([]pua.SubscriptionInfo{
		{Key: pua.SubKey{PresURI: lineAoR, WatcherURI: lineAoR, Event: EventSLA, ID: idA}, Flag: pua.FlagBLASubscribe, Target: phoneA},
		{Key: pua.SubKey{PresURI: "sip:gone@example.com", WatcherURI: "sip:gone@example.com", Event: EventSLA, ID: "x"}, Flag: pua.FlagBLASubscribe},
		{Key: pua.SubKey{PresURI: lineAoR, Event: "presence", ID: "y"}, Flag: pua.FlagRPCSubscribe},
	})
	if got, want := fx.eng.TakeCalls(), []string{"unsubscribe x", "remove x", "remove " + LinePublicationID}; !reflect.DeepEqual(got, want) {
		t.Fatalf("restore calls %v, want %v", got, want)
	}
	// The restored phone is kept while registered, and dropped when its
	// contact is gone.
	fx.register(phoneA)
	if got := fx.eng.TakeCalls(); len(got) != 0 {
		t.Fatalf("calls %v", got)
	}
	fx.register(phoneB)
	// The line's publication from before the restart goes with its last
	// phone, though this run never published it.
	if got := fx.eng.TakeCalls(); !sameSet(got, []string{"unsubscribe " + idA, "remove " + LinePublicationID, "subscribe " + phoneB}) {
		t.Fatalf("calls %v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"default", func(*Config) {}, true},
		{"dialog;ma", func(c *Config) { c.Event = EventMA }, true},
		{"bad event", func(c *Config) { c.Event = "presence" }, false},
		{"no header", func(c *Config) { c.HeaderName = "" }, true},
		{"header with colon", func(c *Config) { c.HeaderName = "Sender:" }, false},
		{"zero expires", func(c *Config) { c.SubscribeExpires = 0 }, false},
		{"bad proxy", func(c *Config) { c.OutboundProxy = "10.0.0.1" }, false},
		{"bad server address", func(c *Config) { c.ServerAddress = "http://x" }, false},
		{"lineAoR without domain", func(c *Config) { c.Lines = []LineConfig{{AoR: "100"}} }, false},
		{"lineAoR with default domain", func(c *Config) { c.DefaultDomain = "example.com"; c.Lines = []LineConfig{{AoR: "100"}} }, true},
		{"duplicate lineAoR", func(c *Config) {
			c.Lines = []LineConfig{{AoR: "sip:100@example.com"}, {AoR: "<sip:100@EXAMPLE.com>"}}
		}, false},
		{"bad member", func(c *Config) {
			c.Lines = []LineConfig{{AoR: "sip:100@example.com", Members: []string{"tel:123"}}}
		}, false},
		{"tiny body cap", func(c *Config) { c.MaxBodySize = 10 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestLineKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"100", "sip:100@example.com"},
		{"100@Example.COM", "sip:100@example.com"},
		{`"Line" <sip:100@example.com;transport=tcp>;expires=5`, "sip:100@example.com"},
		{"sips:100@example.com", "sip:100@example.com"},
		{"SIP:100@10.0.0.1:5100", "sip:100@10.0.0.1"},
		{"tel:+1", ""},
		{"", ""},
		{"@example.com", ""},
	} {
		got, err := lineKey(tc.in, "example.com")
		if got != tc.want || (err != nil) != (tc.want == "") || (err != nil && !errors.Is(err, ErrBadAoR)) {
			t.Errorf("lineKey(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestLineSpellingsSubscribe: however the operator spells a line's AoR, the
// AoR usrloc reports for its registrations (sip:100@example.com) finds the
// line and its phone gets a subscription.
func TestLineSpellingsSubscribe(t *testing.T) {
	for _, spelling := range []string{
		"sip:100@example.com", "sip:100@example.com:5060", "sips:100@example.com",
		"sip:100@EXAMPLE.COM", "sip:100@example.com;transport=tcp",
	} {
		t.Run(spelling, func(t *testing.T) {
			fx := newFixture(t, func(c *Config) { c.Lines = []LineConfig{{AoR: spelling}} })
			fx.m.ContactsChanged(context.Background(), lineAoR, []Contact{{URI: phoneA}})
			subs := 0
			for _, c := range fx.eng.TakeCalls() {
				if strings.HasPrefix(c, "subscribe ") {
					subs++
				}
			}
			if subs != 1 {
				t.Errorf("line %q: %d subscriptions, want 1", spelling, subs)
			}
			if got := fx.m.Lines(); len(got) != 1 || got[0].AoR != lineAoR {
				t.Errorf("line %q listed as %+v, want %s", spelling, got, lineAoR)
			}
		})
	}
}

func TestContactIDStable(t *testing.T) {
	if ContactID(phoneA) != ContactID("<"+phoneA+">") || ContactID(phoneA) == ContactID(phoneB) {
		t.Error("contact id not stable or not distinct")
	}
	if got := ContactID(phoneA); got != "bla-"+got[4:] || len(got) != 20 {
		t.Errorf("id %q", got)
	}
}

// seized lists the line's seized indexes as "index:contact".
func seized(m *Manager) []string {
	var out []string
	for _, l := range m.Lines() {
		if l.AoR != lineAoR {
			continue
		}
		for _, s := range l.Seized {
			out = append(out, s.Index+":"+s.Contact)
		}
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = append([]string{}, a...), append([]string{}, b...)
	sort.Strings(a)
	sort.Strings(b)
	return reflect.DeepEqual(a, b)
}

// memStore is an in-memory LineStore.
type memStore struct {
	lines *puatest.Table[string, []string]
}

func newMemStore() *memStore { return &memStore{lines: puatest.NewTable[string, []string]()} }

func (s *memStore) LoadSharedLines(context.Context) (map[string][]string, error) {
	out := s.lines.Rows()
	for k, v := range out {
		out[k] = append([]string{}, v...)
	}
	return out, nil
}

func (s *memStore) SaveSharedLine(_ context.Context, aor string, members []string) error {
	return s.lines.Write(func(rows map[string][]string) { rows[aor] = append([]string{}, members...) })
}

func (s *memStore) DeleteSharedLine(_ context.Context, aor string) (bool, error) {
	var ok bool
	err := s.lines.Write(func(rows map[string][]string) {
		_, ok = rows[aor]
		delete(rows, aor)
	})
	return ok, err
}

func BenchmarkHandleNotify(b *testing.B) {
	fx := newFixture(b, nil)
	fx.m.log = slog.New(slog.DiscardHandler)
	fx.register(phoneA)
	// Each NOTIFY is the phone's next partial document (an old version
	// would be ignored).
	head, tail, _ := bytes.Cut(readTestdata(b, "notify/a_confirmed_1.xml"), []byte(`version="4"`))
	n := fx.notifyMsg(phoneA, "active", 3600, nil)
	pub := recorder.Nop{}
	fx.m.pub = pub
	ctx := context.Background()
	var version uint64
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		version++
		n.Body = append(strconv.AppendUint(append(append(n.Body[:0], head...), `version="`...), version, 10), '"')
		n.Body = append(n.Body, tail...)
		if code, _ := fx.m.HandleNotify(ctx, n); code != 200 {
			b.Fatal(code)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "relays/s")
}

func TestConfigYAML(t *testing.T) {
	src := []byte(`
default_domain: example.com
header_name: Sender
outbound_proxy: sip:10.0.0.254:5060
lines:
  - aor: "100"
    members: ["sip:100@10.0.0.1", "sip:100@10.0.0.2:5100"]
arbitration: false
seize_timeout: 45s
subscribe_expires: 30m
event: dialog;sla
`)
	cfg := DefaultConfig()
	if err := yaml.Unmarshal(src, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	want := Config{DefaultDomain: "example.com", HeaderName: "Sender", OutboundProxy: "sip:10.0.0.254:5060",
		Lines:       []LineConfig{{AoR: "100", Members: []string{"sip:100@10.0.0.1", "sip:100@10.0.0.2:5100"}}},
		Arbitration: false, SeizeTimeout: 45 * time.Second, SubscribeExpires: 30 * time.Minute, Event: EventSLA,
		MaxBodySize: DefaultMaxBodySize, ResubscribeDelay: 30 * time.Second}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v\nwant %+v", cfg, want)
	}
}

func TestConcurrentUse(t *testing.T) {
	fx := newFixture(t, nil)
	fx.register(phoneA, phoneB)
	bodyA := readTestdata(t, "notify/a_confirmed_1.xml")
	bodyB := readTestdata(t, "notify/b_trying_2.xml")
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				switch (g + i) % 4 {
				case 0:
					fx.m.HandleNotify(context.Background(), fx.notifyMsg(phoneA, "active", 3600, bodyA))
				case 1:
					fx.m.HandleNotify(context.Background(), fx.notifyMsg(phoneB, "active", 3600, bodyB))
				case 2:
					fx.m.ContactsChanged(context.Background(), lineAoR, []Contact{{URI: phoneA}, {URI: phoneB}})
				default:
					_ = fx.m.Lines()
				}
			}
		}()
	}
	wg.Wait()
	if got := len(fx.m.Lines()[0].Phones); got != 2 {
		t.Fatalf("phones %d", got)
	}
}

// TestStaleSeizeExpires: a seize that never dials through stops blocking the
// line index after seize_timeout; a confirmed call keeps blocking it.
func TestStaleSeizeExpires(t *testing.T) {
	fx := newFixture(t, func(c *Config) { c.SeizeTimeout = time.Minute })
	fx.register(phoneA, phoneB)
	if code, _ := fx.notify(t, phoneA, "active", 3600, "notify/a_trying_1.xml"); code != 200 {
		t.Fatalf("A seizes: %d", code)
	}
	fx.clock.Advance(59 * time.Second)
	if code, _ := fx.notify(t, phoneB, "active", 3600, "notify/b_trying_1.xml"); code != 409 {
		t.Fatalf("B seizes within the timeout: %d, want 409", code)
	}
	fx.clock.Advance(2 * time.Second)
	if code, _ := fx.notify(t, phoneB, "active", 3600, "notify/b_trying_1.xml"); code != 200 {
		t.Fatalf("B seizes after A's stale seize: %d, want 200", code)
	}
	// Now B holds index 1 by a fresh seize; A's confirmed call on it later
	// is not a seize, and B's later seize of a confirmed index is refused
	// whatever the time.
	if code, _ := fx.notify(t, phoneA, "active", 3600, "notify/a_confirmed_1.xml"); code != 200 {
		t.Fatalf("A confirmed: %d", code)
	}
	fx.clock.Advance(time.Hour)
	if code, _ := fx.notify(t, phoneB, "active", 3600, "notify/b_trying_1.xml"); code != 409 {
		t.Fatalf("B seizes an index in a confirmed call: %d, want 409", code)
	}
}

// TestSeizeTimeoutFromFirstReport: seize_timeout counts from the phone's
// first report of a dialog as trying. A full document repeating the
// unchanged seize (the first NOTIFY of a subscription refresh, or of a new
// subscription) does not restart it; a seize left out of a full document,
// or that left trying, starts afresh when reported trying again.
func TestSeizeTimeoutFromFirstReport(t *testing.T) {
	asB := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte(phoneA), []byte(phoneB)) }
	type step struct {
		at       time.Duration // since A's first report of its seize
		phone    string
		callID   string // "": the phone's subscription ends (timeout)
		body     []byte
		wantCode int
	}
	aSeize := func(v int) step { return step{0, phoneA, "a", doc(v, "full", "a1:trying:1"), 200} }
	bSeize := func(at time.Duration, v, code int) step {
		return step{at, phoneB, "b", asB(doc(v, "full", "b1:trying:1")), code}
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"full resend", []step{
			aSeize(1),
			{40 * time.Second, phoneA, "a", doc(2, "full", "a1:trying:1"), 200},
			bSeize(59*time.Second, 1, 409),
			bSeize(61*time.Second, 2, 200),
		}},
		{"partial resend", []step{
			aSeize(1),
			{40 * time.Second, phoneA, "a", doc(2, "partial", "a1:trying:1"), 200},
			bSeize(59*time.Second, 1, 409),
			bSeize(61*time.Second, 2, 200),
		}},
		{"full resend in a new subscription", []step{
			aSeize(1),
			{30 * time.Second, phoneA, "", nil, 200},
			{31 * time.Second, phoneA, "a2", doc(1, "full", "a1:trying:1"), 200},
			bSeize(59*time.Second, 1, 409),
			bSeize(61*time.Second, 2, 200),
		}},
		{"left out of a full document", []step{
			aSeize(1),
			{40 * time.Second, phoneA, "a", doc(2, "full"), 200},
			{45 * time.Second, phoneA, "a", doc(3, "full", "a1:trying:1"), 200},
			bSeize(61*time.Second, 1, 409),
			bSeize(104*time.Second, 2, 409),
			bSeize(106*time.Second, 3, 200),
		}},
		{"left trying", []step{
			aSeize(1),
			{40 * time.Second, phoneA, "a", doc(2, "full", "a1:proceeding:1"), 200},
			{45 * time.Second, phoneA, "a", doc(3, "full", "a1:trying:1"), 200},
			bSeize(61*time.Second, 1, 409),
			bSeize(104*time.Second, 2, 409),
			bSeize(106*time.Second, 3, 200),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, func(c *Config) { c.SeizeTimeout = time.Minute })
			fx.register(phoneA, phoneB)
			start := fx.clock.Now()
			for i, st := range tc.steps {
				fx.clock.Advance(start.Add(st.at).Sub(fx.clock.Now()))
				var code int
				if st.callID == "" {
					n := fx.notifyMsg(st.phone, "terminated", -1, nil)
					n.Reason = "timeout"
					code, _ = fx.m.HandleNotify(context.Background(), n)
				} else {
					code = fx.send(t, st.phone, st.callID, st.body)
				}
				if code != st.wantCode {
					t.Fatalf("step %d at %s: %s's NOTIFY answered %d, want %d", i, st.at, st.phone, code, st.wantCode)
				}
			}
		})
	}
}

// With a server_address override the restored phone is subscribed again
// (same key: the engine refreshes the dialog in place) so the override is
// back in the SUBSCRIBEs after a restart.
func TestRestoreWithServerAddress(t *testing.T) {
	fx := newFixture(t, func(c *Config) { c.ServerAddress = "sip:100@192.0.2.1:5080" })
	idA := ContactID(phoneA)
	fx.m.RestoreSubscriptions([]pua.SubscriptionInfo{
		{Key: pua.SubKey{PresURI: lineAoR, WatcherURI: lineAoR, Event: EventSLA, ID: idA}, Flag: pua.FlagBLASubscribe, Target: phoneA},
	})
	fx.register(phoneA)
	if got, want := fx.eng.TakeCalls(), []string{"subscribe " + phoneA}; !reflect.DeepEqual(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
	if r := fx.eng.Subscriptions()[pua.SubKey{PresURI: lineAoR, WatcherURI: lineAoR, Event: EventSLA, ID: idA}]; r.Contact != "sip:100@192.0.2.1:5080" {
		t.Fatalf("Contact %q", r.Contact)
	}
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	return puatest.Testdata(t, name)
}
