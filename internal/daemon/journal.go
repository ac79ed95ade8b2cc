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
// rows it names), then resets it: the engine then starts from the
// database alone. A torn or corrupt frame is skipped, counted and logged.
// The error is for a journal that cannot be read or is held by another
// process, one of a format or with an entry this build cannot read, one a
// failed reset left behind, or a database that refuses the replay: the
// journal is then left as it is, for the next start.
func openJournal(ctx context.Context, path string, st pua.Store, log *slog.Logger) (*journal.Journal, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("etag journal: %w", err)
		}
	}
	j, payloads, jst, err := journal.Open(path, log)
	if err != nil {
		return nil, fmt.Errorf("etag journal %s: %w", path, err)
	}
	if len(payloads) > 0 || jst.Corrupt > 0 {
		rs, err := pua.ReplayJournal(ctx, st, payloads, log)
		if err != nil {
			j.Close()
			return nil, fmt.Errorf("etag journal %s (kept as it is): %w", path, err)
		}
		log.Info("etag journal replayed into the database", "path", path, "generations", jst.Generations,
			"entries", rs.Entries, "rows_written", rs.Puts, "rows_deleted", rs.Dels,
			"corrupt_generations", jst.Corrupt, "bytes_skipped", jst.SkippedBytes)
	}
	if err := j.Reset(); err != nil {
		j.Close()
		return nil, fmt.Errorf("etag journal %s: %w", path, err)
	}
	return j, nil
}

// replayLeftJournals replays into st, and deletes, the journals an earlier
// run left at paths (config.ETagJournalPaths) other than inUse: a journal
// turned off since (or the database's journal path changed) still holds
// ETags newer than the database, and would replay them over newer rows
// if turned on again later.
func replayLeftJournals(ctx context.Context, paths []string, inUse string, st pua.Store, log *slog.Logger) error {
	for _, path := range paths {
		if path == inUse {
			continue
		}
		ok, err := journal.Exists(path)
		if err != nil {
			return fmt.Errorf("etag journal %s: %w", path, err)
		}
		if !ok {
			continue
		}
		log.Info("etag journal left by an earlier run, not in use now: replaying it", "path", path)
		j, err := openJournal(ctx, path, st, log)
		if err != nil {
			return err
		}
		if err := j.Close(); err != nil {
			return fmt.Errorf("etag journal %s: %w", path, err)
		}
	}
	return nil
}
