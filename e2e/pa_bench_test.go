package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/kamailiotest"
)

// BenchmarkPresenceServers puts the same load on Kamailio's presence
// server (deploy/kamailio/presence.cfg on MySQL, two workers, 512 MiB of
// shared memory) and on
// puaside's (a separate puaside process, default mode, SQLite): 10,000
// presence subscriptions over 2,000 presentities from sipgo watchers in
// the test process, then PUBLISHes (modifies with SIP-If-Match) at 1,000
// changes/s, one per op. It reports the NOTIFYs answered per second,
// PUBLISH sent → NOTIFY received p50/p99, and the server's CPU seconds and
// RSS (all its processes) over the run.
func BenchmarkPresenceServers(b *testing.B) {
	b.Run("kamailio", func(b *testing.B) {
		k := kamailiotest.Start(b, kamailiotest.Options{
			Config: kamailiotest.ConfigPath(b, "presence.cfg"), DB: kamailiotest.MySQL, Workers: 2,
			Args: []string{"-m", "512", "-M", "32"}, // 10,000 dialogs need more than the default 64 MiB
		})
		benchPresenceServer(b, k.Addr(), k.PID())
	})
	b.Run("pa", func(b *testing.B) {
		addr, pid := startPAProcess(b)
		benchPresenceServer(b, addr, pid)
	})
}

// startPAProcess runs puaside with its presence server on a free port
// and returns that address and the process id.
func startPAProcess(b *testing.B) (string, int) {
	dir := b.TempDir()
	port := func() int {
		p, err := kamailiotest.FreePort()
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	paPort, httpPort := port(), port()
	cfg := fmt.Sprintf(`log_level: warn
db_url: sqlite://%s
features: {usrloc: false, dialoginfo: false, bla: false}
pua:
  listen: ["udp:127.0.0.1:%d"]
ingest: {replicate_listen: [], trace_listen: [], hep_listen: []}
pa:
  listen: ["udp:127.0.0.1:%d"]
http:
  http_listen: 127.0.0.1:%d
`, filepath.Join(dir, "puaside.db"), port(), paPort, httpPort)
	path := filepath.Join(dir, "puaside.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(dir, "puaside")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/puaside").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "run", "-config", path)
	logs := &kamailiotest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	hc := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if res, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", httpPort)); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("puaside not ready:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Sprintf("127.0.0.1:%d", paPort), cmd.Process.Pid
}

// groupUsage is the CPU seconds and RSS bytes of every process in the
// process group led by pid.
func groupUsage(pid int) (cpu float64, rss int64) {
	ents, _ := os.ReadDir("/proc")
	tick := 100.0 // USER_HZ on Linux
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
		if err != nil {
			continue
		}
		s := string(st)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+2:])
		// f[2] is pgrp, f[11] utime, f[12] stime, f[21] rss pages.
		if len(f) < 22 || f[2] != strconv.Itoa(pid) {
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		stt, _ := strconv.ParseFloat(f[12], 64)
		pages, _ := strconv.ParseInt(f[21], 10, 64)
		cpu += (ut + stt) / tick
		rss += pages * int64(os.Getpagesize())
	}
	return cpu, rss
}

// psLoad is the watchers' and publisher's side of the benchmark.
type psLoad struct {
	uas      []*sipgo.UserAgent
	cls      []*sipgo.Client
	addrs    []string
	notifies atomic.Int64
	mu       sync.Mutex
	lat      []time.Duration
	sentAt   []atomic.Int64
}

func (l *psLoad) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	l.notifies.Add(1)
	body := string(req.Body())
	i := strings.Index(body, `id="c`)
	if i < 0 {
		return
	}
	j := strings.IndexByte(body[i+5:], '"')
	n, err := strconv.Atoi(body[i+5 : i+5+j])
	if err != nil || n < 0 || n >= len(l.sentAt) {
		return
	}
	if at := l.sentAt[n].Load(); at != 0 {
		l.mu.Lock()
		l.lat = append(l.lat, time.Duration(time.Now().UnixNano()-at))
		l.mu.Unlock()
	}
}

func pidfChange(pres, tuple string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="` + pres + `"><tuple id="` + tuple +
		`"><status><basic>open</basic></status></tuple></presence>`)
}

func benchPresenceServer(b *testing.B, server string, pid int) {
	const subs, pres, uas = 10000, 2000, 10
	l := &psLoad{}
	for i := 0; i < uas; i++ {
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ua, _ := sipgo.NewUA()
		srv, _ := sipgo.NewServer(ua)
		port := conn.LocalAddr().(*net.UDPAddr).Port
		cl, _ := sipgo.NewClient(ua, sipgo.WithClientConnectionAddr(conn.LocalAddr().String()),
			sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(port))
		srv.OnNotify(l.onNotify)
		go func() { _ = srv.ServeUDP(conn) }()
		for j := 0; j < 1000; j++ {
			if c, err := ua.TransportLayer().GetConnection("udp", conn.LocalAddr().String()); err == nil && c != nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		l.uas, l.cls, l.addrs = append(l.uas, ua), append(l.cls, cl), append(l.addrs, conn.LocalAddr().String())
	}
	b.Cleanup(func() {
		for _, ua := range l.uas {
			ua.Close()
		}
	})
	do := func(u int, req *sip.Request) (*sip.Response, error) {
		req.SetDestination(server)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return l.cls[u].Do(ctx, req)
	}
	uri := func(s string) sip.Uri {
		var u sip.Uri
		_ = sip.ParseUri(s, &u)
		return u
	}
	from := func(s string) *sip.FromHeader {
		h := &sip.FromHeader{Address: uri(s), Params: sip.NewParams()}
		h.Params.Add("tag", sip.GenerateTagN(8))
		return h
	}
	presURI := func(i int) string { return fmt.Sprintf("sip:p%d@example.com", i%pres) }
	publish := func(u, p int, etag string, body []byte) string {
		req := sip.NewRequest(sip.PUBLISH, uri(presURI(p)))
		req.AppendHeader(from(presURI(p)))
		req.AppendHeader(&sip.ToHeader{Address: uri(presURI(p)), Params: sip.NewParams()})
		req.AppendHeader(sip.NewHeader("Event", "presence"))
		req.AppendHeader(sip.NewHeader("Expires", "3600"))
		if etag != "" {
			req.AppendHeader(sip.NewHeader("SIP-If-Match", etag))
		}
		req.AppendHeader(sip.NewHeader("Content-Type", "application/pidf+xml"))
		req.SetBody(body)
		res, err := do(u, req)
		if err != nil || res.StatusCode != 200 {
			return ""
		}
		if h := res.GetHeader("SIP-ETag"); h != nil {
			return h.Value()
		}
		return ""
	}
	// Every presentity published once, then watched.
	etags := make([]string, pres)
	var wg sync.WaitGroup
	for u := 0; u < uas; u++ {
		wg.Add(1)
		go func(u int) {
			defer wg.Done()
			for p := u; p < pres; p += uas {
				etags[p] = publish(u, p, "", pidfChange(presURI(p), "init"))
			}
		}(u)
	}
	wg.Wait()
	var failed atomic.Int64
	for u := 0; u < uas; u++ {
		wg.Add(1)
		go func(u int) {
			defer wg.Done()
			for i := u; i < subs; i += uas {
				req := sip.NewRequest(sip.SUBSCRIBE, uri(presURI(i)))
				req.AppendHeader(from(fmt.Sprintf("sip:w%d@example.com", i)))
				req.AppendHeader(&sip.ToHeader{Address: uri(presURI(i)), Params: sip.NewParams()})
				req.AppendHeader(&sip.ContactHeader{Address: uri("sip:w@" + l.addrs[u])})
				req.AppendHeader(sip.NewHeader("Event", "presence"))
				req.AppendHeader(sip.NewHeader("Expires", "3600"))
				if res, err := do(u, req); err != nil || res.StatusCode/100 != 2 {
					failed.Add(1)
				}
			}
		}(u)
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d SUBSCRIBEs failed", n)
	}
	for deadline := time.Now().Add(60 * time.Second); l.notifies.Load() < subs && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second)

	l.sentAt = make([]atomic.Int64, b.N)
	base := l.notifies.Load()
	cpu0, _ := groupUsage(pid)
	b.ResetTimer()
	start := time.Now()
	var inflight sync.WaitGroup
	sem := make(chan struct{}, 64)
	var etagMu sync.Mutex
	for i := 0; i < b.N; i++ {
		if d := time.Until(start.Add(time.Duration(i) * time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
		p := i % pres
		sem <- struct{}{}
		inflight.Add(1)
		go func(i, p int) {
			defer inflight.Done()
			defer func() { <-sem }()
			etagMu.Lock()
			et := etags[p]
			etagMu.Unlock()
			l.sentAt[i].Store(time.Now().UnixNano())
			if n := publish(i%uas, p, et, pidfChange(presURI(p), "c"+strconv.Itoa(i))); n != "" {
				etagMu.Lock()
				etags[p] = n
				etagMu.Unlock()
			}
		}(i, p)
	}
	inflight.Wait()
	want := int64(b.N * (subs / pres))
	for deadline := time.Now().Add(30 * time.Second); l.notifies.Load()-base < want && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cpu1, rss := groupUsage(pid)
	l.mu.Lock()
	lat := append([]time.Duration(nil), l.lat...)
	l.mu.Unlock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
	}
	b.ReportMetric(float64(l.notifies.Load()-base)/elapsed.Seconds(), "notifies/s")
	b.ReportMetric(cpu1-cpu0, "server_cpu_s")
	b.ReportMetric(float64(rss)/(1<<20), "server_rss_MiB")
}
