package ingest

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/puaside/puaside/clock/clocktest"
	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/puatest"
	"github.com/puaside/puaside/metrics"
)

// sample is one captured message of a mirror-samples directory.
type sample struct {
	seq       string // "001"
	firstLine string
	cseq      string
	topVia    string
	raw       []byte // wire bytes (CRLF line ends)
}

// wireBytes turns a stored .sip.txt (a "# received" comment line, then the
// message with LF line ends) into the bytes that were on the wire.
func wireBytes(t testing.TB, path string) []byte {
	t.Helper()
	return puatest.WireSIP(puatest.ReadFile(t, path))
}

// loadSamples reads dir/index.tsv and the messages it lists, in order.
func loadSamples(t testing.TB, dir string) []sample {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "index.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []sample
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 7 || cols[0] == "seq" {
			continue
		}
		seq := cols[0]
		for len(seq) < 3 {
			seq = "0" + seq
		}
		s := sample{seq: seq, firstLine: cols[4], cseq: cols[5], topVia: cols[6]}
		s.raw = wireBytes(t, filepath.Join(dir, seq+".sip.txt"))
		out = append(out, s)
	}
	if len(out) == 0 {
		t.Fatalf("no samples in %s", dir)
	}
	return out
}

// recorder collects what the handlers receive.
type recorder struct {
	mu   sync.Mutex
	sips []event.SIP
	regs []event.Registration
	dlgs []event.DialogState
	kind []string // "register" or "call" per entry of sips
	got  chan struct{}
}

func newRecorder() *recorder { return &recorder{got: make(chan struct{}, 1<<16)} }

func (r *recorder) handlers() Handlers {
	return Handlers{
		Register: func(_ context.Context, m event.SIP) { r.addSIP("register", m) },
		Call:     func(_ context.Context, m event.SIP) { r.addSIP("call", m) },
		Registration: func(_ context.Context, e event.Registration) {
			r.mu.Lock()
			r.regs = append(r.regs, e)
			r.mu.Unlock()
			r.got <- struct{}{}
		},
		Dialog: func(_ context.Context, e event.DialogState) {
			r.mu.Lock()
			r.dlgs = append(r.dlgs, e)
			r.mu.Unlock()
			r.got <- struct{}{}
		},
	}
}

func (r *recorder) addSIP(kind string, m event.SIP) {
	r.mu.Lock()
	r.sips = append(r.sips, m)
	r.kind = append(r.kind, kind)
	r.mu.Unlock()
	r.got <- struct{}{}
}

// wait waits for n deliveries, failing after a bounded time.
func (r *recorder) wait(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("got %d deliveries, want %d", i, n)
		}
	}
}

// newClock is the tests' fake clock.
func newClock() *clocktest.Fake { return clocktest.New(time.Unix(1795382000, 0).UTC()) }

// testConfig is a config with no listeners (tests add what they need).
func testConfig() Config {
	c := DefaultConfig()
	c.ReplicateListen, c.TraceListen, c.HEPListen = nil, nil, nil
	return c
}

// start builds and starts an Ingest, stopped at cleanup.
func start(t *testing.T, cfg Config, h Handlers, m *metrics.Metrics, clk *clocktest.Fake) *Ingest {
	t.Helper()
	in, err := New(cfg, h, Options{Metrics: m, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Stop)
	return in
}

// addr returns the bound address of input with the given network.
func addr(t *testing.T, in *Ingest, input, network string) string {
	t.Helper()
	for _, a := range in.Addrs()[input] {
		if n, rest, _ := strings.Cut(a, ":"); n == network {
			return rest
		}
	}
	t.Fatalf("no %s listener for %s in %v", network, input, in.Addrs())
	return ""
}

// counter reads one labelled counter from a metrics registry.
func counter(t *testing.T, m *metrics.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	return puatest.Metric(t, m, name, labels)
}

// udpClient dials a UDP socket to addr, closed at cleanup.
func udpClient(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// noDatagram asserts that nothing arrives on c within a bounded wait.
func noDatagram(t *testing.T, c *net.UDPConn, wait time.Duration) {
	t.Helper()
	buf := make([]byte, 65536)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("unexpected datagram (%d bytes): %q", n, buf[:min(n, 80)])
	}
}

// describe renders a delivered message for golden files.
func describe(m event.SIP) string {
	var first string
	switch v := m.Msg.(type) {
	case *sip.Request:
		first = v.StartLine()
	case *sip.Response:
		first = v.StartLine()
	}
	via := ""
	if v := m.Msg.Via(); v != nil {
		via = v.Value()
	}
	return first + " | " + m.Msg.CSeq().Value() + " | " + m.Msg.CallID().Value() + " | " + via
}

func testParser() *sip.Parser { return sip.NewParser() }
