package chainfuzz

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/clock/clocktest"
	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/dialoginfo"
	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/ingest"
	"github.com/puaside/puaside/internal/crashtest"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/store"
	"github.com/puaside/puaside/usrloc"
)

// FuzzChainRecovery feeds random mirrored SIP copies through a real ingest
// (UDP, t_replicate and siptrace inputs) into the real usrloc and
// dialoginfo trackers, the real pua engine and a SQLite store, to a
// stateful in-process presence server, with random tracker flushes, engine
// store writes, time steps, presence-server outages and kill points. A kill
// abandons ingest, the trackers and the engine without their final flush:
// the engine's later writes fail, the server no longer hears it, and the
// trackers' tables keep only what their last Flush wrote. A restart builds
// new ones on the same SQLite file, in the daemon's order (engine, usrloc,
// dialoginfo with their claims, ingest).
//
// The input alphabet, for four users of example.com with two phones each
// and two call slots: REGISTER copies (a contact added with a short or
// long expiry, a contact removed, "Contact: *" with Expires: 0), and the
// calls' INVITE, 180, 200, 486 and BYE as traced copies. Each pair of input
// bytes is one operation (see chain.step); inputs are cut at maxInput bytes.
//
// After the last kill and restart, time passes beyond every lease,
// closed_linger, terminated_linger, ring_timeout and claim_timeout. The
// oracle is then what the restarted trackers know, not the original
// input: a crash legitimately loses what a tracker received after its
// last flush (the real system relies on reconciliation with the registrar
// for that). The publications at the server must be exactly: one presence
// publication per AoR the usrloc tracker holds contacts for, with the PIDF
// document of those contacts, and one dialog publication per side of every
// dialog the dialoginfo tracker lists, in its state; nothing else.
func FuzzChainRecovery(f *testing.F) {
	for _, s := range chainSeeds {
		f.Add(s)
	}
	f.Fuzz(runChain)
}

// chainSeeds are FuzzChainRecovery's seeds.
var chainSeeds = [][]byte{
	{0, 0x08, 8, 0, 10, 0},                          // long contact published, crash before the tracker wrote it
	{0, 0x08, 6, 0, 8, 0, 10, 0},                    // long contact written, crash
	{0, 0x09, 6, 0, 8, 0, 2, 0x01, 10, 0},           // removal lost by the crash
	{0, 0x0a, 6, 0, 8, 0, 3, 0x02, 6, 0, 10, 0},     // "*" written, crash
	{4, 0, 4, 0, 4, 0, 7, 0, 8, 0, 10, 0},           // call answered and written, crash, no BYE
	{4, 0, 4, 0, 4, 0, 8, 0, 10, 0},                 // call answered, crash before the tracker wrote it
	{4, 0, 4, 0, 4, 0, 7, 0, 8, 0, 4, 0, 10, 0},     // BYE lost by the crash
	{4, 0, 4, 0x80, 7, 0, 9, 0, 10, 0},              // busy call, linger, crash
	{0, 0x08, 11, 0, 4, 1, 4, 1, 2, 0, 10, 0, 8, 0}, // outage while registering and calling, crash
	{0, 0x08, 4, 0, 4, 0x40, 6, 0, 7, 0, 9, 0, 10, 0, 3, 0, 4, 0, 8, 0, 10, 0},
}

// TestChainRecoveryWithJournal runs the seeds of FuzzChainRecovery and its
// corpus with sync_etags and an ETag journal, replayed into the database
// at each restart as the daemon does.
func TestChainRecoveryWithJournal(t *testing.T) {
	inputs := append(slices.Clone(chainSeeds), crashtest.Corpus(t, "FuzzChainRecovery")...)
	for i, ops := range inputs {
		t.Run(strconv.Itoa(i), func(t *testing.T) { runChainWith(t, ops, true) })
	}
}

// maxInput is where an input is cut: 16 operations, enough for the seeds
// (the longest has 11) and short enough that one input stays quick.
const maxInput = 32

// maxKills bounds the restarts of one input, each of which stops an engine
// (up to its stop deadline) and starts a new one.
const maxKills = 3

// runChain runs one input of FuzzChainRecovery.
func runChain(t *testing.T, ops []byte) { runChainWith(t, ops, false) }

// runChainWith runs one input, withJournal: with sync_etags and an ETag
// journal.
func runChainWith(t *testing.T, ops []byte, withJournal bool) {
	if len(ops) > maxInput {
		ops = ops[:maxInput]
	}
	h := newChain(t, withJournal)
	for i := 0; i+1 < len(ops); i += 2 {
		h.step(ops[i], ops[i+1])
	}
	// As in pua's FuzzCrashRecovery, the last kill comes after an engine
	// store write, so that the stored ETags are the server's current ones.
	h.step(8, 0)
	h.crash()
	h.restart()
	h.settle()
	h.check()
}

const (
	users      = 4
	phones     = 2
	domain     = "example.com"
	shortLease = 60   // seconds: a contact that expires during the settling
	longLease  = 3600 // seconds: a contact that outlives it
)

// callSlot is one call slot's progress: 0 idle, 1 INVITE seen, 2 ringing,
// 3 answered.
type callSlot struct {
	stage          int
	n              int // the call's number (Call-ID, tags)
	caller, callee int
}

type chain struct {
	t      *testing.T
	clk    *clocktest.Fake
	proc   *crashtest.ProcClock
	srv    *crashtest.Server
	dbPath string
	db     *store.DB
	st     *crashtest.KillableStore
	// withJournal: sync_etags on, prompt writes to jr (replayed at start).
	withJournal bool
	jr          *crashtest.KillableJournal
	eng         *pua.Engine
	ul          *usrloc.Tracker
	di          *dialoginfo.Tracker
	in          *ingest.Ingest
	repl        net.Conn // to ingest's t_replicate input
	trace       net.Conn // to ingest's siptrace input
	got         chan struct{}
	seq         int
	calls       [2]callSlot
	log         *slog.Logger
	kills       int // kill points taken by step
}

func newChain(t *testing.T, withJournal bool) *chain {
	// Not t.TempDir: a fuzz seed's directory name has a '#', which a
	// db_url would read as a fragment.
	dir, err := os.MkdirTemp("", "puaside-chain")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &chain{t: t, clk: clocktest.New(time.Unix(1_700_000_000, 0)), dbPath: filepath.Join(dir, "puaside.db"),
		got: make(chan struct{}, 16), log: slog.New(slog.NewTextHandler(io.Discard, nil)), withJournal: withJournal}
	h.srv = crashtest.NewServer(t, h.clk)
	h.restart()
	t.Cleanup(h.stop)
	return h
}

// restart starts one process on the database: engine, trackers (they load
// their tables and claim), ingest.
func (h *chain) restart() {
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite://"+h.dbPath, "pua")
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := db.Migrate(ctx); err != nil {
		h.t.Fatal(err)
	}
	db.Log = h.log
	h.db = db
	var jr pua.Journal
	if h.withJournal {
		h.jr, err = crashtest.OpenJournal(ctx, h.dbPath+".etags", db, h.log)
		if err != nil {
			h.t.Fatal(err)
		}
		jr = h.jr
	}
	h.st = &crashtest.KillableStore{Store: db}
	h.proc = crashtest.NewProcClock(h.clk)

	cfg := pua.DefaultConfig()
	cfg.Listen = []string{"udp:127.0.0.1:0"}
	cfg.ServerAddress = h.srv.URI()
	// Store writes happen at the steps that tick the clock; with the
	// journal, the prompt appends at once.
	cfg.SyncETags = h.withJournal
	cfg.UpdatePeriod = time.Second
	cfg.RequestTimeout = time.Second
	cfg.DefaultExpires = 5 * time.Minute
	cfg.InitialExpires = time.Minute
	cfg.ClaimTimeout = 30 * time.Second
	eng, err := pua.New(cfg, pua.Options{Store: h.st, Clock: h.proc, Logger: h.log, Journal: jr,
		Owners: []int{pua.FlagUsrloc, pua.FlagDialogPublish}})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		h.t.Fatal(err)
	}
	h.eng = eng

	ucfg := usrloc.DefaultConfig()
	ucfg.DefaultDomain = domain
	ucfg.PublishExpires = 5 * time.Minute // every lease ends within the settling
	ul, err := usrloc.New(ucfg, usrloc.Options{Publisher: eng, Store: db, Logger: h.log, Clock: h.proc})
	if err != nil {
		h.t.Fatal(err)
	}
	dcfg := dialoginfo.DefaultConfig()
	dcfg.Domains = []string{domain}
	dcfg.PublishExpires = 5 * time.Minute
	di, err := dialoginfo.New(dcfg, dialoginfo.Options{Publisher: eng, Store: db, Logger: h.log, Clock: h.proc})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := ul.Start(ctx); err != nil {
		h.t.Fatal(err)
	}
	if err := di.Start(ctx); err != nil {
		h.t.Fatal(err)
	}
	h.ul, h.di = ul, di

	icfg := ingest.DefaultConfig()
	icfg.ReplicateListen = []string{"udp:127.0.0.1:0"}
	icfg.TraceListen = []string{"udp:127.0.0.1:0"}
	icfg.HEPListen = nil
	hs := ingest.Handlers{
		Register: func(ctx context.Context, m event.SIP) { ul.HandleSIP(ctx, m); h.got <- struct{}{} },
		Call:     func(ctx context.Context, m event.SIP) { di.HandleSIP(ctx, m); h.got <- struct{}{} },
	}
	in, err := ingest.New(icfg, hs, ingest.Options{Logger: h.log, Workers: 2})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := in.Start(ctx); err != nil {
		h.t.Fatal(err)
	}
	h.in = in
	addrs := in.Addrs()
	h.repl = h.dial(addrs[ingest.InputReplicate])
	h.trace = h.dial(addrs[ingest.InputTrace])
	h.quiesce()
}

func (h *chain) dial(addrs []string) net.Conn {
	if len(addrs) != 1 || !strings.HasPrefix(addrs[0], "udp:") {
		h.t.Fatalf("ingest addresses %q", addrs)
	}
	c, err := net.Dial("udp", strings.TrimPrefix(addrs[0], "udp:"))
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// crash kills the process: its timers never run again, the engine's writes
// fail and the server no longer hears it; nothing is flushed. The server
// is back, if it was down.
func (h *chain) crash() {
	h.proc.Kill()
	h.st.Dead.Store(true)
	if h.jr != nil {
		h.jr.Kill()
	}
	h.srv.DeafTo(h.eng.ContactURI())
	h.stop()
	h.srv.SetDown(false)
}

// stop ends the current process's goroutines and sockets (after a kill, or
// when the test ends); the trackers are dropped without a flush.
func (h *chain) stop() {
	if h.eng == nil {
		return
	}
	h.repl.Close()
	h.trace.Close()
	h.in.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = h.eng.Stop(ctx)
	if h.jr != nil {
		h.jr.Close()
		h.jr = nil
	}
	h.db.Close()
	h.eng, h.ul, h.di, h.in = nil, nil, nil, nil
}

// send hands one copy to ingest and waits until a tracker has taken it.
func (h *chain) send(c net.Conn, lines ...string) {
	msg := strings.Join(lines, "\r\n") + "\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		h.t.Fatal(err)
	}
	select {
	case <-h.got:
	case <-time.After(5 * time.Second):
		h.t.Fatalf("ingest never delivered:\n%s", msg)
	}
}

func user(i int) string { return fmt.Sprintf("sip:u%d@%s", i, domain) }

// register sends a t_replicate REGISTER of one phone with one Contact line
// (and an Expires header when hdrExpires >= 0).
func (h *chain) register(u, phone int, contact string, hdrExpires int) {
	h.seq++
	lines := []string{
		"REGISTER sip:" + domain + " SIP/2.0",
		fmt.Sprintf("Via: SIP/2.0/UDP 10.0.%d.%d:5060;branch=z9hG4bK-r%d", u, phone, h.seq),
		fmt.Sprintf("From: <%s>;tag=r%d", user(u), h.seq),
		fmt.Sprintf("To: <%s>", user(u)),
		fmt.Sprintf("Call-ID: reg-%d-%d@10.0.%d.%d", u, phone, u, phone),
		fmt.Sprintf("CSeq: %d REGISTER", h.seq),
		"Contact: " + contact,
	}
	if hdrExpires >= 0 {
		lines = append(lines, fmt.Sprintf("Expires: %d", hdrExpires))
	}
	h.send(h.repl, lines...)
}

func phoneURI(u, phone int) string { return fmt.Sprintf("sip:u%d@10.0.%d.%d:5060", u, u, phone) }

// callStep moves a call slot one message on: INVITE, 180 (or straight to
// 200), 200 (or 486), BYE.
func (h *chain) callStep(slot int, arg byte) {
	c := &h.calls[slot]
	if c.stage == 0 {
		h.seq++
		c.n = h.seq
		c.caller = int(arg>>1) % users
		c.callee = (c.caller + 1 + int(arg>>3)%(users-1)) % users
	}
	callID := fmt.Sprintf("Call-ID: call-%d@10.0.0.9", c.n)
	from := fmt.Sprintf("From: <%s>;tag=ft%d", user(c.caller), c.n)
	to := fmt.Sprintf("To: <%s>", user(c.callee))
	toTag := fmt.Sprintf("%s;tag=tt%d", to, c.n)
	via := fmt.Sprintf("Via: SIP/2.0/UDP 10.0.%d.0:5060;branch=z9hG4bK-c%d", c.caller, c.n)
	callee := fmt.Sprintf("Contact: <%s>", phoneURI(c.callee, 0))
	reply := func(status string) {
		h.send(h.trace, "SIP/2.0 "+status, via, from, toTag, callID, "CSeq: 1 INVITE", callee)
	}
	switch {
	case c.stage == 0:
		h.send(h.trace, "INVITE "+user(c.callee)+" SIP/2.0", via, from, to, callID, "CSeq: 1 INVITE",
			fmt.Sprintf("Contact: <%s>", phoneURI(c.caller, 0)))
		c.stage = 1
	case arg&0x80 != 0: // busy, or (answered) the callee hangs up
		if c.stage == 3 {
			h.send(h.trace, "BYE sip:"+phoneURI(c.caller, 0)[4:]+" SIP/2.0",
				fmt.Sprintf("Via: SIP/2.0/UDP 10.0.%d.0:5060;branch=z9hG4bK-b%d", c.callee, c.n),
				fmt.Sprintf("From: <%s>;tag=tt%d", user(c.callee), c.n),
				fmt.Sprintf("To: <%s>;tag=ft%d", user(c.caller), c.n), callID, "CSeq: 1 BYE")
		} else {
			reply("486 Busy Here")
		}
		c.stage = 0
	case c.stage == 1 && arg&0x40 == 0:
		reply("180 Ringing")
		c.stage = 2
	case c.stage <= 2:
		reply("200 OK")
		c.stage = 3
	default: // the caller hangs up
		h.send(h.trace, "BYE sip:"+phoneURI(c.callee, 0)[4:]+" SIP/2.0",
			fmt.Sprintf("Via: SIP/2.0/UDP 10.0.%d.0:5060;branch=z9hG4bK-b%d", c.caller, c.n),
			from, toTag, callID, "CSeq: 2 BYE")
		c.stage = 0
	}
}

// step runs one operation: op selects it, arg its user, phone or slot.
func (h *chain) step(op, arg byte) {
	u, phone := int(arg)%users, int(arg>>2)%phones
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	switch op % 12 {
	case 0, 1: // a phone registers (or refreshes) a contact
		exp := shortLease
		if arg&0x08 != 0 {
			exp = longLease
		}
		h.register(u, phone, fmt.Sprintf("<%s>;expires=%d", phoneURI(u, phone), exp), -1)
	case 2: // a phone unregisters its contact
		h.register(u, phone, fmt.Sprintf("<%s>;expires=0", phoneURI(u, phone)), -1)
	case 3: // every contact of the AoR goes
		h.register(u, phone, "*", 0)
	case 4, 5: // a call moves on
		h.callStep(int(arg)&1, arg)
	case 6: // usrloc writes its table
		if err := h.ul.Flush(ctx); err != nil {
			h.t.Fatal(err)
		}
	case 7: // dialoginfo writes its table
		if err := h.di.Flush(ctx); err != nil {
			h.t.Fatal(err)
		}
	case 8: // the engine's write-behind tick
		h.clk.Advance(time.Second)
		h.quiesce()
	case 9: // time passes: refreshes, lingers, expiries
		h.clk.Advance(20 * time.Second)
		h.quiesce()
	case 10: // kill -9 and restart at once
		if h.kills >= maxKills {
			break
		}
		h.kills++
		h.crash()
		h.restart()
	case 11: // the presence server stops answering, or answers again
		h.srv.SetDown(!h.srv.IsDown())
	}
	h.quiesce()
}

// settle lets time pass beyond the longest lease (5 min plus the server's
// grace), ring_timeout, closed_linger, terminated_linger and claim_timeout,
// in steps short enough for every refresh to be on time.
func (h *chain) settle() {
	for range 18 {
		h.clk.Advance(20 * time.Second)
		h.quiesce()
	}
}

// quiesce waits until the server has heard nothing for a while.
func (h *chain) quiesce() {
	deadline := time.Now().Add(10 * time.Second)
	last, since := h.srv.Requests(), time.Now()
	for time.Since(since) < 30*time.Millisecond {
		if time.Now().After(deadline) {
			h.t.Fatal("the engine never went quiet")
		}
		time.Sleep(5 * time.Millisecond)
		if n := h.srv.Requests(); n != last {
			last, since = n, time.Now()
		}
	}
}

// check compares the server's live publications with what the restarted
// trackers want.
func (h *chain) check() {
	var problems []string
	// usrloc: one presence document per AoR with contacts.
	wantPres := map[string]string{}
	for _, r := range h.ul.Registrations() {
		switch {
		case r.Publish && len(r.Contacts) > 0:
			wantPres[r.AoR] = string(usrloc.BuildPIDF(r.Entity, r.Contacts))
		case r.State != "":
			problems = append(problems, fmt.Sprintf("%s: usrloc still %s without contacts after the settling", r.AoR, r.State))
		}
	}
	gotPres := h.srv.LiveEvent("presence")
	for uri, docs := range gotPres {
		switch {
		case wantPres[uri] == "":
			problems = append(problems, fmt.Sprintf("%s: %d presence publication(s) nobody wants: %q", uri, len(docs), docs))
		case len(docs) != 1 || docs[0] != wantPres[uri]:
			problems = append(problems, fmt.Sprintf("%s: presence publications %q, want one %q", uri, docs, wantPres[uri]))
		}
	}
	for uri, doc := range wantPres {
		if len(gotPres[uri]) == 0 {
			problems = append(problems, fmt.Sprintf("%s: presence not published, want %q", uri, doc))
		}
	}
	// dialoginfo: one dialog document per side of each listed dialog.
	wantDlg := map[string][]string{}
	for _, d := range h.di.Dialogs() {
		if d.State != "confirmed" {
			problems = append(problems, fmt.Sprintf("dialog %s (%s → %s) still %s after the settling", d.ID, d.Caller, d.Callee, d.State))
			continue
		}
		for _, e := range []string{d.Caller, d.Callee} {
			wantDlg[e] = append(wantDlg[e], d.ID+" "+d.State)
		}
	}
	gotDlg := map[string][]string{}
	for uri, docs := range h.srv.LiveEvent("dialog") {
		for _, doc := range docs {
			parsed, err := dialogdoc.Parse([]byte(doc), 1<<16)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: bad dialog document %q: %v", uri, doc, err))
				continue
			}
			if len(parsed.Dialogs) == 0 {
				gotDlg[uri] = append(gotDlg[uri], "(no dialog)")
			}
			for _, d := range parsed.Dialogs {
				gotDlg[uri] = append(gotDlg[uri], d.ID+" "+d.State)
			}
		}
	}
	for uri := range merge(wantDlg, gotDlg) {
		w, g := wantDlg[uri], gotDlg[uri]
		sort.Strings(w)
		sort.Strings(g)
		if strings.Join(w, ",") != strings.Join(g, ",") {
			problems = append(problems, fmt.Sprintf("%s: dialog publications %q, want %q", uri, g, w))
		}
	}
	sort.Strings(problems)
	for _, p := range problems {
		h.t.Error(p)
	}
}

func merge(a, b map[string][]string) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}
