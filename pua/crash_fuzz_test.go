package pua_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/puaside/puaside/clock/clocktest"
	"github.com/puaside/puaside/internal/crashtest"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/store"
)

// FuzzCrashRecovery feeds random publish and remove operations of two
// tracker-like owners, random store writes, time steps and kill points
// through the engine and a SQLite store to a stateful in-process presence
// server. After the last restart, the claims and the sweep, and once the
// leases of publications nobody refreshes have run out, the publications at
// the server must be exactly what the owners want: one per wanted
// presentity, with the wanted document, and nothing else.
//
// Each pair of input bytes is one operation (see crashHarness.step).
func FuzzCrashRecovery(f *testing.F) {
	for _, s := range crashSeeds {
		f.Add(s)
	}
	f.Fuzz(runCrashOps)
}

// crashSeeds are FuzzCrashRecovery's seeds.
var crashSeeds = [][]byte{
	{0, 0, 4, 0, 6, 0},                   // publish, owner writes, crash before the ETag is stored
	{0, 0, 5, 0, 4, 0, 3, 0, 6, 0},       // removal forgotten by the crash
	{0, 0, 5, 0, 3, 0, 5, 0, 6, 0},       // removal stored, owner never wrote it
	{0, 1, 4, 0, 5, 0, 1, 1, 6, 0, 7, 0}, // modify lost by the crash
	{0, 2, 0, 5, 4, 0, 5, 0, 7, 0, 6, 0, 3, 2, 4, 0, 6, 0},
	{0, 5, 5, 0, 6, 0},                         // stored publication its owner never wrote
	{0, 0, 5, 0, 4, 0, 2, 0, 3, 0, 5, 0, 6, 0}, // removal during an outage, then a crash
	{0, 0, 2, 0, 1, 0, 4, 0, 7, 0, 5, 0, 2, 0, 7, 0, 6, 0},
}

// TestCrashRecoveryWithJournal runs the seeds of FuzzCrashRecovery and its
// corpus with sync_etags and an ETag journal, replayed into the database
// at each restart as the daemon does.
func TestCrashRecoveryWithJournal(t *testing.T) {
	inputs := append(slices.Clone(crashSeeds), crashtest.Corpus(t, "FuzzCrashRecovery")...)
	for i, ops := range inputs {
		t.Run(strconv.Itoa(i), func(t *testing.T) { runCrashOpsWith(t, ops, true) })
	}
}

// runCrashOps runs one input of FuzzCrashRecovery.
func runCrashOps(t *testing.T, ops []byte) { runCrashOpsWith(t, ops, false) }

// runCrashOpsWith runs one input, withJournal: with sync_etags and an ETag
// journal.
func runCrashOpsWith(t *testing.T, ops []byte, withJournal bool) {
	if len(ops) > 40 {
		ops = ops[:40]
	}
	h := newCrashHarness(t, withJournal)
	for i := 0; i+1 < len(ops); i += 2 {
		h.step(ops[i], ops[i+1])
	}
	// The last kill point comes after a store write, so that what the
	// engine stores is the server's current state (a refresh's new ETag
	// lost by a crash leaves a publication nobody can remove, which only
	// its lease ends; settle waits for that too).
	h.step(5, 0)
	h.crash()
	h.restart()
	h.settle()
	h.check()
}

// TestCrashUnwrittenOwnerState: a publication stored by the engine whose
// owner never wrote it is removed after the restart.
func TestCrashUnwrittenOwnerState(t *testing.T) {
	runCrashOps(t, []byte{0, 5, 5, 0, 6, 0})
}

// owner is a tracker-like owner: what it wants in memory, and what it has
// written to its own table (a crash loses the rest).
type owner struct {
	flag      int
	id        string
	mem       map[string]string // presentity → document
	persisted map[string]string
}

func (o *owner) key(uri string) pua.Key { return pua.Key{PresURI: uri, Event: "presence", ID: o.id} }

type crashHarness struct {
	t      *testing.T
	clk    *clocktest.Fake
	srv    *crashtest.Server
	dbPath string
	st     *crashtest.KillableStore
	db     *store.DB
	// withJournal: sync_etags on, prompt writes to jr (replayed at start).
	withJournal bool
	jr          *crashtest.KillableJournal
	eng         *pua.Engine
	owners      []*owner
	ver         int
}

func newCrashHarness(t *testing.T, withJournal bool) *crashHarness {
	// Not t.TempDir: a fuzz seed's directory name has a '#', which a
	// db_url would read as a fragment.
	dir, err := os.MkdirTemp("", "puaside-crash")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &crashHarness{t: t, clk: clocktest.New(time.Unix(1_700_000_000, 0)),
		dbPath: filepath.Join(dir, "pua.db"), withJournal: withJournal}
	h.srv = crashtest.NewServer(t, h.clk)
	for i, flag := range []int{pua.FlagUsrloc, pua.FlagDialogPublish} {
		h.owners = append(h.owners, &owner{flag: flag, id: "o" + strconv.Itoa(i),
			mem: map[string]string{}, persisted: map[string]string{}})
	}
	h.start()
	t.Cleanup(func() { h.stopEngine() })
	return h
}

// start opens the store and starts an engine; the owners then claim.
func (h *crashHarness) start() {
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite://"+h.dbPath, "pua")
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := db.Migrate(ctx); err != nil {
		h.t.Fatal(err)
	}
	h.db = db
	var jr pua.Journal
	if h.withJournal {
		h.jr, err = crashtest.OpenJournal(ctx, h.dbPath+".etags", db, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			h.t.Fatal(err)
		}
		jr = h.jr
	}
	h.st = &crashtest.KillableStore{Store: db}
	cfg := pua.DefaultConfig()
	cfg.Listen = []string{"udp:127.0.0.1:0"}
	cfg.ServerAddress = h.srv.URI()
	// Store writes happen at the steps that tick the clock; with the
	// journal, the prompt appends at once.
	cfg.SyncETags = h.withJournal
	cfg.UpdatePeriod = time.Second
	cfg.RequestTimeout = time.Second
	cfg.DefaultExpires = 10 * time.Minute
	cfg.InitialExpires = time.Minute
	cfg.ClaimTimeout = 30 * time.Second
	var flags []int
	for _, o := range h.owners {
		flags = append(flags, o.flag)
	}
	e, err := pua.New(cfg, pua.Options{Store: h.st, Clock: h.clk, Owners: flags, Journal: jr,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		h.t.Fatal(err)
	}
	h.eng = e
}

func (h *crashHarness) stopEngine() {
	if h.eng == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = h.eng.Stop(ctx)
	if h.jr != nil {
		h.jr.Close()
		h.jr = nil
	}
	h.db.Close()
	h.eng = nil
}

// step runs one operation: op selects it, arg its owner and presentity.
func (h *crashHarness) step(op, arg byte) {
	o := h.owners[int(arg>>2)%len(h.owners)]
	uri := fmt.Sprintf("sip:%s-%d@example.com", o.id, arg&3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	down := h.srv.IsDown()
	switch op % 8 {
	case 0, 1: // the owner publishes a new document
		h.ver++
		doc := fmt.Sprintf("doc %s v%d", uri, h.ver)
		req := pua.PublishRequest{Key: o.key(uri), Body: []byte(doc), Flag: o.flag}
		var err error
		if down {
			err = h.eng.Publish(req)
		} else {
			_, err = h.eng.PublishWait(ctx, req)
		}
		if err != nil {
			h.t.Fatalf("publish %s: %v", uri, err)
		}
		o.mem[uri] = doc
	case 2: // the presence server stops answering, or answers again
		h.srv.SetDown(!down)
	case 3: // the owner removes it
		if _, ok := o.mem[uri]; !ok {
			return
		}
		var err error
		if down {
			err = h.eng.Remove(o.key(uri))
		} else {
			_, err = h.eng.RemoveWait(ctx, o.key(uri))
		}
		if err != nil {
			h.t.Fatalf("remove %s: %v", uri, err)
		}
		delete(o.mem, uri)
	case 4: // the owner writes its table
		o.persisted = clone(o.mem)
	case 5: // the engine's write-behind tick
		h.clk.Advance(time.Second)
		h.quiesce()
	case 6: // kill -9 and restart at once
		h.crash()
		h.restart()
	case 7: // time passes: refreshes
		h.clk.Advance(20 * time.Second)
		h.quiesce()
	}
}

// crash kills the engine: from now on it writes nothing and the server
// hears nothing from it; the owners lose what they did not write. The
// server is back, if it was down.
func (h *crashHarness) crash() {
	h.st.Dead.Store(true)
	if h.jr != nil {
		h.jr.Kill()
	}
	h.srv.DeafTo(h.eng.ContactURI())
	h.stopEngine()
	for _, o := range h.owners {
		o.mem = clone(o.persisted)
	}
	h.srv.SetDown(false)
}

// restart starts a new engine on the same database; each owner publishes
// what the engine lost or changed and claims the rest, then is done.
func (h *crashHarness) restart() {
	h.start()
	held := map[pua.Key]string{}
	for _, p := range h.eng.Publications() {
		held[p.Key] = string(p.Body)
	}
	for _, o := range h.owners {
		for uri, doc := range o.mem {
			if held[o.key(uri)] == doc {
				h.eng.Claim(o.key(uri))
				continue
			}
			if err := h.eng.Publish(pua.PublishRequest{Key: o.key(uri), Body: []byte(doc), Flag: o.flag}); err != nil {
				h.t.Fatalf("publish at restart: %v", err)
			}
		}
		h.eng.ClaimsDone(o.flag)
	}
	h.quiesce()
}

// settle lets time pass well beyond the longest lease, in steps short
// enough for every refresh to be on time.
func (h *crashHarness) settle() {
	for range 34 {
		h.clk.Advance(20 * time.Second)
		h.quiesce()
	}
}

// quiesce waits until the server has heard nothing for a while.
func (h *crashHarness) quiesce() {
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

// check compares the server's live publications with what the owners want.
func (h *crashHarness) check() {
	want := map[string]string{}
	for _, o := range h.owners {
		for uri, doc := range o.mem {
			want[uri] = doc
		}
	}
	got := h.srv.Live()
	var problems []string
	for uri, docs := range got {
		switch {
		case want[uri] == "":
			problems = append(problems, fmt.Sprintf("%s: %d publication(s) nobody wants: %q", uri, len(docs), docs))
		case len(docs) != 1 || docs[0] != want[uri]:
			problems = append(problems, fmt.Sprintf("%s: publications %q, want one %q", uri, docs, want[uri]))
		}
	}
	for uri, doc := range want {
		if len(got[uri]) == 0 {
			problems = append(problems, fmt.Sprintf("%s: not published, want %q", uri, doc))
		}
	}
	sort.Strings(problems)
	for _, p := range problems {
		h.t.Error(p)
	}
}

func clone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
