package pua

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/puaside/puaside/dialogdoc"
)

// Several instances on one database. Every instance holds a record for
// every presentity its trackers know (they ingest everything), but with an
// Ownership (Options.Ownership) the engine sends for a presentity only
// while this instance owns its shard, and writes its row only while it
// holds the shard's lease, with the lease's epoch as fencing token
// (Record.Epoch). A record of a shard owned elsewhere waits: its desired
// state follows the trackers, its server state (ETag, dialog) is the
// owner's and lives in the store.
//
// When shards are gained (ShardsGained), the engine reads their rows
// and adopts, for each record it holds, the stored ETag or dialog, then
// sends the current state: a modify when the stored document differs, else
// the refresh due. A stored row no tracker wants (its presentity is gone)
// is loaded unclaimed and swept, as at start. When a shard is lost
// (ShardLost) the pending rows are written while the fence allows, and the
// shard's records forget their server state: nothing more is sent for
// them.

// Ownership tells the engine which presentities this instance sends and
// writes for. It is implemented by package shard.
type Ownership interface {
	// Owns reports whether this instance may send for presURI now.
	Owns(presURI string) bool
	// Fence returns presURI's shard and the epoch of this instance's lease
	// of it; ok is false when it does not hold the lease (the record is not
	// written).
	Fence(presURI string) (shard int, epoch int64, ok bool)
}

// mayPublish reports whether this instance sends for presURI: it owns the
// shard and has continued its records (ShardsGained), so that nothing is
// sent without the previous owner's ETag.
func (e *Engine) mayPublish(presURI string) bool {
	if e.own == nil {
		return true
	}
	if !e.own.Owns(presURI) {
		return false
	}
	s, _, _ := e.own.Fence(presURI)
	e.omu.Lock()
	defer e.omu.Unlock()
	_, ok := e.ready[s]
	return ok
}

// fenceRecord stamps rec with its shard's epoch; false means this instance
// holds no lease of the shard and must not write the row.
func (e *Engine) fenceRecord(rec *Record) bool {
	if e.own == nil {
		return true
	}
	s, ep, ok := e.own.Fence(rec.PresURI)
	rec.Shard, rec.Epoch = s, ep
	if !ok {
		return false
	}
	e.omu.Lock()
	defer e.omu.Unlock()
	_, ok = e.ready[s]
	return ok
}

// inShard reports whether presURI is in shard.
func (e *Engine) inShard(presURI string, shard int) bool {
	s, _, _ := e.own.Fence(presURI)
	return s == shard
}

// ShardsGained continues the records of the shards gained (shard →
// epoch) now that this instance owns them: their stored ETags and dialogs
// are adopted and their current state is sent. Stored rows no record
// stands for are loaded (and swept once the claim window is closed). The
// stored rows are read once for all the shards.
//
// A shard this engine continued at the same epoch and has not lost since
// (a lease renewed after a lapse) adopts nothing: nobody else wrote its rows,
// and they may lag what the engine holds (a write-behind that failed while
// the database was slow); adopting them would continue a replaced ETag (a
// 412, a new publication, the one it replaced orphaned at the server) and
// bring back rows of publications removed meanwhile. Its records are only
// sent again.
func (e *Engine) ShardsGained(ctx context.Context, gained map[int]int64) {
	if e.own == nil || e.isStopped() || len(gained) == 0 {
		return
	}
	start := time.Now()
	e.omu.Lock()
	resumed := make(map[int]bool)
	for sh := range gained {
		if ep, ok := e.ready[sh]; ok && ep == gained[sh] {
			resumed[sh] = true
		}
	}
	e.omu.Unlock()
	shardOf := func(presURI string) int {
		sh, _, _ := e.own.Fence(presURI)
		return sh
	}
	inGained := func(presURI string) bool {
		_, ok := gained[shardOf(presURI)]
		return ok
	}
	in := func(presURI string) bool { // gained and to be adopted
		sh := shardOf(presURI)
		_, ok := gained[sh]
		return ok && !resumed[sh]
	}
	shards := make([]int, 0, len(gained))
	for sh := range gained {
		shards = append(shards, sh)
	}
	slices.Sort(shards)
	var rows []Record
	if e.store != nil && len(resumed) < len(gained) {
		all, err := e.store.LoadRecords(ctx)
		if err != nil {
			// The records go on with what this instance holds: initial
			// PUBLISHes replace at the server once the old ETags expire.
			e.log.Error("takeover: stored records not read", "shards", shards, "err", err)
			e.m.Drop("pua", "takeover_load_failed")
		}
		for _, r := range all {
			if in(r.PresURI) {
				rows = append(rows, r)
			}
		}
	}
	pubRows := make(map[Key]Record)
	subRows := make(map[SubKey]Record)
	for _, rec := range rows {
		ev := e.eventOf(rec)
		if ev == nil || !rec.IsSubscription() && !flagFits(rec.Flag) {
			continue // unusable, as at start (load)
		}
		if rec.IsSubscription() {
			subRows[SubKey{PresURI: rec.PresURI, WatcherURI: rec.WatcherURI, Event: ev.name, ID: rec.PresID}] = rec
		} else {
			pubRows[Key{PresURI: rec.PresURI, Event: ev.name, ID: rec.PresID}] = rec
		}
	}
	now := e.clock.Now()
	var adopted, fresh int
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		for k, r := range s.pubs {
			if !in(k.PresURI) || r.deleted {
				continue
			}
			rec, ok := pubRows[k]
			delete(pubRows, k)
			if r.inFlight {
				continue
			}
			e.adoptPub(r, rec, ok, now)
			if ok {
				adopted++
			}
			e.markDirty(r, &r.dirty)
		}
		for k, r := range s.subs {
			if !in(k.PresURI) || r.deleted {
				continue
			}
			rec, ok := subRows[k]
			delete(subRows, k)
			if r.inFlight {
				continue
			}
			if ok {
				e.adoptSub(r, rec)
				adopted++
			}
			e.markDirty(r, &r.dirty)
		}
		s.mu.Unlock()
	}
	// Sent and written for from now on; every record of the shards is run
	// (one a tracker changed meanwhile was held back until now).
	e.omu.Lock()
	for sh := range gained {
		e.ready[sh] = gained[sh]
	}
	e.omu.Unlock()
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		for k, r := range s.pubs {
			if inGained(k.PresURI) && !r.deleted {
				e.kickPub(r)
			}
		}
		for k, r := range s.subs {
			if inGained(k.PresURI) && !r.deleted {
				e.kickSub(r)
			}
		}
		s.mu.Unlock()
	}
	// Rows of records this instance does not hold: loaded as at start.
	for _, rec := range pubRows {
		if e.loadRow(rec, now) {
			fresh++
		}
	}
	for _, rec := range subRows {
		if e.loadRow(rec, now) {
			fresh++
		}
	}
	if fresh > 0 && !e.ClaimsOpen() {
		e.sweepWhere(in)
	}
	e.flushSoon()
	for range gained {
		e.m.Tracker("pua", "shard_gained")
	}
	e.log.Info("shards taken over: records continued", "shards", shards, "resumed", len(resumed),
		"adopted", adopted, "loaded", fresh, "took", time.Since(start))
}

// loadRow loads one stored row as Start does; false for a row that is
// expired or unknown (deleted from the store).
func (e *Engine) loadRow(rec Record, now time.Time) bool {
	ev := e.eventOf(rec)
	if ev == nil || checkURI(rec.PresURI) != nil {
		return false
	}
	if rec.IsSubscription() {
		if rec.CallID == "" || rec.Expires <= now.Unix() || (rec.Removing && rec.ToTag == "") {
			e.markRemoved(rec)
			return false
		}
		e.loadSub(rec, ev)
		return true
	}
	if rec.ETag == "" || rec.Expires <= now.Unix() {
		e.markRemoved(rec)
		return false
	}
	if rec.DesiredExpires != 0 && rec.DesiredExpires <= now.Unix() {
		rec.Removing = true
	}
	e.loadPub(rec, ev)
	return true
}

// adoptPub gives r the server state stored by the previous owner (ok) or
// none (an initial PUBLISH follows). Shard locked.
func (e *Engine) adoptPub(r *pubRec, rec Record, ok bool, now time.Time) {
	e.sched.Cancel(r)
	r.failed, r.backingOff, r.forceInitial, r.attempt = false, false, false, 0
	r.clearRefusal()
	if !ok || rec.ETag == "" || rec.Expires <= now.Unix() {
		r.etag, r.srvExpires, r.sentGen, r.srvTerminated, r.durable = "", 0, 0, false, false
		r.storedFlag = -1
		if ok {
			r.storedFlag = int32(rec.Flag)
		}
		return
	}
	r.etag, r.srvExpires, r.durable = rec.ETag, rec.Expires, true
	r.storedFlag = int32(rec.Flag)
	r.version = int32(max(rec.Version, int(r.version)))
	r.srvTerminated = r.ev.dialog && !rec.Modified && dialogdoc.AllTerminated(rec.Body)
	r.ackBody, r.ackETag = nil, ""
	held := !rec.Modified && bytes.Equal(rec.Body, r.body)
	switch {
	case held:
		r.ackBody, r.ackETag = r.body, rec.ETag // the same document, kept once
	case !rec.Modified:
		r.ackBody, r.ackETag = rec.Body, rec.ETag // the server holds the stored document
	}
	if held && !r.remove {
		// The server holds this very document: refresh when due.
		r.sentGen = r.gen
		r.nextRefresh = refreshAt(now, time.Duration(rec.Expires-now.Unix())*time.Second).UnixNano()
		r.state = pubActive
		return
	}
	r.sentGen = 0 // send the current state under the stored ETag
	r.nextRefresh = 0
}

// adoptSub gives r the dialog stored by the previous owner. Shard locked.
func (e *Engine) adoptSub(r *subRec, rec Record) {
	e.sched.Cancel(r)
	e.resetDialog(r)
	r.failed, r.backingOff, r.attempt = false, false, 0
	r.storedFlag = rec.Flag
	if rec.CallID == "" || rec.ToTag == "" {
		return // a new SUBSCRIBE follows
	}
	r.callID, r.localTag, r.remoteTag = rec.CallID, rec.FromTag, rec.ToTag
	r.cseq = uint32(max(rec.CSeq, 0))
	r.remoteTarget, r.contact, r.srvExpires = rec.RemoteContact, rec.Contact, rec.Expires
	r.routes = nil
	for _, rt := range strings.Split(rec.RecordRoute, ",") {
		if rt = strings.TrimSpace(rt); rt != "" {
			r.routes = append(r.routes, rt)
		}
	}
	r.confirmed = true
	r.sentGen = 0 // refresh at once: the NOTIFYs come to this instance then
	e.registerDialog(r)
}

// ShardLost stops shard's records: the requests in flight are answered
// and the rows still pending written (while the lease allows), then the records forget their server state and
// nothing more is sent for them; a record being removed is forgotten.
func (e *Engine) ShardLost(ctx context.Context, shard int) {
	if e.own == nil {
		return
	}
	// A request already sent is answered (or times out) first: its new
	// ETag is written under the lease still held, so the successor does not
	// continue with the ETag it replaced (a 412 and a duplicate at the
	// server). Owns is already false: nothing new is sent meanwhile.
	deadline := time.Now().Add(e.cfg.RequestTimeout + time.Second)
	for e.inFlightIn(shard) && time.Now().Before(deadline) && ctx.Err() == nil && !e.isStopped() {
		time.Sleep(5 * time.Millisecond)
	}
	if err := e.flush(ctx, false); err != nil {
		e.log.Warn("shard handed over with rows not written", "shard", shard, "err", err)
	}
	e.omu.Lock()
	delete(e.ready, shard) // no more rows of it until it is gained again
	e.omu.Unlock()
	var n int
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		for k, r := range s.pubs {
			if !e.inShard(k.PresURI, shard) || r.deleted {
				continue
			}
			n++
			e.sched.Cancel(r)
			r.etag, r.srvExpires, r.sentGen, r.srvTerminated, r.durable = "", 0, 0, false, false
			r.failed, r.backingOff = false, false
			r.storedFlag = -1
			if r.remove && !r.inFlight {
				e.forgetPub(r)
			}
		}
		for k, r := range s.subs {
			if !e.inShard(k.PresURI, shard) || r.deleted {
				continue
			}
			n++
			e.sched.Cancel(r)
			if !r.inFlight {
				e.forgetDialog(r)
			}
			r.failed, r.backingOff = false, false
			r.storedFlag = -1
			if r.unsub && !r.inFlight {
				e.forgetSub(r)
			}
		}
		s.mu.Unlock()
	}
	e.m.Tracker("pua", "shard_lost")
	e.log.Info("shard lost: its records wait", "shard", shard, "records", n)
}

// inFlightIn reports whether a request of a record of shard awaits its
// final reply.
func (e *Engine) inFlightIn(shard int) bool {
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		for k, r := range s.pubs {
			if r.inFlight && e.inShard(k.PresURI, shard) {
				s.mu.Unlock()
				return true
			}
		}
		for k, r := range s.subs {
			if r.inFlight && e.inShard(k.PresURI, shard) {
				s.mu.Unlock()
				return true
			}
		}
		s.mu.Unlock()
	}
	return false
}

// forgetPub drops r from memory only: its row and server state are the
// shard owner's. Shard locked.
func (e *Engine) forgetPub(r *pubRec) {
	r.deleted = true
	delete(r.shard.pubs, r.key)
	e.owned.release(int(r.countedFlag))
	e.sched.Cancel(r)
	r.resolve(^uint64(0), Result{})
}

// forgetSub drops r from memory only. Shard locked.
func (e *Engine) forgetSub(r *subRec) {
	r.deleted = true
	delete(r.shard.subs, r.key)
	e.sched.Cancel(r)
	resolveWaiters(&r.waiters, ^uint64(0), Result{})
}
