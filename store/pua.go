package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/puaside/puaside/pua"
)

// *DB persists the pua engine's records in the pua table.
var _ pua.Store = (*DB)(nil)

// recordColumnList names the columns of the pua table written and read for
// a record, in the order of recordArgs and rowRecord.
const recordColumnList = "pres_uri, pres_id, event, expires, desired_expires, flag, " +
	"etag, tuple_id, watcher_uri, call_id, to_tag, from_tag, " +
	"cseq, record_route, contact, remote_contact, version, " +
	"extra_headers, body, content_type, event_name, outbound_proxy, req_expires, removing, modified, target"

// numRecordColumns is the number of columns in recordColumnList.
const numRecordColumns = 26

// bodyColumn is the position of body in recordColumnList.
const bodyColumn = 18

// recordColumns returns the names of recordColumnList.
func recordColumns() []string { return strings.Split(recordColumnList, ", ") }

// Batch sizes: pres_uris per identity lookup, rows per multi-row INSERT and
// ids per DELETE. They keep statements well under both dialects' limits on
// placeholders.
const (
	lookupBatch = 500
	insertBatch = 50
	deleteBatch = 500
)

// BadRow is a row of the pua table that cannot be turned into a record.
type BadRow struct {
	// ID is the row's id column.
	ID int64
	// Reason says what is wrong with the row.
	Reason string
}

// identity is the record identity: (pres_uri, pres_id, event_name, flag,
// watcher_uri).
type identity struct {
	presURI, presID, event string
	flag                   int64
	watcherURI             string
}

func recordIdentity(r *pua.Record) identity {
	return identity{r.PresURI, r.PresID, r.EventName, int64(r.Flag), r.WatcherURI}
}

func (id identity) String() string {
	s := fmt.Sprintf("pres_uri=%q pres_id=%q event=%q flag=%d", id.presURI, id.presID, id.event, id.flag)
	if id.watcherURI != "" {
		s += fmt.Sprintf(" watcher_uri=%q", id.watcherURI)
	}
	return s
}

// syntheticTupleID is the tuple_id stored for a record that has none: unique
// per identity, so Kamailio's unique key (etag, tuple_id, call_id, from_tag)
// never collides for records that are still pending (empty etag) or are
// publications (empty call_id and from_tag).
func (id identity) syntheticTupleID() string {
	h := sha256.New()
	var n [8]byte
	for _, s := range []string{id.presURI, id.presID, id.event, strconv.FormatInt(id.flag, 10), id.watcherURI} {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	return "ps:" + hex.EncodeToString(h.Sum(nil)[:16])
}

// LoadRecords returns every good record of the pua table (pua.Store).
//
// A row that cannot be turned into a record (a NULL where a value is
// required, a negative number, no event name and no known Kamailio event
// bit, a second row with the identity of a later one, ...) does not make it
// fail: the row is skipped, logged at warning level with its id and the
// reason, counted in metrics, and left in the table untouched. Loading never
// deletes or changes a row. ReadRecords returns the skipped rows to callers
// that want them. The error is only for a failed query.
func (db *DB) LoadRecords(ctx context.Context) ([]pua.Record, error) {
	recs, bad, err := db.ReadRecords(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range bad {
		db.logger().Warn("store: skipping bad row", "table", db.Table, "row_id", b.ID, "reason", b.Reason)
		db.Metrics.Drop("store", "bad_row")
	}
	return recs, nil
}

// ReadRecords reads the pua table: the good records, in row order, and the
// rows that cannot be turned into a record with the reason. When several
// rows have the same identity, the last one (highest id) is the record and
// the others are reported as bad rows. Nothing is written.
func (db *DB) ReadRecords(ctx context.Context) ([]pua.Record, []BadRow, error) {
	q := "SELECT id, " + recordColumnList + " FROM " + db.quotedTable() + " ORDER BY id"
	rows, err := db.X.QueryContext(ctx, q)
	if err != nil {
		return nil, nil, fmt.Errorf("store: load %s: %w", db.Table, err)
	}
	defer rows.Close()
	names := recordColumns()
	var (
		recs  []pua.Record
		ids   []int64
		bad   []BadRow
		index = map[identity]int{} // identity -> position in recs
	)
	for rows.Next() {
		var (
			id   int64
			cols [numRecordColumns]sql.NullString
			body []byte
		)
		dest := make([]any, 0, len(cols)+1)
		dest = append(dest, &id)
		for i := range cols {
			if i == bodyColumn {
				dest = append(dest, &body)
				continue
			}
			dest = append(dest, &cols[i])
		}
		if err := rows.Scan(dest...); err != nil {
			// The id is scanned first; a row whose values cannot even be
			// scanned as text is reported, not fatal.
			bad = append(bad, BadRow{ID: id, Reason: "unreadable row: " + err.Error()})
			continue
		}
		rec, reason := rowRecord(names, cols[:], body)
		if reason != "" {
			bad = append(bad, BadRow{ID: id, Reason: reason})
			continue
		}
		ident := recordIdentity(&rec)
		if i, dup := index[ident]; dup {
			bad = append(bad, BadRow{ID: ids[i], Reason: fmt.Sprintf("same identity as row %d (%s)", id, ident)})
			recs[i], ids[i] = rec, id
			continue
		}
		index[ident] = len(recs)
		recs = append(recs, rec)
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("store: load %s: %w", db.Table, err)
	}
	sort.Slice(bad, func(i, j int) bool { return bad[i].ID < bad[j].ID })
	return recs, bad, nil
}

// rowRecord checks a scanned row and builds its record; reason is non-empty
// for a bad row.
func rowRecord(names []string, cols []sql.NullString, body []byte) (rec pua.Record, reason string) {
	var problems []string
	str := func(i int, nullable bool) string {
		if !cols[i].Valid && !nullable {
			problems = append(problems, names[i]+" is NULL")
		}
		return cols[i].String
	}
	num := func(i int) int64 {
		if !cols[i].Valid {
			problems = append(problems, names[i]+" is NULL")
			return 0
		}
		n, err := strconv.ParseInt(strings.TrimSpace(cols[i].String), 10, 64)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s %q is not an integer", names[i], cols[i].String))
		case n < 0:
			problems = append(problems, fmt.Sprintf("negative %s %d", names[i], n))
		case n > math.MaxInt32:
			problems = append(problems, fmt.Sprintf("%s %d out of range", names[i], n))
		}
		return n
	}
	rec.PresURI = str(0, false)
	rec.PresID = str(1, false)
	bit := num(2)
	rec.Expires = num(3)
	rec.DesiredExpires = num(4)
	rec.Flag = int(num(5))
	rec.ETag = str(6, false)
	rec.TupleID = str(7, true)
	rec.WatcherURI = str(8, false)
	rec.CallID = str(9, false)
	rec.ToTag = str(10, false)
	rec.FromTag = str(11, false)
	rec.CSeq = int(num(12))
	rec.RecordRoute = str(13, true)
	rec.Contact = str(14, false)
	rec.RemoteContact = str(15, false)
	rec.Version = int(num(16))
	rec.ExtraHeaders = splitHeaders(str(17, false))
	if len(body) > 0 {
		rec.Body = body
	}
	rec.ContentType = str(19, true)
	rec.EventName = str(20, true)
	rec.OutboundProxy = str(21, true)
	if cols[22].Valid { // puaside's own column: NULL (a hand-made table) means unset
		rec.ReqExpires = num(22)
	}
	if cols[23].Valid { // puaside's own column: NULL means not being removed
		rec.Removing = num(23) != 0
	}
	if cols[24].Valid { // puaside's own column: NULL means accepted as stored
		rec.Modified = num(24) != 0
	}
	rec.Target = str(25, true) // puaside's own column: NULL or '' means not known
	if rec.PresURI == "" && cols[0].Valid {
		problems = append(problems, "empty pres_uri")
	}
	if rec.EventName == "" {
		if name := kamailioEventName(bit); name != "" {
			rec.EventName = name
		} else if cols[2].Valid {
			problems = append(problems, fmt.Sprintf("unknown event: empty event_name and event bit %d is not a Kamailio event", bit))
		}
	}
	if len(problems) > 0 {
		return pua.Record{}, strings.Join(problems, "; ")
	}
	if rec.TupleID == recordIdentity(&rec).syntheticTupleID() {
		rec.TupleID = ""
	}
	return rec, ""
}

// fitRecord returns r as the pua table can hold it (a copy; r is not
// changed): the identity columns (pres_uri, pres_id, event_name,
// watcher_uri) must fit as they are, or the record is refused, since a cut
// identity would name another presentity; the other text columns are made
// valid UTF-8 and cut to their widths (width.fit). Empty pres_uri or
// event_name and numbers outside 0..2^31-1 are refused too. The error wraps
// errUnstorable.
func (db *DB) fitRecord(r *pua.Record) (puaRow, error) {
	if r.PresURI == "" {
		return puaRow{}, fmt.Errorf("%w: empty pres_uri", errUnstorable)
	}
	if r.EventName == "" {
		return puaRow{}, fmt.Errorf("%w: empty event_name", errUnstorable)
	}
	for _, c := range []struct {
		name string
		v    int64
	}{
		{"expires", r.Expires}, {"desired_expires", r.DesiredExpires},
		{"flag", int64(r.Flag)}, {"cseq", int64(r.CSeq)}, {"version", int64(r.Version)},
		{"req_expires", r.ReqExpires},
	} {
		if c.v < 0 || c.v > math.MaxInt32 {
			return puaRow{}, fmt.Errorf("%w: %s %d out of range 0..%d", errUnstorable, c.name, c.v, math.MaxInt32)
		}
	}
	f := db.row(puaTemplate)
	out := puaRow{Record: *r, eventBit: kamailioEventBit(r.EventName)}
	f.key("pres_uri", r.PresURI)
	f.key("pres_id", r.PresID)
	f.key("event_name", r.EventName)
	f.key("watcher_uri", r.WatcherURI)
	if f.err != nil {
		return puaRow{}, f.err
	}
	out.ETag = f.clip("etag", r.ETag)
	out.TupleID = f.clip("tuple_id", r.TupleID)
	out.CallID = f.clip("call_id", r.CallID)
	out.ToTag = f.clip("to_tag", r.ToTag)
	out.FromTag = f.clip("from_tag", r.FromTag)
	out.RecordRoute = f.clip("record_route", r.RecordRoute)
	out.Contact = f.clip("contact", r.Contact)
	out.RemoteContact = f.clip("remote_contact", r.RemoteContact)
	out.headerLines = f.clip("extra_headers", joinHeaders(r.ExtraHeaders))
	out.ContentType = f.clip("content_type", r.ContentType)
	out.OutboundProxy = f.clip("outbound_proxy", r.OutboundProxy)
	if w, ok := f.cols.width(f.table, "target"); ok && w.exact("target", r.Target) != nil {
		// Left out rather than cut into another URI: a restart puts
		// remote_contact in its place.
		out.Target = ""
	}
	return out, nil
}

// storableIdentity reports whether a record's identity can be in the table
// at all (a removal of one that cannot is a no-op).
func (db *DB) storableIdentity(r *pua.Record) bool {
	f := db.row(puaTemplate)
	f.key("pres_uri", r.PresURI)
	f.key("pres_id", r.PresID)
	f.key("event_name", r.EventName)
	f.key("watcher_uri", r.WatcherURI)
	return f.err == nil
}

// recordArgs are the values of recordColumns for r.
func recordArgs(r *puaRow) []any {
	return appendRecordArgs(make([]any, 0, numRecordColumns+1), r) // +1: updateRecord's id
}

// appendRecordArgs appends the values of recordColumns for r to args.
func appendRecordArgs(args []any, r *puaRow) []any {
	tuple := r.TupleID
	if tuple == "" {
		tuple = recordIdentity(&r.Record).syntheticTupleID()
	}
	var body any
	if len(r.Body) > 0 {
		body = r.Body
	}
	return append(args,
		r.PresURI, r.PresID, r.eventBit, r.Expires, r.DesiredExpires, r.Flag,
		r.ETag, tuple, r.WatcherURI, r.CallID, r.ToTag, r.FromTag,
		r.CSeq, r.RecordRoute, r.Contact, r.RemoteContact, r.Version,
		r.headerLines, body, r.ContentType, r.EventName, r.OutboundProxy, r.ReqExpires, boolInt(r.Removing), boolInt(r.Modified),
		r.Target,
	)
}

// SaveRecords writes records (pua.Store): the rows of remove are deleted,
// then each record of upsert updates the row with its identity (pres_uri,
// pres_id, event_name, flag, watcher_uri) or is inserted. When upsert names
// an identity twice, the last one wins. The Kamailio event bit column is
// written from the event name (0 for an event Kamailio lacks), the extra
// headers as CRLF-separated lines.
//
// Text values are made valid UTF-8 and cut to their columns' widths (never
// inside a character), except the identity columns, which must fit as they
// are. A record that cannot be stored (an identity too long, an empty
// pres_uri or event_name, a number out of range) or that the database
// refuses (strict mode, a unique key collision) is set aside: logged with
// its identity and the reason, counted in
// puaside_store_rows_quarantined_total, and not written; every other record
// is written and SaveRecords succeeds, so the caller does not retry the bad
// one forever. The batch is one transaction; when the database refuses a
// row, it is split until the row is found. Any other error (the database is
// unreachable, ...) is returned, and the caller retries.
func (db *DB) SaveRecords(ctx context.Context, upsert, remove []pua.Record) error {
	if len(upsert) == 0 && len(remove) == 0 {
		return nil
	}
	fitted := make([]puaRow, 0, len(upsert))
	for i := range upsert {
		r, err := db.fitRecord(&upsert[i])
		if err != nil {
			db.setAside(db.Table, recordIdentity(&upsert[i]).String(), err)
			continue
		}
		fitted = append(fitted, r)
	}
	gone := make([]pua.Record, 0, len(remove))
	for i := range remove {
		if db.storableIdentity(&remove[i]) {
			gone = append(gone, remove[i])
		}
	}
	var st staleTally
	err := db.saveRecords(ctx, fitted, gone, &st)
	if err == nil || !rowError(err) || ctx.Err() != nil {
		return st.result(err, db.Table)
	}
	st = staleTally{}
	if err := db.saveRecords(ctx, nil, gone, &st); err != nil {
		return err
	}
	err = isolate(ctx, fitted, func(part []puaRow) error { return db.saveRecords(ctx, part, nil, &st) },
		func(r puaRow, err error) { db.setAside(db.Table, recordIdentity(&r.Record).String(), err) })
	return st.result(err, db.Table)
}

// staleTally gathers the records refused by the epoch guard across the
// transactions of one SaveRecords.
type staleTally struct {
	shards  map[int]bool
	refused int
}

// result is err, or a *pua.StaleEpochError when err is nil and records
// were refused.
func (st *staleTally) result(err error, table string) error {
	if err != nil || st.refused == 0 {
		return err
	}
	e := &pua.StaleEpochError{Refused: st.refused}
	for sh := range st.shards {
		e.Shards = append(e.Shards, sh)
	}
	sort.Ints(e.Shards)
	return fmt.Errorf("store: save %s: %w", table, e)
}

// add logs and counts records refused by a committed transaction.
func (st *staleTally) add(db *DB, refused []*pua.Record) {
	for _, r := range refused {
		st.refuse(db, db.Table, r.Shard, r.Epoch, recordIdentity(r).String())
	}
}

// refuse logs and counts one row of table refused by the epoch guard.
func (st *staleTally) refuse(db *DB, table string, shard int, epoch int64, key string) {
	db.logger().Warn("store: write refused, the shard has a new owner", "table", table,
		"shard", shard, "epoch", epoch, "record", key)
	db.Metrics.Drop("store", "stale_epoch")
	if st.shards == nil {
		st.shards = make(map[int]bool)
	}
	st.shards[shard] = true
	st.refused++
}

// keepFresh returns the records of rs not fenced by a stale shard (epoch
// 0 is not fenced) and hands each refused one to refused. rs is not
// modified.
func keepFresh[T any](rs []T, stale map[int]bool, fence func(*T) (int, int64), refused func(*T)) []T {
	out := rs[:0:0]
	for i := range rs {
		if sh, ep := fence(&rs[i]); ep != 0 && stale[sh] {
			refused(&rs[i])
			continue
		}
		out = append(out, rs[i])
	}
	return out
}

// fence drops from upsert and remove the records whose shard lease has
// another epoch than theirs and returns them apart. Within tx.
func (db *DB) fence(ctx context.Context, q fenceQuerier, upsert []puaRow, remove []pua.Record) ([]puaRow, []pua.Record, []*pua.Record, error) {
	var fences map[int]int64
	note := func(r *pua.Record) {
		if r.Epoch == 0 {
			return
		}
		if fences == nil {
			fences = make(map[int]int64)
		}
		fences[r.Shard] = r.Epoch
	}
	for i := range upsert {
		note(&upsert[i].Record)
	}
	for i := range remove {
		note(&remove[i])
	}
	stale, err := db.staleShards(ctx, q, fences)
	if err != nil || len(stale) == 0 {
		return upsert, remove, nil, err
	}
	var refused []*pua.Record
	keptU := keepFresh(upsert, stale, func(r *puaRow) (int, int64) { return r.Shard, r.Epoch },
		func(r *puaRow) { refused = append(refused, &r.Record) })
	keptR := keepFresh(remove, stale, func(r *pua.Record) (int, int64) { return r.Shard, r.Epoch },
		func(r *pua.Record) { refused = append(refused, r) })
	return keptU, keptR, refused, nil
}

// saveRecords writes fitted records and removals in one transaction, rolled
// back on any error.
func (db *DB) saveRecords(ctx context.Context, upsert []puaRow, remove []pua.Record, tally *staleTally) (err error) {
	if len(upsert) == 0 && len(remove) == 0 {
		return nil
	}
	db.stmts.ready(ctx, db.X.DB)
	tx, err := db.X.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: save %s: begin: %w", db.Table, err)
	}
	ctx = db.stmtCtx(ctx)
	st := db.stmts.begin(tx)
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	var refused []*pua.Record
	if upsert, remove, refused, err = db.fence(ctx, tx, upsert, remove); err != nil {
		return err
	}

	uris := make([]string, 0, len(upsert)+len(remove))
	for i := range remove {
		uris = append(uris, remove[i].PresURI)
	}
	for i := range upsert {
		uris = append(uris, upsert[i].PresURI)
	}
	existing, stored, err := db.lookupIDs(ctx, st, uris)
	if err != nil {
		return err
	}

	var gone []int64
	for i := range remove {
		ident := recordIdentity(&remove[i])
		gone = append(gone, existing[ident]...)
		delete(existing, ident)
	}
	if err := db.deleteIDs(ctx, st, gone); err != nil {
		return err
	}

	// Last one wins for an identity named twice.
	last := make(map[identity]int, len(upsert))
	for i := range upsert {
		last[recordIdentity(&upsert[i].Record)] = i
	}
	var fresh []*puaRow
	updated := 0
	for i := range upsert {
		r := &upsert[i]
		ident := recordIdentity(&r.Record)
		if last[ident] != i {
			continue
		}
		ids := existing[ident]
		if len(ids) == 0 {
			fresh = append(fresh, r)
			continue
		}
		// Several rows with one identity (written by hand or by another
		// program): the newest is the record, as LoadRecords reads it.
		id := ids[len(ids)-1]
		if updated++; updated%insertBatch == 0 {
			pause() // as between inBatches' chunks
		}
		if err := db.updateRecord(ctx, st, r, id, stored[id]); err != nil {
			return fmt.Errorf("store: save %s: update record %s: %w", db.Table, ident, err)
		}
	}
	if err := db.insertRecords(ctx, st, fresh); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: save %s: commit: %w", db.Table, err)
	}
	tally.add(db, refused)
	return nil
}

// indexedColumns has a bit for each position in recordColumnList of the columns that
// are part of an index of the pua table. updateRecord leaves such a column
// out of an UPDATE when the row already holds the value, so that SQLite does
// not rewrite the index entries (it rewrites every index on a column named
// in SET, changed or not).
// The bits are: pres_uri, pres_id, expires, flag, etag, tuple_id,
// watcher_uri, call_id, from_tag, event_name.
const indexedColumns uint32 = 1<<0 | 1<<1 | 1<<3 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<9 | 1<<11 | 1<<20

// lookupColumns are the columns lookupIDs reads after id: the identity
// columns plus the other indexed ones, in the order of storedRow.
const lookupColumns = "pres_uri, pres_id, event, event_name, flag, watcher_uri, expires, etag, tuple_id, call_id, from_tag"

// storedRow holds the stored values of a row's indexed columns by position
// in recordColumnList (only the positions of indexedColumns are set).
type storedRow [numRecordColumns]sql.NullString

// lookupIDs returns the ids of the rows of the given pres_uris by identity,
// in ascending order, and the indexed columns of each such row by id. Rows
// whose identity columns are unreadable are left out (they are no record's
// row).
func (db *DB) lookupIDs(ctx context.Context, tx *txStmts, uris []string) (map[identity][]int64, map[int64]*storedRow, error) {
	sort.Strings(uris)
	uniq := uris[:0]
	for i, u := range uris {
		if i == 0 || u != uris[i-1] {
			uniq = append(uniq, u)
		}
	}
	out := make(map[identity][]int64)
	stored := make(map[int64]*storedRow)
	err := inBatches(uniq, lookupBatch, func(chunk []string) error {
		args := padKeys(chunk, lookupBatch)
		q := "SELECT id, " + lookupColumns + " FROM " + db.quotedTable() +
			" WHERE pres_uri IN (" + placeholders(len(args)) + ") ORDER BY id"
		st, err := tx.stmt(ctx, q)
		if err != nil {
			return fmt.Errorf("store: save %s: look up records: %w", db.Table, err)
		}
		rows, err := st.QueryContext(ctx, args...)
		if err != nil {
			return fmt.Errorf("store: save %s: look up records: %w", db.Table, err)
		}
		for rows.Next() {
			var (
				id    int64
				event sql.NullString
				s     storedRow
			)
			// Positions in recordColumnList, see lookupColumns.
			if err := rows.Scan(&id, &s[0], &s[1], &event, &s[20], &s[5], &s[8], &s[3], &s[6], &s[7], &s[9], &s[11]); err != nil {
				continue
			}
			presURI, presID, name, flag, watcher := s[0], s[1], s[20], s[5], s[8]
			f, ferr := strconv.ParseInt(flag.String, 10, 64)
			if !presURI.Valid || !presID.Valid || !watcher.Valid || ferr != nil {
				continue
			}
			ev := name.String
			if ev == "" {
				bit, _ := strconv.ParseInt(event.String, 10, 64)
				ev = kamailioEventName(bit)
			}
			ident := identity{presURI.String, presID.String, ev, f, watcher.String}
			out[ident] = append(out[ident], id)
			stored[id] = &s
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("store: save %s: look up records: %w", db.Table, err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, stored, nil
}

// updateRecord writes r over the row id. Indexed columns whose stored value
// (old) is already r's are left out of the UPDATE; the statement for each
// set of columns is prepared once (stmtCache).
func (db *DB) updateRecord(ctx context.Context, tx *txStmts, r *puaRow, id int64, old *storedRow) error {
	all := recordArgs(r)
	var skip uint32
	if old != nil {
		for c := range all {
			if indexedColumns&(1<<c) == 0 || !old[c].Valid {
				continue
			}
			if v, ok := argText(all[c]); ok && v == old[c].String {
				skip |= 1 << c
			}
		}
	}
	args := all[:0] // in place: an argument only moves towards the front
	for c, a := range all {
		if skip&(1<<c) == 0 {
			args = append(args, a)
		}
	}
	args = append(args, id)
	q, ok := db.updates.Load(skip)
	if !ok {
		var set []string
		for c, name := range recordColumns() {
			if skip&(1<<c) == 0 {
				set = append(set, name+" = ?")
			}
		}
		q, _ = db.updates.LoadOrStore(skip, "UPDATE "+db.quotedTable()+" SET "+strings.Join(set, ", ")+" WHERE id = ?")
	}
	return tx.exec(ctx, q.(string), args)
}

// argText is the text of a column value as recordArgs gives it (a string
// or an integer), as the stored value reads back; ok is false for any other
// type.
func argText(a any) (text string, ok bool) {
	switch v := a.(type) {
	case string:
		return v, true
	case int:
		return strconv.Itoa(v), true
	case int64:
		return strconv.FormatInt(v, 10), true
	}
	return "", false
}

// deleteIDs deletes the rows with the given ids.
func (db *DB) deleteIDs(ctx context.Context, tx *txStmts, ids []int64) error {
	return inBatches(ids, deleteBatch, func(chunk []int64) error {
		args := padKeys(chunk, deleteBatch)
		q := "DELETE FROM " + db.quotedTable() + " WHERE id IN (" + placeholders(len(args)) + ")"
		if err := tx.exec(ctx, q, args); err != nil {
			return fmt.Errorf("store: save %s: delete records: %w", db.Table, err)
		}
		return nil
	})
}

// insertRecords inserts new records with multi-row INSERTs, each size's
// statement prepared once (stmtCache).
func (db *DB) insertRecords(ctx context.Context, tx *txStmts, recs []*puaRow) error {
	args := make([]any, 0, min(len(recs), insertBatch)*numRecordColumns)
	return inBatches(recs, insertBatch, func(chunk []*puaRow) error {
		args = args[:0]
		for _, r := range chunk {
			args = appendRecordArgs(args, r)
		}
		q := "INSERT INTO " + db.quotedTable() + " (" + recordColumnList + ") VALUES " +
			valuesList(len(chunk), numRecordColumns)
		if err := tx.exec(ctx, q, args); err != nil {
			if len(chunk) == 1 {
				return fmt.Errorf("store: save %s: insert record %s: %w", db.Table, recordIdentity(&chunk[0].Record), err)
			}
			return fmt.Errorf("store: save %s: insert %d records (first %s): %w", db.Table, len(chunk), recordIdentity(&chunk[0].Record), err)
		}
		return nil
	})
}

// boolInt is a flag column's value.
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// placeholders returns "?, ?, ..." with n marks.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// quotedTable is the pua table name quoted for both dialects (SQLite accepts
// MySQL's backquotes).
func (db *DB) quotedTable() string { return "`" + db.Table + "`" }
