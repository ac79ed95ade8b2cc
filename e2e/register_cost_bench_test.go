package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/loadproc"
)

// The cost of a mirrored registration end to end, puaside against the
// module it replaces, through real Kamailio: a registrar (deploy/kamailio/
// registrar.cfg, 2 workers) and a presence server (presence.cfg on
// SQLite). N phones REGISTER at a fixed rate, then unREGISTER at the same
// rate. Three set-ups, each a sub-benchmark:
//
//   - pua_usrloc: Kamailio's pua + pua_usrloc in the registrar
//     (WITH_PUA_USRLOC) publish to the presence server;
//   - replicate: the registrar copies each REGISTER after save() to
//     puaside (WITH_REPLICATE), which publishes;
//   - hep: the registrar sends siptrace HEPv3 copies of each REGISTER and
//     its 200 to puaside (WITH_HEP).
//
// puaside is the built binary as a separate process (its defaults, SQLite
// store on disk; the presence server's SQLite file is on a tmpfs, so that
// it is not the bottleneck). CPU seconds come from /proc: the registrar's main process and
// its children (loadproc.TreeCPU), puaside's process; both from the first
// REGISTER to the end of the run. Latency is from sending a phone's
// REGISTER (or unREGISTER) to the presence server's 200 to the first
// PUBLISH for that user afterwards, i.e. the presentity stored (Kamailio's
// presence writes it before answering). A stateless relay in front of the
// presence server sees those answers: it adds its own Via on top of each
// request and takes it off the response, so the publisher is unaware.
//
//	go test -run '^$' -bench RegisterCost -benchtime 1x ./e2e
//
// Environment: PUASIDE_BENCH_USERS (6000), PUASIDE_BENCH_RATE (1200 a
// second), PUASIDE_BENCH_BIN (a puaside binary to measure instead of the
// one built from this tree, e.g. an older build).
func BenchmarkRegisterCost(b *testing.B) {
	users := benchEnvInt(b, "PUASIDE_BENCH_USERS", 6000)
	rate := benchEnvInt(b, "PUASIDE_BENCH_RATE", 1200)
	bin := os.Getenv("PUASIDE_BENCH_BIN")
	if bin == "" {
		var err error
		if bin, err = builtBinary(); err != nil {
			b.Fatal(err)
		}
	}
	for _, mode := range []string{"pua_usrloc", "replicate", "hep"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				r := runRegisterCost(b, mode, bin, users, rate)
				b.Logf("%s: %d users at %d/s: registrar %.2f s + puaside %.2f s CPU; REGISTER→presentity p50 %.2f ms p99 %.2f ms; unREGISTER p50 %.2f ms p99 %.2f ms; lost %d/%d",
					mode, users, rate, r.registrarCPU.Seconds(), r.puasideCPU.Seconds(), r.reg.p50, r.reg.p99, r.unreg.p50, r.unreg.p99, r.reg.lost, r.unreg.lost)
				b.ReportMetric(r.registrarCPU.Seconds(), "registrar-cpu-s")
				b.ReportMetric(r.puasideCPU.Seconds(), "puaside-cpu-s")
				b.ReportMetric((r.registrarCPU + r.puasideCPU).Seconds(), "total-cpu-s")
				b.ReportMetric(r.reg.p50, "reg-p50-ms")
				b.ReportMetric(r.reg.p99, "reg-p99-ms")
				b.ReportMetric(r.unreg.p50, "unreg-p50-ms")
				b.ReportMetric(r.unreg.p99, "unreg-p99-ms")
				b.ReportMetric(float64(r.reg.lost+r.unreg.lost), "lost")
			}
		})
	}
}

// benchEnvInt reads a positive integer from the environment, or def.
func benchEnvInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > 1_000_000 {
		b.Fatalf("%s=%q: want 1..1000000", name, s)
	}
	return n
}

// latencies are one phase's REGISTER → presentity figures.
type latencies struct {
	p50, p99 float64 // ms
	lost     int     // users whose PUBLISH was never answered 200
}

// costResult is one run of runRegisterCost.
type costResult struct {
	registrarCPU, puasideCPU time.Duration
	reg, unreg               latencies
}

// costDomain is the phones' domain.
const costDomain = "load.example"

// costShm is Kamailio's shared memory for the run (-m MiB): the default 64
// MiB does not hold 6,000 registrations with their transactions and
// publications, and Kamailio then answers 500.
var costShm = []string{"-m", "512"}

// runRegisterCost runs one set-up: the presence server, its relay, the
// registrar and (but for pua_usrloc) puaside; then the phones.
func runRegisterCost(b *testing.B, mode, bin string, users, rate int) costResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	presence := kamailiotest.Start(b, kamailiotest.Options{
		Config: kamailiotest.ConfigPath(b, "presence.cfg"),
		DB:     kamailiotest.SQLite,
		DBDir:  tmpfsDir(),
		Args:   costShm,
	})
	relay, err := newPublishRelay(presence.Addr(), users)
	if err != nil {
		b.Fatal(err)
	}
	defer relay.close()

	opts := kamailiotest.Options{Config: kamailiotest.ConfigPath(b, "registrar.cfg"), Workers: 2, Args: costShm, Defines: map[string]string{}}
	var pd *loadproc.Proc
	switch mode {
	case "pua_usrloc":
		opts.DB = kamailiotest.SQLite // pua's table, written every update_period
		opts.Defines["WITH_PUA_USRLOC"] = ""
		opts.Defines["PRESENCE_URI"] = kamailiotest.Str("sip:" + relay.addr())
		opts.Defines["DOMAIN"] = kamailiotest.Str(costDomain)
	case "replicate", "hep":
		port, err := loadproc.FreePort()
		if err != nil {
			b.Fatal(err)
		}
		pd = startCostPuaside(ctx, b, bin, mode, port, relay.addr())
		defer func() { _ = pd.Stop(time.Minute) }()
		if mode == "replicate" {
			opts.Defines["WITH_REPLICATE"] = ""
			opts.Defines["PUASIDE_REPLICATE_URI"] = kamailiotest.Str("sip:127.0.0.1:" + strconv.Itoa(port))
		} else {
			opts.Defines["WITH_HEP"] = ""
			opts.Defines["PUASIDE_HEP_URI"] = kamailiotest.Str("sip:127.0.0.1:" + strconv.Itoa(port))
		}
	default:
		b.Fatalf("unknown mode %q", mode)
	}
	registrar := kamailiotest.Start(b, opts)

	phones, err := newPhoneSender(registrar.Addr(), users)
	if err != nil {
		b.Fatal(err)
	}
	defer phones.close()

	cpu := func() (reg, pua time.Duration) {
		reg, err := loadproc.TreeCPU(registrar.Pid())
		if err != nil {
			b.Fatalf("registrar CPU: %v", err)
		}
		if pd != nil {
			st, err := pd.Stat()
			if err != nil {
				b.Fatalf("puaside CPU: %v", err)
			}
			pua = st.CPU()
		}
		return reg, pua
	}
	b.ResetTimer()
	reg0, pua0 := cpu()
	regSent := phones.send(ctx, rate, 3600, relay, relay.regAt)
	waitAll(ctx, relay.regAt, regSent, 20*time.Second)
	unregSent := phones.send(ctx, rate, 0, relay, relay.unregAt)
	waitAll(ctx, relay.unregAt, unregSent, 20*time.Second)
	reg1, pua1 := cpu()
	b.StopTimer()
	if n := phones.answered.Load(); n < int64(2*users) {
		b.Errorf("registrar answered %d of %d REGISTERs with 200", n, 2*users)
	}
	return costResult{
		registrarCPU: reg1 - reg0, puasideCPU: pua1 - pua0,
		reg: phaseLatency(regSent, relay.regAt), unreg: phaseLatency(unregSent, relay.unregAt),
	}
}

// tmpfsDir is /dev/shm when the host has it (the presence server's
// database there: its fsyncs would otherwise make it the bottleneck and
// answer 500 "database is locked"), else "" (the default directory).
func tmpfsDir() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return ""
}

// startCostPuaside runs the puaside binary: usrloc only, its input on
// port (replicate_listen or hep_listen), publishing to server.
func startCostPuaside(ctx context.Context, b *testing.B, bin, mode string, port int, server string) *loadproc.Proc {
	b.Helper()
	var ports [2]int
	for i := range ports {
		p, err := loadproc.FreePort()
		if err != nil {
			b.Fatal(err)
		}
		ports[i] = p
	}
	dir := b.TempDir()
	cfg := config.Default()
	cfg.LogLevel = "warn"
	cfg.DBURL = "sqlite://" + filepath.Join(dir, "puaside.db")
	cfg.Features = config.Features{Usrloc: true}
	cfg.PUA.Listen = []string{"udp:127.0.0.1:" + strconv.Itoa(ports[0])}
	cfg.PUA.ServerAddress = "sip:" + server
	cfg.HTTP.HTTPListen = "127.0.0.1:" + strconv.Itoa(ports[1])
	listen := []string{"udp:127.0.0.1:" + strconv.Itoa(port)}
	cfg.Ingest.ReplicateListen, cfg.Ingest.TraceListen, cfg.Ingest.HEPListen = nil, nil, nil
	if mode == "hep" {
		cfg.Ingest.HEPListen = listen
	} else {
		cfg.Ingest.ReplicateListen = listen
	}
	p, err := loadproc.StartPuaside(ctx, bin, cfg, dir, nil, time.Minute)
	if err != nil {
		b.Fatalf("puaside: %v", err)
	}
	b.Cleanup(func() {
		p.Kill()
		if b.Failed() {
			b.Logf("puaside output:\n%s", p.Output())
		}
	})
	return p
}

// waitAll waits until every one of the first n users has a time in at, at
// most limit.
func waitAll(ctx context.Context, at []atomic.Int64, n int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for i := 0; i < n && time.Now().Before(deadline) && ctx.Err() == nil; {
		if at[i].Load() != 0 {
			i++
			continue
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// phaseLatency turns the latencies (ns, 0 for a user never answered) of
// the first n users into percentiles.
func phaseLatency(n int, at []atomic.Int64) latencies {
	var l latencies
	lat := make([]float64, 0, n)
	for i := range n {
		if v := at[i].Load(); v > 0 {
			lat = append(lat, float64(v)/1e6)
		} else {
			l.lost++
		}
	}
	slices.Sort(lat)
	q := func(p int) float64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[max(0, (len(lat)*p+99)/100-1)]
	}
	l.p50, l.p99 = q(50), q(99)
	return l
}

// publishRelay is a stateless relay in front of the presence server for
// one publisher: it puts its own Via on top of each request, forwards it,
// takes its Via off each response and sends that to the publisher. A 200
// to a PUBLISH for user uN sets the latency of N's pending phase.
type publishRelay struct {
	down, up *net.UDPConn
	client   atomic.Pointer[net.UDPAddr]
	// sentAt holds, per user, the send time of the pending (un)REGISTER;
	// regAt and unregAt the latency (ns) once its PUBLISH was answered.
	sentAt         []atomic.Int64
	regAt, unregAt []atomic.Int64
	phase          atomic.Pointer[[]atomic.Int64] // regAt or unregAt
	wg             sync.WaitGroup
}

func newPublishRelay(server string, users int) (*publishRelay, error) {
	down, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	sa, err := net.ResolveUDPAddr("udp4", server)
	if err != nil {
		down.Close()
		return nil, fmt.Errorf("relay: %w", err)
	}
	up, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, sa)
	if err != nil {
		down.Close()
		return nil, fmt.Errorf("relay: %w", err)
	}
	for _, c := range []*net.UDPConn{down, up} {
		_ = c.SetReadBuffer(4 << 20)
		_ = c.SetWriteBuffer(4 << 20)
	}
	r := &publishRelay{down: down, up: up, sentAt: make([]atomic.Int64, users),
		regAt: make([]atomic.Int64, users), unregAt: make([]atomic.Int64, users)}
	r.wg.Add(2)
	go r.requests()
	go r.responses()
	return r, nil
}

func (r *publishRelay) addr() string { return r.down.LocalAddr().String() }

func (r *publishRelay) close() {
	r.down.Close()
	r.up.Close()
	r.wg.Wait()
}

// requests forwards the publisher's requests with the relay's Via on top.
func (r *publishRelay) requests() {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	out := make([]byte, 0, 65536)
	me := r.up.LocalAddr().String()
	for {
		n, from, err := r.down.ReadFromUDP(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil || n == 0 || bytes.HasPrefix(buf[:n], []byte("SIP/2.0 ")) {
			continue // the relay carries requests one way only
		}
		r.client.Store(from)
		msg := buf[:n]
		eol := bytes.Index(msg, []byte("\r\n"))
		if eol < 0 {
			continue
		}
		out = append(out[:0], msg[:eol+2]...)
		out = append(out, "Via: SIP/2.0/UDP "+me+";branch=z9hG4bKrelay"...)
		out = append(out, topBranch(msg)...)
		out = append(out, "\r\n"...)
		out = append(out, msg[eol+2:]...)
		_, _ = r.up.Write(out)
	}
}

// responses takes the relay's Via off the presence server's responses and
// sends them on; a 200 to a PUBLISH completes its user's phase.
func (r *publishRelay) responses() {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	out := make([]byte, 0, 65536)
	for {
		n, err := r.up.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil || n == 0 {
			continue
		}
		now := time.Now().UnixNano()
		msg := buf[:n]
		start, end := headerLine(msg, "via")
		if start < 0 {
			continue
		}
		out = append(append(out[:0], msg[:start]...), msg[end:]...)
		if c := r.client.Load(); c != nil {
			_, _ = r.down.WriteToUDP(out, c)
		}
		if bytes.HasPrefix(msg, []byte("SIP/2.0 200")) {
			if s, e := headerLine(msg, "cseq"); s >= 0 && bytes.Contains(msg[s:e], []byte("PUBLISH")) {
				r.answered(msg, now)
			}
		}
	}
}

// answered notes the 200 to a PUBLISH for user uN at now.
func (r *publishRelay) answered(msg []byte, now int64) {
	s, e := headerLine(msg, "to")
	if s < 0 {
		return
	}
	to := string(msg[s:e])
	_, after, ok := strings.Cut(to, "sip:u")
	if !ok {
		return
	}
	user, _, _ := strings.Cut(after, "@")
	i, err := strconv.Atoi(user)
	if err != nil || i < 0 || i >= len(r.sentAt) {
		return
	}
	phase := r.phase.Load()
	sent := r.sentAt[i].Load()
	if phase == nil || sent == 0 || now < sent {
		return
	}
	(*phase)[i].CompareAndSwap(0, now-sent)
}

// topBranch is the branch parameter of the first Via header of msg.
func topBranch(msg []byte) []byte {
	s, e := headerLine(msg, "via")
	if s < 0 {
		return nil
	}
	line := msg[s:e]
	i := bytes.Index(line, []byte("branch="))
	if i < 0 {
		return nil
	}
	v := line[i+len("branch="):]
	if j := bytes.IndexAny(v, ";,\r\n "); j >= 0 {
		v = v[:j]
	}
	return v
}

// headerLine finds the first header line named name (lower case; the
// compact forms v and t included) of msg: start of the line and end after
// its CRLF, or -1, -1.
func headerLine(msg []byte, name string) (start, end int) {
	compact := map[string]string{"via": "v", "to": "t"}[name]
	pos := bytes.Index(msg, []byte("\r\n"))
	for pos >= 0 && pos+2 < len(msg) {
		ls := pos + 2
		le := bytes.Index(msg[ls:], []byte("\r\n"))
		if le <= 0 {
			return -1, -1 // end of headers
		}
		line := msg[ls : ls+le]
		colon := bytes.IndexByte(line, ':')
		if colon > 0 {
			h := strings.ToLower(strings.TrimSpace(string(line[:colon])))
			if h == name || (compact != "" && h == compact) {
				return ls, ls + le + 2
			}
		}
		pos = ls + le
	}
	return -1, -1
}

// phoneSender plays the phones from one UDP socket: user i's REGISTER
// (Contact with the given expiry), paced, and counts the registrar's 200s.
type phoneSender struct {
	conn     *net.UDPConn
	users    int
	cseq     int
	answered atomic.Int64
	wg       sync.WaitGroup
}

func newPhoneSender(registrar string, users int) (*phoneSender, error) {
	ra, err := net.ResolveUDPAddr("udp4", registrar)
	if err != nil {
		return nil, fmt.Errorf("phones: %w", err)
	}
	c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, ra)
	if err != nil {
		return nil, fmt.Errorf("phones: %w", err)
	}
	_ = c.SetReadBuffer(4 << 20)
	_ = c.SetWriteBuffer(4 << 20)
	p := &phoneSender{conn: c, users: users}
	p.wg.Add(1)
	go p.read()
	return p, nil
}

func (p *phoneSender) close() {
	p.conn.Close()
	p.wg.Wait()
}

func (p *phoneSender) read() {
	defer p.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := p.conn.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err == nil && bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200")) {
			p.answered.Add(1)
		}
	}
}

// send sends one REGISTER per user with Contact expiry exp, paced at rate,
// and records each send time with the relay before it goes out; the
// relay puts the latencies in phase (its regAt or unregAt). It returns how many it sent.
func (p *phoneSender) send(ctx context.Context, rate, exp int, relay *publishRelay, phase []atomic.Int64) int {
	relay.phase.Store(&phase)
	p.cseq++
	local := p.conn.LocalAddr().String()
	start := time.Now()
	msg := make([]byte, 0, 1024)
	n := 0
	for n < p.users && ctx.Err() == nil {
		due := min(p.users, int(time.Since(start).Seconds()*float64(rate))+1)
		if due <= n {
			time.Sleep(200 * time.Microsecond)
			continue
		}
		for ; n < due; n++ {
			msg = msg[:0]
			msg = fmt.Appendf(msg, "REGISTER sip:%s SIP/2.0\r\n", costDomain)
			msg = fmt.Appendf(msg, "Via: SIP/2.0/UDP %s;rport;branch=z9hG4bKph%d.%d\r\n", local, n, p.cseq)
			msg = fmt.Appendf(msg, "Max-Forwards: 70\r\n")
			msg = fmt.Appendf(msg, "From: <sip:u%d@%s>;tag=f%d\r\n", n, costDomain, n)
			msg = fmt.Appendf(msg, "To: <sip:u%d@%s>\r\n", n, costDomain)
			msg = fmt.Appendf(msg, "Call-ID: reg-%d@phones\r\n", n)
			msg = fmt.Appendf(msg, "CSeq: %d REGISTER\r\n", p.cseq)
			msg = fmt.Appendf(msg, "Contact: <sip:u%d@%s;line=%d>;expires=%d\r\n", n, local, n, exp)
			msg = fmt.Appendf(msg, "User-Agent: puaside-bench\r\n")
			msg = fmt.Appendf(msg, "Content-Length: 0\r\n\r\n")
			relay.sentAt[n].Store(time.Now().UnixNano())
			_, _ = p.conn.Write(msg)
		}
	}
	return n
}
