package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/puaside/puaside/pa"
)

// The presence server's tables (schema 060_presence.sql), in Kamailio's
// layout.
var _ pa.Store = (*DB)(nil)

// Kamailio's active_watchers/watchers status values.
const (
	statusActive     = 1
	statusPending    = 2
	statusTerminated = 3
)

// localETag is the etag column of an in-process publication (it has no
// ETag; the column is part of Kamailio's unique key).
func localETag(presID string) string { return "pa-" + presID }

// splitAoR cuts "sip:user@domain" into user and domain.
func splitAoR(uri string) (user, domain string) {
	s := uri
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return "", s
}

// ruid is the unique id of a publication row.
func ruid(r pa.PublicationRecord) string {
	sum := sha256.Sum256([]byte(r.PresURI + "\x00" + r.Event + "\x00" + r.ID))
	return "pa-" + hex.EncodeToString(sum[:16])
}

type presentityRow struct {
	Username string `db:"username"`
	Domain   string `db:"domain"`
	Event    string `db:"event"`
	ETag     string `db:"etag"`
	Expires  int64  `db:"expires"`
	Received int64  `db:"received_time"`
	Body     []byte `db:"body"`
	Sender   string `db:"sender"`
	Priority int64  `db:"priority"`
	PresID   string `db:"pres_id"`
	Flag     int    `db:"flag"`
}

type watcherRow struct {
	PresURI      string `db:"presentity_uri"`
	WUser        string `db:"watcher_username"`
	WDomain      string `db:"watcher_domain"`
	Event        string `db:"event"`
	EventID      string `db:"event_id"`
	ToTag        string `db:"to_tag"`
	FromTag      string `db:"from_tag"`
	CallID       string `db:"callid"`
	LocalCSeq    int64  `db:"local_cseq"`
	RemoteCSeq   int64  `db:"remote_cseq"`
	Contact      string `db:"contact"`
	RecordRoute  string `db:"record_route"`
	Expires      int64  `db:"expires"`
	Status       int    `db:"status"`
	Reason       string `db:"reason"`
	Version      int64  `db:"version"`
	LocalContact string `db:"local_contact"`
	UserAgent    string `db:"user_agent"`
}

// LoadPresence returns every publication and subscription of the
// presence server. Rows Kamailio wrote (no pres_id) are read with their
// ruid or etag as the id.
func (db *DB) LoadPresence(ctx context.Context) ([]pa.PublicationRecord, []pa.WatcherRecord, error) {
	var prs []presentityRow
	if err := db.X.SelectContext(ctx, &prs, `SELECT username, domain, event, etag, expires, received_time, body,
		sender, priority, pres_id, flag FROM presentity ORDER BY priority, id`); err != nil {
		return nil, nil, fmt.Errorf("store: load presentity: %w", err)
	}
	pubs := make([]pa.PublicationRecord, 0, len(prs))
	for _, r := range prs {
		p := pa.PublicationRecord{PresURI: "sip:" + r.Username + "@" + r.Domain, Event: r.Event, ID: r.PresID,
			ETag: r.ETag, Expires: r.Expires, Received: r.Received, Seq: r.Priority, Body: r.Body, Sender: r.Sender, Flag: r.Flag}
		if p.ID == "" {
			p.ID = r.ETag
		}
		if p.ETag == localETag(p.ID) {
			p.ETag = ""
		}
		pubs = append(pubs, p)
	}
	var ws []watcherRow
	if err := db.X.SelectContext(ctx, &ws, `SELECT presentity_uri, watcher_username, watcher_domain, event,
		COALESCE(event_id, '') AS event_id, to_tag,
		from_tag, callid, local_cseq, remote_cseq, contact, COALESCE(record_route, '') AS record_route, expires, status,
		COALESCE(reason, '') AS reason, version, local_contact, COALESCE(user_agent, '') AS user_agent
		FROM active_watchers ORDER BY id`); err != nil {
		return nil, nil, fmt.Errorf("store: load active_watchers: %w", err)
	}
	subs := make([]pa.WatcherRecord, 0, len(ws))
	for _, r := range ws {
		w := pa.WatcherRecord{PresURI: r.PresURI, WatcherURI: "sip:" + r.WUser + "@" + r.WDomain, Event: r.Event, EventID: r.EventID,
			CallID: r.CallID, ToTag: r.ToTag, FromTag: r.FromTag, LocalCSeq: uint32(r.LocalCSeq), RemoteCSeq: uint32(r.RemoteCSeq),
			Contact: r.Contact, LocalContact: r.LocalContact, Expires: r.Expires, Reason: r.Reason,
			Version: uint64(r.Version), UserAgent: r.UserAgent, Status: "active"}
		if r.Status == statusPending {
			w.Status = "pending"
		}
		if r.RecordRoute != "" {
			w.RouteSet = strings.Split(r.RecordRoute, ",")
		}
		subs = append(subs, w)
	}
	return pubs, subs, nil
}

// ApplyPresence writes a batch of the presence server's changes in one
// transaction. A row whose keys the columns cannot hold (a user part over
// 64 characters, ...) is left out and logged: the server keeps it in
// memory only.
func (db *DB) ApplyPresence(ctx context.Context, b pa.Batch) error {
	tx, err := db.X.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: presence: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	for _, r := range b.RemovedPublications {
		user, domain := splitAoR(r.PresURI)
		if _, err := tx.ExecContext(ctx, `DELETE FROM presentity WHERE username = ? AND domain = ? AND event = ? AND (pres_id = ? OR (pres_id = '' AND etag = ?))`,
			user, domain, r.Event, r.ID, r.ID); err != nil {
			return fmt.Errorf("store: presence: delete presentity: %w", err)
		}
	}
	for _, r := range b.Publications {
		if err := db.putPublication(ctx, tx, r); err != nil {
			return err
		}
	}
	now := time.Now().Unix()
	for _, r := range b.RemovedWatchers {
		if _, err := tx.ExecContext(ctx, `DELETE FROM active_watchers WHERE callid = ? AND to_tag = ? AND from_tag = ?`,
			r.CallID, r.ToTag, r.FromTag); err != nil {
			return fmt.Errorf("store: presence: delete active_watchers: %w", err)
		}
		wu, wd := splitAoR(r.WatcherURI)
		if _, err := tx.ExecContext(ctx, `UPDATE watchers SET status = ?, reason = ? WHERE presentity_uri = ? AND watcher_username = ? AND watcher_domain = ? AND event = ?`,
			statusTerminated, "timeout", r.PresURI, wu, wd, r.Event); err != nil {
			return fmt.Errorf("store: presence: update watchers: %w", err)
		}
	}
	for _, r := range b.Watchers {
		if err := db.putWatcher(ctx, tx, r, now); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: presence: commit: %w", err)
	}
	return nil
}

func (db *DB) putPublication(ctx context.Context, tx *sqlx.Tx, r pa.PublicationRecord) error {
	user, domain := splitAoR(r.PresURI)
	etag := r.ETag
	if etag == "" {
		etag = localETag(r.ID)
	}
	f := db.row("presentity")
	user, domain = f.key("username", user), f.key("domain", domain)
	ev, etag, id := f.key("event", r.Event), f.key("etag", etag), f.key("pres_id", r.ID)
	sender := f.clip("sender", r.Sender)
	if f.err != nil {
		db.logger().Warn("presence: publication not stored", "presentity", r.PresURI, "event", r.Event, "err", f.err)
		db.countUnstorable("presentity")
		return nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM presentity WHERE username = ? AND domain = ? AND event = ? AND pres_id = ?`,
		user, domain, ev, id); err != nil {
		return fmt.Errorf("store: presence: replace presentity: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO presentity (username, domain, event, etag, expires, received_time, body,
		sender, priority, ruid, pres_id, flag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		user, domain, ev, etag, r.Expires, r.Received, r.Body, sender, r.Seq, ruid(r), id, r.Flag); err != nil {
		return fmt.Errorf("store: presence: insert presentity: %w", err)
	}
	return nil
}

func (db *DB) putWatcher(ctx context.Context, tx *sqlx.Tx, r pa.WatcherRecord, now int64) error {
	wu, wd := splitAoR(r.WatcherURI)
	tu, td := splitAoR(r.PresURI)
	f := db.row("active_watchers")
	presURI := f.key("presentity_uri", r.PresURI)
	wu, wd, tu, td = f.key("watcher_username", wu), f.key("watcher_domain", wd), f.key("to_user", tu), f.key("to_domain", td)
	ev, toTag, fromTag, callID := f.key("event", r.Event), f.key("to_tag", r.ToTag), f.key("from_tag", r.FromTag), f.key("callid", r.CallID)
	eventID := f.key("event_id", r.EventID)
	contact, localContact := f.key("contact", r.Contact), f.key("local_contact", r.LocalContact)
	rr := f.key("record_route", strings.Join(r.RouteSet, ","))
	reason, ua := f.clip("reason", r.Reason), f.clip("user_agent", r.UserAgent)
	if f.err != nil {
		db.logger().Warn("presence: subscription not stored", "presentity", r.PresURI, "watcher", r.WatcherURI, "err", f.err)
		db.countUnstorable("active_watchers")
		return nil
	}
	status := statusActive
	if r.Status == "pending" {
		status = statusPending
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM active_watchers WHERE callid = ? AND to_tag = ? AND from_tag = ?`,
		callID, toTag, fromTag); err != nil {
		return fmt.Errorf("store: presence: replace active_watchers: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO active_watchers (presentity_uri, watcher_username, watcher_domain,
		to_user, to_domain, event, event_id, to_tag, from_tag, callid, local_cseq, remote_cseq, contact, record_route, expires,
		status, reason, version, socket_info, local_contact, from_user, from_domain, updated, updated_winfo, flags, user_agent)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?, 0, ?)`,
		presURI, wu, wd, tu, td, ev, eventID, toTag, fromTag, callID, int64(r.LocalCSeq), int64(r.RemoteCSeq), contact, rr,
		r.Expires, status, reason, int64(r.Version), localContact, wu, wd, now, now, ua); err != nil {
		return fmt.Errorf("store: presence: insert active_watchers: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM watchers WHERE presentity_uri = ? AND watcher_username = ? AND watcher_domain = ? AND event = ?`,
		presURI, wu, wd, ev); err != nil {
		return fmt.Errorf("store: presence: replace watchers: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO watchers (presentity_uri, watcher_username, watcher_domain, event,
		status, reason, inserted_time) VALUES (?, ?, ?, ?, ?, ?, ?)`, presURI, wu, wd, ev, status, reason, now); err != nil {
		return fmt.Errorf("store: presence: insert watchers: %w", err)
	}
	return nil
}

// countUnstorable counts a row left out of a presence table.
func (db *DB) countUnstorable(table string) {
	if db.Metrics != nil {
		db.Metrics.StoreQuarantined(table)
	}
}
