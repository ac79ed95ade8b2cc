package pua

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/clock/clocktest"
	"github.com/puaside/puaside/internal/puatest"
)

// fakeClock is a Clock driven by Advance.
type fakeClock = clocktest.Fake

func newFakeClock() *fakeClock { return clocktest.New(time.Unix(1_700_000_000, 0)) }

// fakeServer is the kit's presence server / notifier.
type fakeServer = puatest.PresenceServer

func newFakeServer(t testing.TB) *fakeServer {
	return puatest.NewPresenceServer(t, puatest.ServerOptions{Name: "fake-esc"})
}

// notify sends a NOTIFY (CSeq 1) within the dialog of SUBSCRIBE sub (toTag
// is the notifier's tag); it returns the reply status.
func notify(t testing.TB, fs *fakeServer, sub *sip.Request, toTag, state, ctype string, body []byte) int {
	t.Helper()
	res, err := fs.Notify(sub, toTag, state, ctype, body, 1)
	if err != nil {
		t.Errorf("notify: %v", err)
		return 0
	}
	return res.StatusCode
}

// notifySeq sends a body-less NOTIFY with the given CSeq within the dialog
// of SUBSCRIBE sub and returns the reply.
func notifySeq(t testing.TB, fs *fakeServer, sub *sip.Request, toTag, state string, seq uint32) *sip.Response {
	t.Helper()
	res, err := fs.Notify(sub, toTag, state, "", nil, seq)
	if err != nil {
		t.Errorf("notify cseq %d: %v", seq, err)
		return nil
	}
	return res
}

// waitFor polls cond until it holds or a bounded deadline passes.
// async runs wait (e.PublishWait, e.RemoveWait, e.SubscribeWait, ...) in
// a goroutine of its own; its result comes on the channel.
func async(wait func(context.Context) (Result, error)) <-chan Result {
	ch := make(chan Result, 1)
	go func() {
		res, _ := wait(context.Background())
		ch <- res
	}()
	return ch
}

// awaitResult returns the result on ch; t fails after 10 s without one.
func awaitResult(t testing.TB, ch <-chan Result, what string) Result {
	t.Helper()
	select {
	case res := <-ch:
		return res
	case <-time.After(10 * time.Second):
		t.Fatalf("no result for %s", what)
		return Result{}
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	puatest.Eventually(t, what, cond)
}

// memStore is an in-memory Store.
type memStore struct {
	rows *puatest.Table[identity, Record]
}

func newMemStore() *memStore { return &memStore{rows: puatest.NewTable[identity, Record]()} }

func (m *memStore) LoadRecords(context.Context) ([]Record, error) {
	var out []Record
	for _, r := range m.rows.Rows() {
		out = append(out, r)
	}
	return out, nil
}

func (m *memStore) SaveRecords(_ context.Context, up, rm []Record) error {
	return m.rows.Write(func(rows map[identity]Record) {
		for _, r := range rm {
			delete(rows, idOf(r))
		}
		for _, r := range up {
			rows[idOf(r)] = r
		}
	})
}

// failingStore is a memStore that refuses every write while fail is set
// (with err, context.DeadlineExceeded when nil) and, like a database, fails
// a write whose context has ended.
type failingStore struct {
	*memStore
	mu   sync.Mutex
	fail bool
	err  error
}

func (f *failingStore) setFail(b bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = b
}

func (f *failingStore) SaveRecords(ctx context.Context, up, rm []Record) error {
	f.mu.Lock()
	fail, err := f.fail, f.err
	f.mu.Unlock()
	if fail {
		if err == nil {
			err = context.DeadlineExceeded
		}
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return f.memStore.SaveRecords(ctx, up, rm)
}

// newTestEngine starts an engine against fs with a fake clock.
func newTestEngine(t testing.TB, fs *fakeServer, clk Clock, st Store, mod func(*Config)) *Engine {
	t.Helper()
	return newTestEngineOwners(t, fs, clk, st, mod, nil)
}

// newTestEngineOwners is newTestEngine with owners that claim at start.
func newTestEngineOwners(t testing.TB, fs *fakeServer, clk Clock, st Store, mod func(*Config), owners []int) *Engine {
	t.Helper()
	cfg := testConfig(fs)
	// Tests of the short lease set it themselves (see lease_test.go).
	cfg.InitialExpires = 24 * time.Hour
	if mod != nil {
		mod(&cfg)
	}
	return startTestEngine(t, cfg, Options{Clock: clk, Store: st, Owners: owners})
}

// testConfig is the configuration of a test engine talking to fs.
func testConfig(fs *fakeServer) Config {
	cfg := DefaultConfig()
	cfg.Listen = []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}
	cfg.ServerAddress = fs.URI()
	cfg.RequestTimeout = 400 * time.Millisecond
	cfg.MaxOutstanding = 8
	return cfg
}

// startStopAtEnd starts e and stops it (within 5 s) when the test ends.
func startStopAtEnd(t testing.TB, e *Engine) {
	t.Helper()
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Stop(ctx)
	})
}

// startTestEngine starts an engine that logs nowhere and is stopped when
// the test ends.
func startTestEngine(t testing.TB, cfg Config, opts Options) *Engine {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	startStopAtEnd(t, e)
	return e
}
