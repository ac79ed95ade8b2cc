package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/puaside/puaside/puaxmpp"
)

// ErrEmptyRequest is returned when an XMPP subscription request is saved
// or deleted without its XMPP user or its watcher.
var ErrEmptyRequest = errors.New("empty XMPP user or watcher")

// LoadXMPPRequests returns every stored XMPP subscription request of the
// XMPP gateway (table puaside_xmpp_requests).
func (db *DB) LoadXMPPRequests(ctx context.Context) ([]puaxmpp.Request, error) {
	var rows []struct {
		XMPPUser string `db:"xmpp_user"`
		Watcher  string `db:"watcher"`
	}
	if err := db.X.SelectContext(ctx, &rows,
		`SELECT xmpp_user, watcher FROM puaside_xmpp_requests ORDER BY xmpp_user, watcher`); err != nil {
		return nil, fmt.Errorf("store: load xmpp requests: %w", err)
	}
	out := make([]puaxmpp.Request, 0, len(rows))
	for _, r := range rows {
		out = append(out, puaxmpp.Request{XMPPUser: r.XMPPUser, Watcher: r.Watcher})
	}
	return out, nil
}

// SaveXMPPRequest stores one request (again: no change). A value that
// does not fit its column as it is is refused with an error.
func (db *DB) SaveXMPPRequest(ctx context.Context, r puaxmpp.Request) error {
	if r.XMPPUser == "" || r.Watcher == "" {
		return fmt.Errorf("store: save xmpp request: %w", ErrEmptyRequest)
	}
	f := db.row("puaside_xmpp_requests")
	f.key("xmpp_user", r.XMPPUser)
	f.key("watcher", r.Watcher)
	if f.err != nil {
		return fmt.Errorf("store: save xmpp request %s/%s: %w", r.XMPPUser, r.Watcher, f.err)
	}
	tx, err := db.X.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: save xmpp request: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if _, err := tx.ExecContext(ctx, `DELETE FROM puaside_xmpp_requests WHERE xmpp_user = ? AND watcher = ?`, r.XMPPUser, r.Watcher); err != nil {
		return fmt.Errorf("store: save xmpp request: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO puaside_xmpp_requests (xmpp_user, watcher, created) VALUES (?, ?, ?)`,
		r.XMPPUser, r.Watcher, time.Now().Unix()); err != nil {
		return fmt.Errorf("store: save xmpp request: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: save xmpp request: commit: %w", err)
	}
	return nil
}

// DeleteXMPPRequest forgets one request; an unknown one is no error.
func (db *DB) DeleteXMPPRequest(ctx context.Context, r puaxmpp.Request) error {
	if r.XMPPUser == "" || r.Watcher == "" {
		return fmt.Errorf("store: delete xmpp request: %w", ErrEmptyRequest)
	}
	if _, err := db.X.ExecContext(ctx, `DELETE FROM puaside_xmpp_requests WHERE xmpp_user = ? AND watcher = ?`, r.XMPPUser, r.Watcher); err != nil {
		return fmt.Errorf("store: delete xmpp request: %w", err)
	}
	return nil
}
