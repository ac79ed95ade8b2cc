package pua

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/puaside/puaside/journal"
)

// countingStore is a memStore that counts its writes and, once killed,
// writes nothing more (a crashed process).
type countingStore struct {
	*memStore
	dead  atomic.Bool
	fail  atomic.Bool  // writes fail, as with the database down
	tries atomic.Int64 // writes tried, failed ones included
	mu    sync.Mutex
	saves []int // records (rows and removals) of each write
	// afterSave runs after each successful write.
	afterSave func()
}

var errKilled = errors.New("killed")

func (c *countingStore) SaveRecords(ctx context.Context, up, rm []Record) error {
	c.tries.Add(1)
	if c.dead.Load() {
		return errKilled
	}
	if c.fail.Load() {
		return context.DeadlineExceeded
	}
	c.mu.Lock()
	c.saves = append(c.saves, len(up)+len(rm))
	after := c.afterSave
	c.mu.Unlock()
	if err := c.memStore.SaveRecords(ctx, up, rm); err != nil {
		return err
	}
	if after != nil {
		after()
	}
	return nil
}

func (c *countingStore) writes() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.saves...)
}

// testJournal is a journal on files, counting appends, that can be made to
// fail its appends, to drop nothing, or be killed (nothing reaches its
// files any more).
type testJournal struct {
	*journal.Journal
	appends    atomic.Int64
	dead       atomic.Bool
	failAppend atomic.Bool
	failRotate atomic.Bool
	failReset  atomic.Bool
	noDrop     atomic.Bool
}

// kill leaves the journal's files as a killed process does.
func (j *testJournal) kill() {
	j.dead.Store(true)
	j.Journal.Abandon()
}

func (j *testJournal) Reset() error {
	if j.dead.Load() || j.failReset.Load() {
		return errKilled
	}
	return j.Journal.Reset()
}

func (j *testJournal) Append(ps [][]byte) error {
	if j.dead.Load() || j.failAppend.Load() {
		return errKilled
	}
	j.appends.Add(1)
	return j.Journal.Append(ps)
}

func (j *testJournal) Rotate() (uint64, error) {
	if j.dead.Load() || j.failRotate.Load() {
		return 0, errKilled
	}
	return j.Journal.Rotate()
}

func (j *testJournal) Drop(upTo uint64) error {
	if j.dead.Load() || j.noDrop.Load() {
		return nil
	}
	return j.Journal.Drop(upTo)
}

// openTestJournal opens the journal at path, returning what it held.
func openTestJournal(t *testing.T, path string) (*testJournal, [][]byte) {
	t.Helper()
	j, ps, _, err := journal.Open(path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return &testJournal{Journal: j}, ps
}

// journalEngine starts an engine whose prompt writes go to jr: no
// write-behind within the test's clock steps unless it advances 10 min.
func journalEngine(t *testing.T, fs *fakeServer, clk Clock, st Store, jr Journal, mod func(*Config)) *Engine {
	t.Helper()
	cfg := testConfig(fs)
	cfg.InitialExpires = time.Minute
	cfg.UpdatePeriod = 10 * time.Minute
	if mod != nil {
		mod(&cfg)
	}
	return startTestEngine(t, cfg, Options{Clock: clk, Store: st, Journal: jr})
}

// journalIdle reports whether every change has been appended or written.
func journalIdle(e *Engine) bool {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	return len(e.jdirty) == 0 && len(e.jremoved) == 0 && !e.syncing
}

// durable reports whether k's ETag counts as stored.
func durable(e *Engine, k Key) bool {
	return pubHas(e, k, func(r *pubRec) bool { return r.durable })
}

func userKey(i int) Key {
	return Key{PresURI: fmt.Sprintf("sip:user%02d@example.com", i), Event: "presence", ID: "usrloc"}
}

func publishUsers(t *testing.T, e *Engine, n int, note string) {
	t.Helper()
	for i := range n {
		if err := e.Publish(PublishRequest{Key: userKey(i), Body: pidf(note), Flag: FlagUsrloc}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "publications accepted", func() bool {
		for i := range n {
			p, ok := e.Publication(userKey(i))
			if !ok || p.ETag == "" || p.State != StateActive || string(p.Body) != string(pidf(note)) {
				return false
			}
		}
		return true
	})
}

// generationFiles lists the journal's generation files.
func generationFiles(t *testing.T, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + ".[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestJournalTakesPromptWrites: with a journal, a burst of PUBLISHes makes
// no prompt database write but appends; their ETags count as stored once
// appended (the refreshes ask for the full Expires, with no database write
// yet); the write-behind then writes every record in one batch and drops
// the older generations.
func TestJournalTakesPromptWrites(t *testing.T) {
	const n = 20
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := &countingStore{memStore: newMemStore()}
	path := filepath.Join(t.TempDir(), "pua.db.etags")
	jr, _ := openTestJournal(t, path)
	e := journalEngine(t, fs, clk, st, jr, nil)

	publishUsers(t, e, n, "a")
	waitFor(t, "ETags appended", func() bool {
		for i := range n {
			if !durable(e, userKey(i)) {
				return false
			}
		}
		return journalIdle(e)
	})
	if w := st.writes(); len(w) != 0 {
		t.Fatalf("database writes %v before the write-behind, want none", w)
	}
	if jr.appends.Load() == 0 {
		t.Fatal("nothing appended to the journal")
	}

	// The short first lease is over: the refreshes ask for the full Expires.
	before := len(fs.Requests())
	clk.Advance(55 * time.Second)
	waitFor(t, "refreshes", countIs(fs, before+n))
	for _, r := range fs.Requests()[before:] {
		if h := r.GetHeader("Expires"); h == nil || h.Value() != "3600" {
			t.Fatalf("refresh asks Expires %v, want 3600", h)
		}
	}
	waitFor(t, "refreshes appended", func() bool { return journalIdle(e) })
	if w := st.writes(); len(w) != 0 {
		t.Fatalf("database writes %v before the write-behind, want none", w)
	}
	gensBefore := jr.Generation()

	clk.Advance(10 * time.Minute)
	waitFor(t, "write-behind", func() bool { return len(st.writes()) == 1 })
	if w := st.writes(); w[0] != n {
		t.Fatalf("write-behind wrote %d records, want %d", w[0], n)
	}
	for i := range n {
		p, _ := e.Publication(userKey(i))
		r, ok := st.row(userKey(i), FlagUsrloc)
		if !ok || r.ETag != p.ETag {
			t.Fatalf("%s: row %+v, want ETag %s", userKey(i).PresURI, r, p.ETag)
		}
	}
	files := generationFiles(t, path)
	want := fmt.Sprintf("%s.%d", path, gensBefore+1)
	if len(files) > 1 || len(files) == 1 && files[0] != want {
		t.Fatalf("journal files %v after the write-behind, want at most %s", files, want)
	}
}

// TestJournalCrashRecoversETagsAndRemovals: an engine abandoned without
// Stop (nothing written to the database since it started) leaves in its
// journal every ETag granted and every removal done; replayed into the
// database, the next engine carries on with them. Also when write-behinds
// failed in between (the database down): the generations are kept.
func TestJournalCrashRecoversETagsAndRemovals(t *testing.T) {
	t.Run("no write-behind", func(t *testing.T) { journalCrash(t, false) })
	t.Run("failed write-behinds", func(t *testing.T) { journalCrash(t, true) })
}

func journalCrash(t *testing.T, dbDown bool) {
	const n = 10
	fs := newFakeServer(t)
	clk := newFakeClock()
	mem := newMemStore()
	gone := Key{PresURI: "sip:gone@example.com", Event: "presence", ID: "usrloc"}
	mem.put(storedPub(clk, gone.PresURI, "presence", "usrloc", "e-gone", FlagUsrloc, pidf("gone")))
	st := &countingStore{memStore: mem}
	path := filepath.Join(t.TempDir(), "pua.db.etags")
	jr, _ := openTestJournal(t, path)
	// Leases longer than the clock steps: no refresh within the test.
	long := func(c *Config) { c.InitialExpires = 24 * time.Hour }
	e1 := journalEngine(t, fs, clk, st, jr, long)

	if dbDown {
		st.fail.Store(true)
	}
	publishUsers(t, e1, n, "a")
	if dbDown {
		clk.Advance(10 * time.Minute) // a write-behind that fails
		waitFor(t, "first write-behind", func() bool { return st.tries.Load() >= 1 })
	}
	publishUsers(t, e1, n, "b") // modifies: new ETags
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, k := range []Key{userKey(0), userKey(1), gone} {
		if _, err := e1.RemoveWait(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "everything appended", func() bool { return journalIdle(e1) })
	if dbDown {
		clk.Advance(10 * time.Minute)
		waitFor(t, "second write-behind", func() bool { return st.tries.Load() >= 2 })
		waitFor(t, "write-behind over", func() bool {
			if !e1.flushBusy.TryLock() {
				return false
			}
			defer e1.flushBusy.Unlock()
			return true
		})
		if g := generationFiles(t, path); len(g) == 0 {
			t.Fatalf("journal files %v after two failed write-behinds, want the generations kept", g)
		}
	}
	if w := st.writes(); len(w) != 0 {
		t.Fatalf("database writes %v, want none", w)
	}
	want := map[Key]string{}
	for i := 2; i < n; i++ {
		p, _ := e1.Publication(userKey(i))
		want[userKey(i)] = p.ETag
	}
	// kill -9
	st.dead.Store(true)
	jr.kill()

	jr2, payloads := openTestJournal(t, path)
	rs, err := ReplayJournal(ctx, mem, payloads, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rs.Entries == 0 {
		t.Fatalf("replay %+v", rs)
	}
	for _, k := range []Key{userKey(0), userKey(1), gone} {
		if r, ok := mem.row(k, FlagUsrloc); ok {
			t.Errorf("%s: removed, yet its row is back: %+v", k.PresURI, r)
		}
	}
	for k, etag := range want {
		if r, ok := mem.row(k, FlagUsrloc); !ok || r.ETag != etag || string(r.Body) != string(pidf("b")) {
			t.Errorf("%s: row %+v (present %v), want ETag %s", k.PresURI, r, ok, etag)
		}
	}

	// The next engine refreshes each publication with its ETag.
	before := len(fs.Requests())
	e2 := journalEngine(t, fs, clk, mem, jr2, long)
	waitFor(t, "refreshes after restart", countIs(fs, before+len(want)))
	refreshed := map[string]string{}
	for _, r := range fs.Requests()[before:] {
		if h := r.GetHeader("SIP-If-Match"); h != nil {
			refreshed[r.Recipient.String()] = h.Value()
		}
	}
	for k, etag := range want {
		if refreshed[k.PresURI] != etag {
			t.Errorf("%s refreshed after restart with ETag %q, want %s", k.PresURI, refreshed[k.PresURI], etag)
		}
	}
	if got := len(e2.Publications()); got != len(want) {
		t.Errorf("%d publications after restart, want %d", got, len(want))
	}
}

// TestJournalCrashAfterCommitBeforeDrop: a crash after the write-behind's
// database commit, before the journal's older generations are gone,
// replays the newest state: the write-behind's batch is in the journal
// after the older entries. The change here reaches the database by the
// write-behind alone, never by a prompt append.
func TestJournalCrashAfterCommitBeforeDrop(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	mem := newMemStore()
	st := &countingStore{memStore: mem}
	path := filepath.Join(t.TempDir(), "pua.db.etags")
	jr, _ := openTestJournal(t, path)
	e := journalEngine(t, fs, clk, st, jr, nil)

	res := mustWait(t, e, pubReq("one"))
	waitFor(t, "appended", func() bool { return durable(e, presKey) && journalIdle(e) })
	e.wmu.Lock()
	e.syncClosed = true // no more prompt appends
	e.wmu.Unlock()
	res2 := mustWait(t, e, pubReq("two"))
	if res2.ETag == res.ETag {
		t.Fatal("the modify kept its ETag")
	}
	jr.noDrop.Store(true) // the crash comes before any generation is dropped
	if err := e.flush(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if r, _ := mem.row(presKey, FlagUsrloc); r.ETag != res2.ETag {
		t.Fatalf("database row ETag %q, want %q", r.ETag, res2.ETag)
	}
	st.dead.Store(true)
	jr.kill()

	_, payloads := openTestJournal(t, path)
	if _, err := ReplayJournal(context.Background(), mem, payloads, nil); err != nil {
		t.Fatal(err)
	}
	if r, _ := mem.row(presKey, FlagUsrloc); r.ETag != res2.ETag || string(r.Body) != string(pidf("two")) {
		t.Fatalf("after replay: ETag %q body %q, want the newest %q", r.ETag, r.Body, res2.ETag)
	}
}

// TestJournalSuspendedFallsBackToStore: when appends fail, the prompt
// writes go to the database again (ETags still count as stored after
// them); once a database write has succeeded the journal takes them again.
func TestJournalSuspendedFallsBackToStore(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := &countingStore{memStore: newMemStore()}
	path := filepath.Join(t.TempDir(), "pua.db.etags")
	jr, _ := openTestJournal(t, path)
	jr.failAppend.Store(true)
	e := journalEngine(t, fs, clk, st, jr, nil)

	mustWait(t, e, pubReq("a"))
	waitFor(t, "prompt database write", func() bool {
		r, _ := st.row(presKey, FlagUsrloc)
		return r.ETag != "" && durable(e, presKey)
	})
	jr.failAppend.Store(false)
	// The prompt database write succeeded: the journal is in use again.
	e.jmu.Lock()
	suspended := e.jsuspended
	e.jmu.Unlock()
	if suspended {
		t.Fatal("journal still suspended after a database write")
	}
	writes := len(st.writes())
	appends := jr.appends.Load()
	mustWait(t, e, pubReq("b"))
	waitFor(t, "appended", func() bool { return jr.appends.Load() > appends && journalIdle(e) })
	if got := len(st.writes()); got != writes {
		t.Fatalf("%d database writes, want %d: the journal should take the prompt write", got, writes)
	}
}

// TestJournalLimitSuspends: a journal past its limit is not appended to;
// prompt writes go to the database.
func TestJournalLimitSuspends(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := &countingStore{memStore: newMemStore()}
	path := filepath.Join(t.TempDir(), "pua.db.etags")
	jr, _ := openTestJournal(t, path)
	cfg := testConfig(fs)
	cfg.UpdatePeriod = 10 * time.Minute
	e := startTestEngine(t, cfg, Options{Clock: clk, Store: st, Journal: jr, JournalLimit: 64})
	mustWait(t, e, pubReq("a"))
	waitFor(t, "prompt database write", func() bool { r, _ := st.row(presKey, FlagUsrloc); return r.ETag != "" })
	if jr.appends.Load() != 0 {
		t.Fatalf("%d appends past the limit", jr.appends.Load())
	}
}

// TestJournalEmptyAfterStop: a graceful stop writes everything to the
// database and leaves an empty journal (closed, no file).
func TestJournalEmptyAfterStop(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := &countingStore{memStore: newMemStore()}
	path := filepath.Join(t.TempDir(), "pua.db.etags")
	j, _, _, err := journal.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := journalEngine(t, fs, clk, st, j, nil)
	res := mustWait(t, e, pubReq("a"))
	waitFor(t, "appended", func() bool { return journalIdle(e) && durable(e, presKey) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if r, _ := st.row(presKey, FlagUsrloc); r.ETag != res.ETag {
		t.Fatalf("row ETag %q, want %q", r.ETag, res.ETag)
	}
	if files := generationFiles(t, path); len(files) != 0 {
		t.Fatalf("journal files left after a graceful stop: %v", files)
	}
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
}

// TestReplayJournalLastWins: entries of one identity replayed in order
// (the last wins, a removal included).
func TestReplayJournalLastWins(t *testing.T) {
	mem := newMemStore()
	old := Record{PresURI: "sip:b@example.com", PresID: "usrloc", EventName: "presence", Flag: FlagUsrloc, ETag: "old"}
	mem.put(old)
	a1 := Record{PresURI: "sip:a@example.com", PresID: "usrloc", EventName: "presence", Flag: FlagUsrloc, ETag: "e1"}
	a2 := a1
	a2.ETag = "e2"
	p1, _, _ := journalBatch([]Record{a1}, nil)
	p2, _, _ := journalBatch([]Record{a2}, []Record{old})
	p3, _, _ := journalBatch(nil, []Record{a1})
	p4, _, _ := journalBatch([]Record{a1}, nil)
	payloads := append(append(p1, p2...), p3...)
	rs, err := ReplayJournal(context.Background(), mem, payloads, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if rs.Entries != 4 || rs.Puts != 0 || rs.Dels != 2 {
		t.Fatalf("stats %+v", rs)
	}
	if n := len(mem.rows.Rows()); n != 0 {
		t.Fatalf("%d rows left, want none", n)
	}
	if _, err := ReplayJournal(context.Background(), mem, append(payloads, p4...), nil); err != nil {
		t.Fatal(err)
	}
	if r, ok := mem.rows.Get(idOf(a1)); !ok || r.ETag != "e1" {
		t.Fatalf("row %+v, want e1", r)
	}
}

// TestReplayJournalRefusesWhatItCannotRead: a good frame whose entry this
// build cannot read (not JSON, another version, an unknown operation or
// field, a renamed one) fails the replay and writes nothing: skipping it
// could let an older entry of the same record win.
func TestReplayJournalRefusesWhatItCannotRead(t *testing.T) {
	a1 := Record{PresURI: "sip:a@example.com", PresID: "usrloc", EventName: "presence", Flag: FlagUsrloc, ETag: "e1"}
	good, _, _ := journalBatch([]Record{a1}, nil)
	for name, bad := range map[string]string{
		"not json":      `{not json`,
		"version":       `{"v":2,"op":"put","rec":{"pres_uri":"sip:a@example.com","pres_id":"usrloc","event":"presence","flag":1,"etag":"e2"}}`,
		"no version":    `{"op":"put","rec":{"pres_uri":"sip:a@example.com","pres_id":"usrloc","event":"presence","flag":1,"etag":"e2"}}`,
		"op":            `{"v":1,"op":"zap","rec":{"pres_uri":"sip:a@example.com"}}`,
		"unknown field": `{"v":1,"op":"put","rec":{"pres_uri":"sip:a@example.com","pres_id":"usrloc","event":"presence","flag":1,"e_tag":"e2"}}`,
		"old names":     `{"v":1,"op":"put","rec":{"PresURI":"sip:a@example.com"}}`,
		"trailing":      `{"v":1,"op":"del","rec":{"pres_uri":"sip:a@example.com"}} {}`,
	} {
		t.Run(name, func(t *testing.T) {
			mem := newMemStore()
			_, err := ReplayJournal(context.Background(), mem, append(slices.Clone(good), []byte(bad)),
				slog.New(slog.NewTextHandler(io.Discard, nil)))
			if !errors.Is(err, ErrJournalEntry) {
				t.Fatalf("replay: %v, want ErrJournalEntry", err)
			}
			if n := len(mem.rows.Rows()); n != 0 {
				t.Fatalf("%d rows written by a refused replay", n)
			}
		})
	}
}

// TestJournalEntryKeepsEveryField: every field of a Record but the
// fencing ones comes back from the journal as it went in (a field added
// to Record and not to the journal's entry fails here).
func TestJournalEntryKeepsEveryField(t *testing.T) {
	var r Record
	v := reflect.ValueOf(&r).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch name := v.Type().Field(i).Name; {
		case name == "Shard" || name == "Epoch":
		case f.Kind() == reflect.String:
			f.SetString(name + "-value")
		case f.Kind() == reflect.Int || f.Kind() == reflect.Int64:
			f.SetInt(int64(i + 1))
		case f.Kind() == reflect.Bool:
			f.SetBool(true)
		case name == "Body":
			f.SetBytes([]byte("<presence/>"))
		case name == "ExtraHeaders":
			f.Set(reflect.ValueOf([]Header{{Name: "X-A", Value: "1"}}))
		default:
			t.Fatalf("field %s of kind %s: add it to the journal's entry and here", name, f.Kind())
		}
	}
	b, err := EncodeJournalEntry(JournalPut, r)
	if err != nil {
		t.Fatal(err)
	}
	op, got, err := decodeJournalEntry(b)
	if err != nil || op != JournalPut {
		t.Fatalf("decode: %q %v", op, err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, r)
	}
}

// replayed reopens the journal at path after a crash and replays it into
// a copy of mem's rows; it returns that copy.
func replayed(t *testing.T, path string, mem *memStore) *memStore {
	t.Helper()
	out := newMemStore()
	for _, r := range mem.rows.Rows() {
		out.put(r)
	}
	_, payloads := openTestJournal(t, path)
	if _, err := ReplayJournal(context.Background(), out, payloads, nil); err != nil {
		t.Fatal(err)
	}
	return out
}

func suspended(e *Engine) bool {
	e.jmu.Lock()
	defer e.jmu.Unlock()
	return e.jsuspended
}

// TestJournalSuspendedWithFailingRotateReplaysNoOlderState: appends and
// rotations fail (a full disk), the prompt writes go to the database; the
// generations holding older states are gone once the database has the
// newer ones, so a crash replays nothing older than the database.
func TestJournalSuspendedWithFailingRotateReplaysNoOlderState(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	mem := newMemStore()
	st := &countingStore{memStore: mem}
	path := filepath.Join(t.TempDir(), "pua.db.etags")
	jr, _ := openTestJournal(t, path)
	e := journalEngine(t, fs, clk, st, jr, nil)

	res1 := mustWait(t, e, pubReq("one"))
	waitFor(t, "appended", func() bool { return durable(e, presKey) && journalIdle(e) })
	jr.failAppend.Store(true)
	jr.failRotate.Store(true)
	res2 := mustWait(t, e, pubReq("two"))
	if res2.ETag == res1.ETag {
		t.Fatal("the modify kept its ETag")
	}
	waitFor(t, "prompt database write", func() bool {
		r, _ := st.row(presKey, FlagUsrloc)
		return r.ETag == res2.ETag && journalIdle(e)
	})
	if suspended(e) {
		t.Fatal("journal still suspended though it could be reset")
	}
	st.dead.Store(true)
	jr.kill()
	if r, ok := replayed(t, path, mem).row(presKey, FlagUsrloc); !ok || r.ETag != res2.ETag {
		t.Fatalf("after replay: row %+v (present %v), want ETag %s", r, ok, res2.ETag)
	}
}

// TestJournalNotResetStaysSuspended: a journal whose generations cannot
// be deleted after the database took the prompt writes stays suspended
// (the prompt writes keep going to the database) until a reset works.
func TestJournalNotResetStaysSuspended(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := &countingStore{memStore: newMemStore()}
	path := filepath.Join(t.TempDir(), "pua.db.etags")
	jr, _ := openTestJournal(t, path)
	e := journalEngine(t, fs, clk, st, jr, nil)
	mustWait(t, e, pubReq("one"))
	waitFor(t, "appended", func() bool { return durable(e, presKey) && journalIdle(e) })
	jr.failAppend.Store(true)
	jr.failReset.Store(true)
	res2 := mustWait(t, e, pubReq("two"))
	waitFor(t, "prompt database write", func() bool {
		r, _ := st.row(presKey, FlagUsrloc)
		return r.ETag == res2.ETag && journalIdle(e)
	})
	if !suspended(e) {
		t.Fatal("journal in use again though its generations are still there")
	}
	jr.failAppend.Store(false)
	appends := jr.appends.Load()
	res3 := mustWait(t, e, pubReq("three"))
	waitFor(t, "prompt database write", func() bool {
		r, _ := st.row(presKey, FlagUsrloc)
		return r.ETag == res3.ETag && journalIdle(e)
	})
	if jr.appends.Load() != appends {
		t.Fatal("appended to a journal not reset")
	}
	jr.failReset.Store(false)
	mustWait(t, e, pubReq("four"))
	waitFor(t, "journal in use again", func() bool { return !suspended(e) && journalIdle(e) })
	if n := len(generationFiles(t, path)); n != 0 {
		t.Fatalf("%d generation files after the reset", n)
	}
}

// TestJournalRemovalBeforeFirstWriteBehind: a publication whose ETag only
// the journal holds (no write-behind yet), removed, leaves its removal in
// the journal: a crash does not bring the row back.
func TestJournalRemovalBeforeFirstWriteBehind(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	mem := newMemStore()
	st := &countingStore{memStore: mem}
	path := filepath.Join(t.TempDir(), "pua.db.etags")
	jr, _ := openTestJournal(t, path)
	e := journalEngine(t, fs, clk, st, jr, nil)
	mustWait(t, e, pubReq("one"))
	waitFor(t, "appended", func() bool { return durable(e, presKey) && journalIdle(e) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.RemoveWait(ctx, presKey); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "removal appended", func() bool { return journalIdle(e) })
	if w := st.writes(); len(w) != 0 {
		t.Fatalf("database writes %v, want none", w)
	}
	st.dead.Store(true)
	jr.kill()
	if r, ok := replayed(t, path, mem).row(presKey, FlagUsrloc); ok {
		t.Fatalf("removed publication back after replay: %+v", r)
	}
}

// TestJournalFlagChangeBeforeFirstWriteBehind: a publication whose flag
// changes before any write-behind leaves in the journal the deletion of
// the row of its first flag: a crash replays one row, of the new flag.
func TestJournalFlagChangeBeforeFirstWriteBehind(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	mem := newMemStore()
	st := &countingStore{memStore: mem}
	path := filepath.Join(t.TempDir(), "pua.db.etags")
	jr, _ := openTestJournal(t, path)
	e := journalEngine(t, fs, clk, st, jr, nil)
	req := pubReq("one")
	req.Flag = FlagRPCPublish
	mustWait(t, e, req)
	waitFor(t, "appended", func() bool { return durable(e, presKey) && journalIdle(e) })
	res2 := mustWait(t, e, pubReq("two")) // FlagUsrloc
	waitFor(t, "appended", func() bool { return durable(e, presKey) && journalIdle(e) })
	st.dead.Store(true)
	jr.kill()
	got := replayed(t, path, mem)
	if r, ok := got.row(presKey, FlagRPCPublish); ok {
		t.Fatalf("row of the old flag back after replay: %+v", r)
	}
	if r, ok := got.row(presKey, FlagUsrloc); !ok || r.ETag != res2.ETag {
		t.Fatalf("row of the new flag %+v (present %v), want ETag %s", r, ok, res2.ETag)
	}
}

// TestJournalChangeDuringWriteBehindIsAppendedFirst: a record already
// appended that changes after the write-behind took its batch and before
// it read the record is appended with the batch, not left to a prompt
// append after the database commit: a crash right after the commit
// replays the state the database has.
func TestJournalChangeDuringWriteBehindIsAppendedFirst(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	mem := newMemStore()
	st := &countingStore{memStore: mem}
	path := filepath.Join(t.TempDir(), "pua.db.etags")
	jr, _ := openTestJournal(t, path)
	e := journalEngine(t, fs, clk, st, jr, nil)
	mustWait(t, e, pubReq("one"))
	waitFor(t, "appended", func() bool { return durable(e, presKey) && journalIdle(e) })
	var once sync.Once
	e.flushTaken = func() {
		once.Do(func() {
			if err := e.Publish(pubReq("two")); err != nil {
				t.Error(err)
			}
		})
	}
	st.mu.Lock()
	st.afterSave = func() { // the crash, right after the commit
		st.dead.Store(true)
		jr.kill()
	}
	st.mu.Unlock()
	if err := e.flush(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	r, _ := mem.row(presKey, FlagUsrloc)
	if string(r.Body) != string(pidf("two")) {
		t.Fatalf("database row body %q, want two", r.Body)
	}
	if got, _ := replayed(t, path, mem).row(presKey, FlagUsrloc); string(got.Body) != string(r.Body) {
		t.Fatalf("after replay: body %q, the database had %q", got.Body, r.Body)
	}
}

// TestJournalDatabaseDownGrowsNoFiles: write-behinds failing while the
// database is down start no generation when nothing was appended since the
// last one, and do not append again the removals already appended.
func TestJournalDatabaseDownGrowsNoFiles(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	mem := newMemStore()
	gone := Key{PresURI: "sip:gone@example.com", Event: "presence", ID: "usrloc"}
	mem.put(storedPub(clk, gone.PresURI, "presence", "usrloc", "e-gone", FlagUsrloc, pidf("gone")))
	st := &countingStore{memStore: mem}
	path := filepath.Join(t.TempDir(), "pua.db.etags")
	jr, _ := openTestJournal(t, path)
	e := journalEngine(t, fs, clk, st, jr, func(c *Config) { c.InitialExpires = 24 * time.Hour })
	st.fail.Store(true)
	mustWait(t, e, pubReq("one"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.RemoveWait(ctx, gone); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "appended", func() bool { return durable(e, presKey) && journalIdle(e) })
	for range 50 {
		if err := e.flush(ctx, false); err == nil {
			t.Fatal("write-behind succeeded with the database down")
		}
	}
	if n := len(generationFiles(t, path)); n > 2 {
		t.Fatalf("%d generation files after 50 failed write-behinds", n)
	}
	jr.kill()
	_, payloads := openTestJournal(t, path)
	dels := 0
	for _, p := range payloads {
		op, rec, err := decodeJournalEntry(p)
		if err != nil {
			t.Fatal(err)
		}
		if op == JournalDel && rec.PresURI == gone.PresURI {
			dels++
		}
	}
	if dels != 1 {
		t.Fatalf("removal appended %d times, want once", dels)
	}
}
