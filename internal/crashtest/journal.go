package crashtest

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/puaside/puaside/journal"
	"github.com/puaside/puaside/pua"
)

// KillableJournal is an ETag journal that appends, rotates and drops
// nothing once killed (the process is gone): its files stay as the kill
// left them. Faults can be injected into each operation.
type KillableJournal struct {
	*journal.Journal
	Dead atomic.Bool
	// FailAppend, FailRotate, FailDrop and FailReset make that operation
	// fail (a full disk, a broken file system) while alive.
	FailAppend, FailRotate, FailDrop, FailReset atomic.Bool
}

// errKilled is what a killed or failing journal returns.
var errKilled = errors.New("killed")

// Kill stops every operation and leaves the files as they are, the lock
// released (as at the end of a killed process).
func (k *KillableJournal) Kill() {
	k.Dead.Store(true)
	k.Journal.Abandon()
}

// Append writes through until the process is dead.
func (k *KillableJournal) Append(ps [][]byte) error {
	if k.Dead.Load() || k.FailAppend.Load() {
		return errKilled
	}
	return k.Journal.Append(ps)
}

// Rotate rotates until the process is dead.
func (k *KillableJournal) Rotate() (uint64, error) {
	if k.Dead.Load() || k.FailRotate.Load() {
		return 0, errKilled
	}
	return k.Journal.Rotate()
}

// Drop drops until the process is dead.
func (k *KillableJournal) Drop(upTo uint64) error {
	if k.Dead.Load() || k.FailDrop.Load() {
		return errKilled
	}
	return k.Journal.Drop(upTo)
}

// Reset resets until the process is dead.
func (k *KillableJournal) Reset() error {
	if k.Dead.Load() || k.FailReset.Load() {
		return errKilled
	}
	return k.Journal.Reset()
}

// OpenJournal does what the daemon does at start: it opens the journal at
// path, replays what it holds into st and resets it.
func OpenJournal(ctx context.Context, path string, st pua.Store, log *slog.Logger) (*KillableJournal, error) {
	j, payloads, _, err := journal.Open(path, log)
	if err != nil {
		return nil, err
	}
	if _, err := pua.ReplayJournal(ctx, st, payloads, log); err != nil {
		j.Close()
		return nil, err
	}
	if err := j.Reset(); err != nil {
		j.Close()
		return nil, err
	}
	return &KillableJournal{Journal: j}, nil
}

// Corpus returns the inputs of a fuzz target's corpus in the package's
// testdata/fuzz/<target> (one []byte each).
func Corpus(t testing.TB, target string) [][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, lit, ok := strings.Cut(string(b), "[]byte(")
		if !ok {
			t.Fatalf("%s: not a corpus file of one []byte", f)
		}
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimSpace(lit), ")"))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, []byte(s))
	}
	return out
}
