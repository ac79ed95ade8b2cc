package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
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
	Notified     int64  `db:"puaside_notified"`
}

// publicationRecord maps a presentity row. Rows Kamailio wrote (no
// pres_id) are read with their etag as the id.
func publicationRecord(r presentityRow) pa.PublicationRecord {
	p := pa.PublicationRecord{PresURI: "sip:" + r.Username + "@" + r.Domain, Event: r.Event, ID: r.PresID,
		ETag: r.ETag, Expires: r.Expires, Received: r.Received, Seq: r.Priority, Body: r.Body, Sender: r.Sender, Flag: r.Flag}
	if p.ID == "" {
		p.ID = r.ETag
	}
	if p.ETag == localETag(p.ID) {
		p.ETag = ""
	}
	return p
}

// watcherRecord maps an active_watchers row.
func watcherRecord(r watcherRow) pa.WatcherRecord {
	w := pa.WatcherRecord{PresURI: r.PresURI, WatcherURI: "sip:" + r.WUser + "@" + r.WDomain, Event: r.Event, EventID: r.EventID,
		CallID: r.CallID, ToTag: r.ToTag, FromTag: r.FromTag, LocalCSeq: uint32(r.LocalCSeq), RemoteCSeq: uint32(r.RemoteCSeq),
		Contact: r.Contact, LocalContact: r.LocalContact, Expires: r.Expires, Reason: r.Reason,
		Version: uint64(r.Version), UserAgent: r.UserAgent, Status: "active", Notified: uint64(r.Notified)}
	if r.Status == statusPending {
		w.Status = "pending"
	}
	if r.RecordRoute != "" {
		w.RouteSet = strings.Split(r.RecordRoute, ",")
	}
	return w
}

// presentityColumns and watcherColumns are the columns the rows are read with.
const (
	presentityColumns = `username, domain, event, etag, expires, received_time, body, sender, priority, pres_id, flag`
	watcherColumns    = `presentity_uri, watcher_username, watcher_domain, event,
		COALESCE(event_id, '') AS event_id, to_tag,
		from_tag, callid, local_cseq, remote_cseq, contact, COALESCE(record_route, '') AS record_route, expires, status,
		COALESCE(reason, '') AS reason, version, local_contact, COALESCE(user_agent, '') AS user_agent, puaside_notified`
)

// LoadPresence returns every publication and subscription of the
// presence server. Rows Kamailio wrote (no pres_id) are read with their
// ruid or etag as the id.
func (db *DB) LoadPresence(ctx context.Context) ([]pa.PublicationRecord, []pa.WatcherRecord, error) {
	var prs []presentityRow
	if err := db.X.SelectContext(ctx, &prs, `SELECT `+presentityColumns+` FROM presentity ORDER BY priority, id`); err != nil {
		return nil, nil, fmt.Errorf("store: load presentity: %w", err)
	}
	pubs := make([]pa.PublicationRecord, 0, len(prs))
	for _, r := range prs {
		pubs = append(pubs, publicationRecord(r))
	}
	var ws []watcherRow
	if err := db.X.SelectContext(ctx, &ws, `SELECT `+watcherColumns+` FROM active_watchers ORDER BY id`); err != nil {
		return nil, nil, fmt.Errorf("store: load active_watchers: %w", err)
	}
	subs := make([]pa.WatcherRecord, 0, len(ws))
	for _, r := range ws {
		subs = append(subs, watcherRecord(r))
	}
	return pubs, subs, nil
}

// ApplyPresence writes a batch of the presence server's changes in one
// transaction. A row whose keys the columns cannot hold (a user part over
// 64 characters, ...) is left out and logged: the server keeps it in
// memory only. A record with an epoch (an owner's write, several
// instances) whose shard lease has another epoch now is refused: logged,
// counted, and left out, the rest written and committed, and a
// *pua.StaleEpochError naming the shards returned. A removal marked
// Expired deletes its row only while the stored expiry is not later than
// the record's (a refresh another instance accepted keeps it). With
// b.Origin the keys of the subscriptions and of the publications from
// outside actually written or removed are appended to the change log in
// the same transaction.
func (db *DB) ApplyPresence(ctx context.Context, b pa.Batch) error {
	tx, err := db.X.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: presence: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	var st staleTally
	if err := db.fencePresence(ctx, tx, &b, &st); err != nil {
		return err
	}
	// logged is what the change log names: the rows written or deleted.
	cluster := b.Origin != ""
	var logged pa.Batch
	for _, r := range b.RemovedPublications {
		user, domain := splitAoR(r.PresURI)
		q, args := `DELETE FROM presentity WHERE username = ? AND domain = ? AND event = ? AND (pres_id = ? OR (pres_id = '' AND etag = ?))`,
			[]any{user, domain, r.Event, r.ID, r.ID}
		if r.Expired {
			q, args = q+` AND expires <= ?`, append(args, r.Expires)
		}
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("store: presence: delete presentity: %w", err)
		}
		if cluster && affected(res) {
			logged.RemovedPublications = append(logged.RemovedPublications, r)
		}
	}
	for _, r := range b.Publications {
		stored, err := db.putPublication(ctx, tx, r)
		if err != nil {
			return err
		}
		if cluster && stored {
			logged.Publications = append(logged.Publications, r)
		}
	}
	now := time.Now().Unix()
	for _, r := range b.RemovedWatchers {
		q, args := `DELETE FROM active_watchers WHERE callid = ? AND to_tag = ? AND from_tag = ?`, []any{r.CallID, r.ToTag, r.FromTag}
		if r.Expired {
			q, args = q+` AND expires <= ?`, append(args, r.Expires)
		}
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("store: presence: delete active_watchers: %w", err)
		}
		if r.Expired && !affected(res) {
			continue // refreshed meanwhile: the watcher stays
		}
		wu, wd := splitAoR(r.WatcherURI)
		if _, err := tx.ExecContext(ctx, `UPDATE watchers SET status = ?, reason = ? WHERE presentity_uri = ? AND watcher_username = ? AND watcher_domain = ? AND event = ?`,
			statusTerminated, "timeout", r.PresURI, wu, wd, r.Event); err != nil {
			return fmt.Errorf("store: presence: update watchers: %w", err)
		}
		if cluster && affected(res) {
			logged.RemovedWatchers = append(logged.RemovedWatchers, r)
		}
	}
	for _, r := range b.Watchers {
		stored, err := db.putWatcher(ctx, tx, r, now, cluster)
		if err != nil {
			return err
		}
		if cluster && stored {
			logged.Watchers = append(logged.Watchers, r)
		}
	}
	for _, r := range b.Notified {
		// Never lowered: a refresh written by another instance may carry
		// an older reservation, this one a newer.
		if _, err := tx.ExecContext(ctx, `UPDATE active_watchers SET
			local_cseq = CASE WHEN local_cseq > ? THEN local_cseq ELSE ? END,
			version = CASE WHEN version > ? THEN version ELSE ? END,
			puaside_notified = CASE WHEN ? = 0 THEN puaside_notified ELSE ? END
			WHERE callid = ? AND to_tag = ? AND from_tag = ?`,
			int64(r.LocalCSeq), int64(r.LocalCSeq), int64(r.Version), int64(r.Version), int64(r.Notified), int64(r.Notified),
			r.CallID, r.ToTag, r.FromTag); err != nil {
			return fmt.Errorf("store: presence: update active_watchers: %w", err)
		}
	}
	if cluster {
		if err := db.logPresenceChanges(ctx, tx, logged, b.Origin, now); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: presence: commit: %w", err)
	}
	return st.result(nil, "presence")
}

// affected reports whether a statement changed a row (a driver that
// cannot tell counts as yes).
func affected(res sql.Result) bool {
	n, err := res.RowsAffected()
	return err != nil || n > 0
}

// fencePresence drops from b the records whose shard lease has another
// epoch than theirs and tallies them in st (within tx; the lease rows are
// locked on MySQL).
func (db *DB) fencePresence(ctx context.Context, tx *sqlx.Tx, b *pa.Batch, st *staleTally) error {
	fences := map[int]int64{}
	for _, rs := range [][]pa.PublicationRecord{b.Publications, b.RemovedPublications} {
		for _, r := range rs {
			if r.Epoch != 0 {
				fences[r.Shard] = r.Epoch
			}
		}
	}
	for _, rs := range [][]pa.WatcherRecord{b.Watchers, b.RemovedWatchers, b.Notified} {
		for _, r := range rs {
			if r.Epoch != 0 {
				fences[r.Shard] = r.Epoch
			}
		}
	}
	stale, err := db.staleShards(ctx, tx, fences)
	if err != nil || len(stale) == 0 {
		return err
	}
	pubFence := func(r *pa.PublicationRecord) (int, int64) { return r.Shard, r.Epoch }
	subFence := func(r *pa.WatcherRecord) (int, int64) { return r.Shard, r.Epoch }
	pubRefused := func(r *pa.PublicationRecord) {
		st.refuse(db, "presentity", r.Shard, r.Epoch, r.PresURI+" "+r.Event+" "+r.ID)
	}
	subRefused := func(r *pa.WatcherRecord) { st.refuse(db, "active_watchers", r.Shard, r.Epoch, r.CallID) }
	b.Publications = keepFresh(b.Publications, stale, pubFence, pubRefused)
	b.RemovedPublications = keepFresh(b.RemovedPublications, stale, pubFence, pubRefused)
	b.Watchers = keepFresh(b.Watchers, stale, subFence, subRefused)
	b.RemovedWatchers = keepFresh(b.RemovedWatchers, stale, subFence, subRefused)
	b.Notified = keepFresh(b.Notified, stale, subFence, subRefused)
	return nil
}

// logPresenceChanges appends the keys of b's subscriptions and
// publications from outside to the change log under origin (within tx).
// b holds only rows written, whose keys fit their tables; a key the
// change log cannot hold is not logged (the tables are as wide).
func (db *DB) logPresenceChanges(ctx context.Context, tx *sqlx.Tx, b pa.Batch, origin string, now int64) error {
	const ins = `INSERT INTO puaside_pa_changes (kind, presentity_uri, event, pres_id, callid, to_tag, from_tag, origin, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	put := func(kind, presURI, event, presID, callID, toTag, fromTag string) error {
		f := db.row("puaside_pa_changes")
		f.key("presentity_uri", presURI)
		f.key("event", event)
		f.key("pres_id", presID)
		f.key("callid", callID)
		f.key("to_tag", toTag)
		f.key("from_tag", fromTag)
		f.key("origin", origin)
		if f.err != nil {
			db.logger().Warn("presence: change not logged", "presentity", presURI, "event", event, "err", f.err)
			db.countUnstorable("puaside_pa_changes")
			return nil
		}
		if _, err := tx.ExecContext(ctx, ins, kind, presURI, event, presID, callID, toTag, fromTag, origin, now); err != nil {
			return fmt.Errorf("store: presence: log change: %w", err)
		}
		return nil
	}
	for _, rs := range [][]pa.PublicationRecord{b.Publications, b.RemovedPublications} {
		for _, r := range rs {
			if r.ETag == "" {
				continue // in process: every instance's own trackers publish it
			}
			if err := put("p", r.PresURI, r.Event, r.ID, "", "", ""); err != nil {
				return err
			}
		}
	}
	for _, rs := range [][]pa.WatcherRecord{b.Watchers, b.RemovedWatchers} {
		for _, r := range rs {
			if err := put("w", r.PresURI, r.Event, "", r.CallID, r.ToTag, r.FromTag); err != nil {
				return err
			}
		}
	}
	return nil
}

// changeRow is one row of puaside_pa_changes.
type changeRow struct {
	ID      int64  `db:"id"`
	Kind    string `db:"kind"`
	PresURI string `db:"presentity_uri"`
	Event   string `db:"event"`
	PresID  string `db:"pres_id"`
	CallID  string `db:"callid"`
	ToTag   string `db:"to_tag"`
	FromTag string `db:"from_tag"`
	Origin  string `db:"origin"`
}

// LastPresenceChange implements pa.ChangeLog.
func (db *DB) LastPresenceChange(ctx context.Context) (int64, error) {
	var id int64
	if err := db.X.GetContext(ctx, &id, `SELECT COALESCE(MAX(id), 0) FROM puaside_pa_changes`); err != nil {
		return 0, fmt.Errorf("store: presence changes: %w", err)
	}
	return id, nil
}

// PresenceChanges implements pa.ChangeLog: the entries above after, each
// not skipped with its row read now.
func (db *DB) PresenceChanges(ctx context.Context, after int64, limit int, skip func(id int64, origin string) bool) ([]pa.Change, error) {
	var rows []changeRow
	if err := db.X.SelectContext(ctx, &rows, `SELECT id, kind, presentity_uri, event, pres_id, callid, to_tag, from_tag, origin
		FROM puaside_pa_changes WHERE id > ? ORDER BY id LIMIT ?`, after, limit); err != nil {
		return nil, fmt.Errorf("store: presence changes: %w", err)
	}
	out := make([]pa.Change, 0, len(rows))
	for _, r := range rows {
		c := pa.Change{ID: r.ID, Origin: r.Origin, Watcher: r.Kind == "w"}
		if skip != nil && skip(r.ID, r.Origin) {
			out = append(out, pa.Change{ID: r.ID, Origin: r.Origin})
			continue
		}
		if c.Watcher {
			var ws []watcherRow
			if err := db.X.SelectContext(ctx, &ws, `SELECT `+watcherColumns+` FROM active_watchers
				WHERE callid = ? AND to_tag = ? AND from_tag = ?`, r.CallID, r.ToTag, r.FromTag); err != nil {
				return nil, fmt.Errorf("store: presence changes: active_watchers: %w", err)
			}
			c.Subscription = pa.WatcherRecord{PresURI: r.PresURI, Event: r.Event, CallID: r.CallID, ToTag: r.ToTag, FromTag: r.FromTag}
			c.Gone = len(ws) == 0
			if !c.Gone {
				c.Subscription = watcherRecord(ws[0])
			}
		} else {
			user, domain := splitAoR(r.PresURI)
			var ps []presentityRow
			if err := db.X.SelectContext(ctx, &ps, `SELECT `+presentityColumns+` FROM presentity
				WHERE username = ? AND domain = ? AND event = ? AND pres_id = ?`, user, domain, r.Event, r.PresID); err != nil {
				return nil, fmt.Errorf("store: presence changes: presentity: %w", err)
			}
			c.Publication = pa.PublicationRecord{PresURI: r.PresURI, Event: r.Event, ID: r.PresID}
			c.Gone = len(ps) == 0
			if !c.Gone {
				c.Publication = publicationRecord(ps[0])
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// PrunePresenceChanges implements pa.ChangeLog. The newest entry stays:
// InnoDB before MySQL 8 takes the next id from MAX(id) after a restart,
// and ids starting again from 1 would be below every instance's cursor.
func (db *DB) PrunePresenceChanges(ctx context.Context, age time.Duration) error {
	last, err := db.LastPresenceChange(ctx)
	if err != nil || last == 0 {
		return err
	}
	before := time.Now().Add(-age).Unix()
	if _, err := db.X.ExecContext(ctx, `DELETE FROM puaside_pa_changes WHERE created_at < ? AND id < ?`, before, last); err != nil {
		return fmt.Errorf("store: presence changes: prune: %w", err)
	}
	return nil
}

// putPublication writes r; stored is false when its keys do not fit (the
// row is left out).
func (db *DB) putPublication(ctx context.Context, tx *sqlx.Tx, r pa.PublicationRecord) (stored bool, err error) {
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
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM presentity WHERE username = ? AND domain = ? AND event = ? AND pres_id = ?`,
		user, domain, ev, id); err != nil {
		return false, fmt.Errorf("store: presence: replace presentity: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO presentity (username, domain, event, etag, expires, received_time, body,
		sender, priority, ruid, pres_id, flag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		user, domain, ev, etag, r.Expires, r.Received, r.Body, sender, r.Seq, ruid(r), id, r.Flag); err != nil {
		return false, fmt.Errorf("store: presence: insert presentity: %w", err)
	}
	return true, nil
}

// putWatcher writes r; stored is false when its keys do not fit (the row
// is left out). With merge (several instances) the stored row's CSeq,
// version and later refresh are kept.
func (db *DB) putWatcher(ctx context.Context, tx *sqlx.Tx, r pa.WatcherRecord, now int64, merge bool) (stored bool, err error) {
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
		return false, nil
	}
	status := statusActive
	if r.Status == "pending" {
		status = statusPending
	}
	localCSeq, remoteCSeq, version, expires, notified := int64(r.LocalCSeq), int64(r.RemoteCSeq), int64(r.Version), r.Expires, int64(r.Notified)
	if merge {
		// The dialog's numbers never go back: a row written by another
		// instance meanwhile may hold a higher reservation, or a later
		// refresh, than this record.
		lock := ""
		if db.Dialect == MySQL {
			lock = " FOR UPDATE"
		}
		var old struct {
			LocalCSeq  int64  `db:"local_cseq"`
			RemoteCSeq int64  `db:"remote_cseq"`
			Version    int64  `db:"version"`
			Expires    int64  `db:"expires"`
			Contact    string `db:"contact"`
			Notified   int64  `db:"puaside_notified"`
		}
		err := tx.GetContext(ctx, &old, `SELECT local_cseq, remote_cseq, version, expires, contact, puaside_notified
			FROM active_watchers WHERE callid = ? AND to_tag = ? AND from_tag = ?`+lock, callID, toTag, fromTag)
		switch {
		case err == nil:
			localCSeq, version = max(localCSeq, old.LocalCSeq), max(version, old.Version)
			if old.RemoteCSeq > remoteCSeq {
				remoteCSeq, expires, contact = old.RemoteCSeq, old.Expires, old.Contact
			}
			if notified == 0 {
				notified = old.Notified
			}
		case !errors.Is(err, sql.ErrNoRows):
			return false, fmt.Errorf("store: presence: read active_watchers: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM active_watchers WHERE callid = ? AND to_tag = ? AND from_tag = ?`,
		callID, toTag, fromTag); err != nil {
		return false, fmt.Errorf("store: presence: replace active_watchers: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO active_watchers (presentity_uri, watcher_username, watcher_domain,
		to_user, to_domain, event, event_id, to_tag, from_tag, callid, local_cseq, remote_cseq, contact, record_route, expires,
		status, reason, version, socket_info, local_contact, from_user, from_domain, updated, updated_winfo, flags, user_agent,
		puaside_notified)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?, 0, ?, ?)`,
		presURI, wu, wd, tu, td, ev, eventID, toTag, fromTag, callID, localCSeq, remoteCSeq, contact, rr,
		expires, status, reason, version, localContact, wu, wd, now, now, ua, notified); err != nil {
		return false, fmt.Errorf("store: presence: insert active_watchers: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM watchers WHERE presentity_uri = ? AND watcher_username = ? AND watcher_domain = ? AND event = ?`,
		presURI, wu, wd, ev); err != nil {
		return false, fmt.Errorf("store: presence: replace watchers: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO watchers (presentity_uri, watcher_username, watcher_domain, event,
		status, reason, inserted_time) VALUES (?, ?, ?, ?, ?, ?, ?)`, presURI, wu, wd, ev, status, reason, now); err != nil {
		return false, fmt.Errorf("store: presence: insert watchers: %w", err)
	}
	return true, nil
}

// countUnstorable counts a row left out of a presence table.
func (db *DB) countUnstorable(table string) {
	if db.Metrics != nil {
		db.Metrics.StoreQuarantined(table)
	}
}
