package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/puaside/puaside/usrloc"
)

// ErrEmptyUsrlocAoR is returned when a contact or flag is saved without an AoR.
var ErrEmptyUsrlocAoR = errors.New("empty usrloc AoR")

// usrlocStore checks at compile time that *DB implements usrloc.Store.
var _ usrloc.Store = (*DB)(nil)

// contactRow is one row of puaside_contacts.
type contactRow struct {
	AoR       string `db:"aor"`
	Contact   string `db:"contact"`
	Expires   int64  `db:"expires"`
	Q         int    `db:"q"`
	Received  string `db:"received"`
	CallID    string `db:"call_id"`
	CSeq      int64  `db:"cseq"`
	Instance  string `db:"instance"`
	UserAgent string `db:"user_agent"`
}

// LoadContacts returns every row of puaside_contacts by AoR. Expiries are
// whole seconds.
func (db *DB) LoadContacts(ctx context.Context) (map[string][]usrloc.Binding, error) {
	var rows []contactRow
	if err := db.X.SelectContext(ctx, &rows, `SELECT aor, contact, expires, q, received, call_id, cseq,
		instance, user_agent FROM puaside_contacts ORDER BY aor, id`); err != nil {
		return nil, fmt.Errorf("store: load contacts: %w", err)
	}
	out := make(map[string][]usrloc.Binding)
	for _, r := range rows {
		q := -1.0
		if r.Q >= 0 {
			q = float64(r.Q) / 1000
		}
		out[r.AoR] = append(out[r.AoR], usrloc.Binding{
			URI: r.Contact, Expires: time.Unix(r.Expires, 0), Q: q, Received: r.Received,
			CallID: r.CallID, CSeq: uint32(r.CSeq), Instance: r.Instance, UserAgent: r.UserAgent,
		})
	}
	return out, nil
}

// Batch sizes of SaveContacts: AoRs per DELETE and rows per multi-row
// INSERT (9 values a row), well under both dialects' placeholder limits.
const (
	contactDeleteBatch = 500
	contactInsertBatch = 100
	contactColumns     = 9
)

// contactInsert is the head of the multi-row INSERT of SaveContacts.
const contactInsert = `INSERT INTO puaside_contacts
	(aor, contact, expires, q, received, call_id, cseq, instance, user_agent) VALUES `

// contactsTable is the table of SaveContacts.
const contactsTable = "puaside_contacts"

// SaveContacts replaces the rows of each AoR in aors with its bindings (an
// empty slice deletes them), all in one transaction. The AoRs' rows are
// deleted with one statement per 500 AoRs, then the bindings are inserted
// with multi-row INSERTs of up to 100 rows; the full-size statements are
// prepared once per call. An empty AoR fails the call before anything is
// written.
//
// Text values are made valid UTF-8 and cut to their columns' widths, never
// inside a character (a User-Agent of invalid UTF-8 or 300 characters is
// stored fitted). An AoR that does not fit its column as it is, or whose
// rows the database refuses, is set aside: logged, counted in
// puaside_store_rows_quarantined_total and not written, while every other
// AoR is (the transaction is split until the AoR at fault is found). Any
// other error is returned and the caller retries.
func (db *DB) SaveContacts(ctx context.Context, aors map[string][]usrloc.Binding) error {
	if len(aors) == 0 {
		return nil
	}
	keys := make([]string, 0, len(aors))
	fitted := make(map[string][]usrloc.Binding, len(aors))
	for aor, bs := range aors {
		if aor == "" {
			return fmt.Errorf("store: save contacts: %w", ErrEmptyUsrlocAoR)
		}
		f := db.row(contactsTable)
		f.key("aor", aor)
		if f.err != nil {
			db.setAside(contactsTable, aor, f.err)
			continue
		}
		out := make([]usrloc.Binding, len(bs))
		for i, b := range bs {
			b.URI = f.clip("contact", b.URI)
			b.Received = f.clip("received", b.Received)
			b.CallID = f.clip("call_id", b.CallID)
			b.Instance = f.clip("instance", b.Instance)
			b.UserAgent = f.clip("user_agent", b.UserAgent)
			out[i] = b
		}
		keys = append(keys, aor)
		fitted[aor] = out
	}
	// A stable order: rows of an AoR keep their binding order (ids grow),
	// and concurrent writers take row locks in the same order.
	sort.Strings(keys)
	return isolate(ctx, keys, func(part []string) error { return db.saveContacts(ctx, part, fitted) },
		func(aor string, err error) { db.setAside(contactsTable, aor, err) })
}

// saveContacts replaces the rows of the AoRs keys (sorted) with their
// bindings in aors, in one transaction.
func (db *DB) saveContacts(ctx context.Context, keys []string, aors map[string][]usrloc.Binding) error {
	if len(keys) == 0 {
		return nil
	}
	rows := 0
	for _, aor := range keys {
		rows += len(aors[aor])
	}
	tx, err := db.X.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: save contacts: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	ctx = db.stmtCtx(ctx)
	if err := db.checkWriter(ctx, tx); err != nil {
		return fmt.Errorf("store: save contacts: %w", err)
	}

	bt := newBatcher(ctx, tx.Tx)
	defer bt.close()
	if err := inBatches(keys, contactDeleteBatch, func(chunk []string) error {
		q := `DELETE FROM puaside_contacts WHERE aor IN (` + placeholders(len(chunk)) + `)`
		if err := bt.exec(q, len(chunk) == contactDeleteBatch, anys(chunk)); err != nil {
			return fmt.Errorf("store: save contacts: delete %d AoRs (first %s): %w", len(chunk), chunk[0], err)
		}
		return nil
	}); err != nil {
		return err
	}

	args := make([]any, 0, min(rows, contactInsertBatch)*contactColumns)
	n, first, chunks := 0, "", 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		if chunks++; chunks > 1 {
			pause() // as between inBatches' chunks
		}
		q := contactInsert + valuesList(n, contactColumns)
		if err := bt.exec(q, n == contactInsertBatch, args); err != nil {
			return fmt.Errorf("store: save contacts: insert %d rows (first AoR %s): %w", n, first, err)
		}
		args, n = args[:0], 0
		return nil
	}
	for _, aor := range keys {
		for _, b := range aors[aor] {
			q := -1
			if b.Q >= 0 {
				q = int(math.Round(b.Q * 1000))
			}
			if n == 0 {
				first = aor
			}
			args = append(args, aor, b.URI, b.Expires.Unix(), q, b.Received, b.CallID, int64(b.CSeq),
				b.Instance, b.UserAgent)
			n++
			if n == contactInsertBatch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: save contacts: commit: %w", err)
	}
	return nil
}

// LoadFlags returns the per-user publishing flags (puaside_publish_flags).
func (db *DB) LoadFlags(ctx context.Context) (map[string]bool, error) {
	var rows []struct {
		AoR     string `db:"aor"`
		Publish int    `db:"publish"`
	}
	if err := db.X.SelectContext(ctx, &rows, `SELECT aor, publish FROM puaside_publish_flags`); err != nil {
		return nil, fmt.Errorf("store: load publish flags: %w", err)
	}
	out := make(map[string]bool, len(rows))
	for _, r := range rows {
		out[r.AoR] = r.Publish != 0
	}
	return out, nil
}

// flagsTable is the table of SetFlag and DeleteFlag.
const flagsTable = "puaside_publish_flags"

// SetFlag stores the publishing flag of an AoR. An AoR that does not fit
// its column as it is (or that the database refuses) is set aside: logged,
// counted, not written, and SetFlag returns nil so that the caller does not
// retry it forever.
func (db *DB) SetFlag(ctx context.Context, aor string, on bool) error {
	if aor == "" {
		return fmt.Errorf("store: set publish flag: %w", ErrEmptyUsrlocAoR)
	}
	f := db.row(flagsTable)
	if f.key("aor", aor); f.err != nil {
		db.setAside(flagsTable, aor, f.err)
		return nil
	}
	if err := db.setFlag(ctx, aor, on); err != nil {
		if rowError(err) && ctx.Err() == nil {
			db.setAside(flagsTable, aor, err)
			return nil
		}
		return err
	}
	return nil
}

// setFlag writes the flag row of an AoR in one transaction.
func (db *DB) setFlag(ctx context.Context, aor string, on bool) error {
	v := 0
	if on {
		v = 1
	}
	tx, err := db.X.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: set publish flag %s: begin: %w", aor, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if _, err := tx.ExecContext(ctx, `DELETE FROM puaside_publish_flags WHERE aor = ?`, aor); err != nil {
		return fmt.Errorf("store: set publish flag %s: delete: %w", aor, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO puaside_publish_flags (aor, publish, updated) VALUES (?, ?, ?)`,
		aor, v, time.Now().Unix()); err != nil {
		return fmt.Errorf("store: set publish flag %s: insert: %w", aor, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: set publish flag %s: commit: %w", aor, err)
	}
	return nil
}

// DeleteFlag removes the publishing flag of an AoR (no error if none, nor
// for an AoR that cannot be stored).
func (db *DB) DeleteFlag(ctx context.Context, aor string) error {
	f := db.row(flagsTable)
	if f.key("aor", aor); f.err != nil {
		return nil
	}
	if _, err := db.X.ExecContext(ctx, `DELETE FROM puaside_publish_flags WHERE aor = ?`, aor); err != nil {
		return fmt.Errorf("store: delete publish flag %s: %w", aor, err)
	}
	return nil
}
