package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/puaside/puaside/journal"
	"github.com/puaside/puaside/pua"
)

// openJournal opens the engine's ETag journal at path and replays what it
// holds into st (the state a crash left there: newer than the database's
// rows it names), then drops its generations: the engine then starts from
// the database alone. A torn or corrupt frame, or an entry that does not
// decode, is skipped, counted and logged. The error is for a journal that
// cannot be read or created, or a database that refuses the replay (the
// journal is then left as it is, for the next start).
func openJournal(ctx context.Context, path string, st pua.Store, log *slog.Logger) (*journal.Journal, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("etag journal: %w", err)
		}
	}
	j, payloads, jst, err := journal.Open(path, log)
	if err != nil {
		return nil, fmt.Errorf("etag journal: %w", err)
	}
	if len(payloads) > 0 || jst.Corrupt > 0 {
		rs, err := pua.ReplayJournal(ctx, st, payloads, log)
		if err != nil {
			j.Close()
			return nil, fmt.Errorf("etag journal %s: %w", path, err)
		}
		log.Info("etag journal replayed into the database", "path", path, "generations", jst.Generations,
			"entries", rs.Entries, "rows_written", rs.Puts, "rows_deleted", rs.Dels,
			"bad_entries", rs.Bad, "corrupt_generations", jst.Corrupt, "bytes_skipped", jst.SkippedBytes)
	}
	if err := j.Drop(j.Generation() - 1); err != nil {
		j.Close()
		return nil, fmt.Errorf("etag journal: %w", err)
	}
	return j, nil
}
