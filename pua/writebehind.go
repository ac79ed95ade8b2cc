package pua

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// markDirty queues a record for the next write-behind. Shard locked.
func (e *Engine) markDirty(t tasker, dirty *bool) {
	if e.store == nil {
		return
	}
	if b := t.base(); e.journal != nil && !b.jdirty {
		b.jdirty = true
		e.wmu.Lock()
		e.jdirty = append(e.jdirty, t)
		e.wmu.Unlock()
	}
	e.requeue(t, dirty)
}

// requeue queues a record for the next write-behind only (not for the
// journal, which holds it already). Shard locked.
func (e *Engine) requeue(t tasker, dirty *bool) {
	if *dirty {
		return
	}
	*dirty = true
	e.wmu.Lock()
	e.dirty = append(e.dirty, t)
	e.wmu.Unlock()
}

// markRemoved queues the deletion of a stored row, written at once when
// sync_etags is on (flushSoon) (a row left behind would be refreshed after a crash
// with an ETag the server no longer knows, and published anew).
func (e *Engine) markRemoved(id Record) {
	if e.store == nil {
		return
	}
	e.wmu.Lock()
	e.removed = append(e.removed, id)
	if e.journal != nil {
		e.jremoved = append(e.jremoved, id)
	}
	e.wmu.Unlock()
	e.flushSoon()
}

// syncGather is how long a prompt write waits for more changes to join
// it: one transaction per syncGather at most, instead of one per PUBLISH.
const syncGather = 10 * time.Millisecond

// flushSoon writes the pending records within syncGather (group commit):
// at most one such write runs; records dirtied while it runs are written
// by one more right after it. With a journal the write is an append to it
// (journalWrite), unless it is suspended. A failed write leaves its
// records to the periodic write-behind, so a broken database costs no busy
// loop. It does nothing with sync_etags off or without a store.
func (e *Engine) flushSoon() {
	if !e.cfg.SyncETags || e.store == nil {
		return
	}
	e.wmu.Lock()
	defer e.wmu.Unlock()
	if e.syncing {
		e.syncAgain = true
		return
	}
	if e.syncClosed {
		return
	}
	e.syncing = true
	e.syncWG.Add(1)
	go func() {
		defer e.syncWG.Done()
		gather := time.NewTimer(syncGather)
		defer gather.Stop()
		for {
			select {
			case <-gather.C:
				if e.journal != nil && e.journalWrite() {
					break
				}
				ctx, cancel := context.WithTimeout(e.stopCtx, e.cfg.UpdatePeriod+5*time.Second)
				if err := e.flush(ctx, false); err != nil && e.stopCtx.Err() == nil {
					// The periodic write-behind retries these records and
					// logs the failure at error level, once per period.
					e.log.Debug("prompt store write failed", "err", err)
				}
				cancel()
			case <-e.stopCtx.Done(): // Stop's own flush writes what is pending
			}
			e.wmu.Lock()
			if !e.syncAgain || e.syncClosed {
				e.syncing, e.syncAgain = false, false
				e.wmu.Unlock()
				return
			}
			e.syncAgain = false
			e.wmu.Unlock()
			gather.Reset(syncGather)
		}
	}()
}

// armFlush schedules the next write-behind.
func (e *Engine) armFlush() {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	e.flushT = e.clock.AfterFunc(e.cfg.UpdatePeriod, func() {
		if e.isStopped() {
			return
		}
		ctx, cancel := context.WithTimeout(e.stopCtx, e.cfg.UpdatePeriod)
		if err := e.flush(ctx, false); err != nil {
			e.log.Error("store write-behind failed", "err", err)
		}
		cancel()
		if !e.isStopped() {
			e.armFlush()
		}
	})
}

// identity is a stored row's identity.
type identity struct {
	presURI, presID, event, watcher string
	flag                            int
}

func idOf(r Record) identity {
	return identity{r.PresURI, r.PresID, r.EventName, r.WatcherURI, r.Flag}
}

// flush writes every dirty record and deletes removed ones in one batch.
// On failure the batch stays pending for the next flush. With a journal,
// the batch is first appended to it (journalSnapshot); final is the write
// at Stop, after which nothing is appended.
func (e *Engine) flush(ctx context.Context, final bool) error {
	if e.store == nil {
		return nil
	}
	e.flushBusy.Lock()
	defer e.flushBusy.Unlock()
	jlocked := false
	if e.journal != nil {
		// No prompt append between taking the batch and appending it.
		e.jmu.Lock()
		jlocked = true
		defer func() {
			if jlocked {
				e.jmu.Unlock()
			}
		}()
	}
	e.wmu.Lock()
	dirty, removed := e.dirty, e.removed
	e.dirty, e.removed = nil, nil
	// The records changed since their last append are in dirty too, with
	// their journal mark set: the loop below appends them (delta) and
	// clears the mark under the shard lock, so a change made meanwhile is
	// either in the batch's rows and its append or left marked.
	jremoved := e.jremoved // the removals not appended yet
	e.jdirty, e.jremoved = nil, nil
	e.wmu.Unlock()
	if e.flushTaken != nil {
		e.flushTaken()
	}
	if len(dirty) == 0 && len(removed) == 0 {
		if jlocked && final {
			e.journalStored(true)
		}
		return nil
	}
	start := time.Now()
	now := e.clock.Now()
	upsert := make([]Record, 0, len(dirty))
	seen := make(map[identity]bool, len(dirty))
	var saved []tasker
	var delta []Record // the rows of the unjournaled records
	for _, t := range dirty {
		switch r := t.(type) {
		case *pubRec:
			r.shard.mu.Lock()
			if !r.deleted {
				if r.storedFlag >= 0 && r.storedFlag != r.flag {
					removed = append(removed, Record{PresURI: r.key.PresURI, PresID: r.key.ID, EventName: r.key.Event, Flag: int(r.storedFlag)})
				}
				rec := e.pubRecord(r, now)
				if !e.fenceRecord(&rec) {
					// Another instance owns its shard and its row.
					r.dirty, r.jdirty = false, false
					r.shard.mu.Unlock()
					continue
				}
				if jlocked && r.jdirty {
					for _, f := range r.staleFlags(int(r.storedFlag), int(r.flag)) {
						jremoved = append(jremoved, Record{PresURI: r.key.PresURI, PresID: r.key.ID, EventName: r.key.Event, Flag: f})
					}
					delta = append(delta, rec)
					r.jdirty = false
					r.jflag, r.jflagSet = int(r.flag), true
				}
				r.storedFlag = r.flag // a later removal must delete this row
				upsert = append(upsert, rec)
				seen[idOf(rec)] = true
				saved = append(saved, r)
			}
			r.dirty = false
			r.shard.mu.Unlock()
		case *subRec:
			r.shard.mu.Lock()
			if !r.deleted {
				if r.storedFlag >= 0 && r.storedFlag != r.flag {
					removed = append(removed, Record{PresURI: r.key.PresURI, PresID: r.key.ID, EventName: r.key.Event,
						Flag: r.storedFlag, WatcherURI: r.key.WatcherURI})
				}
				rec := e.subRecord(r)
				if !e.fenceRecord(&rec) {
					r.dirty, r.jdirty = false, false
					r.shard.mu.Unlock()
					continue
				}
				if jlocked && r.jdirty {
					for _, f := range r.staleFlags(r.storedFlag, r.flag) {
						jremoved = append(jremoved, Record{PresURI: r.key.PresURI, PresID: r.key.ID, EventName: r.key.Event,
							Flag: f, WatcherURI: r.key.WatcherURI})
					}
					delta = append(delta, rec)
					r.jdirty = false
					r.jflag, r.jflagSet = r.flag, true
				}
				r.storedFlag = r.flag
				upsert = append(upsert, rec)
				seen[idOf(rec)] = true
				saved = append(saved, r)
			}
			r.dirty = false
			r.shard.mu.Unlock()
		}
	}
	rm := removed[:0:0]
	for _, id := range removed {
		if !seen[idOf(id)] && e.fenceRecord(&id) {
			rm = append(rm, id)
		}
	}
	var jgen uint64
	journaled := false
	if jlocked {
		// Removals appended once: a retried batch does not append them again.
		jrm := jremoved[:0:0]
		for _, id := range jremoved {
			if !seen[idOf(id)] && e.fenceRecord(&id) {
				jrm = append(jrm, id)
			}
		}
		jgen, journaled = e.journalSnapshot(delta, jrm)
		if !final {
			e.jmu.Unlock() // prompt appends go on while the database writes
			jlocked = false
		}
		if journaled {
			e.markStored(upsert, pubsOf(saved))
		}
	}
	err := e.store.SaveRecords(ctx, upsert, rm)
	if stale := (*StaleEpochError)(nil); errors.As(err, &stale) {
		// The others were written; these rows are the new owner's now.
		e.log.Warn("store refused rows of shards another instance took over", "shards", stale.Shards,
			"refused", stale.Refused)
		e.m.Tracker("pua", "stale_epoch_refused")
		err = nil
	}
	e.m.StoreFlush(time.Since(start), err)
	e.noteStoreWrite(err)
	if err != nil {
		for _, t := range saved {
			switch r := t.(type) {
			case *pubRec:
				r.shard.mu.Lock()
				if !r.deleted {
					e.requeue(r, &r.dirty)
				}
				r.shard.mu.Unlock()
			case *subRec:
				r.shard.mu.Lock()
				if !r.deleted {
					e.requeue(r, &r.dirty)
				}
				r.shard.mu.Unlock()
			}
		}
		e.wmu.Lock()
		e.removed = append(e.removed, rm...)
		e.wmu.Unlock()
		return fmt.Errorf("pua: store flush: %w", err)
	}
	e.markStored(upsert, pubsOf(saved))
	if e.journal != nil {
		if !jlocked {
			e.jmu.Lock()
			jlocked = true
		}
		if journaled {
			// What those generations hold is in the database now, or
			// (appended since) in the newer one.
			if err := e.journal.Drop(jgen); err != nil {
				e.log.Warn("pua: ETag journal: old generations not dropped", "err", err)
			}
		}
		e.journalStored(final)
	}
	return nil
}

// pubsOf returns, per saved record, the publication (nil for a subscription).
func pubsOf(saved []tasker) []*pubRec {
	out := make([]*pubRec, len(saved))
	for i, t := range saved {
		out[i], _ = t.(*pubRec)
	}
	return out
}

// pubRecord maps a publication to a row. Shard locked.
func (e *Engine) pubRecord(r *pubRec, now time.Time) Record {
	ct := r.ctype
	if ct == "" {
		ct = r.ev.contentType
	}
	return Record{
		PresURI: r.key.PresURI, PresID: r.key.ID, EventName: r.key.Event,
		Expires: r.srvExpires, DesiredExpires: r.endAt, Flag: int(r.flag), ETag: r.etag,
		Version: int(r.version), ExtraHeaders: slices.Clone(r.hdrs()), Body: r.body, ContentType: ct,
		OutboundProxy: r.proxy(), ReqExpires: int64(r.expires / time.Second), Removing: r.remove,
		Modified: r.etag != "" && (r.bodyPending() || r.forceInitial),
	}
}

// subRecord maps a subscription to a row. Shard locked.
func (e *Engine) subRecord(r *subRec) Record {
	target := cmp.Or(r.target, r.key.PresURI)
	if r.targetUnknown {
		target = ""
	}
	return Record{
		PresURI: r.key.PresURI, PresID: r.key.ID, EventName: r.key.Event,
		Expires: r.srvExpires, Flag: r.flag, WatcherURI: r.key.WatcherURI,
		CallID: r.callID, FromTag: r.localTag, ToTag: r.remoteTag, CSeq: int(r.cseq),
		RecordRoute: strings.Join(r.routes, ","), Contact: r.contact, RemoteContact: r.remoteTarget,
		Target: target, Version: int(r.version), ExtraHeaders: slices.Clone(r.hdrs), OutboundProxy: r.proxy,
		ReqExpires: int64(r.expires / time.Second), Removing: r.unsub,
	}
}

// load restores stored records: live publications are refreshed with their
// stored ETag, live subscriptions refreshed in-dialog; expired ones are
// dropped (and deleted from the store). Records not yet accepted by the
// server (no ETag) are published anew while their lifetime lasts (once
// claimed, for an owner's record). A record marked as being removed, or a
// publication whose lifetime ended while the server still holds it, is
// removed at the server.
func (e *Engine) load(ctx context.Context) error {
	if e.store == nil {
		return nil
	}
	recs, err := e.store.LoadRecords(ctx)
	if err != nil {
		return fmt.Errorf("pua: load records: %w", err)
	}
	now := e.clock.Now()
	var kept, dropped int
	for _, rec := range recs {
		ev := e.eventOf(rec)
		ended := rec.DesiredExpires != 0 && rec.DesiredExpires <= now.Unix()
		expired := ended
		switch {
		case rec.IsSubscription():
			expired = expired || rec.CallID == "" || rec.Expires <= now.Unix()
			expired = expired || (rec.Removing && rec.ToTag == "")
		case rec.ETag != "":
			// The server still holds it: a lifetime that ended is a
			// removal still to be done, unless the publication lapses
			// (eventInfo.lapses): then nothing is left to do once the
			// server holds its terminated document, and that document is
			// still sent when the server may not (Modified).
			expired = rec.Expires <= now.Unix()
			if ended && !rec.Removing && ev != nil && ev.lapses(rec.Body) {
				expired = expired || !rec.Modified
			} else {
				rec.Removing = rec.Removing || ended
			}
		default:
			expired = expired || len(rec.Body) == 0 || rec.Removing
		}
		// A publication row whose flag does not fit a record's 32 bits
		// (no writer of Kamailio's INT column makes one) is unusable.
		unusable := !rec.IsSubscription() && !flagFits(rec.Flag)
		if ev == nil || expired || unusable || checkURI(rec.PresURI) != nil {
			e.markRemoved(rec)
			dropped++
			continue
		}
		if rec.IsSubscription() {
			e.loadSub(rec, ev)
		} else {
			e.loadPub(rec, ev)
		}
		kept++
	}
	e.log.Info("pua records loaded", "kept", kept, "dropped", dropped)
	return nil
}

// eventOf finds a stored record's event by name (the store names the
// event of a row Kamailio wrote from its bit); nil if unknown.
func (e *Engine) eventOf(rec Record) *eventInfo {
	ev, err := e.ev.get(rec.EventName)
	if err != nil {
		return nil
	}
	return ev
}

func (e *Engine) loadPub(rec Record, ev *eventInfo) {
	key := Key{PresURI: rec.PresURI, Event: ev.name, ID: rec.PresID}
	s := e.pubShard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.pubs[key]; old != nil {
		if old.etag == "" && !old.inFlight {
			old.etag, old.srvExpires = rec.ETag, rec.Expires
		}
		return
	}
	ct := rec.ContentType
	if ct == ev.contentType {
		ct = ""
	}
	r := &pubRec{key: key, shard: s, ev: ev, flag: int32(rec.Flag), storedFlag: int32(rec.Flag),
		ctype: ct, endAt: rec.DesiredExpires, gen: 1, etag: rec.ETag, srvExpires: rec.Expires,
		expires: time.Duration(rec.ReqExpires) * time.Second,
		version: int32(rec.Version), state: pubPending,
		durable: rec.ETag != "", unclaimed: !rec.Removing && e.ownerFlag(rec.Flag)}
	r.setRoute(rec.ExtraHeaders, rec.OutboundProxy)
	r.setDoc(rec.Body)
	if r.etag != "" {
		r.sentGen, r.state = 1, pubActive
		r.srvTerminated = r.bodyTerminated
		r.ackBody, r.ackETag = r.body, r.etag
		if rec.Modified {
			// The server holds an older document: send this one.
			r.sentGen, r.srvTerminated = 0, false
			r.ackBody, r.ackETag = nil, ""
		}
	}
	if rec.Removing {
		r.remove, r.gen = true, 2
	}
	r.lapse = r.endAt != 0 && !r.remove && r.bodyTerminated && !ev.bodyAlways
	r.countedFlag = int32(rec.Flag)
	e.owned.take(rec.Flag, 0, true)
	s.pubs[key] = r
	e.queue.push(r)
}

func (e *Engine) loadSub(rec Record, ev *eventInfo) {
	key := SubKey{PresURI: rec.PresURI, WatcherURI: rec.WatcherURI, Event: ev.name, ID: rec.PresID}
	s := e.subShard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs[key] != nil {
		return
	}
	// The dialog carries on with the stored remote target (the
	// notifier's Contact), route set and proxy; the initial SUBSCRIBE of
	// a new dialog goes where the owner asked, as it would have before
	// the restart.
	target, unknown := rec.Target, false
	switch target {
	case rec.PresURI:
		target = "" // the presentity, at the presence server
	case "":
		target, unknown = rec.RemoteContact, true
	}
	r := &subRec{key: key, shard: s, ev: ev, flag: rec.Flag, storedFlag: rec.Flag,
		target: target, targetUnknown: unknown, proxy: rec.OutboundProxy, hdrs: rec.ExtraHeaders, gen: 1, sentGen: 1,
		callID: rec.CallID, localTag: rec.FromTag, remoteTag: rec.ToTag, cseq: uint32(max(rec.CSeq, 0)),
		remoteTarget: rec.RemoteContact, contact: rec.Contact, srvExpires: rec.Expires,
		confirmed: rec.ToTag != "", version: int32(rec.Version), state: StateActive,
		expires:   time.Duration(rec.ReqExpires) * time.Second,
		unclaimed: !rec.Removing && e.ownerFlag(rec.Flag)}
	if rec.Removing {
		r.unsub, r.gen = true, 2
	}
	if rec.RecordRoute != "" {
		for _, rt := range strings.Split(rec.RecordRoute, ",") {
			if rt = strings.TrimSpace(rt); rt != "" {
				r.routes = append(r.routes, rt)
			}
		}
	}
	if !r.confirmed {
		r.callID, r.localTag, r.remoteTag, r.cseq = "", "", "", 0
	} else {
		e.registerDialog(r)
	}
	s.subs[key] = r
	e.queue.push(r)
}
