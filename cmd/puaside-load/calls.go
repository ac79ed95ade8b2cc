package main

// Call mode (-calls N): the call path of puaside, siptrace copy in →
// dialog-info PUBLISH out (ingest → dialoginfo tracker → pua engine → SIP).
//
// puaside runs with the dialoginfo tracker only, in this process or, with
// -proc, as the built binary in its own process (its own CPU time is then
// measured apart from the tool's). The sender plays a Kamailio proxy
// tracing its calls with siptrace: every message of a plain call (INVITE,
// 180, 200, ACK, BYE, 200) is sent twice, as received and as forwarded by
// the proxy (12 datagrams a call; the shapes are Kamailio 5.6's), as plain
// copies to puaside's trace_listen or, with -input hep, each in a HEPv3
// packet to its hep_listen. Calls start at -call-rate per
// second; each rings for -ring after its 180, talks for -talk, then the
// caller hangs up. Every call has its own caller and callee.
//
// A fake presence server answers every PUBLISH 200 with a SIP-ETag and the
// Expires asked, counts the PUBLISHes by kind (initial, modify, refresh,
// remove), and keeps the last state of every dialog publication. After the
// last call the tool waits past terminated_linger (-call-settle) and
// counts the lamps still lit: publications whose last document shows a
// dialog that is not terminated (a removal does not clear a lamp at a
// Kamailio presence server, which keeps notifying the last document).
//
// The latency is from the first copy of a message to the arrival of the
// caller's PUBLISH that carries its effect (INVITE → trying, 180 → early,
// 200 → confirmed, BYE → terminated).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/ingest"
)

// Bounds of the call mode's flags.
const (
	maxCalls    = 1_000_000
	maxCallRate = 10_000
	maxHold     = time.Minute
)

// callOptions are the settings of a call-mode run.
type callOptions struct {
	Calls  int           // calls placed; 0 = call mode off
	Rate   int           // calls started per second
	Ring   time.Duration // 180 → 200
	Talk   time.Duration // 200 → BYE
	Settle time.Duration // wait after the last call before the lamps are read
	Linger time.Duration // puaside's dialoginfo.terminated_linger; 0 = its default
	DBURL  string        // empty: SQLite in a temporary directory
	Input  string        // inputTrace (siptrace plain copies) or inputHEP
	Proc   bool          // puaside as a separate process
	Bin    string        // with Proc: the puaside binary ("" = go build)
	Prof   profiles      // the profiles of the run
	Log    io.Writer
}

// callFlags registers the call mode's flags on fs.
func callFlags(fs *flag.FlagSet) *callOptions {
	o := &callOptions{}
	fs.IntVar(&o.Calls, "calls", 0, "call mode: place this many calls (siptrace copies → dialog-info PUBLISH) instead of REGISTERs")
	fs.IntVar(&o.Rate, "call-rate", 100, "call mode: calls started per second")
	fs.DurationVar(&o.Ring, "ring", 200*time.Millisecond, "call mode: ringing time (180 → 200)")
	fs.DurationVar(&o.Talk, "talk", time.Second, "call mode: talk time (200 → BYE)")
	fs.DurationVar(&o.Settle, "call-settle", 0, "call mode: wait after the last call before counting lit lamps (0: terminated_linger + 2s)")
	fs.DurationVar(&o.Linger, "linger", 0, "call mode: puaside's dialoginfo.terminated_linger (0: its default)")
	return o
}

func (o *callOptions) validate() error {
	switch {
	case o.Calls < 1 || o.Calls > maxCalls:
		return fmt.Errorf("-calls %d: want 1..%d", o.Calls, maxCalls)
	case o.Rate < 1 || o.Rate > maxCallRate:
		return fmt.Errorf("-call-rate %d: want 1..%d", o.Rate, maxCallRate)
	case o.Ring < 0 || o.Ring > maxHold:
		return fmt.Errorf("-ring %s: want [0, %s]", o.Ring, maxHold)
	case o.Talk < 0 || o.Talk > maxHold:
		return fmt.Errorf("-talk %s: want [0, %s]", o.Talk, maxHold)
	case o.Settle < 0 || o.Settle > maxDuration:
		return fmt.Errorf("-call-settle %s: want [0, %s]", o.Settle, maxDuration)
	case o.Linger < 0 || o.Linger > maxHold:
		return fmt.Errorf("-linger %s: want [0, %s]", o.Linger, maxHold)
	case time.Duration(o.Calls/o.Rate)*time.Second > maxDuration:
		return fmt.Errorf("-calls %d at -call-rate %d: longer than %s", o.Calls, o.Rate, maxDuration)
	case o.Input != "" && o.Input != inputTrace && o.Input != inputHEP:
		return fmt.Errorf("-input %q: want %s or %s with -calls", o.Input, inputTrace, inputHEP)
	case o.Bin != "" && !o.Proc:
		return errors.New("-bin needs -proc")
	}
	return nil
}

// callResult is what a call-mode run measured.
type callResult struct {
	Calls     int     `json:"calls"`
	Rate      int     `json:"call_rate"`
	Seconds   float64 `json:"seconds"` // first copy to last call's terminated PUBLISH
	CallsPerS float64 `json:"calls_per_s"`
	Copies    int64   `json:"copies"`
	// Lost counts the calls whose caller terminated PUBLISH never came;
	// Coalesced the earlier phases of a call that the engine folded into
	// a later PUBLISH (a state superseded while its PUBLISH waited).
	Lost      int64 `json:"lost_calls"`
	Coalesced int64 `json:"coalesced_phases"`
	// PublishPerCall is every PUBLISH by kind (initial, modify, refresh,
	// remove), per call, the settle included.
	PublishPerCall map[string]float64 `json:"publish_per_call"`
	PublishTotal   int64              `json:"publish_total"`
	LampsLit       int                `json:"lamps_lit"`
	P50ms          float64            `json:"p50_ms"`
	P99ms          float64            `json:"p99_ms"`
	P999ms         float64            `json:"p999_ms"`
	Maxms          float64            `json:"max_ms"`
	// Input is the copies played (trace or hep); Separate is whether
	// puaside ran as its own process.
	Input    string `json:"input"`
	Separate bool   `json:"separate_process"`
	// CPUSeconds is the CPU time from the first copy to the end of the
	// settle: puaside's own with -proc, else this whole process (puaside,
	// the fake presence server and the sender).
	CPUSeconds    float64            `json:"cpu_seconds"`
	CPUPerCallMs  float64            `json:"cpu_per_call_ms"`
	IngestDrops   map[string]float64 `json:"ingest_drops"`
	PublishStatus map[string]float64 `json:"publish_status"`
	// SocketDrops is the kernel's drop count per socket (/proc/net/udp):
	// trace (puaside's input), pua (puaside's SIP socket), presence.
	SocketDrops map[string]int64 `json:"socket_drops"`
	GOMAXPROCS  int              `json:"gomaxprocs"`
}

// runCalls performs one call-mode measurement.
func runCalls(ctx context.Context, o callOptions) (callResult, error) {
	if err := o.validate(); err != nil {
		return callResult{}, err
	}
	srv, err := startCallPresence(o.Calls)
	if err != nil {
		return callResult{}, err
	}
	defer srv.close()
	if o.Input == "" {
		o.Input = inputTrace
	}
	var cfg config.Config
	ps, stop, err := startRun(ctx, o.Prof, targetOptions{Proc: o.Proc, Bin: o.Bin, Input: o.Input, Log: o.Log},
		func(dir string) config.Config { cfg = callConfig(o, dir, srv.addr()); return cfg })
	if err != nil {
		return callResult{}, err
	}
	defer stop()
	target := ps.input()
	conn, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, target)
	if err != nil {
		return callResult{}, fmt.Errorf("sender: %w", err)
	}
	defer conn.Close()
	_ = conn.SetWriteBuffer(8 << 20)

	cpu0 := ps.cpu()
	start := time.Now()
	copies := playCalls(ctx, conn, o, srv)
	// Wait for the caller's terminated PUBLISH of every call (bounded).
	deadline := time.Now().Add(30 * time.Second)
	for srv.done.Load() < int64(o.Calls) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	last := time.Unix(0, srv.lastDone.Load())
	settle := o.Settle
	if settle == 0 {
		settle = cfg.Dialoginfo.TerminatedLinger + 2*time.Second
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
	}
	cpu := ps.cpu() - cpu0

	r := callResult{Calls: o.Calls, Rate: o.Rate, Copies: copies, GOMAXPROCS: runtime.GOMAXPROCS(0),
		PublishPerCall: map[string]float64{}, Input: o.Input, Separate: ps.separate()}
	if last.After(start) {
		r.Seconds = last.Sub(start).Seconds()
		r.CallsPerS = float64(o.Calls) / r.Seconds
	}
	for i, name := range publishKinds {
		n := srv.kinds[i].Load()
		r.PublishTotal += n
		r.PublishPerCall[name] = float64(n) / float64(o.Calls)
	}
	r.LampsLit = srv.lit()
	var lat []time.Duration
	for i := range srv.sentAt {
		for p := range callPhases {
			s, a := srv.sentAt[i][p].Load(), srv.arrival[i][p].Load()
			switch {
			case s == 0:
			case a == 0 && p == callPhases-1:
				r.Lost++
			case a == 0:
				r.Coalesced++
			default:
				lat = append(lat, time.Duration(a-s))
			}
		}
	}
	slices.Sort(lat)
	r.P50ms, r.P99ms = pct(lat, 50), pct(lat, 99)
	if len(lat) > 0 {
		r.P999ms = ms(lat[min(len(lat)-1, len(lat)*999/1000)])
		r.Maxms = ms(lat[len(lat)-1])
	}
	r.CPUSeconds = cpu.Seconds()
	r.CPUPerCallMs = float64(cpu.Microseconds()) / 1000 / float64(o.Calls)
	if h := ps.httpAddr(); h != "" {
		r.IngestDrops, r.PublishStatus = scrape(ctx, h)
	}
	r.SocketDrops = map[string]int64{}
	for name, a := range map[string]string{o.Input: target.String(), "pua": ps.puaAddr(), "presence": srv.addr()} {
		if n, err := socketDrops(a); err == nil {
			r.SocketDrops[name] = n
		}
	}
	return r, nil
}

// callConfig is puaside's configuration for a call run: dialoginfo only,
// the trace input, every socket on a free 127.0.0.1 port.
func callConfig(o callOptions, dir, server string) config.Config {
	cfg := baseConfig(o.DBURL, dir, server)
	cfg.Features = config.Features{Dialoginfo: true}
	if o.Input == inputHEP {
		cfg.Ingest.HEPListen = []string{"udp:127.0.0.1:0"}
	} else {
		cfg.Ingest.TraceListen = []string{"udp:127.0.0.1:0"}
	}
	if o.Linger > 0 {
		cfg.Dialoginfo.TerminatedLinger = o.Linger
	}
	// Every caller and callee is local (the load domain).
	cfg.Dialoginfo.Domains = []string{domain}
	return cfg
}

// callPhases are a call's messages as the sender plays them; each is sent
// at its offset from the call's start and published as the caller's state.
const callPhases = 4

var phaseState = [callPhases]string{"trying", "early", "confirmed", "terminated"}

// phaseOffsets are the phases' offsets from a call's start.
func (o *callOptions) phaseOffsets() [callPhases]time.Duration {
	const answerDelay = 10 * time.Millisecond // INVITE → 180
	return [callPhases]time.Duration{0, answerDelay, answerDelay + o.Ring, answerDelay + o.Ring + o.Talk}
}

// playCalls sends every call's copies at their times and returns how many
// datagrams were sent.
func playCalls(ctx context.Context, conn *net.UDPConn, o callOptions, srv *callPresence) int64 {
	start := time.Now()
	off := o.phaseOffsets()
	var next [callPhases]int // next call of each phase
	interval := time.Second / time.Duration(o.Rate)
	var buf, hep []byte
	var sent int64
	at := func(p int) time.Time { return start.Add(time.Duration(next[p])*interval + off[p]) }
	for ctx.Err() == nil {
		p := -1
		for q := range callPhases {
			if next[q] < o.Calls && (p < 0 || at(q).Before(at(p))) {
				p = q
			}
		}
		if p < 0 {
			break
		}
		if w := time.Until(at(p)); w > 0 {
			time.Sleep(w)
		}
		i := next[p]
		srv.sentAt[i][p].Store(time.Now().UnixNano())
		for k, tmpl := range callTemplates[p] {
			buf = callCopy(buf[:0], tmpl, i)
			out := buf
			if o.Input == inputHEP {
				var err error
				if hep, err = hepCopy(hep[:0], buf, k); err != nil {
					continue
				}
				out = hep
			}
			if _, err := conn.Write(out); err == nil {
				sent++
			}
		}
		next[p]++
	}
	return sent
}

// callCopy fills a template for call i.
func callCopy(b []byte, tmpl string, i int) []byte {
	n := strconv.Itoa(i)
	for {
		j := strings.IndexByte(tmpl, '{')
		if j < 0 {
			return append(b, tmpl...)
		}
		b = append(b, tmpl[:j]...)
		k := strings.IndexByte(tmpl[j:], '}')
		switch tmpl[j : j+k+1] {
		case "{n}":
			b = append(b, n...)
		case "{d}":
			b = append(b, domain...)
		case "{len}":
			b = strconv.AppendInt(b, int64(len(callSDP)), 10)
		}
		tmpl = tmpl[j+k+1:]
	}
}

// The copies of a call as Kamailio 5.6's siptrace sends them: each message
// as received and as forwarded. {n} is the call number, {d} the domain.
const (
	callSDP = "v=0\r\no=caller 53655765 2353687637 IN IP4 10.2.0.1\r\ns=-\r\nc=IN IP4 10.2.0.1\r\n" +
		"t=0 0\r\nm=audio 6004 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	callFrom    = "From: <sip:a{n}@{d}>;tag=ft{n}\r\n"
	callTo      = "To: <sip:b{n}@{d}>\r\n"
	callToTag   = "To: <sip:b{n}@{d}>;tag=tt{n}\r\n"
	callID      = "Call-ID: load-{n}@puaside-load\r\n"
	callRR      = "Record-Route: <sip:10.0.0.1;lr;ftag=ft{n};did=c93.eef>\r\n"
	callViaIn   = "Via: SIP/2.0/UDP 10.2.0.1:5060;branch=z9hG4bK-{n}-0;rport\r\n"
	callViaBoth = "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK3d34.{n}.0, SIP/2.0/UDP 10.2.0.1:5060;received=10.2.0.1;branch=z9hG4bK-{n}-0;rport=5060\r\n"
	callViaOut  = "Via: SIP/2.0/UDP 10.2.0.1:5060;received=10.2.0.1;branch=z9hG4bK-{n}-0;rport=5060\r\n"
	callReply   = callFrom + callToTag + callID + "CSeq: 1 INVITE\r\n" + callRR + "Contact: <sip:b{n}@10.3.0.1:5060>\r\n"
	callInDlg   = callFrom + callToTag + callID
)

var callTemplates = [callPhases][]string{
	{
		"INVITE sip:b{n}@{d} SIP/2.0\r\n" + callViaIn + "Max-Forwards: 70\r\n" + callFrom + callTo + callID +
			"CSeq: 1 INVITE\r\nContact: <sip:a{n}@10.2.0.1:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n" + callSDP,
		"INVITE sip:b{n}@10.3.0.1:5060 SIP/2.0\r\n" + callRR +
			"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK3d34.{n}.0\r\nVia: SIP/2.0/UDP 10.2.0.1:5060;received=10.2.0.1;branch=z9hG4bK-{n}-0;rport=5060\r\n" +
			"Max-Forwards: 69\r\n" + callFrom + callTo + callID +
			"CSeq: 1 INVITE\r\nContact: <sip:a{n}@10.2.0.1:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n" + callSDP,
	},
	{
		"SIP/2.0 180 Ringing\r\n" + callViaBoth + callReply + "Content-Length: 0\r\n\r\n",
		"SIP/2.0 180 Ringing\r\n" + callViaOut + callReply + "Content-Length: 0\r\n\r\n",
	},
	{
		"SIP/2.0 200 OK\r\n" + callViaBoth + callReply + "Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n" + callSDP,
		"SIP/2.0 200 OK\r\n" + callViaOut + callReply + "Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n" + callSDP,
		"ACK sip:b{n}@10.3.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.2.0.1:5060;branch=z9hG4bK-{n}-5;rport\r\nMax-Forwards: 70\r\n" +
			callInDlg + "CSeq: 1 ACK\r\nRoute: <sip:10.0.0.1;lr;ftag=ft{n};did=c93.eef>\r\nContent-Length: 0\r\n\r\n",
		"ACK sip:b{n}@10.3.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK0d34.{n}.5\r\n" +
			"Via: SIP/2.0/UDP 10.2.0.1:5060;received=10.2.0.1;branch=z9hG4bK-{n}-5;rport=5060\r\nMax-Forwards: 69\r\n" +
			callInDlg + "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
	},
	{
		"BYE sip:b{n}@10.3.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.2.0.1:5060;branch=z9hG4bK-{n}-8;rport\r\nMax-Forwards: 70\r\n" +
			callInDlg + "CSeq: 2 BYE\r\nRoute: <sip:10.0.0.1;lr;ftag=ft{n};did=c93.eef>\r\nContent-Length: 0\r\n\r\n",
		"BYE sip:b{n}@10.3.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK0d34.{n}.8\r\n" +
			"Via: SIP/2.0/UDP 10.2.0.1:5060;received=10.2.0.1;branch=z9hG4bK-{n}-8;rport=5060\r\nMax-Forwards: 69\r\n" +
			callInDlg + "CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
		"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK0d34.{n}.8, SIP/2.0/UDP 10.2.0.1:5060;received=10.2.0.1;branch=z9hG4bK-{n}-8;rport=5060\r\n" +
			callInDlg + "CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
		"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.2.0.1:5060;received=10.2.0.1;branch=z9hG4bK-{n}-8;rport=5060\r\n" +
			callInDlg + "CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
	},
}

// publishKinds name the PUBLISH kinds counted by callPresence.
var publishKinds = [4]string{"initial", "modify", "refresh", "remove"}

// callPresence is a stateless presence server for dialog-info PUBLISHes.
type callPresence struct {
	publishServer
	sentAt  [][callPhases]atomic.Int64 // first copy of each phase, Unix ns
	arrival [][callPhases]atomic.Int64 // caller PUBLISH of each phase, Unix ns
	kinds   [4]atomic.Int64
	// done counts the calls whose caller terminated PUBLISH arrived;
	// lastDone is the latest such arrival (Unix ns).
	done, lastDone atomic.Int64
	mu             sync.Mutex
	last           map[string]string // publication (AoR + dialog id) → last state
}

func startCallPresence(calls int) (*callPresence, error) {
	f := &callPresence{last: map[string]string{},
		sentAt: make([][callPhases]atomic.Int64, calls), arrival: make([][callPhases]atomic.Int64, calls)}
	if err := f.listen(); err != nil {
		return nil, err
	}
	f.start(f.record)
	return f, nil
}

var (
	dialogIDRe    = regexp.MustCompile(`<dialog id="([^"]*)"(?: call-id="load-(\d+)@puaside-load")?[^>]*direction="(initiator|recipient)"`)
	dialogStateRe = regexp.MustCompile(`<state[^>]*>([a-z]+)</state>`)
)

// record counts one PUBLISH and notes what its document shows.
func (f *callPresence) record(req *sip.Request, exp string, now int64) {
	body := req.Body()
	switch {
	case exp == "0":
		f.kinds[3].Add(1)
		return // the last document stays notified
	case req.GetHeader("SIP-If-Match") == nil:
		f.kinds[0].Add(1)
	case len(body) == 0:
		f.kinds[2].Add(1)
		return
	default:
		f.kinds[1].Add(1)
	}
	id := dialogIDRe.FindSubmatch(body)
	st := dialogStateRe.FindSubmatch(body)
	if id == nil || st == nil {
		return
	}
	state := string(st[1])
	f.mu.Lock()
	f.last[req.Recipient.User+" "+string(id[1])] = state
	f.mu.Unlock()
	if string(id[3]) != "initiator" || len(id[2]) == 0 {
		return
	}
	i, err := strconv.Atoi(string(id[2]))
	if err != nil || i < 0 || i >= len(f.arrival) {
		return
	}
	for p, s := range phaseState {
		if s == state && f.arrival[i][p].CompareAndSwap(0, now) && p == callPhases-1 {
			f.done.Add(1)
			for {
				l := f.lastDone.Load()
				if now <= l || f.lastDone.CompareAndSwap(l, now) {
					break
				}
			}
		}
	}
}

// lit counts the publications whose last document shows a dialog that is
// not terminated.
func (f *callPresence) lit() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, s := range f.last {
		if s != "terminated" {
			n++
		}
	}
	return n
}

// print writes a call-mode result for people.
func (r callResult) print(w io.Writer) {
	fmt.Fprintf(w, "calls %d at %d/s, GOMAXPROCS %d: %.0f calls/s over %.2fs, %d copies sent\n",
		r.Calls, r.Rate, r.GOMAXPROCS, r.CallsPerS, r.Seconds, r.Copies)
	fmt.Fprintf(w, "PUBLISH per call: %.2f (initial %.2f, modify %.2f, refresh %.2f, remove %.2f); lamps lit after the settle: %d\n",
		float64(r.PublishTotal)/float64(max(r.Calls, 1)), r.PublishPerCall["initial"], r.PublishPerCall["modify"],
		r.PublishPerCall["refresh"], r.PublishPerCall["remove"], r.LampsLit)
	fmt.Fprintf(w, "latency copy→PUBLISH (caller): p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms; calls lost %d, phases coalesced %d\n",
		r.P50ms, r.P99ms, r.P999ms, r.Maxms, r.Lost, r.Coalesced)
	who := "all in-process parts"
	if r.Separate {
		who = "puaside's own process"
	}
	fmt.Fprintf(w, "input %s; CPU: %.2f s for the run, %.3f ms per call (%s)\n", r.Input, r.CPUSeconds, r.CPUPerCallMs, who)
	drops := map[string]float64{}
	for k, v := range r.IngestDrops {
		if v != 0 {
			drops[k] = v
		}
	}
	fmt.Fprintf(w, "drops: kernel UDP per socket %v, puaside ingest %v; PUBLISH by status %v\n", r.SocketDrops, drops, r.PublishStatus)
}

// hepCopy wraps the k-th copy of a message in a HEPv3 packet as Kamailio's
// siptrace sends it: the copy as received (even k: caller → proxy) or as
// forwarded (odd k: proxy → callee), with the capture time.
func hepCopy(b, msg []byte, k int) ([]byte, error) {
	caller := netip.MustParseAddrPort("10.2.0.1:5060")
	proxy := netip.MustParseAddrPort("10.0.0.1:5060")
	p := ingest.HEPPacket{IPProto: 17, Src: caller, Dst: proxy, Time: time.Now(), ProtoType: ingest.HEPProtoSIP,
		CaptureID: 2001, Payload: msg}
	if k%2 == 1 {
		p.Src, p.Dst = proxy, netip.MustParseAddrPort("10.3.0.1:5060")
	}
	return ingest.AppendHEP(b, &p)
}
