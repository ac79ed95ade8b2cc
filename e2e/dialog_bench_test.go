package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/daemon"
	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/puatest"
)

// The copies of one call as Kamailio's siptrace sends them (plain SIP, one
// datagram each): every message twice, as received from the caller or
// callee and as forwarded by the proxy. Placeholders: {cid} Call-ID, {ft}
// caller tag, {tt} callee tag, {a} caller user, {b} callee user, {br}
// per-transaction branch suffix. Taken from Kamailio 5.6.3 traces.
const (
	dlgBenchInviteIn = "INVITE sip:{b}@harness.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5111;branch=z9hG4bK-{br}-0;rport\r\n" +
		"Max-Forwards: 69\r\n" +
		"From: <sip:{a}@harness.test>;tag={ft}\r\n" +
		"To: <sip:{b}@harness.test>\r\n" +
		"Call-ID: {cid}\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:{a}@127.0.0.1:5111>\r\n" +
		"User-Agent: harness-phone\r\n" +
		"Content-Type: application/sdp\r\n" +
		"Content-Length:   129\r\n\r\n" + dlgBenchSDP
	dlgBenchInviteOut = "INVITE sip:{b}@127.0.0.1:5112 SIP/2.0\r\n" +
		"Record-Route: <sip:127.0.0.1:5070;lr;ftag={ft};did=c93.eef>\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK3d34.{br}.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5111;received=127.0.0.1;branch=z9hG4bK-{br}-0;rport=5111\r\n" +
		"Max-Forwards: 69\r\n" +
		"From: <sip:{a}@harness.test>;tag={ft}\r\n" +
		"To: <sip:{b}@harness.test>\r\n" +
		"Call-ID: {cid}\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:{a}@127.0.0.1:5111>\r\n" +
		"User-Agent: harness-phone\r\n" +
		"Content-Type: application/sdp\r\n" +
		"Content-Length:   129\r\n\r\n" + dlgBenchSDP
	dlgBenchSDP = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n" +
		"t=0 0\r\nm=audio 6004 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	dlgBenchViaBoth = "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK3d34.{br}.0, " +
		"SIP/2.0/UDP 127.0.0.1:5111;received=127.0.0.1;branch=z9hG4bK-{br}-0;rport=5111\r\n"
	dlgBenchViaCaller = "Via: SIP/2.0/UDP 127.0.0.1:5111;received=127.0.0.1;branch=z9hG4bK-{br}-0;rport=5111\r\n"
	dlgBenchReplyHdrs = "From: <sip:{a}@harness.test>;tag={ft}\r\n" +
		"To: <sip:{b}@harness.test>;tag={tt}\r\n" +
		"Call-ID: {cid}\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Record-Route: <sip:127.0.0.1:5070;lr;ftag={ft};did=c93.eef>\r\n" +
		"Contact: <sip:{b}@127.0.0.1:5112>\r\n"
	dlgBench180In  = "SIP/2.0 180 Ringing\r\n" + dlgBenchViaBoth + dlgBenchReplyHdrs + "Content-Length: 0\r\n\r\n"
	dlgBench180Out = "SIP/2.0 180 Ringing\r\n" + dlgBenchViaCaller + dlgBenchReplyHdrs + "Content-Length: 0\r\n\r\n"
	dlgBench200In  = "SIP/2.0 200 OK\r\n" + dlgBenchViaBoth + dlgBenchReplyHdrs +
		"Content-Type: application/sdp\r\nContent-Length:   129\r\n\r\n" + dlgBenchSDP
	dlgBench200Out = "SIP/2.0 200 OK\r\n" + dlgBenchViaCaller + dlgBenchReplyHdrs +
		"Content-Type: application/sdp\r\nContent-Length:   129\r\n\r\n" + dlgBenchSDP
	dlgBenchInDlg = "From: <sip:{a}@harness.test>;tag={ft}\r\n" +
		"To: <sip:{b}@harness.test>;tag={tt}\r\n" +
		"Call-ID: {cid}\r\n"
	dlgBenchAckIn = "ACK sip:{b}@127.0.0.1:5112 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5111;branch=z9hG4bK-{br}-5;rport\r\n" +
		"Max-Forwards: 69\r\n" + dlgBenchInDlg + "CSeq: 1 ACK\r\n" +
		"Route: <sip:127.0.0.1:5070;lr;ftag={ft};did=c93.eef>\r\n" +
		"Contact: <sip:{a}@127.0.0.1:5111>\r\nContent-Length: 0\r\n\r\n"
	dlgBenchAckOut = "ACK sip:{b}@127.0.0.1:5112 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK0d34.{br}.5\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5111;received=127.0.0.1;branch=z9hG4bK-{br}-5;rport=5111\r\n" +
		"Max-Forwards: 69\r\n" + dlgBenchInDlg + "CSeq: 1 ACK\r\n" +
		"Contact: <sip:{a}@127.0.0.1:5111>\r\nContent-Length: 0\r\n\r\n"
	dlgBenchByeIn = "BYE sip:{b}@127.0.0.1:5112 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5111;branch=z9hG4bK-{br}-8;rport\r\n" +
		"Max-Forwards: 69\r\n" + dlgBenchInDlg + "CSeq: 2 BYE\r\n" +
		"Route: <sip:127.0.0.1:5070;lr;ftag={ft};did=c93.eef>\r\n" +
		"Contact: <sip:{a}@127.0.0.1:5111>\r\nContent-Length: 0\r\n\r\n"
	dlgBenchByeOut = "BYE sip:{b}@127.0.0.1:5112 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK0d34.{br}.8\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5111;received=127.0.0.1;branch=z9hG4bK-{br}-8;rport=5111\r\n" +
		"Max-Forwards: 69\r\n" + dlgBenchInDlg + "CSeq: 2 BYE\r\n" +
		"Contact: <sip:{a}@127.0.0.1:5111>\r\nContent-Length: 0\r\n\r\n"
	dlgBenchBye200In = "SIP/2.0 200 OK\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK0d34.{br}.8, SIP/2.0/UDP 127.0.0.1:5111;received=127.0.0.1;branch=z9hG4bK-{br}-8;rport=5111\r\n" +
		dlgBenchInDlg + "CSeq: 2 BYE\r\nContact: <sip:{b}@127.0.0.1:5112>\r\nContent-Length: 0\r\n\r\n"
	dlgBenchBye200Out = "SIP/2.0 200 OK\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5111;received=127.0.0.1;branch=z9hG4bK-{br}-8;rport=5111\r\n" +
		dlgBenchInDlg + "CSeq: 2 BYE\r\nContact: <sip:{b}@127.0.0.1:5112>\r\nContent-Length: 0\r\n\r\n"
)

// dlgBenchWait bounds the wait for one PUBLISH; a call whose PUBLISH does
// not come in time is counted as lost.
const dlgBenchWait = 5 * time.Second

// dlgBenchCall is one synthetic call's copies, phase by phase.
type dlgBenchCall struct {
	callID string
	phases [4][][]byte // INVITE; 180; 200 + ACK; BYE + 200
}

func newDlgBenchCall(n int) dlgBenchCall {
	r := strings.NewReplacer(
		"{cid}", fmt.Sprintf("bench-%d@127.0.0.1", n),
		"{ft}", fmt.Sprintf("ft%d", n),
		"{tt}", fmt.Sprintf("tt%d", n),
		"{a}", fmt.Sprintf("a%06d", n),
		"{b}", fmt.Sprintf("b%06d", n),
		"{br}", fmt.Sprintf("%x", n),
	)
	m := func(ts ...string) [][]byte {
		out := make([][]byte, len(ts))
		for i, s := range ts {
			out[i] = []byte(r.Replace(s))
		}
		return out
	}
	return dlgBenchCall{
		callID: fmt.Sprintf("bench-%d@127.0.0.1", n),
		phases: [4][][]byte{
			m(dlgBenchInviteIn, dlgBenchInviteOut),
			m(dlgBench180In, dlgBench180Out),
			m(dlgBench200In, dlgBench200Out, dlgBenchAckIn, dlgBenchAckOut),
			m(dlgBenchByeIn, dlgBenchByeOut, dlgBenchBye200In, dlgBenchBye200Out),
		},
	}
}

// dlgBenchPhaseState is the caller's dialog state each phase must publish.
var dlgBenchPhaseState = [4]string{"trying", "early", "confirmed", "terminated"}

// dlgPresence is a fake presence server (puatest.PresenceServer) for the benchmarks: it
// answers every PUBLISH 200 with SIP-ETag and Expires and reports, per
// Call-ID, the states of the caller's (initiator) dialog it receives.
type dlgPresence struct {
	*puatest.PresenceServer
	// ready is closed once PresenceServer is set: the server serves before
	// NewPresenceServer returns.
	ready    chan struct{}
	publish  atomic.Int64
	removals atomic.Int64
	// byKind counts the PUBLISHes by RFC 3903 operation: initial (no
	// SIP-If-Match), modify (a body), refresh (no body), remove (Expires: 0).
	byKind [4]atomic.Int64

	mu      sync.Mutex
	waiters map[string]chan dlgSeen
}

// PUBLISH kinds counted by dlgPresence.
const (
	dlgKindInitial = iota
	dlgKindModify
	dlgKindRefresh
	dlgKindRemove
)

// dlgKindNames name the kinds in reported metrics.
var dlgKindNames = [4]string{"initial", "modify", "refresh", "remove"}

// dlgSeen is one caller state received, with its arrival time.
type dlgSeen struct {
	state string
	at    time.Time
}

func newDlgPresence(b *testing.B) *dlgPresence {
	b.Helper()
	p := &dlgPresence{waiters: map[string]chan dlgSeen{}, ready: make(chan struct{})}
	p.PresenceServer = puatest.NewPresenceServer(b, puatest.ServerOptions{Name: "bench-presence", Publish: p.handle})
	close(p.ready)
	return p
}

func (p *dlgPresence) handle(req *sip.Request, tx sip.ServerTransaction) {
	<-p.ready
	at := time.Now()
	p.publish.Add(1)
	switch {
	case puatest.RequestExpires(req) == "0":
		p.removals.Add(1)
		p.byKind[dlgKindRemove].Add(1)
	case puatest.Header(req, "SIP-If-Match") == "":
		p.byKind[dlgKindInitial].Add(1)
	case len(req.Body()) == 0:
		p.byKind[dlgKindRefresh].Add(1)
	default:
		p.byKind[dlgKindModify].Add(1)
	}
	puatest.AcceptPublish(req, tx, p.NextETag("e"))
	if callID, state, ok := dlgInitiatorState(req.Body()); ok {
		p.mu.Lock()
		ch := p.waiters[callID]
		p.mu.Unlock()
		if ch != nil {
			select {
			case ch <- dlgSeen{state: state, at: at}:
			default:
			}
		}
	}
}

// dlgInitiatorState extracts the call-id and state of an initiator dialog
// from a one-dialog document (what puaside publishes).
func dlgInitiatorState(body []byte) (string, string, bool) {
	if !bytes.Contains(body, []byte(`direction="initiator"`)) {
		return "", "", false
	}
	callID, ok := dlgBetween(body, `call-id="`, `"`)
	if !ok {
		return "", "", false
	}
	i := bytes.Index(body, []byte("<state"))
	if i < 0 {
		return "", "", false
	}
	state, ok := dlgBetween(body[i:], ">", "<")
	return callID, state, ok
}

func dlgBetween(b []byte, from, to string) (string, bool) {
	i := bytes.Index(b, []byte(from))
	if i < 0 {
		return "", false
	}
	b = b[i+len(from):]
	j := bytes.Index(b, []byte(to))
	if j < 0 {
		return "", false
	}
	return string(b[:j]), true
}

func (p *dlgPresence) watch(callID string) chan dlgSeen {
	ch := make(chan dlgSeen, 16)
	p.mu.Lock()
	p.waiters[callID] = ch
	p.mu.Unlock()
	return ch
}

func (p *dlgPresence) unwatch(callID string) {
	p.mu.Lock()
	delete(p.waiters, callID)
	p.mu.Unlock()
}

// dlgBenchDaemon starts puaside in-process with only the dialoginfo tracker
// and the trace input, publishing to srv.
func dlgBenchDaemon(b *testing.B, srv *dlgPresence) (*daemon.Daemon, config.Config) {
	b.Helper()
	port := func() int {
		p, err := kamailiotest.FreePort()
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	cfg := config.Default()
	cfg.LogLevel = "error"
	cfg.DBURL = "sqlite://" + filepath.Join(b.TempDir(), "puaside.db")
	cfg.Features = config.Features{Dialoginfo: true}
	cfg.PUA.Listen = []string{fmt.Sprintf("udp:127.0.0.1:%d", port())}
	cfg.PUA.ServerAddress = srv.URI()
	cfg.PUA.RequestTimeout = 5 * time.Second
	cfg.Ingest.ReplicateListen = nil
	cfg.Ingest.HEPListen = nil
	cfg.Ingest.TraceListen = []string{fmt.Sprintf("udp:127.0.0.1:%d", port())}
	cfg.HTTP.HTTPListen = fmt.Sprintf("127.0.0.1:%d", port())
	cfg.Dialoginfo.TerminatedLinger = time.Second
	if err := cfg.Validate(); err != nil {
		b.Fatalf("config: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	d, err := daemon.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := d.Stop(ctx); err != nil {
			b.Logf("stop: %v", err)
		}
	})
	return d, cfg
}

// dlgBenchDriver sends the calls' copies to puaside's trace input and
// waits, phase by phase, for the caller's PUBLISH. Each worker has one call
// at a time, so at most workers × 4 datagrams are in flight: the sending is
// paced by puaside's own speed and the socket buffers do not overflow.
type dlgBenchDriver struct {
	srv     *dlgPresence
	target  string
	sent    atomic.Int64
	lost    atomic.Int64
	lostAt  [4]atomic.Int64 // lost calls by phase
	mu      sync.Mutex
	samples []time.Duration
}

// run drives calls [from, to) over workers; phases is how many phases of
// each call to play (4 = a full call, 3 = established and left up).
func (dr *dlgBenchDriver) run(b *testing.B, from, to, workers, phases int) {
	b.Helper()
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	for range workers {
		conn, err := net.Dial("udp4", dr.target)
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			var local []time.Duration
			for {
				n := int(next.Add(1) - 1)
				if n >= to {
					break
				}
				local = dr.call(conn, newDlgBenchCall(n), phases, local)
			}
			dr.mu.Lock()
			dr.samples = append(dr.samples, local...)
			dr.mu.Unlock()
		}()
	}
	wg.Wait()
}

func (dr *dlgBenchDriver) call(conn net.Conn, c dlgBenchCall, phases int, samples []time.Duration) []time.Duration {
	ch := dr.srv.watch(c.callID)
	defer dr.srv.unwatch(c.callID)
	timer := time.NewTimer(dlgBenchWait)
	defer timer.Stop()
	for ph := range phases {
		start := time.Now()
		for _, m := range c.phases[ph] {
			if _, err := conn.Write(m); err != nil {
				dr.lost.Add(1)
				return samples
			}
			dr.sent.Add(1)
		}
		timer.Reset(dlgBenchWait)
	wait:
		for {
			select {
			case s := <-ch:
				if s.state == dlgBenchPhaseState[ph] {
					samples = append(samples, s.at.Sub(start))
					break wait
				}
			case <-timer.C:
				dr.lost.Add(1)
				dr.lostAt[ph].Add(1)
				return samples
			}
		}
	}
	return samples
}

// dlgMetricSum sums a counter over its label sets from puaside's /metrics.
func dlgMetricSum(b *testing.B, httpAddr, name string) float64 {
	b.Helper()
	res, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		b.Fatalf("metrics: %v", err)
	}
	defer res.Body.Close()
	var sum float64
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// BenchmarkDialogCalls measures calls tracked end to end: siptrace copies
// of full calls (INVITE, 180, 200, ACK, BYE, 200; each as received and as
// forwarded) sent over UDP to puaside, which publishes dialog-info to an
// in-process presence server. Reported: calls/s (setup + teardown),
// latency from the first copy of a message to the PUBLISH carrying the
// caller's new state (p50, p99), calls lost and puaside's ingest drops.
func BenchmarkDialogCalls(b *testing.B) {
	// window is the number of calls in progress at once (one per sending
	// worker); each waits for its PUBLISH before the next message.
	for _, window := range []int{8, 32} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) { benchDialogCalls(b, window) })
	}
}

func benchDialogCalls(b *testing.B, window int) {
	srv := newDlgPresence(b)
	d, cfg := dlgBenchDaemon(b, srv)
	dr := &dlgBenchDriver{srv: srv, target: hostPort(d.Addrs()["trace"][0])}
	// Warm up (connections, SQLite, code paths) before timing.
	dr.run(b, 0, 200, 16, 4)
	dr.samples = nil
	dr.lost.Store(0)
	for i := range dr.lostAt {
		dr.lostAt[i].Store(0)
	}
	sent0 := dr.sent.Load()
	dropped0 := dlgMetricSum(b, cfg.HTTP.HTTPListen, "puaside_ingest_dropped_total")
	seen0 := dlgMetricSum(b, cfg.HTTP.HTTPListen, "puaside_ingest_messages_total")
	pub0 := srv.publish.Load()
	var kind0 [4]int64
	for i := range kind0 {
		kind0[i] = srv.byKind[i].Load()
	}
	rcvbuf0 := dlgRcvbufErrors()
	cpu0 := dlgCPUTime()

	b.ResetTimer()
	start := time.Now()
	dr.run(b, 1_000_000, 1_000_000+b.N, window, 4)
	el := time.Since(start)
	b.StopTimer()
	cpu := dlgCPUTime() - cpu0
	// Let the terminated documents' linger pass (1 s here), so that what
	// ends a publication after it (a removal, or nothing when it lapses)
	// is counted for every call.
	time.Sleep(cfg.Dialoginfo.TerminatedLinger + 2*time.Second)

	slices.Sort(dr.samples)
	pct := func(p float64) float64 {
		if len(dr.samples) == 0 {
			return 0
		}
		return float64(dr.samples[int(p*float64(len(dr.samples)-1))]) / float64(time.Millisecond)
	}
	dropped := dlgMetricSum(b, cfg.HTTP.HTTPListen, "puaside_ingest_dropped_total") - dropped0
	seen := dlgMetricSum(b, cfg.HTTP.HTTPListen, "puaside_ingest_messages_total") - seen0
	b.ReportMetric(float64(b.N)/el.Seconds(), "calls/s")
	// CPU of the whole process per call: puaside, the presence server and
	// the sender together; 2 cores / this is the rate the host could carry
	// when nothing else runs.
	b.ReportMetric(float64(cpu)/float64(time.Millisecond)/float64(b.N), "cpu-ms/call")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(dr.lost.Load()), "lost-calls")
	if dr.lost.Load() > 0 {
		b.Logf("lost calls by phase (INVITE, 180, 200, BYE): %d %d %d %d",
			dr.lostAt[0].Load(), dr.lostAt[1].Load(), dr.lostAt[2].Load(), dr.lostAt[3].Load())
	}
	b.ReportMetric(dropped, "ingest-drops")
	// Copies sent that puaside never read: lost in the kernel (receive buffer).
	b.ReportMetric(float64(dr.sent.Load()-sent0)-seen-dropped, "unread-copies")
	b.ReportMetric(float64(srv.publish.Load()-pub0)/float64(b.N), "publish/call")
	for i, name := range dlgKindNames {
		b.ReportMetric(float64(srv.byKind[i].Load()-kind0[i])/float64(b.N), name+"/call")
	}
	if rcvbuf0 >= 0 {
		b.ReportMetric(dlgRcvbufErrors()-rcvbuf0, "host-udp-rcvbuf-drops")
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkDialogActiveCallHeap measures the heap held per established
// call: 10,000 calls are set up (INVITE, 180, 200, ACK copies) and left
// up; the heap growth over the idle daemon, once the transient state has
// expired (ingest dedup window, SIP transactions of both ends: 32 s),
// divided by the number of calls. The in-process presence server's own
// state is included in the figure (it holds none per call once its
// transactions end).
func BenchmarkDialogActiveCallHeap(b *testing.B) {
	const calls = 10_000
	for range b.N {
		srv := newDlgPresence(b)
		d, cfg := dlgBenchDaemon(b, srv)
		dr := &dlgBenchDriver{srv: srv, target: hostPort(d.Addrs()["trace"][0])}
		dr.run(b, 0, 100, 8, 4) // warm up, then let the warm-up calls go
		time.Sleep(2 * cfg.Dialoginfo.TerminatedLinger)
		before := dlgHeap()

		dr.run(b, 1_000_000, 1_000_000+calls, 32, 3)
		if l := dr.lost.Load(); l > 0 {
			b.Logf("%d calls lost while setting up", l)
		}
		active := 0
		for _, di := range d.Engine().Publications() {
			if di.Key.Event == "dialog" {
				active++
			}
		}
		transient := dlgHeap()
		time.Sleep(35 * time.Second)
		steady := dlgHeap()
		n := float64(calls - dr.lost.Load())
		b.ReportMetric((float64(steady)-float64(before))/n, "B/active-call")
		b.ReportMetric((float64(transient)-float64(before))/n, "B/call-transient")
		b.ReportMetric(float64(active), "dialog-publications")
		b.ReportMetric(float64(dr.lost.Load()), "lost-calls")
		b.ReportMetric(dlgMetricSum(b, cfg.HTTP.HTTPListen, "puaside_ingest_dropped_total"), "ingest-drops")
	}
	b.ReportMetric(0, "ns/op")
}

// dlgRcvbufErrors returns the host's count of UDP datagrams dropped for a
// full receive buffer (Linux /proc/net/snmp), or -1 when unknown. It counts
// every socket of the host, not only puaside's.
func dlgRcvbufErrors() float64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return -1
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				v, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					return -1
				}
				return v
			}
		}
	}
	return -1
}

// dlgCPUTime returns the user + system CPU time of this process.
func dlgCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// dlgHeap returns the live heap after a full collection.
func dlgHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
