package store

import (
	"context"
	"fmt"
	"sort"

	"github.com/jmoiron/sqlx"

	"github.com/puaside/puaside/dialoginfo"
)

// The dialoginfo tracker's tables (schema 020_dialoginfo.sql).
var _ dialoginfo.Store = (*DB)(nil)

// dialogRow is a row of puaside_dialogs; it converts to and from
// dialoginfo.Record (the same fields without the column names).
type dialogRow struct {
	ID      string `db:"id"`
	CallID  string `db:"call_id"`
	FromTag string `db:"from_tag"`
	Caller  string `db:"caller"`
	Callee  string `db:"callee"`
	State   string `db:"state"`
	Data    []byte `db:"data"`
	Updated int64  `db:"updated"`
}

// dialogColumnList names the columns of dialogRow in INSERT order.
const dialogColumnList = "id, call_id, from_tag, caller, callee, state, data, updated"

// dialogColumns is the number of columns in dialogColumnList.
const dialogColumns = 8

// LoadDialogs returns every active call stored by the dialoginfo tracker.
func (db *DB) LoadDialogs(ctx context.Context) ([]dialoginfo.Record, error) {
	var rows []dialogRow
	if err := db.X.SelectContext(ctx, &rows,
		`SELECT `+dialogColumnList+` FROM puaside_dialogs ORDER BY id`); err != nil {
		return nil, fmt.Errorf("store: load dialogs: %w", err)
	}
	out := make([]dialoginfo.Record, len(rows))
	for i, r := range rows {
		out[i] = dialoginfo.Record(r)
	}
	return out, nil
}

// Batch sizes of the dialog tables: ids or entities per DELETE or SELECT,
// rows per multi-row INSERT (8 values a row for puaside_dialogs).
const (
	dialogKeyBatch    = 500
	dialogInsertBatch = 100
)

// Tables of the dialoginfo tracker.
const (
	dialogsTable  = "puaside_dialogs"
	versionsTable = "puaside_dialog_versions"
)

// SaveDialogs upserts and deletes (by id) dialoginfo calls in one
// transaction. An id both removed and upserted is upserted; an id upserted
// twice keeps the last record. The rows are deleted with one statement per
// 500 ids and written with multi-row INSERTs.
//
// Text values are made valid UTF-8 and cut to their columns' widths, never
// inside a character (a 300-character Call-ID is stored cut; the call's
// data keeps it whole). A record whose id is empty or does not fit, or
// that the database refuses, is set aside: logged, counted in
// puaside_store_rows_quarantined_total and not written, while every other
// record is (the transaction is split until the record at fault is found).
// Any other error is returned and the caller retries.
func (db *DB) SaveDialogs(ctx context.Context, upsert []dialoginfo.Record, remove []string) error {
	if len(upsert) == 0 && len(remove) == 0 {
		return nil
	}
	last := make(map[string]int, len(upsert))
	for i, r := range upsert {
		last[r.ID] = i
	}
	var gone []string
	seen := make(map[string]bool, len(remove))
	for _, id := range remove {
		f := db.row(dialogsTable)
		if f.key("id", id); f.err == nil && !seen[id] {
			seen[id] = true
			gone = append(gone, id)
		}
	}
	rows := make([]dialoginfo.Record, 0, len(last))
	for i := range upsert {
		r := upsert[i]
		if last[r.ID] != i {
			continue
		}
		f := db.row(dialogsTable)
		if r.ID == "" {
			f.err = fmt.Errorf("%w: empty id", errUnstorable)
		}
		f.key("id", r.ID)
		if f.err != nil {
			db.setAside(dialogsTable, "id="+r.ID+" call_id="+r.CallID, f.err)
			continue
		}
		r.CallID = f.clip("call_id", r.CallID)
		r.FromTag = f.clip("from_tag", r.FromTag)
		r.Caller = f.clip("caller", r.Caller)
		r.Callee = f.clip("callee", r.Callee)
		r.State = f.clip("state", r.State)
		rows = append(rows, r)
	}
	err := db.saveDialogs(ctx, rows, gone)
	if err == nil || !rowError(err) || ctx.Err() != nil {
		return err
	}
	if err := db.saveDialogs(ctx, nil, gone); err != nil {
		return err
	}
	return isolate(ctx, rows, func(part []dialoginfo.Record) error { return db.saveDialogs(ctx, part, nil) },
		func(r dialoginfo.Record, err error) { db.setAside(dialogsTable, "id="+r.ID+" call_id="+r.CallID, err) })
}

// saveDialogs deletes the rows of remove and of every record of upsert,
// then inserts upsert (unique ids), in one transaction.
func (db *DB) saveDialogs(ctx context.Context, upsert []dialoginfo.Record, remove []string) error {
	if len(upsert) == 0 && len(remove) == 0 {
		return nil
	}
	ids := make([]string, 0, len(remove)+len(upsert))
	seen := make(map[string]bool, len(remove)+len(upsert))
	for _, id := range remove {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	rows := make([]*dialoginfo.Record, 0, len(upsert))
	for i := range upsert {
		rows = append(rows, &upsert[i])
		if !seen[upsert[i].ID] {
			seen[upsert[i].ID] = true
			ids = append(ids, upsert[i].ID)
		}
	}
	tx, err := db.X.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: save dialogs: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	ctx = db.stmtCtx(ctx)
	if err := db.checkWriter(ctx, tx); err != nil {
		return fmt.Errorf("store: save dialogs: %w", err)
	}
	bt := newBatcher(ctx, tx.Tx)
	defer bt.close()
	if err := inBatches(ids, dialogKeyBatch, func(chunk []string) error {
		q := `DELETE FROM puaside_dialogs WHERE id IN (` + placeholders(len(chunk)) + `)`
		if err := bt.exec(q, len(chunk) == dialogKeyBatch, anys(chunk)); err != nil {
			return fmt.Errorf("store: delete %d dialogs (first %s): %w", len(chunk), chunk[0], err)
		}
		return nil
	}); err != nil {
		return err
	}
	args := make([]any, 0, min(len(rows), dialogInsertBatch)*dialogColumns)
	if err := inBatches(rows, dialogInsertBatch, func(chunk []*dialoginfo.Record) error {
		args = args[:0]
		for _, r := range chunk {
			data := r.Data
			if data == nil {
				data = []byte{}
			}
			args = append(args, r.ID, r.CallID, r.FromTag, r.Caller, r.Callee, r.State, data, r.Updated)
		}
		q := `INSERT INTO puaside_dialogs (` + dialogColumnList + `) VALUES ` + valuesList(len(chunk), dialogColumns)
		if err := bt.exec(q, len(chunk) == dialogInsertBatch, args); err != nil {
			return fmt.Errorf("store: insert %d dialogs (first %s): %w", len(chunk), chunk[0].ID, err)
		}
		return nil
	}); err != nil {
		return err
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
// version is never lowered. The stored versions are read with one SELECT
// per 500 entities; new entities are inserted with multi-row INSERTs and
// raised ones updated with one prepared statement. An entity that does not
// fit its column as it is, or that the database refuses, is set aside
// (logged, counted, not written) and the others are written; any other
// error is returned.
func (db *DB) SaveDialogVersions(ctx context.Context, versions map[string]uint64) error {
	if len(versions) == 0 {
		return nil
	}
	entities := make([]string, 0, len(versions))
	for e := range versions {
		f := db.row(versionsTable)
		if f.key("entity", e); f.err != nil {
			db.setAside(versionsTable, e, f.err)
			continue
		}
		entities = append(entities, e)
	}
	sort.Strings(entities)
	return isolate(ctx, entities, func(part []string) error { return db.saveDialogVersions(ctx, part, versions) },
		func(e string, err error) { db.setAside(versionsTable, e, err) })
}

// saveDialogVersions writes the versions of entities (sorted) in one
// transaction.
func (db *DB) saveDialogVersions(ctx context.Context, entities []string, versions map[string]uint64) error {
	if len(entities) == 0 {
		return nil
	}
	tx, err := db.X.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: save dialog versions: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	ctx = db.stmtCtx(ctx)
	stored := make(map[string]uint64, len(entities))
	if err := inBatches(entities, dialogKeyBatch, func(chunk []string) error {
		var rows []struct {
			Entity  string `db:"entity"`
			Version uint64 `db:"version"`
		}
		if err := tx.SelectContext(ctx, &rows, `SELECT entity, version FROM puaside_dialog_versions WHERE entity IN (`+
			placeholders(len(chunk))+`)`, anys(chunk)...); err != nil {
			return fmt.Errorf("store: read dialog versions (first %s): %w", chunk[0], err)
		}
		for _, r := range rows {
			stored[r.Entity] = r.Version
		}
		return nil
	}); err != nil {
		return err
	}
	var fresh []string
	var update *sqlx.Stmt
	defer func() {
		if update != nil {
			update.Close()
		}
	}()
	for _, e := range entities {
		v := versions[e]
		cur, ok := stored[e]
		switch {
		case !ok:
			fresh = append(fresh, e)
		case cur < v:
			if update == nil {
				if update, err = tx.PreparexContext(ctx, `UPDATE puaside_dialog_versions SET version = ? WHERE entity = ?`); err != nil {
					return fmt.Errorf("store: save dialog versions: prepare update: %w", err)
				}
			}
			if _, err := update.ExecContext(ctx, v, e); err != nil {
				return fmt.Errorf("store: save dialog version of %s: %w", e, err)
			}
		}
	}
	if err := inBatches(fresh, dialogKeyBatch, func(chunk []string) error {
		args := make([]any, 0, 2*len(chunk))
		for _, e := range chunk {
			args = append(args, e, versions[e])
		}
		q := `INSERT INTO puaside_dialog_versions (entity, version) VALUES ` + valuesList(len(chunk), 2)
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("store: save dialog versions: insert %d (first %s): %w", len(chunk), chunk[0], err)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: save dialog versions: commit: %w", err)
	}
	return nil
}
