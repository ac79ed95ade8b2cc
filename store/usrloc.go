package store

import (
	"context"
	"errors"
	"fmt"
	"math"
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

// SaveContacts replaces the rows of each AoR in aors with its bindings (an
// empty slice deletes them), all in one transaction.
func (db *DB) SaveContacts(ctx context.Context, aors map[string][]usrloc.Binding) error {
	tx, err := db.X.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: save contacts: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	for aor, bs := range aors {
		if aor == "" {
			return fmt.Errorf("store: save contacts: %w", ErrEmptyUsrlocAoR)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM puaside_contacts WHERE aor = ?`, aor); err != nil {
			return fmt.Errorf("store: save contacts %s: delete: %w", aor, err)
		}
		for _, b := range bs {
			q := -1
			if b.Q >= 0 {
				q = int(math.Round(b.Q * 1000))
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO puaside_contacts
				(aor, contact, expires, q, received, call_id, cseq, instance, user_agent)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				aor, b.URI, b.Expires.Unix(), q, clip(b.Received), clip(b.CallID), int64(b.CSeq),
				clip(b.Instance), clip(b.UserAgent)); err != nil {
				return fmt.Errorf("store: save contacts %s: insert %s: %w", aor, b.URI, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: save contacts: commit: %w", err)
	}
	return nil
}

// clip cuts a value to the 255-character columns.
func clip(s string) string {
	if len(s) > 255 {
		return s[:255]
	}
	return s
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

// SetFlag stores the publishing flag of an AoR.
func (db *DB) SetFlag(ctx context.Context, aor string, on bool) error {
	if aor == "" {
		return fmt.Errorf("store: set publish flag: %w", ErrEmptyUsrlocAoR)
	}
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

// DeleteFlag removes the publishing flag of an AoR (no error if none).
func (db *DB) DeleteFlag(ctx context.Context, aor string) error {
	if _, err := db.X.ExecContext(ctx, `DELETE FROM puaside_publish_flags WHERE aor = ?`, aor); err != nil {
		return fmt.Errorf("store: delete publish flag %s: %w", aor, err)
	}
	return nil
}
