package store

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/puaside/puaside/pua"
)

// Adopting Kamailio's publications. A row of the pua table with an empty
// event_name was written by Kamailio's pua module (puaside always names the
// event). When puaside takes over from pua_usrloc and pua_dialoginfo it
// takes over those rows, so that it refreshes the publications the presence
// server holds instead of publishing a second copy:
//
//   - pua_usrloc publishes once per contact (pres_id "UL_PUBLISH.<Call-ID>"),
//     puaside once per AoR. Of the live presence publications of an AoR the
//     one that lasts longest becomes puaside's (its pres_id becomes the
//     usrloc tracker's, so the tracker's next publish modifies it under its
//     ETag); the others are marked for removal, which the engine finishes at
//     start (PUBLISH Expires: 0 with their ETags). An AoR puaside already
//     publishes keeps puaside's publication and loses Kamailio's.
//   - Every other live row keeps its identity and gets its event name; the
//     engine refreshes it (body-less, as RFC 3903 wants) until its owner
//     claims it, and the sweep at start removes it if nobody does (a
//     dialog publication of a call puaside did not see).
//   - Rows past their expiry are deleted: the server no longer holds them.
//
// Kamailio keeps no body for its publications (body is NULL): the first
// publish of the tracker that claims one sends the state.

// AdoptOptions tells AdoptKamailio how puaside names its publications.
type AdoptOptions struct {
	// UsrlocPresID is the pres_id of the usrloc tracker's publications
	// (config usrloc.pres_id); "" leaves pua_usrloc's rows as they are
	// (the usrloc tracker is off).
	UsrlocPresID string
	// Now is the current time; zero means time.Now().
	Now time.Time
}

// AdoptResult counts what AdoptKamailio did.
type AdoptResult struct {
	// Adopted rows keep being refreshed as puaside's publications.
	Adopted int
	// Removing rows are duplicates to remove at the server at start.
	Removing int
	// Expired rows were deleted.
	Expired int
	// Skipped rows have an event bit puaside does not know (they are
	// reported as bad rows at load).
	Skipped int
}

// kamailioRow is a row written by Kamailio's pua module.
type kamailioRow struct {
	ID      int64  `db:"id"`
	PresURI string `db:"pres_uri"`
	PresID  string `db:"pres_id"`
	Event   int64  `db:"event"`
	Flag    int64  `db:"flag"`
	Expires int64  `db:"expires"`
	// DesiredExpires is the end of the publication's lifetime (Unix
	// seconds, 0 = until removed).
	DesiredExpires int64  `db:"desired_expires"`
	WatcherURI     string `db:"watcher_uri"`
}

// AdoptKamailio takes over the rows Kamailio's pua module left in the pua
// table (see above). It runs in one transaction and only touches rows with
// an empty event_name, so running it again does nothing.
func (db *DB) AdoptKamailio(ctx context.Context, opts AdoptOptions) (res AdoptResult, err error) {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	tx, err := db.X.BeginTxx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("store: adopt kamailio rows: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	t := db.quotedTable()
	var rows []kamailioRow
	if err := tx.SelectContext(ctx, &rows, `SELECT id, pres_uri, pres_id, event, flag, expires, desired_expires, watcher_uri
		FROM `+t+` WHERE event_name = '' OR event_name IS NULL ORDER BY id`); err != nil {
		return res, fmt.Errorf("store: adopt kamailio rows: read: %w", err)
	}
	if len(rows) == 0 {
		return res, tx.Commit()
	}
	set := func(id int64, presID, eventName, contentType string, removing bool, end int64) error {
		if _, err := tx.ExecContext(ctx, `UPDATE `+t+` SET pres_id = ?, event_name = ?, content_type = ?, removing = ?,
			desired_expires = ? WHERE id = ?`, presID, eventName, contentType, boolInt(removing), end, id); err != nil {
			return fmt.Errorf("store: adopt kamailio row %d: %w", id, err)
		}
		return nil
	}
	usrloc := map[string][]kamailioRow{} // pres_uri -> live pua_usrloc publications
	seen := map[identity]bool{}          // identities adopted (the identity load checks)
	for _, r := range rows {
		name := kamailioEventName(r.Event)
		switch {
		case name == "":
			res.Skipped++
		case r.Expires <= now.Unix():
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+t+` WHERE id = ?`, r.ID); err != nil {
				return res, fmt.Errorf("store: adopt kamailio rows: delete expired row %d: %w", r.ID, err)
			}
			res.Expired++
		case opts.UsrlocPresID != "" && r.Flag == pua.FlagUsrloc && name == "presence" && r.WatcherURI == "":
			usrloc[r.PresURI] = append(usrloc[r.PresURI], r)
		case seen[identity{r.PresURI, r.PresID, name, r.Flag, r.WatcherURI}]:
			// pua keeps a row for every ETag a publication had (pua_dialoginfo:
			// one per state of the call) under one identity; the presence
			// server holds one of them. The first row is adopted; the others
			// are removed at start with their own ETags, so whichever ETag is
			// live goes once and the stale ones are answered 412.
			if err := set(r.ID, fmt.Sprintf("%s#%d", r.PresID, r.ID), name, contentTypeOf(name), true, 0); err != nil {
				return res, err
			}
			res.Removing++
		default:
			seen[identity{r.PresURI, r.PresID, name, r.Flag, r.WatcherURI}] = true
			end := r.DesiredExpires
			if trackerFlag(r.Flag) {
				end = 0 // refreshed until the sweep, unless its tracker claims it
			}
			if err := set(r.ID, r.PresID, name, contentTypeOf(name), false, end); err != nil {
				return res, err
			}
			res.Adopted++
		}
	}
	for uri, group := range usrloc {
		var have bool
		if have, err = db.any(ctx, tx, `SELECT 1 FROM `+t+` WHERE pres_uri = ? AND pres_id = ? AND event_name = 'presence'
			AND flag = ? AND watcher_uri = ''`, uri, opts.UsrlocPresID, pua.FlagUsrloc); err != nil {
			return res, fmt.Errorf("store: adopt kamailio rows of %s: %w", uri, err)
		}
		sort.SliceStable(group, func(i, j int) bool { return group[i].Expires > group[j].Expires })
		for i, r := range group {
			keep := i == 0 && !have
			presID, end := r.PresID, int64(0)
			if keep {
				presID, end = opts.UsrlocPresID, r.Expires
			}
			if err := set(r.ID, presID, "presence", contentTypeOf("presence"), !keep, end); err != nil {
				return res, err
			}
			if keep {
				res.Adopted++
			} else {
				res.Removing++
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return res, fmt.Errorf("store: adopt kamailio rows: commit: %w", err)
	}
	return res, nil
}

// trackerFlag reports whether flag is that of one of puaside's trackers,
// which claim their publications at start.
func trackerFlag(flag int64) bool {
	switch flag {
	case pua.FlagUsrloc, pua.FlagBLAPublish, pua.FlagBLASubscribe, pua.FlagDialogPublish,
		pua.FlagXMPPPublish, pua.FlagXMPPSubscribe, pua.FlagXMPPWinfo:
		return true
	}
	return false
}

// contentTypeOf is the body type Kamailio's pua uses for an event.
func contentTypeOf(event string) string {
	switch event {
	case "presence":
		return "application/pidf+xml"
	case "dialog", "dialog;sla":
		return "application/dialog-info+xml"
	case "message-summary":
		return "application/simple-message-summary"
	case "reg":
		return "application/reginfo+xml"
	}
	return ""
}
