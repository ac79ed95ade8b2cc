package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrEmptyAoR is returned when a shared line is saved or deleted without an AoR.
var ErrEmptyAoR = errors.New("empty shared line AoR")

// LoadSharedLines returns the shared (BLA) lines of table
// puaside_shared_lines: line AoR → member phone URIs. A line without
// members maps to an empty, non-nil slice. Members are in name order.
func (db *DB) LoadSharedLines(ctx context.Context) (map[string][]string, error) {
	var rows []struct {
		AoR    string `db:"aor"`
		Member string `db:"member"`
	}
	if err := db.X.SelectContext(ctx, &rows,
		`SELECT aor, member FROM puaside_shared_lines ORDER BY aor, member`); err != nil {
		return nil, fmt.Errorf("store: load shared lines: %w", err)
	}
	out := make(map[string][]string)
	for _, r := range rows {
		m, ok := out[r.AoR]
		if !ok {
			m = []string{}
		}
		if r.Member != "" {
			m = append(m, r.Member)
		}
		out[r.AoR] = m
	}
	return out, nil
}

// SaveSharedLine creates or replaces the shared line aor with exactly the
// given members (none: every registered contact of the AoR is a member), in
// one transaction. Duplicate and empty members are ignored. An AoR or
// member that does not fit its column as it is (or is not valid UTF-8) is
// refused with an error and nothing is written.
func (db *DB) SaveSharedLine(ctx context.Context, aor string, members []string) error {
	if aor == "" {
		return fmt.Errorf("store: save shared line: %w", ErrEmptyAoR)
	}
	rows := uniqueNonEmpty(members)
	f := db.row("puaside_shared_lines")
	f.key("aor", aor)
	for _, m := range rows {
		f.key("member", m)
	}
	if f.err != nil {
		return fmt.Errorf("store: save shared line %s: %w", aor, f.err)
	}
	tx, err := db.X.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: save shared line %s: begin: %w", aor, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if _, err := tx.ExecContext(ctx, `DELETE FROM puaside_shared_lines WHERE aor = ?`, aor); err != nil {
		return fmt.Errorf("store: save shared line %s: delete old rows: %w", aor, err)
	}
	now := time.Now().Unix()
	if len(rows) == 0 {
		rows = []string{""}
	}
	for _, m := range rows {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO puaside_shared_lines (aor, member, created) VALUES (?, ?, ?)`, aor, m, now); err != nil {
			return fmt.Errorf("store: save shared line %s: insert member %q: %w", aor, m, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: save shared line %s: commit: %w", aor, err)
	}
	return nil
}

// DeleteSharedLine removes the shared line aor and reports whether it existed.
func (db *DB) DeleteSharedLine(ctx context.Context, aor string) (bool, error) {
	if aor == "" {
		return false, fmt.Errorf("store: delete shared line: %w", ErrEmptyAoR)
	}
	res, err := db.X.ExecContext(ctx, `DELETE FROM puaside_shared_lines WHERE aor = ?`, aor)
	if err != nil {
		return false, fmt.Errorf("store: delete shared line %s: %w", aor, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: delete shared line %s: rows affected: %w", aor, err)
	}
	return n > 0, nil
}

func uniqueNonEmpty(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := make([]string, 0, len(in))
	for _, s := range in {
		if s == "" || seen[s] {
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	return out
}
