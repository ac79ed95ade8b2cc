package pua

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
)

// Journal makes the engine's prompt writes (sync_etags) durable without a
// database transaction: with Options.Journal set, the changes that a
// prompt write would put in the database (every new ETag, every removal)
// are appended to the journal instead, and the database gets them with the
// periodic write-behind (update_period), in one large transaction.
//
// The journal holds one payload per change, a binary entry of its own
// version (EncodeJournalEntry; earlier builds wrote JSON entries, which are
// still read). Its rules (package journal
// implements them on local files):
//
//   - a prompt write appends the records changed since the last one, and
//     once the append has returned their ETags count as stored (the short
//     first lease ends, as after a database write), though they stay
//     pending for the database. A removal, or a flag change, appends the
//     deletion of every row of the record the database or the journal
//     may hold, stored by a write-behind or not;
//   - the write-behind, holding off the prompt writes, rotates the journal
//     (generation g is closed; nothing happens when nothing was appended
//     since the last rotation), takes its batch, and appends the rows of
//     that batch not appended since their last change (changes that asked
//     for no prompt write, or came within the last few milliseconds),
//     decided as it reads each record, and the removals not appended yet;
//     then it writes the batch to the database and, once that succeeded,
//     drops the generations up to g. So every state of the batch is in the
//     journal before the database has it, after any older state of the
//     same record: a crash after the database commit and before the drop
//     replays the batch's states (or newer ones), never an older state
//     over a newer row. A failed database write keeps the generations (the
//     records stay pending and go with the next batch);
//   - past JournalLimit bytes or 1,000 generations (kept while the
//     database is down), or when an append fails, the journal is
//     suspended: the prompt writes go to the database as without a
//     journal, and the generations are kept until a database write
//     succeeds; then they are deleted (Reset, which needs no disk space)
//     and the journal is used again. A journal that cannot be reset stays
//     suspended, its generations marked so that no start replays them;
//   - before an engine starts on the database, ReplayJournal writes what
//     the journal holds to the store, and the journal is reset. An entry
//     it cannot read fails the replay, and the journal is kept.
//
// Leave it unset with several instances on one database: the others read
// the ETags from the database at once.
type Journal interface {
	// Append writes the payloads, in order, as one batch.
	Append(payloads [][]byte) error
	// Rotate closes the current generation; it returns the number of the
	// last one closed.
	Rotate() (uint64, error)
	// Drop deletes the generations up to upTo (never the current one).
	Drop(upTo uint64) error
	// Reset deletes every generation, the current one included, needing
	// no free space. An error means some are left, marked so that they
	// are not replayed.
	Reset() error
	// Size is the number of bytes of every generation.
	Size() int64
	// Generations is the number of generation files.
	Generations() int
}

// DefaultJournalLimit is the journal size past which the engine suspends
// it (Options.JournalLimit).
const DefaultJournalLimit = 64 << 20

// maxJournalGenerations is the number of generation files past which the
// engine suspends the journal (the database down for long).
const maxJournalGenerations = 1000

// Journal entry operations.
const (
	JournalPut = "put" // the record's row is Rec
	JournalDel = "del" // the row of Rec's identity is deleted
)

// journalVersionJSON is the version of the JSON entries of earlier
// builds, which ReplayJournal still reads; this build writes binary
// entries (journal_codec.go).
const journalVersionJSON = 1

// journalEntry is one version 1 (JSON) payload of the journal: a record's
// row written, or the row of its identity deleted. Its names are that
// format, apart from Record's.
type journalEntry struct {
	V   int        `json:"v"`
	Op  string     `json:"op"`
	Rec journalRec `json:"rec"`
}

// journalRec is a Record in the journal (Shard and Epoch are not kept).
type journalRec struct {
	PresURI        string          `json:"pres_uri"`
	PresID         string          `json:"pres_id"`
	EventName      string          `json:"event"`
	Expires        int64           `json:"expires,omitempty"`
	DesiredExpires int64           `json:"desired_expires,omitempty"`
	Flag           int             `json:"flag"`
	ETag           string          `json:"etag,omitempty"`
	TupleID        string          `json:"tuple_id,omitempty"`
	WatcherURI     string          `json:"watcher_uri,omitempty"`
	CallID         string          `json:"call_id,omitempty"`
	ToTag          string          `json:"to_tag,omitempty"`
	FromTag        string          `json:"from_tag,omitempty"`
	CSeq           int             `json:"cseq,omitempty"`
	RecordRoute    string          `json:"record_route,omitempty"`
	Contact        string          `json:"contact,omitempty"`
	RemoteContact  string          `json:"remote_contact,omitempty"`
	Version        int             `json:"version,omitempty"`
	ExtraHeaders   []journalHeader `json:"extra_headers,omitempty"`
	Body           []byte          `json:"body,omitempty"`
	ContentType    string          `json:"content_type,omitempty"`
	OutboundProxy  string          `json:"outbound_proxy,omitempty"`
	ReqExpires     int64           `json:"req_expires,omitempty"`
	Removing       bool            `json:"removing,omitempty"`
	Modified       bool            `json:"modified,omitempty"`
}

type journalHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func toJournalRec(r Record) journalRec {
	var hs []journalHeader
	for _, h := range r.ExtraHeaders {
		hs = append(hs, journalHeader(h))
	}
	return journalRec{PresURI: r.PresURI, PresID: r.PresID, EventName: r.EventName, Expires: r.Expires,
		DesiredExpires: r.DesiredExpires, Flag: r.Flag, ETag: r.ETag, TupleID: r.TupleID, WatcherURI: r.WatcherURI,
		CallID: r.CallID, ToTag: r.ToTag, FromTag: r.FromTag, CSeq: r.CSeq, RecordRoute: r.RecordRoute,
		Contact: r.Contact, RemoteContact: r.RemoteContact, Version: r.Version, ExtraHeaders: hs, Body: r.Body,
		ContentType: r.ContentType, OutboundProxy: r.OutboundProxy, ReqExpires: r.ReqExpires,
		Removing: r.Removing, Modified: r.Modified}
}

func (j journalRec) record() Record {
	var hs []Header
	for _, h := range j.ExtraHeaders {
		hs = append(hs, Header(h))
	}
	return Record{PresURI: j.PresURI, PresID: j.PresID, EventName: j.EventName, Expires: j.Expires,
		DesiredExpires: j.DesiredExpires, Flag: j.Flag, ETag: j.ETag, TupleID: j.TupleID, WatcherURI: j.WatcherURI,
		CallID: j.CallID, ToTag: j.ToTag, FromTag: j.FromTag, CSeq: j.CSeq, RecordRoute: j.RecordRoute,
		Contact: j.Contact, RemoteContact: j.RemoteContact, Version: j.Version, ExtraHeaders: hs, Body: j.Body,
		ContentType: j.ContentType, OutboundProxy: j.OutboundProxy, ReqExpires: j.ReqExpires,
		Removing: j.Removing, Modified: j.Modified}
}

// decodeJournalEntryJSON reads a version 1 entry (JSON), as builds
// before the binary entries wrote them; any field, version or operation
// it does not know is an error.
func decodeJournalEntryJSON(p []byte) (string, Record, error) {
	var en journalEntry
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&en); err != nil {
		return "", Record{}, err
	}
	if dec.More() {
		return "", Record{}, fmt.Errorf("data after the entry")
	}
	if en.V != journalVersionJSON {
		return "", Record{}, fmt.Errorf("entry version %d, this build reads %d", en.V, journalVersionJSON)
	}
	if en.Op != JournalPut && en.Op != JournalDel {
		return "", Record{}, fmt.Errorf("unknown op %q", en.Op)
	}
	if en.Rec.PresURI == "" {
		return "", Record{}, fmt.Errorf("no pres_uri")
	}
	r := en.Rec.record()
	if len(r.Body) == 0 {
		r.Body = nil
	}
	if len(r.ExtraHeaders) == 0 {
		r.ExtraHeaders = nil
	}
	return en.Op, r, nil
}

// ReplayStats says what ReplayJournal did.
type ReplayStats struct {
	// Entries were decoded.
	Entries int
	// Puts and Dels are the rows written and deleted: the last entry of
	// each record identity.
	Puts, Dels int
}

// ErrJournalEntry is wrapped by ReplayJournal's error for a payload that
// does not decode (a newer build's journal): nothing is written, the
// journal must be kept.
var ErrJournalEntry = errors.New("pua: journal entry this build cannot read")

// ReplayJournal writes the journal's payloads to st in one SaveRecords:
// for each record identity the last entry wins. The payloads are the
// journal's good frames (their CRC checked): one that does not decode, of
// another version or with a field this build does not know, is an error
// wrapping ErrJournalEntry, and nothing is written (skipping it could let
// an older entry win).
func ReplayJournal(ctx context.Context, st Store, payloads [][]byte, log *slog.Logger) (ReplayStats, error) {
	if log == nil {
		log = slog.Default()
	}
	var rs ReplayStats
	type entry struct {
		op  string
		rec Record
	}
	last := make(map[identity]int, len(payloads))
	entries := make([]entry, 0, len(payloads))
	for i, p := range payloads {
		op, rec, err := decodeJournalEntry(p)
		if err != nil {
			log.Error("pua: journal entry this build cannot read", "index", i, "bytes", len(p), "err", err)
			return rs, fmt.Errorf("%w: entry %d: %w", ErrJournalEntry, i, err)
		}
		rs.Entries++
		last[idOf(rec)] = len(entries)
		entries = append(entries, entry{op, rec})
	}
	var up, rm []Record
	for i, en := range entries {
		if last[idOf(en.rec)] != i {
			continue
		}
		if en.op == JournalPut {
			up = append(up, en.rec)
		} else {
			rm = append(rm, en.rec)
		}
	}
	rs.Puts, rs.Dels = len(up), len(rm)
	if err := st.SaveRecords(ctx, up, rm); err != nil {
		return rs, fmt.Errorf("pua: replay journal: %w", err)
	}
	return rs, nil
}

// journalBatch encodes removals, then rows: within one batch a row wins
// over the removal of its identity, as in SaveRecords.
func journalBatch(up, rm []Record) ([][]byte, int64, error) {
	out := make([][]byte, 0, len(up)+len(rm))
	var n int64
	add := func(op string, r Record) error {
		b, err := EncodeJournalEntry(op, r)
		if err != nil {
			return err
		}
		out = append(out, b)
		n += int64(len(b)) + 8
		return nil
	}
	for _, r := range rm {
		if err := add(JournalDel, Record{PresURI: r.PresURI, PresID: r.PresID, EventName: r.EventName,
			Flag: r.Flag, WatcherURI: r.WatcherURI}); err != nil {
			return nil, 0, err
		}
	}
	for _, r := range up {
		if err := add(JournalPut, r); err != nil {
			return nil, 0, err
		}
	}
	return out, n, nil
}

// journalWrite is the prompt write with a journal: it appends the records
// changed since the last append and marks their ETags stored. It reports
// false when the journal is suspended (or is suspended by this write): the
// caller writes the database instead.
func (e *Engine) journalWrite() bool {
	e.jmu.Lock()
	defer e.jmu.Unlock()
	if e.jsuspended {
		return false
	}
	e.wmu.Lock()
	dirty, removed := e.jdirty, e.jremoved
	e.jdirty, e.jremoved = nil, nil
	e.wmu.Unlock()
	if len(dirty) == 0 && len(removed) == 0 {
		return true
	}
	now := e.clock.Now()
	up := make([]Record, 0, len(dirty))
	var pubs []*pubRec // per row of up: the publication (nil for a subscription)
	for _, t := range dirty {
		switch r := t.(type) {
		case *pubRec:
			r.shard.mu.Lock()
			r.jdirty = false
			if !r.deleted {
				for _, f := range r.staleFlags(int(r.storedFlag), int(r.flag)) {
					removed = append(removed, Record{PresURI: r.key.PresURI, PresID: r.key.ID, EventName: r.key.Event, Flag: f})
				}
				rec := e.pubRecord(r, now)
				if e.fenceRecord(&rec) {
					up = append(up, rec)
					pubs = append(pubs, r)
					r.jflag, r.jflagSet = int(r.flag), true
				}
			}
			r.shard.mu.Unlock()
		case *subRec:
			r.shard.mu.Lock()
			r.jdirty = false
			if !r.deleted {
				for _, f := range r.staleFlags(r.storedFlag, r.flag) {
					removed = append(removed, Record{PresURI: r.key.PresURI, PresID: r.key.ID, EventName: r.key.Event,
						Flag: f, WatcherURI: r.key.WatcherURI})
				}
				rec := e.subRecord(r)
				if e.fenceRecord(&rec) {
					up = append(up, rec)
					pubs = append(pubs, nil)
					r.jflag, r.jflagSet = r.flag, true
				}
			}
			r.shard.mu.Unlock()
		}
	}
	batch, n, err := journalBatch(up, removed)
	if err == nil && e.journal.Size()+n > e.jlimit {
		err = fmt.Errorf("journal over its limit of %d bytes", e.jlimit)
	}
	if err == nil {
		err = e.journal.Append(batch)
	}
	if err != nil {
		e.suspendJournal(err)
		return false
	}
	e.markStored(up, pubs)
	return true
}

// markStored ends the short first lease of the publications whose rows
// (up, pubs[i] the publication of up[i] or nil) are now stored, unless
// their ETag changed since.
func (e *Engine) markStored(up []Record, pubs []*pubRec) {
	for i, r := range pubs {
		if r == nil || up[i].ETag == "" {
			continue
		}
		r.shard.mu.Lock()
		if r.etag == up[i].ETag {
			r.durable = true // the next refresh may ask for the full Expires
		}
		r.shard.mu.Unlock()
	}
}

// suspendJournal stops using the journal until a database write succeeds.
// jmu locked.
func (e *Engine) suspendJournal(err error) {
	e.jsuspended = true
	e.m.Tracker("pua", "etag_journal_suspended")
	e.log.Error("pua: ETag journal suspended, prompt writes go to the database until it takes a write", "err", err)
}

// journalSnapshot is the write-behind's part with a journal: it rotates
// the journal (the generations up to the one it returns are closed) and
// appends the rows of the batch about to be written to the database that
// changed since their last append (up), and the removals not appended yet
// (rm). It reports whether that worked; then every state of the batch is
// in the journal after any older state of the same record. jmu locked.
func (e *Engine) journalSnapshot(up, rm []Record) (uint64, bool) {
	if e.jsuspended {
		return 0, false
	}
	if n := e.journal.Generations(); n >= maxJournalGenerations {
		e.suspendJournal(fmt.Errorf("journal of %d generations, over its limit of %d", n, maxJournalGenerations))
		return 0, false
	}
	g, err := e.journal.Rotate()
	if err != nil {
		e.suspendJournal(err)
		return 0, false
	}
	batch, n, err := journalBatch(up, rm)
	if err == nil && e.journal.Size()+n > e.jlimit {
		err = fmt.Errorf("journal over its limit of %d bytes", e.jlimit)
	}
	if err == nil {
		err = e.journal.Append(batch)
	}
	if err != nil {
		e.suspendJournal(err)
		return 0, false
	}
	return g, true
}

// journalStored is told of a successful database write of everything that
// was pending: a suspended journal, whose generations the database now
// supersedes, is reset and used again; final (the write at Stop) resets
// it in any case. A journal that cannot be reset stays suspended (its
// generations are marked, so that no start replays them), and the reset
// is tried again after the next database write. jmu locked.
//
// A crash between the database write and the reset replays the
// generations of a suspended journal over newer rows: the only window in
// which the database is ahead of a journal that could be replayed.
func (e *Engine) journalStored(final bool) {
	if !e.jsuspended && !final {
		return
	}
	if err := e.journal.Reset(); err != nil {
		e.log.Error("pua: ETag journal not emptied, it stays suspended", "err", err)
		return
	}
	if e.jsuspended {
		e.jsuspended = false
		e.log.Info("pua: ETag journal in use again")
	}
}
