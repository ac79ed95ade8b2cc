package crashtest

import (
	"context"
	"fmt"
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
// nothing once Dead is set (the process is gone): its files stay as the
// kill left them.
type KillableJournal struct {
	*journal.Journal
	Dead atomic.Bool
}

// Append writes through until the process is dead.
func (k *KillableJournal) Append(ps [][]byte) error {
	if k.Dead.Load() {
		return fmt.Errorf("killed")
	}
	return k.Journal.Append(ps)
}

// Rotate rotates until the process is dead.
func (k *KillableJournal) Rotate() (uint64, error) {
	if k.Dead.Load() {
		return 0, fmt.Errorf("killed")
	}
	return k.Journal.Rotate()
}

// Drop drops until the process is dead.
func (k *KillableJournal) Drop(upTo uint64) error {
	if k.Dead.Load() {
		return nil
	}
	return k.Journal.Drop(upTo)
}

// OpenJournal does what the daemon does at start: it opens the journal at
// path, replays what it holds into st and drops it.
func OpenJournal(ctx context.Context, path string, st pua.Store, log *slog.Logger) (*KillableJournal, error) {
	j, payloads, _, err := journal.Open(path, log)
	if err != nil {
		return nil, err
	}
	if _, err := pua.ReplayJournal(ctx, st, payloads, log); err != nil {
		j.Close()
		return nil, err
	}
	if err := j.Drop(j.Generation() - 1); err != nil {
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
