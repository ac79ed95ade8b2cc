package pa

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/pua"
)

// benchWatchers is a set of UDP user agents holding many subscriptions:
// they answer every NOTIFY 200 and time it against the change it tells.
type benchWatchers struct {
	uas      []*sipgo.UserAgent
	cls      []*sipgo.Client
	addrs    []string
	notifies atomic.Int64
	mu       sync.Mutex
	lat      []time.Duration
	sent     func(change int) time.Time
}

func newBenchWatchers(b *testing.B, n int) *benchWatchers {
	bw := &benchWatchers{}
	for i := 0; i < n; i++ {
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ua, _ := sipgo.NewUA()
		srv, _ := sipgo.NewServer(ua)
		port := conn.LocalAddr().(*net.UDPAddr).Port
		cl, _ := sipgo.NewClient(ua, sipgo.WithClientConnectionAddr(conn.LocalAddr().String()), sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(port))
		srv.OnNotify(bw.onNotify)
		go func() { _ = srv.ServeUDP(conn) }()
		for j := 0; j < 1000; j++ {
			if c, err := ua.TransportLayer().GetConnection("udp", conn.LocalAddr().String()); err == nil && c != nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		bw.uas, bw.cls, bw.addrs = append(bw.uas, ua), append(bw.cls, cl), append(bw.addrs, conn.LocalAddr().String())
	}
	b.Cleanup(func() {
		for _, ua := range bw.uas {
			ua.Close()
		}
	})
	return bw
}

func (bw *benchWatchers) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	bw.notifies.Add(1)
	body := string(req.Body())
	if i := strings.Index(body, `id="c`); i >= 0 && bw.sent != nil {
		j := strings.IndexByte(body[i+5:], '"')
		if n, err := strconv.Atoi(body[i+5 : i+5+j]); err == nil {
			if at := bw.sent(n); !at.IsZero() {
				d := time.Since(at)
				bw.mu.Lock()
				bw.lat = append(bw.lat, d)
				bw.mu.Unlock()
			}
		}
	}
}

// subscribe opens subs subscriptions spread over pres presentities.
func (bw *benchWatchers) subscribe(b *testing.B, server string, subs, pres int) {
	var wg sync.WaitGroup
	var failed atomic.Int64
	for u := range bw.cls {
		wg.Add(1)
		go func(u int) {
			defer wg.Done()
			for i := u; i < subs; i += len(bw.cls) {
				p := fmt.Sprintf("sip:p%d@example.com", i%pres)
				req := sip.NewRequest(sip.SUBSCRIBE, uri(p))
				req.AppendHeader(&sip.FromHeader{Address: uri(fmt.Sprintf("sip:w%d@example.com", i)), Params: tagged(sip.GenerateTagN(8))})
				req.AppendHeader(&sip.ToHeader{Address: uri(p), Params: sip.NewParams()})
				req.AppendHeader(&sip.ContactHeader{Address: uri("sip:w@" + bw.addrs[u])})
				req.AppendHeader(sip.NewHeader("Event", "presence"))
				req.AppendHeader(sip.NewHeader("Expires", "3600"))
				req.SetDestination(server)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				res, err := bw.cls[u].Do(ctx, req)
				cancel()
				if err != nil || res.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}(u)
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d SUBSCRIBEs failed", n)
	}
}

// BenchmarkNotifier is the notifier under the load: 10,000
// subscriptions over 2,000 presentities, each op one change of a
// presentity's state (in process, as usrloc publishes), paced at 1,000
// changes/s (-pace 0 runs unpaced). It reports the NOTIFYs answered per
// second, change → NOTIFY answered p50/p99, and heap per subscription.
func BenchmarkNotifier(b *testing.B) {
	for _, pace := range []int{1000, 0} {
		b.Run(fmt.Sprintf("changes_per_s=%d", pace), func(b *testing.B) { benchNotifier(b, pace) })
	}
}

func benchNotifier(b *testing.B, pace int) {
	const subs, pres = 10000, 2000
	cfg := DefaultConfig()
	cfg.Listen = []string{"udp:127.0.0.1:0"}
	var msBefore runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&msBefore)
	s, err := New(cfg, Options{Store: newMemStore()})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Stop(context.Background()) })
	bw := newBenchWatchers(b, 10)
	bw.subscribe(b, strings.TrimPrefix(s.Addrs()[0], "udp:"), subs, pres)
	// Wait for the initial NOTIFYs.
	for deadline := time.Now().Add(60 * time.Second); bw.notifies.Load() < subs; {
		if time.Now().After(deadline) {
			b.Fatalf("%d initial NOTIFYs of %d", bw.notifies.Load(), subs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var msAfter runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&msAfter)
	perSub := float64(msAfter.HeapAlloc-msBefore.HeapAlloc) / subs

	sentAt := make([]atomic.Int64, b.N)
	bw.sent = func(n int) time.Time {
		if n < 0 || n >= len(sentAt) {
			return time.Time{}
		}
		return time.Unix(0, sentAt[n].Load())
	}
	base := bw.notifies.Load()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if pace > 0 {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(pace))); d > 0 {
				time.Sleep(d)
			}
		}
		p := fmt.Sprintf("sip:p%d@example.com", i%pres)
		sentAt[i].Store(time.Now().UnixNano())
		if err := s.Publish(pua.PublishRequest{Key: pua.Key{PresURI: p, Event: "presence", ID: "usrloc"},
			Body: presenceBody(p, "c"+strconv.Itoa(i), "open")}); err != nil {
			b.Fatal(err)
		}
	}
	// Every presentity's watchers get its last state (coalesced).
	want := int64(min(b.N, pres) * (subs / pres))
	for deadline := time.Now().Add(60 * time.Second); bw.notifies.Load()-base < want; {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	bw.mu.Lock()
	lat := append([]time.Duration(nil), bw.lat...)
	bw.mu.Unlock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
	}
	b.ReportMetric(float64(bw.notifies.Load()-base)/elapsed.Seconds(), "notifies/s")
	b.ReportMetric(perSub, "heap_B/sub")
}

// BenchmarkIdleSubscriptionHeap holds 10,000 subscriptions over 2,000
// presentities, each with an in-process presence publication, as a
// restart loads them (no network: sipgo's buffers are not counted), and
// reports the heap per subscription, the publications' share included.
func BenchmarkIdleSubscriptionHeap(b *testing.B) {
	const subs, pres = 10000, 2000
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		var pubs []PublicationRecord
		for p := 0; p < pres; p++ {
			u := fmt.Sprintf("sip:p%d@example.com", p)
			pubs = append(pubs, PublicationRecord{PresURI: u, Event: EventPresence, ID: "usrloc", Seq: int64(p), Flag: 1,
				Body: presenceBody(u, "t"+strconv.Itoa(p), "open"), Received: time.Now().Unix()})
		}
		var ws []WatcherRecord
		exp := time.Now().Add(time.Hour).Unix()
		for w := 0; w < subs; w++ {
			ws = append(ws, WatcherRecord{PresURI: fmt.Sprintf("sip:p%d@example.com", w%pres), WatcherURI: fmt.Sprintf("sip:w%d@example.com", w),
				Event: EventPresence, CallID: sip.GenerateTagN(16) + "@10.0.0.1", ToTag: sip.GenerateTagN(16), FromTag: sip.GenerateTagN(12),
				LocalCSeq: 64, RemoteCSeq: 1, Contact: fmt.Sprintf("sip:w%d@10.0.0.1:5060", w), LocalContact: "sip:pa@127.0.0.1:5065",
				Expires: exp, Status: "active", Version: 64, UserAgent: "PolycomVVX-VVX_411-UA/6.4.0"})
		}
		s, err := New(DefaultConfig(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		s.restore(pubs, ws)
		pubs, ws = nil, nil // what the server keeps of them stays
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/subs, "heap_B/sub")
		runtime.KeepAlive(s)
	}
}
