package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/bla"
	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/daemon"
	"github.com/puaside/puaside/internal/kamailiotest"
)

// Benchmark shape: phones on shared lines, each subscribed to by puaside.
const (
	benchPhones        = 32              // emulated phones
	benchPhonesPerLine = 8               // phones sharing one line
	benchRelayWait     = 5 * time.Second // longest wait for one PUBLISH
	benchRate          = 200             // NOTIFY/s of the latency benchmark
)

// blaRelayClock matches each NOTIFY (by the dialog id of its body) to the
// line's composed PUBLISH that first carries that dialog (its id qualified
// by the phone) at the fake presence server.
type blaRelayClock struct {
	mu      sync.Mutex
	pending map[string]*blaRelayWait
	known   map[string]bool // every marker expected so far
	stray   atomic.Int64    // dialog;sla PUBLISHes carrying a dialog of no NOTIFY
}

type blaRelayWait struct {
	sent time.Time
	done chan time.Duration // buffered 1: the NOTIFY → PUBLISH latency
}

// expect registers marker before its NOTIFY is sent.
func (c *blaRelayClock) expect(marker string) *blaRelayWait {
	w := &blaRelayWait{sent: time.Now(), done: make(chan time.Duration, 1)}
	c.mu.Lock()
	c.pending[marker] = w
	c.known[marker] = true
	c.mu.Unlock()
	return w
}

// forget drops a marker whose NOTIFY failed.
func (c *blaRelayClock) forget(marker string) {
	c.mu.Lock()
	delete(c.pending, marker)
	c.mu.Unlock()
}

// onPublish is the fake presence server's hook.
func (c *blaRelayClock) onPublish(req *sip.Request, at time.Time) {
	if h := req.GetHeader("Event"); h == nil || h.Value() != polSLA {
		return
	}
	body := string(req.Body())
	unknown := false
	for {
		i := strings.Index(body, `<dialog id="`)
		if i < 0 {
			break
		}
		body = body[i+len(`<dialog id="`):]
		id, _, _ := strings.Cut(body, `"`)
		marker, _, _ := strings.Cut(id, "~")
		c.mu.Lock()
		w := c.pending[marker]
		delete(c.pending, marker)
		unknown = unknown || !c.known[marker]
		c.mu.Unlock()
		if w != nil {
			w.done <- at.Sub(w.sent)
		}
	}
	if unknown {
		c.stray.Add(1)
	}
}

// blaBench is puaside with shared-line phones subscribed to, relaying to an
// in-process fake presence server.
type blaBench struct {
	clock  *blaRelayClock
	phones []*polycom
	seq    atomic.Uint64
}

// newBLABench starts the fake presence server, puaside (BLA on, no
// Kamailio) and the phones, which register straight at puaside's
// replicate input (as the registrar's t_replicate copies would) and wait
// until puaside has subscribed to each of them.
func newBLABench(b *testing.B) *blaBench {
	b.Helper()
	bb := &blaBench{clock: &blaRelayClock{pending: map[string]*blaRelayWait{}, known: map[string]bool{}}}
	fake := newBLAFakePresence(b, bb.clock.onPublish)

	cfg := config.Default()
	cfg.LogLevel = "error"
	cfg.DBURL = "sqlite://" + filepath.Join(b.TempDir(), "puaside.db")
	port := func() int {
		p, err := kamailiotest.FreePort()
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	sipPort, rp := port(), port()
	cfg.PUA.Listen = []string{fmt.Sprintf("udp:127.0.0.1:%d", sipPort)}
	cfg.PUA.ServerAddress = fake.URI()
	cfg.Ingest.ReplicateListen = []string{fmt.Sprintf("udp:127.0.0.1:%d", rp)}
	cfg.Ingest.TraceListen = nil
	cfg.Ingest.HEPListen = nil
	cfg.HTTP.HTTPListen = fmt.Sprintf("127.0.0.1:%d", port())
	cfg.Features.Dialoginfo = false
	cfg.Usrloc.PublishDefault = false // only the dialog;sla relays reach the server
	for l := 0; l < benchPhones/benchPhonesPerLine; l++ {
		cfg.BLA.Lines = append(cfg.BLA.Lines, bla.LineConfig{AoR: fmt.Sprintf("sip:bl%d@example.com", l)})
	}
	if err := cfg.Validate(); err != nil {
		b.Fatalf("config: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	d, err := daemon.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatalf("puaside: %v", err)
	}
	if err := d.Start(ctx); err != nil {
		b.Fatalf("puaside start: %v", err)
	}
	b.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), waitLimit)
		defer scancel()
		_ = d.Stop(sctx)
	})

	for i := 0; i < benchPhones; i++ {
		p := newPolycom(b, fmt.Sprintf("bl%d", i/benchPhonesPerLine), "example.com")
		res, err := p.register(ctx, hostPort(cfg.Ingest.ReplicateListen[0]), 3600)
		if err != nil || res.StatusCode != 200 {
			b.Fatalf("phone %d: register: %v %v", i, res, err)
		}
		bb.phones = append(bb.phones, p)
	}
	for i, p := range bb.phones {
		if err := p.waitUntil(ctx, "the initial NOTIFY answered", func() bool { return len(p.codes) >= 1 }); err != nil {
			b.Fatal(err)
		}
		if c := p.responses()[0]; c != 200 {
			b.Fatalf("phone %d: initial NOTIFY answered %d", i, c)
		}
	}
	return bb
}

// relay sends one NOTIFY from phone i (a full document with one confirmed
// dialog on the phone's own line index, so no seize conflicts) and returns
// its wait.
func (bb *blaBench) relay(ctx context.Context, i int) (*blaRelayWait, error) {
	n := bb.seq.Add(1)
	marker := fmt.Sprintf("m%d", n)
	p := bb.phones[i]
	body := blaDoc(p.line.String(), int(n), "full", blaDialog{marker, "confirmed", fmt.Sprint(i%benchPhonesPerLine + 1)})
	w := bb.clock.expect(marker)
	code, err := p.notify(ctx, "active;expires=3600", body)
	if err != nil || code != 200 {
		bb.clock.forget(marker)
		return nil, fmt.Errorf("phone %d: NOTIFY %s: %d %v", i, marker, code, err)
	}
	return w, nil
}

// timedRelay relays one NOTIFY through phone i and returns the NOTIFY →
// PUBLISH latency; what names the NOTIFY in an error.
func (bb *blaBench) timedRelay(ctx context.Context, i int, what string) (time.Duration, error) {
	w, err := bb.relay(ctx, i)
	if err != nil {
		return 0, err
	}
	select {
	case d := <-w.done:
		return d, nil
	case <-time.After(benchRelayWait):
		return 0, fmt.Errorf("%s: no PUBLISH within %v", what, benchRelayWait)
	}
}

// BenchmarkBLARelay measures NOTIFY → PUBLISH relays per second through
// the daemon: every phone runs a closed loop (NOTIFY, wait for the PUBLISH
// at the fake presence server, next NOTIFY), so each NOTIFY becomes exactly
// one PUBLISH. Reports relays/s and the latency percentiles.
func BenchmarkBLARelay(b *testing.B) {
	bb := newBLABench(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var next atomic.Int64
	run := newBLARelayRun(b)
	cpu0 := blaCPUTime()
	for i := range bb.phones {
		run.wg.Add(1)
		go func() {
			defer run.wg.Done()
			for next.Add(1) <= int64(b.N) && run.failure.Load() == nil {
				if !run.record(bb.timedRelay(ctx, i, fmt.Sprintf("phone %d", i))) {
					return
				}
			}
		}()
	}
	lat := run.finish()
	if cpu := blaCPUTime() - cpu0; cpu0 >= 0 && len(lat) > 0 {
		// Process CPU (daemon, phones and fake server together) per relay:
		// the figure that does not depend on what else the machine runs.
		b.ReportMetric(float64(cpu/time.Microsecond)/float64(len(lat)), "cpu-µs/relay")
	}
	blaReportLatency(b, lat)
	if s := bb.clock.stray.Load(); s != 0 {
		b.Errorf("%d PUBLISHes matched no NOTIFY", s)
	}
}

// BenchmarkBLARelayLatencyAt200 sends b.N NOTIFYs at a fixed 200 NOTIFY/s
// (round robin over the phones, each NOTIFY from its own goroutine) and
// reports the NOTIFY sent → PUBLISH received latency percentiles and the
// rate achieved.
func BenchmarkBLARelayLatencyAt200(b *testing.B) {
	bb := newBLABench(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := newBLARelayRun(b)
	for n := 0; n < b.N && run.failure.Load() == nil; n++ {
		// Paced on the start time, so that a late wake-up does not
		// lower the offered rate.
		time.Sleep(time.Until(run.start.Add(time.Duration(n) * time.Second / benchRate)))
		run.wg.Add(1)
		go func() {
			defer run.wg.Done()
			run.record(bb.timedRelay(ctx, n%len(bb.phones), fmt.Sprintf("NOTIFY %d", n)))
		}()
	}
	blaReportLatency(b, run.finish())
}

// blaRelayRun collects the latencies of a benchmark's relays, sent from
// goroutines counted in wg, and the first failure.
type blaRelayRun struct {
	b       *testing.B
	start   time.Time
	wg      sync.WaitGroup
	failure atomic.Value

	mu  sync.Mutex
	lat []time.Duration
}

// newBLARelayRun resets the benchmark's timer and starts the clock.
func newBLARelayRun(b *testing.B) *blaRelayRun {
	r := &blaRelayRun{b: b, lat: make([]time.Duration, 0, b.N)}
	b.ResetTimer()
	r.start = time.Now()
	return r
}

// record keeps one relay's latency, or its error; it reports whether the
// relay succeeded.
func (r *blaRelayRun) record(d time.Duration, err error) bool {
	if err != nil {
		r.failure.Store(err)
		return false
	}
	r.mu.Lock()
	r.lat = append(r.lat, d)
	r.mu.Unlock()
	return true
}

// finish waits for the relays, stops the timer, fails the benchmark on a
// failure, reports the rate achieved and returns the latencies.
func (r *blaRelayRun) finish() []time.Duration {
	r.wg.Wait()
	elapsed := time.Since(r.start)
	r.b.StopTimer()
	if err, ok := r.failure.Load().(error); ok {
		r.b.Fatal(err)
	}
	r.b.ReportMetric(float64(len(r.lat))/elapsed.Seconds(), "relays/s")
	return r.lat
}

// blaCPUTime is the process's user+system CPU time so far (-1 if unknown).
func blaCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// blaReportLatency reports p50, p99 and max in milliseconds.
func blaReportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := int(p * float64(len(lat)-1))
		return float64(lat[i]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/float64(time.Millisecond), "max-ms")
	b.ReportMetric(0, "ns/op") // the per-op time is not meaningful here
}
