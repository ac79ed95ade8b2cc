package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/sipphone"
)

// ulVariant is one way the Kamailio registrar copies REGISTER traffic
// to puaside.
type ulVariant struct {
	name     string
	define   string // registrar.cfg define
	input    string // puaside ingest input (metrics label)
	answered bool   // whether puaside must answer the copies
}

var ulVariants = []ulVariant{
	{name: "replicate", define: "WITH_REPLICATE", input: "replicate", answered: true},
	{name: "siptrace", define: "WITH_SIPTRACE", input: "trace", answered: false},
	{name: "hep", define: "WITH_HEP", input: "hep", answered: false},
}

// usrlocSetup is a presence server, puaside, a registrar mirroring to
// puaside through a tap, and a watcher phone.
type usrlocSetup struct {
	presence  *kamailiotest.Instance
	registrar *kamailiotest.Instance
	cfg       config.Config
	ps        *puaside
	tap       *ulTap
	watcher   *sipphone.Phone
}

// newUsrlocSetup starts everything for variant v. Kamailio's copies go to a
// ulTap that relays them to puaside's input and records both directions.
func newUsrlocSetup(t *testing.T, v ulVariant) *usrlocSetup {
	t.Helper()
	s := &usrlocSetup{presence: presenceServer(t)}
	s.cfg = baseConfig(t, s.presence)
	s.cfg.Features.Dialoginfo = false
	s.cfg.Features.BLA = false
	s.cfg.Usrloc.MinExpires = time.Second
	s.cfg.Usrloc.ClosedLinger = time.Minute
	s.ps = startPuaside(t, s.cfg)

	var target string
	switch v.input {
	case "replicate":
		target = hostPort(s.cfg.Ingest.ReplicateListen[0])
	case "trace":
		target = hostPort(s.cfg.Ingest.TraceListen[0])
	case "hep":
		target = hostPort(s.cfg.Ingest.HEPListen[0])
	}
	s.tap = newULTap(t, target)
	rcfg := s.cfg
	rcfg.Ingest.ReplicateListen = []string{"udp:" + s.tap.addr()}
	rcfg.Ingest.TraceListen = []string{"udp:" + s.tap.addr()}
	rcfg.Ingest.HEPListen = []string{"udp:" + s.tap.addr()}
	s.registrar = registrar(t, v.define, rcfg)
	s.watcher = sipphone.NewPhone(t, "watcher", "example.com")
	return s
}

// watch subscribes the watcher to presence of aor at the presence server.
func (s *usrlocSetup) watch(ctx context.Context, t *testing.T, user string) *sipphone.Watcher {
	t.Helper()
	w, err := s.watcher.Watch(ctx, s.presence.Addr(), sip.Uri{Scheme: "sip", User: user, Host: "example.com"}, "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatalf("watch %s: %v", user, err)
	}
	return w
}

// register sends REGISTER through the registrar and wants a 200.
func (s *usrlocSetup) register(ctx context.Context, t *testing.T, ph *sipphone.Phone, expires int) {
	t.Helper()
	res, err := ph.Register(ctx, s.registrar.Addr(), expires)
	if err != nil {
		t.Fatalf("register %s (expires %d): %v", ph.User, expires, err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("register %s (expires %d): %d %s", ph.User, expires, res.StatusCode, res.Reason)
	}
}

// ulCheckReplies asserts what puaside sent back on its mirror input:
// for t_replicate copies exactly one 200 per copy and no retransmitted
// copy (Kamailio's tm retransmits an unanswered copy after 500 ms); for
// traced and HEP copies nothing at all.
func ulCheckReplies(t *testing.T, v ulVariant, tap *ulTap) {
	t.Helper()
	fwd, back := tap.recorded()
	if len(fwd) == 0 {
		t.Fatalf("%s: no copy reached puaside", v.name)
	}
	if !v.answered {
		if len(back) != 0 {
			t.Fatalf("%s: puaside answered %d traced copies, want none; first: %q", v.name, len(back), back[0])
		}
		return
	}
	copies := map[string]int{}
	for _, b := range fwd {
		msg, err := sip.ParseMessage(b)
		if err != nil {
			t.Fatalf("replicate: unparsable copy %q: %v", b, err)
		}
		req, ok := msg.(*sip.Request)
		if !ok || req.Method != sip.REGISTER || req.Via() == nil {
			t.Fatalf("replicate: copy is not a REGISTER with a Via: %q", b)
		}
		br, _ := req.Via().Params.Get("branch")
		copies[br]++
	}
	answers := map[string]int{}
	for _, b := range back {
		msg, err := sip.ParseMessage(b)
		if err != nil {
			t.Fatalf("replicate: unparsable answer %q: %v", b, err)
		}
		res, ok := msg.(*sip.Response)
		if !ok || res.StatusCode != 200 || res.Via() == nil {
			t.Fatalf("replicate: answer is not a 200 with a Via: %q", b)
		}
		br, _ := res.Via().Params.Get("branch")
		answers[br]++
	}
	for br, n := range copies {
		if n != 1 {
			t.Errorf("replicate: copy %s sent %d times (retransmitted: not answered in time)", br, n)
		}
		if answers[br] != 1 {
			t.Errorf("replicate: copy %s answered %d times, want 1", br, answers[br])
		}
	}
	if len(answers) != len(copies) {
		t.Errorf("replicate: %d answers for %d copies", len(answers), len(copies))
	}
}

// TestUsrlocPresenceFromRegistrar is the whole registration path with real
// Kamailio, for each way of mirroring: a phone registers at the registrar,
// the copy reaches puaside, puaside publishes to the presence server, and a
// watcher there sees the phone open; the phone unregisters and the watcher
// sees closed; a second phone registers with a short expiry and vanishes,
// and the watcher sees closed once puaside's own timer expires it.
func TestUsrlocPresenceFromRegistrar(t *testing.T) {
	for _, v := range ulVariants {
		t.Run(v.name, func(t *testing.T) {
			s := newUsrlocSetup(t, v)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			alice := sipphone.NewPhone(t, "alice", "example.com")
			bob := sipphone.NewPhone(t, "bob", "example.com")
			wa := s.watch(ctx, t, "alice")
			wb := s.watch(ctx, t, "bob")

			s.register(ctx, t, alice, 300)
			waitNotify(ctx, t, wa, waitLimit, "alice open", pidfOpen(alice))
			s.register(ctx, t, alice, 0)
			waitNotify(ctx, t, wa, waitLimit, "alice closed after unregister", pidfClosed)

			// bob registers for 2 s and is never refreshed.
			s.register(ctx, t, bob, 2)
			waitNotify(ctx, t, wb, waitLimit, "bob open", pidfOpen(bob))
			waitNotify(ctx, t, wb, waitLimit, "bob closed after expiry", pidfClosed)

			m := ulScrape(t, s.cfg)
			// alice 300, alice 0, bob 2; traced inputs also carry the 200s.
			wantKinds := []string{"register"}
			if !v.answered {
				wantKinds = append(wantKinds, "register_reply")
			}
			for _, kind := range wantKinds {
				n := m.sum("puaside_ingest_messages_total", "input", v.input, "kind", kind, "result", "accepted")
				if n != 3 {
					t.Errorf("%s %s accepted: %v, want 3", v.input, kind, n)
				}
			}
			if n := m.sum("puaside_ingest_dropped_total", "input", v.input); n != 0 {
				t.Errorf("%s: %v copies dropped", v.input, n)
			}
			if v.answered {
				if n := m.sum("puaside_ingest_messages_total", "input", v.input, "result", "duplicate"); n != 0 {
					t.Errorf("replicate: %v duplicate copies (retransmissions)", n)
				}
			}
			ulCheckReplies(t, v, s.tap)
		})
	}
}

// TestUsrlocRestartNoFlap restarts puaside while a phone is registered:
// the watcher never sees the phone go offline and online again, a refresh
// after the restart changes nothing visible, and the later unregister
// still gives closed.
func TestUsrlocRestartNoFlap(t *testing.T) {
	for _, v := range ulVariants {
		t.Run(v.name, func(t *testing.T) {
			s := newUsrlocSetup(t, v)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			alice := sipphone.NewPhone(t, "alice", "example.com")
			wa := s.watch(ctx, t, "alice")
			s.register(ctx, t, alice, 300)
			waitNotify(ctx, t, wa, waitLimit, "alice open", pidfOpen(alice))

			s.ps.stop()
			s.ps = startPuaside(t, s.cfg)

			// A refresh after the restart: processed, nothing visible changes.
			s.register(ctx, t, alice, 300)
			wantKinds := "register"
			if !v.answered {
				wantKinds = "register_reply"
			}
			eventually(t, "the refresh reached the restarted puaside", func() bool {
				return ulScrape(t, s.cfg).sum("puaside_ingest_messages_total", "input", v.input, "kind", wantKinds, "result", "accepted") == 1
			})

			before := len(wa.Notifications())
			s.register(ctx, t, alice, 0)
			waitNotify(ctx, t, wa, waitLimit, "alice closed after unregister", pidfClosed)

			notes := wa.Notifications()[:before]
			seenOpen := false
			for i, n := range notes {
				switch {
				case pidfOpen(alice)(n.Body):
					seenOpen = true
				case seenOpen && (n.Terminated() || !pidfOpen(alice)(n.Body)):
					t.Fatalf("notification %d between open and the unregister is not open (flap): %+v", i, n)
				}
			}
			if !seenOpen {
				t.Fatalf("no open notification before the unregister: %+v", notes)
			}
			ulCheckReplies(t, v, s.tap)
		})
	}
}

// ulHTTPGet fetches path from puaside's management server.
func ulHTTPGet(t *testing.T, cfg config.Config, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+cfg.HTTP.HTTPListen+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", path, res.StatusCode, err)
	}
	return string(b)
}

// ulPromText is a scraped Prometheus text exposition.
type ulPromText []string

// ulScrape fetches puaside's /metrics.
func ulScrape(t *testing.T, cfg config.Config) ulPromText {
	t.Helper()
	var out ulPromText
	sc := bufio.NewScanner(strings.NewReader(ulHTTPGet(t, cfg, "/metrics")))
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// sum adds the samples of metric name whose labels include every given
// label=value pair.
func (p ulPromText) sum(name string, labels ...string) float64 {
	var total float64
	for _, l := range p {
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		series, val, ok := strings.Cut(l, " ")
		if !ok {
			continue
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(series, fmt.Sprintf("%s=%q", labels[i], labels[i+1])) {
				match = false
			}
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); match && err == nil {
			total += f
		}
	}
	return total
}

// ulTap relays UDP datagrams from Kamailio to one puaside input and the
// input's answers back, recording both directions: what puaside sent back
// is observable exactly, without relying on Kamailio's logs.
type ulTap struct {
	front  *net.UDPConn // Kamailio sends here
	back   *net.UDPConn // sends to puaside, receives its answers
	target netip.AddrPort

	mu      sync.Mutex
	peer    netip.AddrPort
	forward [][]byte
	answers [][]byte
}

func newULTap(t *testing.T, target string) *ulTap {
	t.Helper()
	dst, err := netip.ParseAddrPort(target)
	if err != nil {
		t.Fatalf("tap target %q: %v", target, err)
	}
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tap := &ulTap{front: listen(), back: listen(), target: dst}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		tap.relay(tap.front, func(b []byte, from netip.AddrPort) {
			tap.mu.Lock()
			tap.peer = from
			tap.forward = append(tap.forward, b)
			tap.mu.Unlock()
			_, _ = tap.back.WriteToUDPAddrPort(b, tap.target)
		})
	}()
	go func() {
		defer wg.Done()
		tap.relay(tap.back, func(b []byte, _ netip.AddrPort) {
			tap.mu.Lock()
			peer := tap.peer
			tap.answers = append(tap.answers, b)
			tap.mu.Unlock()
			if peer.IsValid() {
				_, _ = tap.front.WriteToUDPAddrPort(b, peer)
			}
		})
	}()
	t.Cleanup(func() {
		tap.front.Close()
		tap.back.Close()
		wg.Wait()
	})
	return tap
}

// relay reads c until it is closed and hands every datagram to fn.
func (tap *ulTap) relay(c *net.UDPConn, fn func([]byte, netip.AddrPort)) {
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// e.g. ICMP port unreachable while puaside restarts; a
			// persistent error must not spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		fn(append([]byte(nil), buf[:n]...), from)
	}
}

// addr returns the "127.0.0.1:port" Kamailio sends to.
func (tap *ulTap) addr() string { return tap.front.LocalAddr().String() }

// recorded returns copies of what was relayed each way.
func (tap *ulTap) recorded() (forwarded, answered [][]byte) {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return append([][]byte(nil), tap.forward...), append([][]byte(nil), tap.answers...)
}
