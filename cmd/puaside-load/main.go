// Command puaside-load measures the registration path of puaside end to end:
// mirrored REGISTER copy in → PUBLISH out (ingest → usrloc tracker → pua
// engine → SIP). With -calls N it measures the call path instead: siptrace
// copies of plain calls in → dialog-info PUBLISH out (see calls.go).
//
// In one process it starts
//   - a fake presence server on 127.0.0.1 (sipgo's parser; every PUBLISH is
//     answered statelessly with 200, a SIP-ETag and Expires, and the arrival
//     time of the first PUBLISH of each AoR is recorded),
//   - puaside itself (internal/daemon, usrloc only, SQLite in a temporary
//     directory or the database given with -db) publishing to that server;
//     with -proc, the built puaside binary instead, as a separate process
//     reading a configuration file written for the run (see
//     internal/loadproc), so that its own CPU time (/proc/PID/stat) and
//     memory are measured apart from the tool's,
//   - a sender playing, with -input replicate (the default), the proxy's
//     t_replicate(): one REGISTER copy per distinct AoR, over UDP to
//     puaside's replicate_listen, paced at -rate; with -input hep, the
//     registrar's siptrace: per AoR the REGISTER it received and the 200 it
//     sent, each in a HEPv3 packet to puaside's hep_listen.
//
// For every AoR the latency is the time from sending its copy (with HEP:
// the copy of the 200, which completes the registration) to the arrival of
// its PUBLISH at the fake server. The report gives the copies
// sent and answered, the AoRs published and lost, the achieved throughput,
// latency percentiles and the process's resident memory (VmRSS, VmHWM)
// with all AoRs still registered. Everything binds to 127.0.0.1 only, is
// bounded by -users, -duration, -drain and -settle, and the tool stops by
// itself.
//
// Usage:
//
//	puaside-load [-rate N] [-users N] [-duration D] [-drain D] [-settle D]
//	             [-input replicate|hep] [-proc] [-bin FILE | -floor]
//	             [-db URL] [-no-sync-etags] [-initial-expires D]
//	             [-cpuprofile FILE] [-trace FILE] [-memprofile FILE] [-latfile FILE] [-json] [-v]
//
// Examples:
//
//	puaside-load -rate 1000 -users 10000 -duration 10s     # latency at 1,000/s
//	puaside-load -rate 10000 -users 100000 -duration 10s   # throughput
//	puaside-load -rate 4000 -users 100000 -duration 60s -settle 40s   # RSS at 100,000 AoRs
//	puaside-load -proc -rate 1200 -users 12000 -duration 10s   # puaside's own CPU per REGISTER
//	puaside-load -proc -input hep -rate 1200 -users 12000 -duration 10s
//	puaside-load -proc -floor -rate 1200 -users 12000 -duration 10s   # the bare exchange's CPU (floor.go)
//	puaside-load -calls 3000 -call-rate 100                 # calls: CPU and PUBLISHes per call
//
// -rate 0 sends as fast as the sender can; copies the kernel drops on a
// full socket buffer are never retransmitted here (Kamailio's tm would) and
// show as lost.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/loadproc"
)

// Bounds of the flags, so that a run always ends.
const (
	maxUsers    = 1_000_000
	maxDuration = 10 * time.Minute
	maxRate     = 1_000_000
	// domain is the AoRs' domain; users are named u0, u1, ...
	domain = "load.example"
)

// options are the command-line settings of one run.
type options struct {
	Rate       int           // copies per second; 0 = unpaced
	Users      int           // distinct AoRs, one copy each
	Duration   time.Duration // bound of the sending phase
	Drain      time.Duration // bound of the wait for outstanding PUBLISHes
	DBURL      string        // empty: SQLite in a temporary directory
	CPUProfile string        // write a CPU profile of the whole run
	Trace      string        // write an execution trace of the whole run
	MemProfile string        // write a heap profile after Settle
	Settle     time.Duration // wait before the memory reading (transactions end)
	LatFile    string        // write "send offset ms, latency ms" per AoR
	NoSync     bool          // pua.sync_etags off: ETags only written behind
	InitialExp time.Duration // pua.initial_expires; 0 = puaside's default
	Log        io.Writer     // puaside's warnings and errors; nil discards
	Input      string        // inputReplicate (default) or inputHEP
	Proc       bool          // run the puaside binary as a separate process
	Bin        string        // that binary; empty: built from the module in the working directory
}

// result is what one run measured.
type result struct {
	Input        string  `json:"input"`
	Separate     bool    `json:"separate_process"`
	Rate         int     `json:"rate"`
	Users        int     `json:"users"`
	Sent         int     `json:"sent"`
	Answered     int64   `json:"answered"`
	Published    int     `json:"published"`
	Lost         int     `json:"lost"`
	SendSeconds  float64 `json:"send_seconds"`
	SendRate     float64 `json:"send_rate"`
	TotalSeconds float64 `json:"total_seconds"`
	Throughput   float64 `json:"throughput"`
	P50ms        float64 `json:"p50_ms"`
	P90ms        float64 `json:"p90_ms"`
	P99ms        float64 `json:"p99_ms"`
	P999ms       float64 `json:"p999_ms"`
	Maxms        float64 `json:"max_ms"`
	PublishTotal int64   `json:"publish_total"`
	RSSEndMiB    float64 `json:"rss_end_mib"` // right after the drain
	RSSMiB       float64 `json:"rss_mib"`     // after -settle and a GC
	HWMMiB       float64 `json:"hwm_mib"`
	HeapMiB      float64 `json:"heap_inuse_mib"`
	GOMAXPROCS   int     `json:"gomaxprocs"`
	// CPUSeconds is the CPU time (user+system) from the first copy to the
	// end of the drain: of the puaside process alone with -proc, else of
	// this process (puaside, the fake server and the sender).
	CPUSeconds float64 `json:"cpu_seconds"`
	// ToolCPUSeconds is this process's CPU time over the same span with
	// -proc (the fake server and the sender).
	ToolCPUSeconds float64 `json:"tool_cpu_seconds,omitempty"`
	// CPUPerRegisterUs is CPUSeconds per published AoR, in microseconds.
	CPUPerRegisterUs float64 `json:"cpu_per_register_us"`
	// KernelDrops is the growth of the host's UDP RcvbufErrors during the
	// run (datagrams dropped on a full socket buffer, any socket).
	KernelDrops int64 `json:"kernel_udp_drops"`
	// SocketDrops is the kernel's drop count per socket of the run
	// (/proc/net/udp): replicate or hep (puaside's input), pua (puaside's SIP
	// socket), presence (the fake server), sender.
	SocketDrops map[string]int64 `json:"socket_drops"`
	// IngestDrops is puaside's puaside_ingest_dropped_total by reason.
	IngestDrops map[string]float64 `json:"ingest_drops"`
	// PublishStatus is puaside's puaside_sip_requests_total for PUBLISH by status.
	PublishStatus map[string]float64 `json:"publish_status"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == floorCommand {
		relayMain(os.Args[2:]) // -floor: this binary is the target (floor.go)
		return
	}
	var o options
	var asJSON, verbose, floor bool
	fs := flag.NewFlagSet("puaside-load", flag.ExitOnError)
	fs.IntVar(&o.Rate, "rate", 1000, "mirrored REGISTER copies per second (0 = as fast as possible)")
	fs.IntVar(&o.Users, "users", 10000, "distinct AoRs (one copy each)")
	fs.DurationVar(&o.Duration, "duration", 30*time.Second, "longest sending phase")
	fs.DurationVar(&o.Drain, "drain", 30*time.Second, "longest wait for outstanding PUBLISHes after sending")
	fs.StringVar(&o.DBURL, "db", "", "puaside db_url (default: SQLite in a temporary directory)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile to this file")
	fs.StringVar(&o.Trace, "trace", "", "write an execution trace of this process to this file (go tool trace; without -proc it holds puaside's goroutines too)")
	fs.StringVar(&o.MemProfile, "memprofile", "", "write a heap profile to this file (after -settle)")
	fs.StringVar(&o.LatFile, "latfile", "", "write one line per published AoR: send offset (ms) and latency (ms)")
	fs.DurationVar(&o.Settle, "settle", 0, "wait this long after the drain, then GC, before reading memory")
	fs.BoolVar(&o.NoSync, "no-sync-etags", false, "run puaside with pua.sync_etags off (ETags written only every update_period)")
	fs.DurationVar(&o.InitialExp, "initial-expires", 0, "run puaside with this pua.initial_expires (0: its default; at least the publications' Expires: no short first lease)")
	fs.StringVar(&o.Input, "input", inputReplicate, "mirrored input to play: replicate (t_replicate copies) or hep (siptrace HEPv3 REGISTER + 200)")
	fs.BoolVar(&o.Proc, "proc", false, "run the puaside binary as a separate process and measure its own CPU and memory")
	fs.StringVar(&o.Bin, "bin", "", "with -proc: the puaside binary (default: go build ./cmd/puaside of the module in the working directory)")
	fs.BoolVar(&floor, "floor", false, "with -proc: measure the floor instead of puaside, this tool's own relay that makes only puaside's system calls per copy (floor.go)")
	co := callFlags(fs)
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	fs.BoolVar(&verbose, "v", false, "show puaside's warnings")
	_ = fs.Parse(os.Args[1:])
	if verbose {
		o.Log = os.Stderr
	} else {
		// The SIP stack logs through the default logger.
		slog.SetDefault(slog.New(slog.DiscardHandler))
	}
	ctx := context.Background()
	if floor {
		if !o.Proc || co.Calls > 0 || o.Bin != "" {
			report(result{}, errors.New("-floor needs -proc, and neither -calls nor -bin"), asJSON)
			return
		}
		self, err := os.Executable()
		if err != nil {
			report(result{}, fmt.Errorf("-floor: %w", err), asJSON)
			return
		}
		o.Bin = self
	}
	if co.Calls > 0 {
		co.DBURL, co.Prof, co.Log, co.Proc, co.Bin = o.DBURL, profiles{CPU: o.CPUProfile, Trace: o.Trace}, o.Log, o.Proc, o.Bin
		if co.Input = o.Input; co.Input == inputReplicate {
			co.Input = inputTrace // the default input: siptrace plain copies
		}
		r, err := runCalls(ctx, *co)
		report(r, err, asJSON)
		return
	}
	r, err := run(ctx, o)
	report(r, err, asJSON)
}

// validate checks the bounds of o.
func (o *options) validate() error {
	switch {
	case o.Rate < 0 || o.Rate > maxRate:
		return fmt.Errorf("-rate %d: want 0..%d", o.Rate, maxRate)
	case o.Users < 1 || o.Users > maxUsers:
		return fmt.Errorf("-users %d: want 1..%d", o.Users, maxUsers)
	case o.Duration <= 0 || o.Duration > maxDuration:
		return fmt.Errorf("-duration %s: want (0, %s]", o.Duration, maxDuration)
	case o.Drain <= 0 || o.Drain > maxDuration:
		return fmt.Errorf("-drain %s: want (0, %s]", o.Drain, maxDuration)
	case o.Settle < 0 || o.Settle > maxDuration:
		return fmt.Errorf("-settle %s: want [0, %s]", o.Settle, maxDuration)
	case o.Input != "" && o.Input != inputReplicate && o.Input != inputHEP:
		return fmt.Errorf("-input %q: want %s or %s", o.Input, inputReplicate, inputHEP)
	case o.Bin != "" && !o.Proc:
		return errors.New("-bin needs -proc")
	}
	return nil
}

// run performs one measurement.
func run(ctx context.Context, o options) (result, error) {
	if err := o.validate(); err != nil {
		return result{}, err
	}
	srv, err := startFakePresence(o.Users)
	if err != nil {
		return result{}, err
	}
	defer srv.close()
	if o.Input == "" {
		o.Input = inputReplicate
	}
	pd, stop, err := startRun(ctx, profiles{CPU: o.CPUProfile, Trace: o.Trace}, targetOptions{Proc: o.Proc, Bin: o.Bin, Input: o.Input, Log: o.Log},
		func(dir string) config.Config { return loadConfig(o, dir, srv.addr()) })
	if err != nil {
		return result{}, err
	}
	defer stop()
	target := pd.input()

	snd, err := newSender(target, o.Users, o.Input == inputHEP)
	if err != nil {
		return result{}, err
	}
	defer snd.close()

	drops0, _ := udpRcvbufErrors()
	cpu0, tool0 := pd.cpu(), cpuTime()
	start := time.Now()
	sent := snd.send(ctx, o.Rate, o.Duration)
	sendDur := time.Since(start)

	// Wait until every sent AoR was published, or the drain bound.
	deadline := time.Now().Add(o.Drain)
	for srv.published.Load() < int64(sent) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	// Let the 200s of the last copies arrive (HEP is never answered).
	for !snd.hep && snd.answered.Load() < int64(sent) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}

	cpu, tool := pd.cpu()-cpu0, cpuTime()-tool0
	r := result{Input: o.Input, Separate: pd.separate(), Rate: o.Rate, Users: o.Users, Sent: sent, Answered: snd.answered.Load(),
		PublishTotal: srv.total.Load(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if drops1, err := udpRcvbufErrors(); err == nil {
		r.KernelDrops = drops1 - drops0
	}
	r.SocketDrops = map[string]int64{}
	for name, a := range map[string]string{o.Input: target.String(), "pua": pd.puaAddr(),
		"presence": srv.addr(), "sender": snd.local.String()} {
		if n, err := socketDrops(a); err == nil {
			r.SocketDrops[name] = n
		}
	}
	if h := pd.httpAddr(); h != "" {
		r.IngestDrops, r.PublishStatus = scrape(ctx, h)
	}
	r.SendSeconds = sendDur.Seconds()
	if r.SendSeconds > 0 {
		r.SendRate = float64(sent) / r.SendSeconds
	}
	lat := make([]time.Duration, 0, sent)
	var last int64
	var lf strings.Builder
	for i := range sent {
		a := srv.arrival[i].Load()
		if a == 0 {
			continue
		}
		last = max(last, a)
		lat = append(lat, time.Duration(a-snd.sentAt[i]))
		if o.LatFile != "" {
			fmt.Fprintf(&lf, "%.3f %.3f\n", ms(time.Duration(snd.sentAt[i]-start.UnixNano())), ms(time.Duration(a-snd.sentAt[i])))
		}
	}
	if o.LatFile != "" {
		if err := os.WriteFile(o.LatFile, []byte(lf.String()), 0o644); err != nil {
			return result{}, fmt.Errorf("latfile: %w", err)
		}
	}
	r.Published = len(lat)
	r.CPUSeconds = cpu.Seconds()
	if pd.separate() {
		r.ToolCPUSeconds = tool.Seconds()
	}
	if r.Published > 0 {
		r.CPUPerRegisterUs = float64(cpu.Microseconds()) / float64(r.Published)
	}
	r.Lost = sent - len(lat)
	if last > 0 {
		r.TotalSeconds = time.Duration(last - start.UnixNano()).Seconds()
		r.Throughput = float64(r.Published) / r.TotalSeconds
	}
	slices.Sort(lat)
	r.P50ms, r.P90ms, r.P99ms, r.P999ms = pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 99.9)
	if len(lat) > 0 {
		r.Maxms = ms(lat[len(lat)-1])
	}
	if m, err := pd.memory(); err == nil {
		r.RSSEndMiB = loadproc.MiB(m.RSS)
	}
	if o.Settle > 0 {
		select {
		case <-time.After(o.Settle):
		case <-ctx.Done():
		}
		debug.FreeOSMemory()
	}
	if o.MemProfile != "" {
		if err := writeHeapProfile(o.MemProfile); err != nil {
			return r, err
		}
	}
	runtime.GC()
	var msx runtime.MemStats
	runtime.ReadMemStats(&msx)
	if !pd.separate() {
		r.HeapMiB = float64(msx.HeapInuse) / (1 << 20)
	}
	m, err := pd.memory()
	if err != nil {
		return r, err
	}
	r.RSSMiB, r.HWMMiB = loadproc.MiB(m.RSS), loadproc.MiB(m.HWM)
	return r, nil
}

// loadConfig is puaside's configuration for a run: usrloc only, every
// socket on a free 127.0.0.1 port, the fake presence server as server.
func loadConfig(o options, dir, server string) config.Config {
	cfg := baseConfig(o.DBURL, dir, server)
	cfg.Features = config.Features{Usrloc: true}
	cfg.PUA.SyncETags = !o.NoSync
	if o.InitialExp > 0 {
		cfg.PUA.InitialExpires = o.InitialExp
	}
	if o.Input == inputHEP {
		cfg.Ingest.HEPListen = []string{"udp:127.0.0.1:0"}
	} else {
		cfg.Ingest.ReplicateListen = []string{"udp:127.0.0.1:0"}
	}
	return cfg
}

// writeHeapProfile writes the heap profile to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("memprofile: %w", err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		return fmt.Errorf("memprofile: %w", err)
	}
	return nil
}

// puaAddr turns the engine's Contact URI into "host:port".
func puaAddr(contact string) string {
	var u sip.Uri
	if err := sip.ParseUri(contact, &u); err != nil {
		return ""
	}
	return net.JoinHostPort(u.Host, strconv.Itoa(u.Port))
}

// print writes the result for people.
func (r result) print(w io.Writer) {
	rate := "unpaced"
	if r.Rate > 0 {
		rate = fmt.Sprintf("%d/s", r.Rate)
	}
	where := "in this process"
	if r.Separate {
		where = "separate process"
	}
	fmt.Fprintf(w, "input %s, puaside %s, rate %s, users %d, GOMAXPROCS %d\n", r.Input, where, rate, r.Users, r.GOMAXPROCS)
	fmt.Fprintf(w, "copies sent %d in %.2fs (%.0f/s), answered 200: %d\n", r.Sent, r.SendSeconds, r.SendRate, r.Answered)
	fmt.Fprintf(w, "AoRs published %d, lost %d, PUBLISH requests %d\n", r.Published, r.Lost, r.PublishTotal)
	fmt.Fprintf(w, "throughput %.0f REGISTER→PUBLISH/s (first copy to last PUBLISH %.2fs)\n", r.Throughput, r.TotalSeconds)
	fmt.Fprintf(w, "latency copy→PUBLISH: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n", r.P50ms, r.P90ms, r.P99ms, r.P999ms, r.Maxms)
	if r.Separate {
		fmt.Fprintf(w, "CPU: puaside process %.2f s for the run, %.0f µs per published REGISTER (load tool %.2f s)\n", r.CPUSeconds, r.CPUPerRegisterUs, r.ToolCPUSeconds)
	} else {
		fmt.Fprintf(w, "CPU: %.2f s for the run, %.0f µs per published REGISTER (all in-process parts)\n", r.CPUSeconds, r.CPUPerRegisterUs)
	}
	fmt.Fprintf(w, "drops: kernel UDP receive buffer %d (per socket %v), puaside ingest %v; puaside PUBLISH by status %v\n", r.KernelDrops, r.SocketDrops, r.IngestDrops, r.PublishStatus)
	fmt.Fprintf(w, "memory: VmRSS after drain %.0f MiB, after settle %.0f MiB, VmHWM %.0f MiB, Go heap in use %.0f MiB\n", r.RSSEndMiB, r.RSSMiB, r.HWMMiB, r.HeapMiB)
}
