package board

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/clock/clocktest"
	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/metrics"
	"github.com/puaside/puaside/pua"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// aorOf decodes the hub's document of an AoR, as a client reading the
// hub would see it.
func aorOf(t *testing.T, b *Board, a string) aorDoc {
	t.Helper()
	b.flush()
	raw := b.hub.get(keyAoR + a)
	if raw == nil {
		t.Fatalf("%s not on the board", a)
	}
	var d aorDoc
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func dialogOf(state, dir string, held bool, remote string) dialogdoc.Dialog {
	d := dialogdoc.Dialog{ID: "d1", CallID: "c1", Direction: dir, State: state,
		Remote: &dialogdoc.Participant{Identity: remote}}
	if held {
		d.Local = &dialogdoc.Participant{Identity: "sip:x@example.com", Rendering: "no"}
	}
	return d
}

func dialogBody(state, dir string, held bool, remote string) []byte {
	d := dialogOf(state, dir, held, remote)
	return dialogdoc.Build(dialogdoc.Document{Version: 1, Entity: "sip:alice@example.com", Dialogs: []dialogdoc.Dialog{d}})
}

// TestRegistrationStates: bindings make an AoR registered; an empty set
// after a lapsed binding is expired, before it unregistered.
func TestRegistrationStates(t *testing.T) {
	clk := clocktest.New(t0)
	b := New(Options{Clock: clk})
	a := "sip:alice@example.com"
	b.Contacts(a, []Contact{{URI: "sip:alice@10.0.0.1", UserAgent: "Yealink", Expires: t0.Add(time.Minute)}})
	if d := aorOf(t, b, a); d.Reg != RegRegistered || len(d.Contacts) != 1 || d.Contacts[0].UserAgent != "Yealink" || d.Domain != "example.com" {
		t.Fatalf("after REGISTER: %+v", d)
	}
	b.Contacts(a, nil)
	if d := aorOf(t, b, a); d.Reg != RegUnregistered {
		t.Fatalf("after un-REGISTER: %s", d.Reg)
	}
	b.Contacts(a, []Contact{{URI: "sip:alice@10.0.0.1", Expires: t0.Add(time.Minute)}})
	clk.Advance(time.Minute)
	b.Contacts(a, nil)
	if d := aorOf(t, b, a); d.Reg != RegExpired {
		t.Fatalf("after the binding lapsed: %s", d.Reg)
	}
}

// TestLamps: the dialog documents the trackers publish set the lamp, with
// the other party and the time of the change, and so does the dialog a
// tracker tells without its document; a removal turns it idle.
func TestLamps(t *testing.T) {
	clk := clocktest.New(t0)
	b := New(Options{Clock: clk})
	told := New(Options{Clock: clk})
	a := "sip:alice@example.com"
	for _, tc := range []struct {
		state, dir string
		held       bool
		want       string
	}{
		{"trying", "initiator", false, LampTrying},
		{"early", "recipient", false, LampRinging},
		{"early", "initiator", false, LampTrying},
		{"confirmed", "recipient", false, LampTalking},
		{"confirmed", "recipient", true, LampHeld},
		{"terminated", "recipient", false, LampIdle},
	} {
		clk.Advance(time.Second)
		key := pua.Key{PresURI: a, Event: "dialog", ID: "x"}
		b.Published(pua.PublishRequest{Key: key, Body: dialogBody(tc.state, tc.dir, tc.held, "sip:bob@example.com")})
		d := aorOf(t, b, a)
		if d.Lamp != tc.want {
			t.Errorf("%s %s held=%v: lamp %s, want %s", tc.state, tc.dir, tc.held, d.Lamp, tc.want)
		}
		if tc.want != LampIdle && (d.Remote != "sip:bob@example.com" || d.Since != clk.Now().UnixMilli()) {
			t.Errorf("%s: remote %q since %d", tc.state, d.Remote, d.Since)
		}
		// The tracker's own dialog, unparsed, lights the same lamp.
		told.DialogPublished(key, dialogOf(tc.state, tc.dir, tc.held, "sip:bob@example.com"))
		if got := aorOf(t, told, a); got.Lamp != d.Lamp || got.Remote != d.Remote || got.Since != d.Since {
			t.Errorf("%s %s held=%v: told the dialog %+v, from its document %+v", tc.state, tc.dir, tc.held, got, d)
		}
	}
	b.Published(pua.PublishRequest{Key: pua.Key{PresURI: a, Event: "dialog"}, Body: dialogBody("confirmed", "initiator", false, "sip:c@example.com")})
	b.Removed(pua.Key{PresURI: a, Event: "dialog"})
	if d := aorOf(t, b, a); d.Lamp != LampIdle || d.Since != 0 || d.Remote != "" {
		t.Errorf("after removal: %+v", d)
	}
	// A document the board cannot read leaves the lamp alone.
	b.Published(pua.PublishRequest{Key: pua.Key{PresURI: a, Event: "dialog"}, Body: []byte("<nope")})
	if d := aorOf(t, b, a); d.Lamp != LampIdle {
		t.Errorf("after a bad document: %+v", d)
	}
}

// TestPublishResults: a refusal shows with its code and reason until the
// event's next success; a transport error shows its text.
func TestPublishResults(t *testing.T) {
	b := New(Options{})
	a := "sip:mallory@example.com"
	key := pua.Key{PresURI: a, Event: "presence", ID: "usrloc"}
	b.PublishResult(key, "initial", pua.Result{Status: 403, Reason: "Forbidden"})
	d := aorOf(t, b, a)
	if len(d.Pubs) != 1 || d.Pubs[0].Status != 403 || d.Pubs[0].Reason != "Forbidden" || d.Pubs[0].Event != "presence" {
		t.Fatalf("after 403: %+v", d.Pubs)
	}
	b.PublishResult(pua.Key{PresURI: a, Event: "dialog"}, "initial", pua.Result{Err: errors.New("no route to host")})
	if d := aorOf(t, b, a); len(d.Pubs) != 2 || d.Pubs[0].Event != "dialog" || d.Pubs[0].Reason != "no route to host" {
		t.Fatalf("after a transport error: %+v", d.Pubs)
	}
	b.PublishResult(key, "initial", pua.Result{Status: 200, Reason: "OK"})
	if d := aorOf(t, b, a); len(d.Pubs) != 1 || d.Pubs[0].Event != "dialog" {
		t.Fatalf("after 200: %+v", d.Pubs)
	}
	det, ok := b.Detail(a)
	if !ok || len(det.Events) != 3 || !strings.Contains(det.Events[0].Text, "403 Forbidden") {
		t.Fatalf("detail %+v", det)
	}
}

// TestHistoryBounded: the history keeps the last History events of all
// AoRs together; a detail shows at most DetailEvents of its own, oldest
// first.
func TestHistoryBounded(t *testing.T) {
	b := New(Options{History: 7, DetailEvents: 3})
	for _, a := range []string{"sip:a@example.com", "sip:b@example.com", "sip:c@example.com"} {
		b.Contacts(a, nil)
	}
	b.Message("sip:a@example.com", EventCall, "first")
	b.Message("sip:b@example.com", EventCall, "b")
	if det, _ := b.Detail("sip:a@example.com"); len(det.Events) != 1 || det.Events[0].Text != "first" {
		t.Fatalf("before wrapping: %+v", det.Events)
	}
	for i := range 10 {
		b.Message("sip:a@example.com", EventCall, fmt.Sprint(i))
		b.Message("sip:b@example.com", EventCall, "b")
	}
	det, _ := b.Detail("sip:a@example.com")
	if len(det.Events) != 3 || det.Events[0].Text != "7" || det.Events[2].Text != "9" {
		t.Fatalf("events %+v", det.Events)
	}
	if len(b.hist) != 7 {
		t.Fatalf("%d events kept", len(b.hist))
	}
	b.Message("sip:c@example.com", EventCall, "c")
	if det, _ := b.Detail("sip:b@example.com"); len(det.Events) != 3 {
		t.Fatalf("b: %+v", det.Events)
	}
	if det, _ := b.Detail("sip:c@example.com"); len(det.Events) != 1 || det.Events[0].Text != "c" {
		t.Fatalf("c: %+v", det.Events)
	}
}

// TestWatchersHook: the presence server's watchers show when a source is
// wired, and are gone when it reports none.
func TestWatchersHook(t *testing.T) {
	b := New(Options{})
	a := "sip:alice@example.com"
	b.Watchers(a, []Watcher{{URI: "sip:bob@example.com", Event: "presence", Status: "active"}})
	if d := aorOf(t, b, a); d.Watchers != 1 {
		t.Fatalf("watchers %d", d.Watchers)
	}
	det, _ := b.Detail(a)
	if len(det.Watchers) != 1 || det.Watchers[0].URI != "sip:bob@example.com" {
		t.Fatalf("detail watchers %+v", det.Watchers)
	}
	b.Watchers(a, nil)
	if d := aorOf(t, b, a); d.Watchers != 0 {
		t.Fatalf("watchers %d after none", d.Watchers)
	}
}

// TestHubSinceCoalesces: the changes after a version list each item once,
// at its latest document, oldest first; removals are listed as gone.
func TestHubSinceCoalesces(t *testing.T) {
	h := newHub()
	h.set("a", json.RawMessage(`1`))
	h.set("b", json.RawMessage(`1`))
	_, v, _ := h.since(0)
	for i := range 100 {
		h.set("a", json.RawMessage(fmt.Sprint(i+2)))
	}
	h.set("c", json.RawMessage(`1`))
	h.set("b", nil)
	h.set("c", json.RawMessage(`1`)) // unchanged: no version
	out, v2, reset := h.since(v)
	if reset || v2 != v+102 {
		t.Fatalf("reset %v version %d (from %d)", reset, v2, v)
	}
	got := []string{}
	for _, c := range out {
		got = append(got, c.key+"="+string(c.doc))
	}
	if strings.Join(got, " ") != "a=101 c=1 b=" {
		t.Fatalf("changes %v", got)
	}
	if out, _, reset := h.since(v2 + 5); !reset || len(out) != 2 {
		t.Fatalf("a version from the future: reset %v, %d items", reset, len(out))
	}
}

// TestHubTombstonesBounded: beyond maxTombstones the removals are
// forgotten and a client resuming from before them gets a snapshot.
func TestHubTombstonesBounded(t *testing.T) {
	h := newHub()
	h.set("keep", json.RawMessage(`1`))
	_, v, _ := h.since(0)
	for i := range maxTombstones + 1 {
		k := fmt.Sprint("k", i)
		h.set(k, json.RawMessage(`1`))
		h.set(k, nil)
	}
	if len(h.items) > maxTombstones+1 {
		t.Fatalf("%d items kept", len(h.items))
	}
	out, _, reset := h.since(v)
	if !reset || len(out) != 1 || out[0].key != "keep" {
		t.Fatalf("resume after pruning: reset %v %v", reset, out)
	}
}

// sseEvent is one event read from the stream.
type sseEvent struct {
	id, name string
	data     struct {
		Reset bool `json:"reset"`
		Items []struct {
			K string          `json:"k"`
			V json.RawMessage `json:"v"`
		} `json:"items"`
		Gone []string `json:"gone"`
	}
}

func readEvent(t *testing.T, r *bufio.Reader) sseEvent {
	t.Helper()
	var ev sseEvent
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read stream: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if ev.name != "" {
				return ev
			}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.name = line[7:]
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(line[6:]), &ev.data); err != nil {
				t.Fatalf("data %q: %v", line, err)
			}
		}
	}
}

func openStream(t *testing.T, ctx context.Context, url, last string) *bufio.Reader {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/board/events", nil)
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /board/events: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	return bufio.NewReader(res.Body)
}

// TestStreamSnapshotDeltaResume: a client gets a snapshot, then a delta
// with the coalesced changes; reconnecting with Last-Event-ID brings only
// what changed meanwhile; an id of another run gets a snapshot.
func TestStreamSnapshotDeltaResume(t *testing.T) {
	b := New(Options{Coalesce: 20 * time.Millisecond})
	srv := httptest.NewServer(b)
	defer srv.Close()
	defer b.Close()
	b.Contacts("sip:a@example.com", []Contact{{URI: "sip:a@10.0.0.1"}})
	ctx, cancel := context.WithCancel(context.Background())
	r := openStream(t, ctx, srv.URL, "")
	snap := readEvent(t, r)
	if snap.name != "snapshot" || !snap.data.Reset || len(snap.data.Items) != 2 { // the AoR and the server
		t.Fatalf("snapshot %+v", snap)
	}
	for i := range 50 {
		b.PublishResult(pua.Key{PresURI: "sip:b@example.com", Event: "presence"}, "modify", pua.Result{Status: 403 + i%2, Reason: "No"})
		b.Contacts("sip:a@example.com", []Contact{{URI: fmt.Sprintf("sip:a@10.0.0.%d", i)}})
	}
	var d sseEvent
	seen := map[string]string{}
	for len(seen) < 2 || !strings.Contains(seen["a:sip:a@example.com"], "10.0.0.49") {
		d = readEvent(t, r)
		if d.name != "delta" || d.data.Reset {
			t.Fatalf("delta %+v", d)
		}
		for _, it := range d.data.Items {
			seen[it.K] = string(it.V)
		}
	}
	cancel()
	last := d.id

	b.Contacts("sip:c@example.com", []Contact{{URI: "sip:c@10.0.0.1"}})
	r2 := openStream(t, context.Background(), srv.URL, last)
	res := readEvent(t, r2)
	if res.name != "delta" || len(res.data.Items) != 1 || res.data.Items[0].K != "a:sip:c@example.com" {
		t.Fatalf("resume from %s: %+v", last, res)
	}
	r3 := openStream(t, context.Background(), srv.URL, "otherrun.5")
	if s := readEvent(t, r3); s.name != "snapshot" || len(s.data.Items) != 4 {
		t.Fatalf("resume from another run: %+v", s)
	}
}

// TestSlowClientDropped: a client that reads nothing while changes pour
// in is dropped once a write blocks past the write timeout, and counted.
func TestSlowClientDropped(t *testing.T) {
	m := metrics.New()
	b := New(Options{Metrics: m, WriteTimeout: 100 * time.Millisecond, Coalesce: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(tlog{t}, nil))})
	srv := httptest.NewServer(b)
	defer srv.Close()
	defer b.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	fmt.Fprintf(conn, "GET /board/events HTTP/1.1\r\nHost: x\r\n\r\n")
	big := strings.Repeat("x", 150) // the user agent fattens each document
	deadline := time.Now().Add(20 * time.Second)
	for b.hub.clients() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stream never opened")
		}
		time.Sleep(time.Millisecond)
	}
	for i := 0; b.hub.clients() > 0; i++ {
		if time.Now().After(deadline) {
			t.Fatal("the slow client was never dropped")
		}
		b.Contacts(fmt.Sprintf("sip:u%d@example.com", i%5000), []Contact{{URI: fmt.Sprint("sip:x@10.0.0.1;n=", i), UserAgent: big}})
		if i%500 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if n := counter(t, m, "puaside_board_clients_dropped_total", DropSlow); n != 1 {
		t.Fatalf("dropped{slow} = %v", n)
	}
}

// TestTooManyClients: beyond MaxClients a stream is refused with 503 and
// counted.
func TestTooManyClients(t *testing.T) {
	m := metrics.New()
	b := New(Options{Metrics: m, MaxClients: 1})
	srv := httptest.NewServer(b)
	defer srv.Close()
	defer b.Close()
	openStream(t, context.Background(), srv.URL, "")
	res, err := http.Get(srv.URL + "/board/events")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second stream: %d", res.StatusCode)
	}
	if n := counter(t, m, "puaside_board_clients_dropped_total", DropTooMany); n != 1 {
		t.Fatalf("dropped{too_many_clients} = %v", n)
	}
}

// TestPageAndDetail: the page and its files are embedded; the detail of
// an AoR is JSON; bad requests get clear errors.
func TestPageAndDetail(t *testing.T) {
	b := New(Options{})
	srv := httptest.NewServer(b)
	defer srv.Close()
	b.Message("sip:a@example.com", EventRegister, "REGISTER Expires 60")
	b.Contacts("sip:a@example.com", []Contact{{URI: "sip:a@10.0.0.1"}})
	for path, want := range map[string]int{
		"/board": 200, "/board/assets/board.js": 200, "/board/assets/board.css": 200,
		"/board/assets/nope.js": 404, "/board/assets/../board.go": 404,
		"/board/aor?aor=sip:a@example.com": 200, "/board/aor": 400, "/board/aor?aor=sip:z@example.com": 404,
		"/board/other": 404,
	} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, res.StatusCode, want)
		}
	}
	res, err := http.Post(srv.URL+"/board", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /board: %d", res.StatusCode)
	}
	for _, p := range []string{"/board", "/board/", "/board/assets/board.js"} {
		if !PublicPath(p) {
			t.Errorf("%s not public", p)
		}
	}
	for _, p := range []string{"/board/events", "/board/aor", "/boardx"} {
		if PublicPath(p) {
			t.Errorf("%s public", p)
		}
	}
}

func counter(t *testing.T, m *metrics.Metrics, name, reason string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("%s{reason=%s} not found", name, reason)
	return 0
}

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestLampOfSeveralCalls: an AoR with two calls (two dialog
// publications) shows the brighter; the end of one leaves the other lit.
func TestLampOfSeveralCalls(t *testing.T) {
	clk := clocktest.New(t0)
	b := New(Options{Clock: clk})
	a := "sip:alice@example.com"
	pub := func(id, state string) {
		b.Published(pua.PublishRequest{Key: pua.Key{PresURI: a, Event: "dialog", ID: id}, Body: dialogBody(state, "recipient", false, "sip:"+id+"@example.com")})
	}
	pub("one", "confirmed")
	clk.Advance(time.Minute)
	pub("two", "early")
	if d := aorOf(t, b, a); d.Lamp != LampTalking || d.Remote != "sip:one@example.com" || d.Since != t0.UnixMilli() {
		t.Fatalf("talking and ringing: %+v", d)
	}
	b.Removed(pua.Key{PresURI: a, Event: "dialog", ID: "one"})
	if d := aorOf(t, b, a); d.Lamp != LampRinging || d.Remote != "sip:two@example.com" || d.Since != t0.Add(time.Minute).UnixMilli() {
		t.Fatalf("after the first call ended: %+v", d)
	}
	pub("two", "terminated")
	if d := aorOf(t, b, a); d.Lamp != LampIdle || d.Since != 0 {
		t.Fatalf("after both ended: %+v", d)
	}
}
