package store

import (
	"context"
	"fmt"

	"github.com/puaside/puaside/dialoginfo"
)

// The dialoginfo tracker's tables (schema 020_dialoginfo.sql).
var _ dialoginfo.Store = (*DB)(nil)

// LoadDialogs returns every active call stored by the dialoginfo tracker.
func (db *DB) LoadDialogs(ctx context.Context) ([]dialoginfo.Record, error) {
	var rows []dialoginfo.Record
	if err := db.X.SelectContext(ctx, &rows,
		`SELECT id, call_id, from_tag, caller, callee, state, data, updated FROM puaside_dialogs ORDER BY id`); err != nil {
		return nil, fmt.Errorf("store: load dialogs: %w", err)
	}
	return rows, nil
}

// SaveDialogs upserts and deletes (by id) dialoginfo calls in one transaction.
func (db *DB) SaveDialogs(ctx context.Context, upsert []dialoginfo.Record, remove []string) error {
	if len(upsert) == 0 && len(remove) == 0 {
		return nil
	}
	tx, err := db.X.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: save dialogs: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	del, err := tx.PreparexContext(ctx, `DELETE FROM puaside_dialogs WHERE id = ?`)
	if err != nil {
		return fmt.Errorf("store: save dialogs: prepare delete: %w", err)
	}
	defer del.Close()
	ins, err := tx.PreparexContext(ctx, `INSERT INTO puaside_dialogs
		(id, call_id, from_tag, caller, callee, state, data, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("store: save dialogs: prepare insert: %w", err)
	}
	defer ins.Close()
	for _, id := range remove {
		if _, err := del.ExecContext(ctx, id); err != nil {
			return fmt.Errorf("store: delete dialog %s: %w", id, err)
		}
	}
	for _, r := range upsert {
		if r.ID == "" {
			return fmt.Errorf("store: save dialog of call %q: empty id", r.CallID)
		}
		if _, err := del.ExecContext(ctx, r.ID); err != nil {
			return fmt.Errorf("store: replace dialog %s: %w", r.ID, err)
		}
		data := r.Data
		if data == nil {
			data = []byte{}
		}
		if _, err := ins.ExecContext(ctx, r.ID, r.CallID, r.FromTag, r.Caller, r.Callee, r.State, data, r.Updated); err != nil {
			return fmt.Errorf("store: insert dialog %s: %w", r.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: save dialogs: commit: %w", err)
	}
	return nil
}

// LoadDialogVersions returns the last dialog-info version of each entity.
func (db *DB) LoadDialogVersions(ctx context.Context) (map[string]uint64, error) {
	var rows []struct {
		Entity  string `db:"entity"`
		Version uint64 `db:"version"`
	}
	if err := db.X.SelectContext(ctx, &rows, `SELECT entity, version FROM puaside_dialog_versions`); err != nil {
		return nil, fmt.Errorf("store: load dialog versions: %w", err)
	}
	out := make(map[string]uint64, len(rows))
	for _, r := range rows {
		out[r.Entity] = r.Version
	}
	return out, nil
}

// SaveDialogVersions upserts entity versions in one transaction. A stored
// version is never lowered.
func (db *DB) SaveDialogVersions(ctx context.Context, versions map[string]uint64) error {
	if len(versions) == 0 {
		return nil
	}
	tx, err := db.X.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: save dialog versions: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	for e, v := range versions {
		var cur []uint64
		if err := tx.SelectContext(ctx, &cur, `SELECT version FROM puaside_dialog_versions WHERE entity = ?`, e); err != nil {
			return fmt.Errorf("store: read dialog version of %s: %w", e, err)
		}
		switch {
		case len(cur) == 0:
			_, err = tx.ExecContext(ctx, `INSERT INTO puaside_dialog_versions (entity, version) VALUES (?, ?)`, e, v)
		case cur[0] < v:
			_, err = tx.ExecContext(ctx, `UPDATE puaside_dialog_versions SET version = ? WHERE entity = ?`, v, e)
		}
		if err != nil {
			return fmt.Errorf("store: save dialog version of %s: %w", e, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: save dialog versions: commit: %w", err)
	}
	return nil
}
