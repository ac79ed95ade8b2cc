package ingest

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/puatest"
	"github.com/puaside/puaside/metrics"
)

var update = flag.Bool("update", false, "rewrite golden files")

// noReplyWait bounds the wait used to assert that nothing is sent back.
const noReplyWait = 300 * time.Millisecond

// registerSamples returns the REGISTER requests of the replicate sample and
// the number of distinct ones (retransmissions share the proxy's branch).
func registerSamples(t *testing.T) ([]sample, int) {
	var regs []sample
	distinct := map[string]bool{}
	for _, s := range loadSamples(t, "testdata/replicate") {
		if strings.HasPrefix(s.firstLine, "REGISTER ") {
			regs = append(regs, s)
			distinct[s.topVia] = true
		}
	}
	if len(regs) == 0 || len(distinct) == len(regs) {
		t.Fatalf("sample should hold REGISTERs and retransmissions: %d/%d", len(distinct), len(regs))
	}
	return regs, len(distinct)
}

// checkOK checks that res is the stateless 200 answering req.
func checkOK(t *testing.T, reqRaw, resRaw []byte) {
	t.Helper()
	req, err := sip.ParseMessage(reqRaw)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := sip.ParseMessage(resRaw)
	if err != nil {
		t.Fatalf("reply does not parse: %v\n%s", err, resRaw)
	}
	res, ok := msg.(*sip.Response)
	if !ok || res.StatusCode != 200 {
		t.Fatalf("reply is not a 200: %s", resRaw)
	}
	check(t, "Call-ID", res.CallID().Value(), req.CallID().Value())
	check(t, "CSeq", res.CSeq().Value(), req.CSeq().Value())
	check(t, "From", res.From().Value(), req.From().Value())
	check(t, "To URI", res.To().Address.String(), req.To().Address.String())
	if tag, _ := res.To().Params.Get("tag"); tag == "" {
		t.Fatal("reply To has no tag")
	}
	if got, want := len(res.GetHeaders("Via")), len(req.GetHeaders("Via")); got != want {
		t.Fatalf("reply has %d Via, request %d", got, want)
	}
	rb, _ := res.Via().Params.Get("branch")
	qb, _ := req.Via().Params.Get("branch")
	check(t, "top Via branch", rb, qb)
}

func TestReplicateUDP(t *testing.T) {
	regs, distinct := registerSamples(t)
	rec := newRecorder()
	cfg := testConfig()
	cfg.ReplicateListen = []string{"udp:127.0.0.1:0"}
	m := metrics.New()
	in := start(t, cfg, rec.handlers(), m, newClock())
	c := udpClient(t, addr(t, in, InputReplicate, "udp"))
	buf := make([]byte, 65536)
	for _, s := range regs {
		if _, err := c.Write(s.raw); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("%s: no reply: %v", s.seq, err)
		}
		checkOK(t, s.raw, buf[:n])
	}
	rec.wait(t, distinct)
	in.Stop()
	if len(rec.sips) != distinct {
		t.Fatalf("delivered %d, want %d", len(rec.sips), distinct)
	}
	for i, e := range rec.sips {
		check(t, "kind", rec.kind[i], "register")
		check(t, "source", e.Source, event.SourceReplicate)
		if !e.Src.Addr().IsLoopback() {
			t.Fatalf("src %v", e.Src)
		}
	}
	check(t, "duplicates", counter(t, m, "puaside_ingest_messages_total",
		map[string]string{"input": "replicate", "kind": "register", "result": "duplicate"}), float64(len(regs)-distinct))
}

func TestReplicateTCP(t *testing.T) {
	regs, distinct := registerSamples(t)
	rec := newRecorder()
	cfg := testConfig()
	cfg.ReplicateListen = []string{"tcp:127.0.0.1:0"}
	in := start(t, cfg, rec.handlers(), nil, newClock())
	c, err := net.Dial("tcp", addr(t, in, InputReplicate, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// All copies in one stream, written in odd-sized pieces with
	// keep-alive CRLFs between messages: framing must not depend on writes.
	var stream []byte
	for _, s := range regs {
		stream = append(append(stream, "\r\n\r\n"...), s.raw...)
	}
	go func() {
		for b := stream; len(b) > 0; {
			n := min(len(b), 97)
			if _, err := c.Write(b[:n]); err != nil {
				return
			}
			b = b[n:]
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for _, s := range regs {
		res, err := readSIPFrame(r, 65535, nil)
		if err != nil {
			t.Fatalf("%s: reading reply: %v", s.seq, err)
		}
		checkOK(t, s.raw, res)
	}
	rec.wait(t, distinct)
	in.Stop()
	check(t, "delivered", len(rec.sips), distinct)
}

// TestReplicateNeverAnswersResponsesACKsOrBadCopies: a response, an ACK
// and a malformed copy on replicate_listen get no reply.
func TestReplicateNeverAnswersResponsesACKsOrBadCopies(t *testing.T) {
	var resp, ack []byte
	for _, s := range loadSamples(t, "testdata/replicate") {
		switch {
		case resp == nil && strings.HasPrefix(s.firstLine, "SIP/2.0 180"):
			resp = s.raw
		case ack == nil && strings.HasPrefix(s.firstLine, "ACK "):
			ack = s.raw
		}
	}
	regs, _ := registerSamples(t)
	noCallID := bytes.Replace(regs[0].raw, []byte("Call-ID:"), []byte("X-Call-ID:"), 1)
	truncated := regs[0].raw[:len(regs[0].raw)/2]
	rec := newRecorder()
	cfg := testConfig()
	cfg.ReplicateListen = []string{"udp:127.0.0.1:0"}
	m := metrics.New()
	in := start(t, cfg, rec.handlers(), m, newClock())
	for name, b := range map[string][]byte{"response": resp, "ack": ack, "no call-id": noCallID,
		"truncated": truncated, "junk": {0, 1, 2, 0xff, '\r', '\n'}} {
		t.Run(name, func(t *testing.T) {
			if b == nil {
				t.Fatal("sample missing")
			}
			c := udpClient(t, addr(t, in, InputReplicate, "udp"))
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
			noDatagram(t, c, noReplyWait)
		})
	}
	in.Stop()
	check(t, "parse errors", counter(t, m, "puaside_ingest_dropped_total",
		map[string]string{"input": "replicate", "reason": "parse_error"}), 3)
	check(t, "delivered", len(rec.sips), 2) // the 180 and the ACK, as call traffic
}

// TestSiptraceDedup sends the siptrace sample in order: every message
// traced twice (as received and as forwarded) is delivered once, nothing is
// ever answered, and the deliveries match the golden file.
func TestSiptraceDedup(t *testing.T) {
	samples := loadSamples(t, "testdata/siptrace")
	rec := newRecorder()
	cfg := testConfig()
	cfg.TraceListen = []string{"udp:127.0.0.1:0"}
	m := metrics.New()
	in := start(t, cfg, rec.handlers(), m, newClock())
	c := udpClient(t, addr(t, in, InputTrace, "udp"))
	for _, s := range samples {
		if _, err := c.Write(s.raw); err != nil {
			t.Fatal(err)
		}
	}
	noDatagram(t, c, noReplyWait)
	// Wait until every datagram has been counted, then stop (which drains).
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n float64
		for _, kind := range []string{"register", "register_reply", "call", "other"} {
			for _, res := range []string{"accepted", "duplicate", "ignored"} {
				n += counter(t, m, "puaside_ingest_messages_total", map[string]string{"input": "trace", "kind": kind, "result": res})
			}
		}
		if int(n) == len(samples) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counted %v of %d datagrams", n, len(samples))
		}
		time.Sleep(10 * time.Millisecond)
	}
	in.Stop()

	// Map each delivery to the first sample it equals (dedup keeps the
	// first copy); deliveries of one Call-ID must keep the capture order.
	index := map[string]int{}
	for i, s := range samples {
		msg, err := sip.ParseMessage(s.raw)
		if err != nil {
			t.Fatal(err)
		}
		d := describe(event.SIP{Msg: msg})
		if _, ok := index[d]; !ok {
			index[d] = i
		}
	}
	lines := make([]string, len(samples))
	last := map[string]int{}
	invites := map[string]int{}
	for i, e := range rec.sips {
		check(t, "source", e.Source, event.SourceTrace)
		d := describe(e)
		idx, ok := index[d]
		if !ok {
			t.Fatalf("delivery matches no sample: %s", d)
		}
		cid := e.Msg.CallID().Value()
		if prev, ok := last[cid]; ok && prev >= idx {
			t.Fatalf("%s delivered out of order", d)
		}
		last[cid] = idx
		lines[idx] = samples[idx].seq + " " + rec.kind[i] + " | " + d + "\n"
		if r, ok := e.Msg.(*sip.Request); ok && r.Method == sip.INVITE {
			invites[cid]++
		}
	}
	for cid, n := range invites {
		if n != 1 {
			t.Errorf("INVITE of %s delivered %d times", cid, n)
		}
	}
	if len(invites) != 2 {
		t.Errorf("%d calls, want 2", len(invites))
	}
	var got strings.Builder
	for _, l := range lines {
		got.WriteString(l)
	}
	golden(t, "testdata/siptrace.golden", got.String())
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Fatalf("%s differs:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// hepSamples returns the raw HEP packets in capture order.
func hepSamples(t *testing.T) ([][]byte, []sample) {
	samples := loadSamples(t, "testdata/hep")
	var pkts [][]byte
	for _, s := range samples {
		b, err := os.ReadFile("testdata/hep/" + s.seq + ".hep.bin")
		if err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, b)
	}
	return pkts, samples
}

// TestHEPUDP sends every HEP packet over UDP with deduplication off: each
// is delivered with the SIP message, addresses and time of its capture.
func TestHEPUDP(t *testing.T) {
	pkts, _ := hepSamples(t)
	rec := newRecorder()
	cfg := testConfig()
	cfg.HEPListen = []string{"udp:127.0.0.1:0"}
	cfg.DedupWindow = 0
	in := start(t, cfg, rec.handlers(), nil, newClock())
	c := udpClient(t, addr(t, in, InputHEP, "udp"))
	for _, p := range pkts {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	rec.wait(t, len(pkts))
	noDatagram(t, c, noReplyWait)
	in.Stop()
	// Deliveries of one Call-ID keep their order; compare per Call-ID.
	want := map[string][]*HEPPacket{}
	for _, b := range pkts {
		p, err := DecodeHEP(b)
		if err != nil {
			t.Fatal(err)
		}
		m, err := parseMirror(testParser(), p.Payload)
		if err != nil {
			t.Fatal(err)
		}
		want[m.orderKey()] = append(want[m.orderKey()], p)
	}
	for _, e := range rec.sips {
		m, err := inspect(e.Msg)
		if err != nil {
			t.Fatal(err)
		}
		k := m.orderKey()
		if len(want[k]) == 0 {
			t.Fatalf("unexpected delivery for %s", k)
		}
		p := want[k][0]
		want[k] = want[k][1:]
		check(t, "source", e.Source, event.SourceHEP)
		check(t, "src", e.Src, p.Src)
		check(t, "dst", e.Dst, p.Dst)
		check(t, "time", e.Time, p.Time)
		wantMsg, _ := sip.ParseMessage(p.Payload)
		check(t, "message", e.Msg.String(), wantMsg.String())
	}
}

// TestHEPTCPDedup sends the HEP packets on one TCP stream, with the
// default deduplication: the call messages seen twice are delivered once,
// the same set as the plain siptrace copies.
func TestHEPTCPDedup(t *testing.T) {
	pkts, samples := hepSamples(t)
	rec := newRecorder()
	cfg := testConfig()
	cfg.HEPListen = []string{"tcp:127.0.0.1:0"}
	cfg.HEPAuthKey = ""
	m := metrics.New()
	in := start(t, cfg, rec.handlers(), m, newClock())
	c, err := net.Dial("tcp", addr(t, in, InputHEP, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(bytes.Join(pkts, nil)); err != nil {
		t.Fatal(err)
	}
	// The two calls traced as received and as forwarded: INVITE, 180, 200,
	// BYE, 200 BYE, CANCEL, 487, ACK each arrive twice; all but the 487
	// are duplicates the second time.
	deadline := time.Now().Add(10 * time.Second)
	for {
		acc := counter(t, m, "puaside_ingest_messages_total", map[string]string{"input": "hep", "kind": "call", "result": "accepted"}) +
			counter(t, m, "puaside_ingest_messages_total", map[string]string{"input": "hep", "kind": "register", "result": "accepted"}) +
			counter(t, m, "puaside_ingest_messages_total", map[string]string{"input": "hep", "kind": "register_reply", "result": "accepted"})
		dup := counter(t, m, "puaside_ingest_messages_total", map[string]string{"input": "hep", "kind": "call", "result": "duplicate"})
		if int(acc+dup) == len(samples) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("accepted %v + duplicate %v of %d", acc, dup, len(samples))
		}
		time.Sleep(10 * time.Millisecond)
	}
	in.Stop()
	invites := 0
	for _, e := range rec.sips {
		if r, ok := e.Msg.(*sip.Request); ok && r.Method == sip.INVITE {
			invites++
		}
	}
	check(t, "INVITE deliveries", invites, 2)
	// The 487 is delivered twice: as the proxy received it from the fork
	// (with the proxy's Via) and as it forwarded it to the caller (the
	// call's final answer); the dialog tracker tells them apart.
	var vias []int
	for _, e := range rec.sips {
		if r, ok := e.Msg.(*sip.Response); ok && r.StatusCode == 487 {
			vias = append(vias, len(r.GetHeaders("Via")))
		}
	}
	if len(vias) != 2 || vias[0]-vias[1] != 1 {
		t.Fatalf("487 deliveries with Via counts %v, want the fork's then the forwarded one", vias)
	}
	if dup := counter(t, m, "puaside_ingest_messages_total", map[string]string{"input": "hep", "kind": "call", "result": "duplicate"}); dup < 9 {
		t.Fatalf("only %v duplicates removed", dup)
	}
}

func TestHEPAuthKey(t *testing.T) {
	pkts, _ := hepSamples(t)
	rec := newRecorder()
	cfg := testConfig()
	cfg.HEPListen = []string{"udp:127.0.0.1:0"}
	cfg.HEPAuthKey = "secret"
	m := metrics.New()
	in := start(t, cfg, rec.handlers(), m, newClock())
	in.handleHEP(mustAddrPort("127.0.0.1:9"), pkts[0], false) // Kamailio sent no key
	withKey := (&hepBuilder{}).chunk(0, 0x0b, []byte{1}).chunk(0, 0x0e, []byte("secret")).
		chunk(0, 0x0f, wireBytes(t, "testdata/hep/001.sip.txt")).bytes()
	in.handleHEP(mustAddrPort("127.0.0.1:9"), withKey, false)
	rtcp := (&hepBuilder{}).chunk(0, 0x0b, []byte{5}).chunk(0, 0x0e, []byte("secret")).chunk(0, 0x0f, []byte{0x80}).bytes()
	in.handleHEP(mustAddrPort("127.0.0.1:9"), rtcp, false)
	rec.wait(t, 1)
	in.Stop()
	check(t, "delivered", len(rec.sips), 1)
	check(t, "auth drops", counter(t, m, "puaside_ingest_dropped_total", map[string]string{"input": "hep", "reason": "hep_auth"}), 1)
	check(t, "non-SIP ignored", counter(t, m, "puaside_ingest_messages_total", map[string]string{"input": "hep", "kind": "other", "result": "ignored"}), 1)
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// TestUntrustedDropped runs real listeners that trust only 10.0.0.0/8:
// copies from 127.0.0.1 are dropped, counted and never answered.
func TestUntrustedDropped(t *testing.T) {
	regs, _ := registerSamples(t)
	rec := newRecorder()
	cfg := testConfig()
	cfg.ReplicateListen = []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}
	cfg.HEPListen = []string{"udp:127.0.0.1:0"}
	cfg.TrustedSources = []string{"10.0.0.0/8"}
	m := metrics.New()
	in := start(t, cfg, rec.handlers(), m, newClock())
	c := udpClient(t, addr(t, in, InputReplicate, "udp"))
	for i := 0; i < 3; i++ {
		if _, err := c.Write(regs[0].raw); err != nil {
			t.Fatal(err)
		}
	}
	noDatagram(t, c, noReplyWait)
	h := udpClient(t, addr(t, in, InputHEP, "udp"))
	pkts, _ := hepSamples(t)
	if _, err := h.Write(pkts[0]); err != nil {
		t.Fatal(err)
	}
	tc, err := net.Dial("tcp", addr(t, in, InputReplicate, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.Read(make([]byte, 10)); err == nil {
		t.Fatal("untrusted TCP connection was not closed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for counter(t, m, "puaside_ingest_dropped_total", map[string]string{"input": "hep", "reason": "untrusted"}) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("HEP packet not counted as untrusted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	in.Stop()
	check(t, "replicate untrusted", counter(t, m, "puaside_ingest_dropped_total",
		map[string]string{"input": "replicate", "reason": "untrusted"}), 4)
	check(t, "delivered", len(rec.sips), 0)
}

// TestQueueFull fills the queue of an Ingest whose workers are not
// running: further copies are dropped, counted, and (replicate) not
// answered, so the proxy's retransmission is the retry.
func TestQueueFull(t *testing.T) {
	regs, _ := registerSamples(t)
	cfg := testConfig()
	cfg.QueueSize = 1
	m := metrics.New()
	in, err := New(cfg, newRecorder().handlers(), Options{Metrics: m, Clock: newClock(), Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	replies := 0
	seen := map[string]bool{}
	for _, s := range regs {
		if seen[s.topVia] {
			continue
		}
		seen[s.topVia] = true
		in.handleSIP(InputReplicate, mustAddrPort("127.0.0.1:5070"), s.raw, func([]byte) { replies++ }, false)
	}
	if len(seen) < 3 {
		t.Fatal("need 3 distinct copies")
	}
	check(t, "replies", replies, 1)
	check(t, "queue_full drops", counter(t, m, "puaside_ingest_dropped_total",
		map[string]string{"input": "replicate", "reason": "queue_full"}), float64(len(seen)-1))
	check(t, "accepted", counter(t, m, "puaside_ingest_messages_total",
		map[string]string{"input": "replicate", "kind": "register", "result": "accepted"}), 1)
}

// TestDedupWindowAndBound checks expiry with the injectable clock and the
// memory bound of the deduplicator.
func TestDedupWindowAndBound(t *testing.T) {
	clk := newClock()
	d := newDedup(32*time.Second, 4)
	check(t, "first", d.seenBefore(1, clk.Now()), false)
	check(t, "again", d.seenBefore(1, clk.Now()), true)
	clk.Advance(31 * time.Second)
	check(t, "within window", d.seenBefore(1, clk.Now()), true)
	clk.Advance(time.Second)
	check(t, "expired", d.seenBefore(1, clk.Now()), false)
	for k := uint64(2); k < 100; k++ {
		d.seenBefore(k, clk.Now())
	}
	check(t, "bounded", d.len(), 4)
	check(t, "oldest forgotten", d.seenBefore(2, clk.Now()), false)
	check(t, "newest kept", d.seenBefore(99, clk.Now()), true)
	check(t, "disabled", newDedup(0, 4).seenBefore(1, clk.Now()), false)
}

// TestDedupGrows: the deduplicator's ring starts small and grows when
// full, keeping arrival order across its wrap-around, up to its cap; a
// disabled one holds nothing.
func TestDedupGrows(t *testing.T) {
	clk := newClock()
	d := newDedup(10*time.Second, 5000)
	check(t, "nothing held before the first key", len(d.ring), 0)
	record := func(from, to uint64) {
		for k := from; k <= to; k++ {
			check(t, "new key", d.seenBefore(k, clk.Now()), false)
		}
	}
	record(1, 600)
	clk.Advance(6 * time.Second)
	record(601, dedupFirstEntries)
	check(t, "first size", len(d.ring), dedupFirstEntries)
	clk.Advance(4 * time.Second) // 1..600 expire; the next keys wrap around
	record(dedupFirstEntries+1, dedupFirstEntries+600)
	check(t, "full, wrapped", d.head, 600)
	record(dedupFirstEntries+601, dedupFirstEntries+601)
	check(t, "grown", len(d.ring), 2*dedupFirstEntries)
	check(t, "kept", d.len(), dedupFirstEntries+1)
	clk.Advance(6 * time.Second) // the keys of the 6 s mark expire, in order
	check(t, "expired", d.recorded(601, clk.Now()), false)
	check(t, "expired", d.recorded(dedupFirstEntries, clk.Now()), false)
	check(t, "within window", d.recorded(dedupFirstEntries+1, clk.Now()), true)
	check(t, "within window", d.recorded(dedupFirstEntries+601, clk.Now()), true)
	check(t, "left", d.len(), 601)
	record(10000, 19000)
	check(t, "capped", len(d.ring), 5000)
	check(t, "bounded", d.len(), 5000)

	off := newDedup(0, dedupMaxEntries)
	off.seenBefore(1, clk.Now())
	check(t, "disabled holds nothing", len(off.ring), 0)
}

func TestXSiptraceHeaders(t *testing.T) {
	regs, _ := registerSamples(t)
	raw := bytes.Replace(regs[0].raw, []byte("Content-Length: 0"),
		[]byte("X-Siptrace-Fromip: udp:192.0.2.7:5061\r\nX-Siptrace-Toip: tcp:[2001:db8::5]:5060\r\nX-Siptrace-Time: 1795382550 681465\r\nContent-Length: 0"), 1)
	rec := newRecorder()
	cfg := testConfig()
	in := start(t, cfg, rec.handlers(), nil, newClock())
	in.handleSIP(InputTrace, mustAddrPort("127.0.0.1:5070"), raw, nil, false)
	rec.wait(t, 1)
	in.Stop()
	e := rec.sips[0]
	check(t, "src", e.Src, mustAddrPort("192.0.2.7:5061"))
	check(t, "dst", e.Dst, mustAddrPort("[2001:db8::5]:5060"))
	check(t, "time", e.Time, time.Unix(1795382550, 681465000).UTC())
}

func TestStartErrorNamesAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig()
	cfg.TraceListen = []string{"udp:127.0.0.1:0"}
	cfg.ReplicateListen = []string{"tcp:" + ln.Addr().String()}
	in, err := New(cfg, Handlers{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	err = in.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("err = %v, want it to name %s", err, ln.Addr())
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"bad listen", func(c *Config) { c.HEPListen = []string{"sctp:1.2.3.4:9060"} }, "sctp"},
		{"bad cidr", func(c *Config) { c.TrustedSources = []string{"10.0.0.0/33"} }, "10.0.0.0/33"},
		{"queue", func(c *Config) { c.QueueSize = 0 }, "queue_size"},
		{"size", func(c *Config) { c.MaxMessageSize = 70000 }, "max_message_size"},
		{"window", func(c *Config) { c.DedupWindow = -time.Second }, "dedup_window"},
		{"uri bound", func(c *Config) { c.MaxURILength = -1 }, "max_uri_length"},
		{"tiny call-id bound", func(c *Config) { c.MaxCallIDLength = 3 }, "max_callid_length"},
		{"tag bound", func(c *Config) { c.MaxTagLength = -5 }, "max_tag_length"},
		{"header bound", func(c *Config) { c.MaxHeaderLength = 10 }, "max_header_length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want mention of %q", err, tt.want)
			}
			if _, err := New(c, Handlers{}, Options{}); err == nil {
				t.Fatal("New accepted a bad config")
			}
		})
	}
}

// TestReaderDeliversItselfInOrder checks enqueue's here: a reader that
// was not behind delivers an input itself, on its own goroutine, when its
// shard has nothing queued or in delivery; otherwise the input is queued
// behind the ones of its shard, so that nothing is overtaken.
func TestReaderDeliversItselfInOrder(t *testing.T) {
	all, _ := registerSamples(t)
	var regs []sample // distinct copies
	for _, s := range all {
		if !slices.ContainsFunc(regs, func(r sample) bool { return r.topVia == s.topVia }) {
			regs = append(regs, s)
		}
	}
	if len(regs) < 3 {
		t.Fatal("need 3 distinct copies")
	}
	var order []string
	var mu sync.Mutex
	release := make(chan struct{})
	first := true
	h := Handlers{Register: func(_ context.Context, m event.SIP) {
		mu.Lock()
		block := first
		first = false
		order = append(order, m.Msg.(*sip.Request).Via().Value())
		mu.Unlock()
		if block {
			<-release // the worker stays in delivery of the first input
		}
	}}
	cfg := testConfig()
	cfg.DedupWindow = 0
	m := metrics.New()
	in, err := New(cfg, h, Options{Metrics: m, Clock: newClock(), Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	src := mustAddrPort("127.0.0.1:5070")
	key := func(raw []byte) string {
		msg, err := in.parser.ParseSIP(raw)
		if err != nil {
			t.Fatal(err)
		}
		return msg.(*sip.Request).Via().Value()
	}

	// No worker yet: an input queued makes the next one of its shard
	// queue too, though the reader asks to deliver it.
	in.handleSIP(InputTrace, src, regs[0].raw, nil, false)
	in.handleSIP(InputTrace, src, regs[0].raw, nil, true)
	check(t, "delivered before the worker runs", len(order), 0)
	check(t, "queued", in.queued.Load(), int64(2))

	if err := in.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	// The worker is held in the first delivery: a reader's input waits
	// behind it.
	puatest.Eventually(t, "first delivery", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 1 })
	in.handleSIP(InputTrace, src, regs[1].raw, nil, true)
	mu.Lock()
	check(t, "overtook the delivery under way", len(order), 1)
	mu.Unlock()
	close(release)
	puatest.Eventually(t, "queued inputs", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 3 })

	// The shard is idle now: the reader delivers before handleSIP returns.
	in.handleSIP(InputTrace, src, regs[2].raw, nil, true)
	mu.Lock()
	got := slices.Clone(order)
	mu.Unlock()
	want := []string{key(regs[0].raw), key(regs[0].raw), key(regs[1].raw), key(regs[2].raw)}
	if !slices.Equal(got, want) {
		t.Fatalf("delivery order %q, want %q", got, want)
	}
	check(t, "queue empty", in.queued.Load(), int64(0))
	check(t, "accepted", counter(t, m, "puaside_ingest_messages_total",
		map[string]string{"input": "trace", "kind": "register", "result": "accepted"}), 4)
}

// TestReaderPace: a reader delivers itself what it waited for and
// readerSpare datagrams more that were already waiting; after that it is
// behind until it waits again. A reader that never waits never is ahead.
func TestReaderPace(t *testing.T) {
	p := newPace()
	var got, want []bool
	read := func(waited, here bool) {
		got = append(got, p.read(waited))
		want = append(want, here)
	}
	read(false, false) // never waited: behind
	read(false, false)
	read(true, true)
	for range readerSpare {
		read(false, true)
	}
	read(false, false) // one more than readerSpare: behind
	read(false, false)
	read(true, true)
	read(true, true)
	read(false, true)
	if !slices.Equal(got, want) {
		t.Fatalf("here = %v, want %v (readerSpare %d)", got, want, readerSpare)
	}
}
