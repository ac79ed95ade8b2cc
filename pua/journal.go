package pua

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
)

// Journal makes the engine's prompt writes (sync_etags) durable without a
// database transaction: with Options.Journal set, the changes that a
// prompt write would put in the database (every new ETag, every removal)
// are appended to the journal instead, and the database gets them with the
// periodic write-behind (update_period), in one large transaction.
//
// The journal holds one payload per change, a JSON JournalEntry. Its rules
// (package journal implements them on local files):
//
//   - a prompt write appends the records changed since the last one, and
//     once the append has returned their ETags count as stored (the short
//     first lease ends, as after a database write), though they stay
//     pending for the database;
//   - the write-behind, holding off the prompt writes, rotates the journal
//     (generation g is closed), takes its batch, and appends to the new
//     generation the rows of that batch not appended since their last
//     change (changes that asked for no prompt write, or came within the
//     last few milliseconds) and its removals; then it writes the batch to
//     the database and, once that succeeded, drops the generations up to
//     g. So every state of the batch is in the journal before the database
//     has it, after any older state of the same record: a crash after the
//     database commit and before the drop replays the batch's states (or
//     newer ones), never an older state over a newer row. A failed
//     database write keeps the generations (the records stay pending and
//     go with the next batch);
//   - past JournalLimit bytes (the generations kept while the database
//     is down grow with every change), or when an append fails, the
//     journal is suspended: the prompt writes go to the database as
//     without a journal, and the generations are kept until a database
//     write succeeds; then they are dropped and the journal is used again;
//   - before an engine starts on the database, ReplayJournal writes what
//     the journal holds to the store, and the generations are dropped.
//
// Leave it unset with several instances on one database: the others read
// the ETags from the database at once.
type Journal interface {
	// Append writes the payloads, in order, as one batch.
	Append(payloads [][]byte) error
	// Rotate starts a new generation; it returns the number of the one it
	// closed.
	Rotate() (uint64, error)
	// Drop deletes the generations up to upTo (never the current one).
	Drop(upTo uint64) error
	// Size is the number of bytes of every generation.
	Size() int64
}

// DefaultJournalLimit is the journal size past which the engine suspends
// it (Options.JournalLimit).
const DefaultJournalLimit = 64 << 20

// Journal entry operations.
const (
	JournalPut = "put" // the record's row is Rec
	JournalDel = "del" // the row of Rec's identity is deleted
)

// JournalEntry is one payload of the journal: a record's row written, or
// the row of its identity deleted.
type JournalEntry struct {
	Op  string `json:"op"`
	Rec Record `json:"rec"`
}

// ReplayStats says what ReplayJournal did.
type ReplayStats struct {
	// Entries were decoded; Bad could not be (skipped).
	Entries, Bad int
	// Puts and Dels are the rows written and deleted: the last entry of
	// each record identity.
	Puts, Dels int
}

// ReplayJournal writes the journal's payloads to st in one SaveRecords:
// for each record identity the last entry wins. A payload that does not
// decode is skipped, counted and logged (log nil: slog.Default()).
func ReplayJournal(ctx context.Context, st Store, payloads [][]byte, log *slog.Logger) (ReplayStats, error) {
	if log == nil {
		log = slog.Default()
	}
	var rs ReplayStats
	last := make(map[identity]int, len(payloads))
	entries := make([]JournalEntry, 0, len(payloads))
	for i, p := range payloads {
		var en JournalEntry
		err := json.Unmarshal(p, &en)
		if err == nil && en.Op != JournalPut && en.Op != JournalDel {
			err = fmt.Errorf("unknown op %q", en.Op)
		}
		if err == nil && en.Rec.PresURI == "" {
			err = fmt.Errorf("no pres_uri")
		}
		if err != nil {
			rs.Bad++
			log.Warn("pua: journal entry skipped", "index", i, "bytes", len(p), "err", err)
			continue
		}
		rs.Entries++
		en.Rec.Shard, en.Rec.Epoch = 0, 0
		last[idOf(en.Rec)] = len(entries)
		entries = append(entries, en)
	}
	var up, rm []Record
	for i, en := range entries {
		if last[idOf(en.Rec)] != i {
			continue
		}
		if en.Op == JournalPut {
			up = append(up, en.Rec)
		} else {
			rm = append(rm, en.Rec)
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
		b, err := json.Marshal(JournalEntry{Op: op, Rec: r})
		if err != nil {
			return fmt.Errorf("pua: journal entry: %w", err)
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
				if r.storedFlag >= 0 && r.storedFlag != r.flag {
					removed = append(removed, Record{PresURI: r.key.PresURI, PresID: r.key.ID, EventName: r.key.Event, Flag: r.storedFlag})
				}
				rec := e.pubRecord(r, now)
				if e.fenceRecord(&rec) {
					up = append(up, rec)
					pubs = append(pubs, r)
				}
			}
			r.shard.mu.Unlock()
		case *subRec:
			r.shard.mu.Lock()
			r.jdirty = false
			if !r.deleted {
				if r.storedFlag >= 0 && r.storedFlag != r.flag {
					removed = append(removed, Record{PresURI: r.key.PresURI, PresID: r.key.ID, EventName: r.key.Event,
						Flag: r.storedFlag, WatcherURI: r.key.WatcherURI})
				}
				rec := e.subRecord(r)
				if e.fenceRecord(&rec) {
					up = append(up, rec)
					pubs = append(pubs, nil)
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
// changed since their last append (up), and the batch's removals (rm). It
// reports whether that worked; then every state of the batch is in the
// journal after any older state of the same record. jmu locked.
func (e *Engine) journalSnapshot(up, rm []Record) (uint64, bool) {
	if e.jsuspended {
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
// supersedes, is emptied and used again; final (the write at Stop) empties
// it in any case. jmu locked.
func (e *Engine) journalStored(final bool) {
	if !e.jsuspended && !final {
		return
	}
	g, err := e.journal.Rotate()
	if err == nil {
		err = e.journal.Drop(g)
	}
	if err != nil {
		e.log.Warn("pua: ETag journal not emptied", "err", err)
		return
	}
	if e.jsuspended {
		e.jsuspended = false
		e.log.Info("pua: ETag journal in use again")
	}
}
