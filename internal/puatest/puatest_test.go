package puatest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/metrics"
)

func TestWireAndFixSIP(t *testing.T) {
	raw := []byte("# received from 10.0.0.1\nOPTIONS sip:a@b SIP/2.0\nContent-Length: 99\n\nhello\n")
	if got, want := string(WireSIP(raw)), "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99\r\n\r\nhello\r\n"; got != want {
		t.Errorf("WireSIP %q, want %q", got, want)
	}
	if got, want := string(FixSIP(raw)), "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 7\r\n\r\nhello\r\n"; got != want {
		t.Errorf("FixSIP %q, want %q", got, want)
	}
	if got := string(FixSIP([]byte("OPTIONS sip:a@b SIP/2.0\n\n"))); !strings.Contains(got, "Content-Length: 0\r\n") {
		t.Errorf("FixSIP did not add Content-Length: %q", got)
	}
}

func TestMetric(t *testing.T) {
	m := metrics.New()
	m.Tracker("usrloc", "publish")
	m.Tracker("usrloc", "publish")
	m.Tracker("bla", "publish")
	if got := TrackerEvents(t, m, "usrloc", "publish"); got != 2 {
		t.Errorf("usrloc publish = %v, want 2", got)
	}
	if got := Metric(t, m, "puaside_tracker_events_total", map[string]string{"what": "publish"}); got != 3 {
		t.Errorf("every publish = %v, want 3 (the sum)", got)
	}
	if got := Metric(t, m, "puaside_tracker_events_total", map[string]string{"tracker": "none"}); got != 0 {
		t.Errorf("no sample = %v", got)
	}
}

func TestTable(t *testing.T) {
	tb := NewTable[string, int]()
	tb.Put("a", 1)
	if err := tb.Write(func(rows map[string]int) { rows["b"] = 2 }); err != nil {
		t.Fatal(err)
	}
	down := errors.New("db down")
	tb.FailWrites(down)
	if err := tb.Write(func(rows map[string]int) { rows["c"] = 3 }); !errors.Is(err, down) {
		t.Fatalf("failed write: %v", err)
	}
	rows := tb.Rows()
	rows["x"] = 9 // a copy
	if v, ok := tb.Get("b"); !ok || v != 2 || tb.Len() != 2 || tb.Writes() != 1 {
		t.Fatalf("table %v, writes %d", tb.Rows(), tb.Writes())
	}
	if !tb.Delete("a") || tb.Delete("a") {
		t.Error("Delete reports the row once")
	}
}

// TestPresenceServerScript: the server answers from its script, then the
// default; it records what it answered and counts OPTIONS.
func TestPresenceServerScript(t *testing.T) {
	s := NewPresenceServer(t, ServerOptions{})
	s.Push(Reply{Code: 423, MinExpires: 120}, Reply{Code: 200, ETag: "given", Expires: 60})
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ua.Close() })
	cl, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	send := func(method sip.RequestMethod) *sip.Response {
		t.Helper()
		var to sip.Uri
		if err := sip.ParseUri("sip:alice@"+s.Addr(), &to); err != nil {
			t.Fatal(err)
		}
		req := sip.NewRequest(method, to)
		req.AppendHeader(sip.NewHeader("Event", "presence"))
		req.AppendHeader(sip.NewHeader("Expires", "3600"))
		req.SetBody([]byte("x"))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := cl.Do(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := send(sip.PUBLISH); res.StatusCode != 423 || Header(res, "Min-Expires") != "120" {
		t.Errorf("first reply %d Min-Expires %q", res.StatusCode, Header(res, "Min-Expires"))
	}
	if res := send(sip.PUBLISH); res.StatusCode != 200 || Header(res, "SIP-ETag") != "given" || Header(res, "Expires") != "60" {
		t.Errorf("second reply %d %q %q", res.StatusCode, Header(res, "SIP-ETag"), Header(res, "Expires"))
	}
	if res := send(sip.PUBLISH); res.StatusCode != 200 || !strings.HasPrefix(Header(res, "SIP-ETag"), "etag") || Header(res, "Expires") != "3600" {
		t.Errorf("default reply %d %q %q", res.StatusCode, Header(res, "SIP-ETag"), Header(res, "Expires"))
	}
	s.SetOptions(503)
	if res := send(sip.OPTIONS); res.StatusCode != 503 || s.OptionsSeen() != 1 {
		t.Errorf("OPTIONS %d, seen %d", res.StatusCode, s.OptionsSeen())
	}
	if n := len(s.Requests()); n != 3 || s.Count() != 3 {
		t.Errorf("recorded %d, counted %d; want 3", n, s.Count())
	}
	if got := s.MaxInFlight()["sip:alice@"+s.Addr()+"|presence"]; got != 1 {
		t.Errorf("max in flight %d", got)
	}
}
