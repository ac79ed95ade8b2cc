package store

import (
	"context"
	"net"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// TestInBatchesLetsTheNetworkIn: with one processor, a goroutine waiting
// for a datagram that has arrived runs between two chunks of a long write,
// not after the whole write (a yield that keeps the writer runnable would
// leave the network unpolled until the runtime's monitor polls it, 10 ms
// after the last poll: after chunk 3 of 4 at the earliest). A loaded
// machine can keep the process off the processor for a whole pause, so
// the test gives the pause three tries; a yield fails all three.
func TestInBatchesLetsTheNetworkIn(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	seen := make([]int, 0, 3)
	for range 3 {
		at := datagramSeenAt(t)
		if at >= 0 && at <= 1 {
			return
		}
		seen = append(seen, at)
	}
	t.Fatalf("the datagram's reader ran before chunk %v of 4 (-1: after the write) in three tries, want before the second", seen)
}

// datagramSeenAt sends a datagram to a goroutine parked in the network
// poller, then runs a write of four 3 ms chunks in batches of one, and
// returns the index of the first chunk that started after the reader got
// the datagram, -1 if none did.
func datagramSeenAt(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	got := make(chan struct{})
	go func() {
		buf := make([]byte, 64)
		if _, _, err := pc.ReadFrom(buf); err == nil {
			close(got)
		}
	}()
	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The reader parks in the network poller before the datagram comes:
	// only a poll of the network makes it runnable again. The sleep ends
	// with one (the processor idles in the poller), so the monitor's next
	// comes 10 ms after the write, which follows at once.
	time.Sleep(5 * time.Millisecond)
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	seenAt, i := -1, 0
	err = inBatches(make([]int, 4), 1, func([]int) error {
		select {
		case <-got:
			if seenAt < 0 {
				seenAt = i
			}
		default:
		}
		for start := time.Now(); time.Since(start) < 3*time.Millisecond; {
		}
		i++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return seenAt
}

// TestStmtCtx: with SQLite the statements of a transaction run on a
// context that cannot end (no watcher goroutine per statement in the
// driver), and the transaction still ends with its own context: the next
// statement fails and nothing of it is kept.
func TestStmtCtx(t *testing.T) {
	if (&DB{Dialect: MySQL}).stmtCtx(t.Context()).Done() == nil {
		t.Error("MySQL statements lost their context's end")
	}
	bg := context.Background()
	db, err := Open(bg, "sqlite://"+filepath.Join(t.TempDir(), "s.db"), "pua")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	tx, err := db.X.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // the test's end
	sctx := db.stmtCtx(ctx)
	if sctx.Done() != nil {
		t.Fatal("SQLite statements run on a context that can end")
	}
	if _, err := tx.ExecContext(sctx, `CREATE TABLE kept (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	cancel()
	// database/sql rolls the transaction back on its own goroutine.
	var stmtErr error
	for range 500 {
		if _, stmtErr = tx.ExecContext(sctx, `INSERT INTO kept (x) VALUES (1)`); stmtErr != nil {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if stmtErr == nil {
		t.Fatal("statements still ran after the transaction's context ended")
	}
	var n int
	if err := db.X.QueryRowContext(bg, `SELECT count(*) FROM sqlite_master WHERE name = 'kept'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("the ended transaction's table was kept")
	}
}
