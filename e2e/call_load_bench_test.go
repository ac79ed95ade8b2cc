package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/loadproc"
)

// Calls through a real Kamailio proxy (deploy/kamailio/registrar.cfg) to a
// real Kamailio presence server (deploy/kamailio/presence.cfg, SQLite),
// mirrored to puaside running as its own process (the built binary):
//
//	sipp caller ── INVITE/ACK/BYE ──▶ Kamailio proxy ──▶ sipp callee (registered AoRs)
//	                                      │ siptrace plain or HEPv3
//	                                      ▼
//	                                   puaside ── PUBLISH ──▶ relay ──▶ Kamailio presence
//
// The relay is a UDP forwarder in the test process that counts the
// PUBLISH transactions by RFC 3903 kind on their way to the presence
// server. CPU seconds are read from /proc (internal/loadproc): puaside's
// process, and the proxy with its children; the sipp phones, the relay
// and the presence server are not counted.

// callBenchRate is the calls per second the caller places (the issue's
// measurement: 100 calls/s, ring 200 ms, talk 1 s).
const (
	callBenchRate = 100
	callBenchRing = 200 * time.Millisecond
	callBenchTalk = time.Second
	// callBenchSettle is the wait after the last call before the lamps are
	// read: past the terminated documents' linger (10 s by default).
	callBenchSettle = 15 * time.Second
	// callBenchUsers is the most distinct callers and callees.
	callBenchUsers = 500
)

// BenchmarkKamailioCalls places b.N plain calls (ring, answer, hang-up) at
// 100 calls/s and reports calls/s, PUBLISHes per call by kind at the
// presence server, the CPU seconds of the proxy and of puaside, puaside's
// CPU per call, PUBLISHes the presence server refused and the dialog lamps
// still lit (AoRs whose stored dialog document shows a dialog that is not
// terminated) 15 s after the last call. Run with -benchtime Nx: one run of
// N calls.
func BenchmarkKamailioCalls(b *testing.B) {
	if _, err := exec.LookPath("sipp"); err != nil {
		b.Fatalf("sipp is required: %v", err)
	}
	for _, tc := range []struct{ name, variant string }{
		{"input=siptrace", "WITH_SIPTRACE"},
		{"input=hep", "WITH_HEP"},
		// The module puaside replaces, in the proxy, on the same calls.
		{"peer=pua_dialoginfo", "WITH_PUA_DIALOGINFO"},
	} {
		b.Run(tc.name, func(b *testing.B) { benchKamailioCalls(b, tc.variant) })
	}
}

func benchKamailioCalls(b *testing.B, variant string) {
	presence := presenceServer(b)
	relay := startCallRelay(b, presence.Addr())
	var ps *daemonProc
	var reg *kamailiotest.Instance
	cfg := baseConfig(b, nil)
	if variant == "WITH_PUA_DIALOGINFO" {
		reg = kamailiotest.Start(b, kamailiotest.Options{
			Config: kamailiotest.ConfigPath(b, "registrar.cfg"),
			DB:     kamailiotest.SQLite, // pua's table
			Defines: map[string]string{variant: "", "PRESENCE_URI": kamailiotest.Str("sip:" + relay.addr()),
				"DOMAIN": kamailiotest.Str("example.com")},
		})
	} else {
		cfg.LogLevel = "warn"
		cfg.Features = config.Features{Dialoginfo: true}
		cfg.PUA.ServerAddress = "sip:" + relay.addr()
		cfg.Ingest.ReplicateListen = nil
		if err := cfg.Validate(); err != nil {
			b.Fatalf("config: %v", err)
		}
		ps = startDaemonProc(b, "puaside", puasideBinary(b), writeDaemonConfig(b, cfg), cfg.HTTP.HTTPListen)
		reg = registrar(b, variant, cfg)
	}

	users := min(b.N, callBenchUsers)
	uasPort, uacPort := freePort(b), freePort(b)
	dir := b.TempDir()
	scen, err := filepath.Abs("testdata/sipp")
	if err != nil {
		b.Fatal(err)
	}
	uas := startSipp(b, "sipp callee", dir, "-sf", filepath.Join(scen, "uas-call.xml"), "-i", "127.0.0.1",
		"-p", strconv.Itoa(uasPort), "-d", strconv.Itoa(int(callBenchRing/time.Millisecond)))
	registerCallees(b, reg.Addr(), users, uasPort)

	var csv strings.Builder
	csv.WriteString("SEQUENTIAL\n")
	for i := range users {
		fmt.Fprintf(&csv, "caller%04d;callee%04d;example.com;\n", i, i)
	}
	inf := filepath.Join(dir, "calls.csv")
	if err := os.WriteFile(inf, []byte(csv.String()), 0o600); err != nil {
		b.Fatal(err)
	}

	// puaside's figures (none with the peer module).
	readPuaside := func() (time.Duration, map[string]float64, float64) {
		if ps == nil {
			return 0, nil, 0
		}
		c, err := procCPU(ps.cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		return c, publishStatuses(b, cfg.HTTP.HTTPListen), dlgMetricSum(b, cfg.HTTP.HTTPListen, "puaside_ingest_messages_total")
	}
	psCPU0, statuses0, copies0 := readPuaside()
	regCPU0, err := loadproc.TreeCPU(reg.Pid())
	if err != nil {
		b.Fatal(err)
	}
	kinds0 := relay.counts()

	b.ResetTimer()
	start := time.Now()
	limit := time.Duration(b.N/callBenchRate)*time.Second + time.Minute
	uac := startSipp(b, "sipp caller", dir, reg.Addr(), "-sf", filepath.Join(scen, "uac-call.xml"), "-inf", inf,
		"-i", "127.0.0.1", "-p", strconv.Itoa(uacPort), "-r", strconv.Itoa(callBenchRate), "-m", strconv.Itoa(b.N),
		"-d", strconv.Itoa(int(callBenchTalk/time.Millisecond)), "-timeout", strconv.Itoa(int(limit/time.Second)))
	uacErr := uac.wait(limit + 10*time.Second)
	el := time.Since(start)
	b.StopTimer()
	if !uas.running() {
		b.Fatalf("the callees' sipp stopped:\n%s", uas.output())
	}
	failed := sippFailedCalls(uac.output())
	if uacErr != nil && failed == 0 {
		b.Fatalf("sipp caller: %v\n%s", uacErr, uac.output())
	}
	time.Sleep(callBenchSettle)

	psCPU, statuses, copies := readPuaside()
	copies -= copies0
	regCPU, err := loadproc.TreeCPU(reg.Pid())
	if err != nil {
		b.Fatal(err)
	}
	kinds := relay.counts()
	lit, err := litDialogLamps(presence)
	if err != nil {
		b.Fatal(err)
	}
	calls := float64(b.N)
	b.ReportMetric(calls/el.Seconds(), "calls/s")
	b.ReportMetric(failed, "failed-calls")
	b.ReportMetric((regCPU - regCPU0).Seconds(), "proxy-cpu-s")
	b.ReportMetric(float64((regCPU-regCPU0).Microseconds())/1000/calls, "proxy-cpu-ms/call")
	if ps != nil {
		b.ReportMetric((psCPU - psCPU0).Seconds(), "puaside-cpu-s")
		b.ReportMetric(float64((psCPU-psCPU0).Microseconds())/1000/calls, "puaside-cpu-ms/call")
	}
	var total int64
	for i, name := range dlgKindNames {
		n := kinds[i] - kinds0[i]
		total += n
		b.ReportMetric(float64(n)/calls, name+"/call")
	}
	b.ReportMetric(float64(total)/calls, "publish/call")
	b.ReportMetric(float64(lit), "lamps-lit")
	if ps != nil {
		// PUBLISHes the presence server refused (puaside retries them;
		// the peer module's replies bypass the relay and are not seen).
		var refused float64
		for st, n := range statuses {
			if code, err := strconv.Atoi(st); err == nil && code >= 300 {
				refused += n - statuses0[st]
			}
		}
		b.ReportMetric(refused, "publish-refused")
		// Copies puaside read (duplicates included), per call.
		b.ReportMetric(copies/calls, "copies/call")
	}
	b.ReportMetric(0, "ns/op")
}

// registerCallees registers callee0000 … with their contact at the
// callees' sipp (port), and waits for every 200.
func registerCallees(tb testing.TB, registrar string, n, port int) {
	tb.Helper()
	conn, err := net.Dial("udp4", registrar)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	buf := make([]byte, 8192)
	for i := range n {
		user := fmt.Sprintf("callee%04d", i)
		req := fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %s;branch=z9hG4bK-reg-%d;rport\r\n"+
			"Max-Forwards: 70\r\n"+
			"From: <sip:%s@example.com>;tag=r%d\r\n"+
			"To: <sip:%s@example.com>\r\n"+
			"Call-ID: reg-%d@bench\r\n"+
			"CSeq: 1 REGISTER\r\n"+
			"Contact: <sip:%s@127.0.0.1:%d>\r\n"+
			"Expires: 600\r\n"+
			"Content-Length: 0\r\n\r\n", local, i, user, i, user, i, user, port)
		ok := false
		for try := 0; try < 5 && !ok; try++ {
			if _, err := conn.Write([]byte(req)); err != nil {
				tb.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			for {
				m, err := conn.Read(buf)
				if err != nil {
					break
				}
				if bytes.HasPrefix(buf[:m], []byte("SIP/2.0 200")) && bytes.Contains(buf[:m], []byte(fmt.Sprintf("reg-%d@bench", i))) {
					ok = true
					break
				}
			}
		}
		if !ok {
			tb.Fatalf("REGISTER %s: no 200", user)
		}
	}
}

// sippProc is one sipp process, in its own process group.
type sippProc struct {
	cmd    *exec.Cmd
	out    *kamailiotest.SyncBuffer
	exited chan struct{}
	err    error
}

// startSipp runs sipp with args (in dir, no terminal input); it is killed
// when the benchmark ends.
func startSipp(tb testing.TB, name, dir string, args ...string) *sippProc {
	tb.Helper()
	p := &sippProc{out: &kamailiotest.SyncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command("sipp", append(args, "-nostdin")...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-p.exited:
		case <-time.After(waitLimit):
			tb.Errorf("%s still running after SIGKILL", name)
		}
	})
	return p
}

// wait waits, at most limit, for sipp to exit and returns its status.
func (p *sippProc) wait(limit time.Duration) error {
	select {
	case <-p.exited:
		return p.err
	case <-time.After(limit):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		return fmt.Errorf("sipp did not end within %s", limit)
	}
}

func (p *sippProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// output is the last 4 kB of what sipp wrote.
func (p *sippProc) output() string {
	s := p.out.String()
	return s[max(0, len(s)-4096):]
}

// sippFailedRe matches the cumulative failed-call count of sipp's final
// statistics screen.
var sippFailedRe = regexp.MustCompile(`Failed call\s*\|\s*\d+\s*\|\s*(\d+)`)

// sippFailedCalls reads the failed calls of sipp's last statistics screen.
func sippFailedCalls(out string) float64 {
	m := sippFailedRe.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return 0
	}
	n, _ := strconv.ParseFloat(m[len(m)-1][1], 64)
	return n
}

// procCPU is the CPU time of one process (all its threads).
func procCPU(pid int) (time.Duration, error) {
	st, err := loadproc.ReadStat(pid)
	if err != nil {
		return 0, err
	}
	return st.CPU(), nil
}

// publishStatuses reads puaside's PUBLISH transactions by final status.
func publishStatuses(tb testing.TB, httpAddr string) map[string]float64 {
	tb.Helper()
	out := map[string]float64{}
	body := metricsText(tb, httpAddr)
	for l := range strings.Lines(body) {
		series, val, ok := strings.Cut(strings.TrimSpace(l), " ")
		if !ok || !strings.HasPrefix(series, "puaside_sip_requests_total{") || !strings.Contains(series, `method="PUBLISH"`) {
			continue
		}
		_, rest, _ := strings.Cut(series, `status="`)
		st, _, _ := strings.Cut(rest, `"`)
		if f, err := strconv.ParseFloat(val, 64); err == nil {
			out[st] += f
		}
	}
	return out
}

// metricsText fetches puaside's /metrics.
func metricsText(tb testing.TB, httpAddr string) string {
	tb.Helper()
	cl := &http.Client{Timeout: waitLimit}
	res, err := cl.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		tb.Fatalf("metrics: %v", err)
	}
	defer res.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(res.Body); err != nil {
		tb.Fatalf("metrics: %v", err)
	}
	return b.String()
}

// dialogStateRe finds the state of each dialog of a stored document.
var dialogStateRe = regexp.MustCompile(`<(?:[A-Za-z0-9_-]+:)?state(?:\s[^>]*)?>\s*([A-Za-z]+)\s*<`)

// litDialogLamps counts the AoRs whose dialog presentity at the presence
// server shows a dialog that is not terminated.
func litDialogLamps(presence *kamailiotest.Instance) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	rows, err := presence.DB().QueryContext(ctx, "SELECT username, domain, body FROM presentity WHERE event = 'dialog'")
	if err != nil {
		return 0, fmt.Errorf("presentity: %w", err)
	}
	defer rows.Close()
	lit := map[string]bool{}
	for rows.Next() {
		var user, domain string
		var body []byte
		if err := rows.Scan(&user, &domain, &body); err != nil {
			return 0, fmt.Errorf("presentity: %w", err)
		}
		for _, m := range dialogStateRe.FindAllSubmatch(body, -1) {
			if !strings.EqualFold(string(m[1]), "terminated") {
				lit[user+"@"+domain] = true
			}
		}
	}
	return len(lit), rows.Err()
}

// callRelay forwards UDP datagrams between puaside and the presence
// server and counts the PUBLISH transactions (retransmissions once) by
// kind: initial (no SIP-If-Match), modify (a body), refresh (no body) and
// remove (Expires: 0).
type callRelay struct {
	conn     *net.UDPConn
	upstream *net.UDPAddr
	client   atomic.Pointer[net.UDPAddr]
	mu       sync.Mutex
	seen     map[string]bool
	kinds    [4]int64
	wg       sync.WaitGroup
}

func startCallRelay(tb testing.TB, upstream string) *callRelay {
	tb.Helper()
	up, err := net.ResolveUDPAddr("udp4", upstream)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	_ = c.SetReadBuffer(4 << 20)
	r := &callRelay{conn: c, upstream: up, seen: map[string]bool{}}
	r.wg.Add(1)
	go r.serve()
	tb.Cleanup(func() {
		c.Close()
		r.wg.Wait()
	})
	return r
}

func (r *callRelay) addr() string { return r.conn.LocalAddr().String() }

func (r *callRelay) serve() {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := r.conn.ReadFromUDP(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(time.Millisecond)
			continue
		}
		if from.IP.Equal(r.upstream.IP) && from.Port == r.upstream.Port {
			if cl := r.client.Load(); cl != nil {
				_, _ = r.conn.WriteToUDP(buf[:n], cl)
			}
			continue
		}
		r.client.Store(from)
		r.count(buf[:n])
		_, _ = r.conn.WriteToUDP(buf[:n], r.upstream)
	}
}

// count classifies one request from puaside.
func (r *callRelay) count(msg []byte) {
	if !bytes.HasPrefix(msg, []byte("PUBLISH ")) {
		return
	}
	head, body, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	hdr := map[string]string{}
	for _, l := range strings.Split(string(head), "\r\n")[1:] {
		k, v, ok := strings.Cut(l, ":")
		if ok {
			hdr[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	key := hdr["call-id"] + " " + hdr["cseq"]
	kind := dlgKindModify
	switch {
	case hdr["expires"] == "0":
		kind = dlgKindRemove
	case hdr["sip-if-match"] == "":
		kind = dlgKindInitial
	case len(body) == 0:
		kind = dlgKindRefresh
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[key] {
		return
	}
	r.seen[key] = true
	r.kinds[kind]++
}

// counts returns the transactions counted so far by kind.
func (r *callRelay) counts() [4]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.kinds
}
