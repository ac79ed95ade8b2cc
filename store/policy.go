package store

import (
	"context"
	"fmt"
	"time"

	"github.com/puaside/puaside/pa"
)

// LoadPolicyRules returns the embedded presence server's stored
// authorization rules (table puaside_pa_policy).
func (db *DB) LoadPolicyRules(ctx context.Context) ([]pa.Rule, error) {
	var rows []struct {
		Presentity string `db:"presentity"`
		Watcher    string `db:"watcher"`
		Action     string `db:"action"`
	}
	if err := db.X.SelectContext(ctx, &rows,
		`SELECT presentity, watcher, action FROM puaside_pa_policy ORDER BY presentity, watcher`); err != nil {
		return nil, fmt.Errorf("store: load policy rules: %w", err)
	}
	out := make([]pa.Rule, 0, len(rows))
	for _, r := range rows {
		out = append(out, pa.Rule{Presentity: r.Presentity, Watcher: r.Watcher, Action: r.Action})
	}
	return out, nil
}

// SavePolicyRule stores r, replacing the rule of the same presentity and
// watcher. A value that does not fit its column as it is is refused with
// an error.
func (db *DB) SavePolicyRule(ctx context.Context, r pa.Rule) error {
	f := db.row("puaside_pa_policy")
	f.key("presentity", r.Presentity)
	f.key("watcher", r.Watcher)
	f.key("action", r.Action)
	if f.err != nil {
		return fmt.Errorf("store: save policy rule %q/%q: %w", r.Presentity, r.Watcher, f.err)
	}
	tx, err := db.X.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: save policy rule: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if _, err := tx.ExecContext(ctx, `DELETE FROM puaside_pa_policy WHERE presentity = ? AND watcher = ?`, r.Presentity, r.Watcher); err != nil {
		return fmt.Errorf("store: save policy rule: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO puaside_pa_policy (presentity, watcher, action, created) VALUES (?, ?, ?, ?)`,
		r.Presentity, r.Watcher, r.Action, time.Now().Unix()); err != nil {
		return fmt.Errorf("store: save policy rule: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: save policy rule: commit: %w", err)
	}
	return nil
}

// DeletePolicyRule removes the rule of presentity and watcher and reports
// whether there was one.
func (db *DB) DeletePolicyRule(ctx context.Context, presentity, watcher string) (bool, error) {
	res, err := db.X.ExecContext(ctx, `DELETE FROM puaside_pa_policy WHERE presentity = ? AND watcher = ?`, presentity, watcher)
	if err != nil {
		return false, fmt.Errorf("store: delete policy rule: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: delete policy rule: %w", err)
	}
	return n > 0, nil
}
