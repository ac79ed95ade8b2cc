package pa

import (
	"bytes"
	"context"
	"errors"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/puaside/puaside/aor"
	"github.com/puaside/puaside/pua"
)

// Several instances on one database (Options.Cluster). Every instance's pa
// keeps warm state of every publication and subscription, as the trackers
// keep every contact and call: the in-process publications come from its
// own trackers (every instance ingests everything), the subscriptions and
// the PUBLISHes from outside, accepted by whichever instance got them,
// from the change log in the shared database (puaside_pa_changes), which
// every pa write of a subscription or of a PUBLISH from outside appends to
// in the same transaction and which every instance reads every
// cluster_sync_period. Only the owner of a presentity's shard (the pua
// engine's Ownership, the same hash) sends its NOTIFYs and writes what no
// request asked for: its in-process publications, the removals of expired
// publications and subscriptions, and its dialogs' CSeq and version
// reservations with the digest of the state last notified (Batch.Notified),
// each fenced by the shard's epoch. A SUBSCRIBE, refresh, unsubscribe or
// PUBLISH is answered by the instance that got it, stored first as with
// one instance; the owner reads the change and notifies.
//
// At a takeover (ShardsGained) the successor reads the change log to the
// end and the stored reservations, continues every dialog of the shard
// above the reserved CSeq and version (the same Call-ID and tags: the
// watcher sees one dialog) and notifies the watchers whose state differs
// from the digest last notified: a state the old owner told already is not
// told again.

// Cluster is what pa needs to share its state with the other instances.
type Cluster struct {
	// Ownership tells the presentities this instance notifies for
	// (package shard's Manager, as the pua engine's).
	Ownership pua.Ownership
	// Changes is the shared change log (package store's DB).
	Changes ChangeLog
	// Instance is this instance's id in the change log (cluster.instance_id).
	Instance string
}

// Change log tuning.
const (
	// changePage is how many entries one read returns at most.
	changePage = 500
	// changeGapWait is how long a hole in the ids is waited for: a
	// transaction that took its id earlier may commit later (MySQL); one
	// rolled back never fills it.
	changeGapWait = 2 * time.Second
	// changeKeep is how long entries are kept before they are pruned.
	changeKeep = 10 * time.Minute
	// prunePeriod is how often an instance prunes.
	prunePeriod = time.Minute
	// reconcileAge is how old a subscription without a stored row must be
	// for a takeover to forget it (a younger one may be on its way to the
	// store).
	reconcileAge = 10 * time.Second
	// takeoverRetry is how soon a takeover whose stored subscriptions
	// could not be read tries again; the shards are not notified for
	// meanwhile (their CSeq reservations are unknown).
	takeoverRetry = time.Second
	// handOverPoll is how often a shard handed over checks its NOTIFYs in
	// flight.
	handOverPoll = 5 * time.Millisecond
)

// changeCursor is how far the change log is read: every entry up to low,
// and those above it in seen; holes above low are waited for from the
// time in gaps.
type changeCursor struct {
	low  int64
	seen map[int64]bool
	gaps map[int64]time.Time
	// checked is when the newest id was last compared with low.
	checked time.Time
}

func newChangeCursor(last int64) changeCursor {
	return changeCursor{low: last, seen: map[int64]bool{}, gaps: map[int64]time.Time{}}
}

// advance moves low over the entries seen and the holes waited for long
// enough.
func (c *changeCursor) advance(now time.Time) {
	top := c.low
	for id := range c.seen {
		top = max(top, id)
	}
	for c.low < top {
		next := c.low + 1
		if c.seen[next] {
			delete(c.seen, next)
			c.low = next
			continue
		}
		first, ok := c.gaps[next]
		if !ok {
			c.gaps[next] = now
			return
		}
		if now.Sub(first) < changeGapWait {
			return
		}
		delete(c.gaps, next)
		c.low = next
	}
}

// sends reports whether this instance notifies for presURI now: always
// alone; with a Cluster while it owns the shard and has continued it
// (s.mu held).
func (s *Server) sends(presURI string) bool {
	if s.o.Cluster == nil {
		return true
	}
	own := s.o.Cluster.Ownership
	if !own.Owns(presURI) {
		return false
	}
	sh, _, _ := own.Fence(presURI)
	return s.ready[sh]
}

// notifies reports whether this instance sends w's NOTIFYs: a fetch
// (Expires: 0, no dialog) is answered by the instance that got it
// (s.mu held).
func (s *Server) notifies(w *watcher) bool { return w.fetch || s.sends(w.presURI) }

// fence returns the shard and epoch an owner's write of presURI carries;
// false when this instance does not hold the shard (not written).
func (s *Server) fence(presURI string) (int, int64, bool) {
	sh, ep, ok := s.o.Cluster.Ownership.Fence(presURI)
	return sh, ep, ok && (s.ready[sh] || s.handing[sh])
}

// fenceToken is the shard and epoch an owner's write carries; ok is false
// when this instance does not hold the shard.
type fenceToken struct {
	shard int
	epoch int64
	ok    bool
}

// fenceOf returns the fence of presURI now (s.mu held; with a Cluster).
func (s *Server) fenceOf(presURI string) fenceToken {
	sh, ep, ok := s.fence(presURI)
	return fenceToken{sh, ep, ok}
}

// fenceGone stamps the queued removal of w with tok: the owner's removal
// of an expired or failed subscription, made under the epoch it held when
// it decided (the store refuses it once the shard has a new owner). A
// removal without a fence is not written: the shard's owner decides.
// expired makes it conditional on the stored expiry (s.mu held).
func (s *Server) fenceGone(w *watcher, tok fenceToken, expired bool) {
	if s.o.Cluster == nil {
		return
	}
	if r, ok := s.goneW[w.key]; ok {
		if !tok.ok {
			delete(s.goneW, w.key)
			return
		}
		r.Shard, r.Epoch, r.Expired = tok.shard, tok.epoch, expired
		s.goneW[w.key] = r
	}
}

// fencePubGone stamps the queued removal of an expired publication,
// conditional on its stored expiry (s.mu held).
func (s *Server) fencePubGone(id pubID) {
	if s.o.Cluster == nil {
		return
	}
	if r, ok := s.goneP[id]; ok {
		tok := s.fenceOf(id.uri)
		if !tok.ok {
			delete(s.goneP, id)
			return
		}
		r.Shard, r.Epoch, r.Expired = tok.shard, tok.epoch, true
		s.goneP[id] = r
	}
}

// refusedFor reports whether err (a store write's) refused the writes of
// tok's shard: the shard has a new owner.
func refusedFor(err error, tok fenceToken) bool {
	var se *pua.StaleEpochError
	if !tok.ok || !errors.As(err, &se) {
		return false
	}
	return slices.Contains(se.Shards, tok.shard)
}

// markNotified queues the owner's update of w's reservation and digest
// and returns that write (s.mu held).
func (s *Server) markNotified(w *watcher) *flushWait {
	if w.fetch || w.final {
		return nil
	}
	s.notifiedW[w.key] = w
	s.kickWriter()
	return s.waiting
}

// fenceBatch makes b a batch of several instances (s.mu held): the
// in-process publications are written by their shard's owner only, with
// its epoch; the owner's dialog updates likewise; every change is logged
// under this instance.
func (s *Server) fenceBatch(b *Batch) {
	b.Origin = s.o.Cluster.Instance
	own := func(rs []PublicationRecord) []PublicationRecord {
		out := rs[:0]
		for _, r := range rs {
			if r.ETag == "" && r.Epoch == 0 {
				sh, ep, ok := s.fence(r.PresURI)
				if !ok {
					continue // the owner's trackers publish it too
				}
				r.Shard, r.Epoch = sh, ep
			}
			out = append(out, r)
		}
		return out
	}
	b.Publications, b.RemovedPublications = own(b.Publications), own(b.RemovedPublications)
	for _, w := range s.notifiedW {
		sh, ep, ok := s.fence(w.presURI)
		if !ok {
			continue
		}
		r := w.record()
		r.Notified, r.Shard, r.Epoch = w.notified, sh, ep
		b.Notified = append(b.Notified, r)
	}
}

// stateDigest is the digest of a NOTIFY's state: the subscription status
// and the body without its version (dialog and watcherinfo documents
// count versions per watcher; the state is the same). Never 0.
func stateDigest(status string, body []byte, version uint64) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(status))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write(bytes.Replace(body, []byte(` version="`+strconv.FormatUint(version, 10)+`"`), nil, 1))
	return max(h.Sum64(), 1)
}

// currentDigest is the digest of the state w would be told now (s.mu held).
func (s *Server) currentDigest(w *watcher) uint64 {
	var body []byte
	if w.status == "active" || w.event == EventWinfo {
		body, _ = s.body(w)
	}
	return stateDigest(w.status, body, w.version)
}

// sleep waits d on the server's clock; false when ctx ended first.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	ch := make(chan struct{}, 1)
	t := s.clk.AfterFunc(d, func() { ch <- struct{}{} })
	select {
	case <-ctx.Done():
		t.Stop()
		return false
	case <-ch:
		return true
	}
}

// syncLoop reads the change log every cluster_sync_period and prunes it
// now and then.
func (s *Server) syncLoop() {
	defer s.wg.Done()
	pruned := s.clk.Now()
	for s.sleep(s.ctx, s.cfg.ClusterSyncPeriod) {
		if err := s.sync(s.ctx); err != nil && s.ctx.Err() == nil {
			s.met.storeError()
			s.log.Warn("change log not read", "err", err)
		}
		if now := s.clk.Now(); now.Sub(pruned) >= prunePeriod {
			pruned = now
			if err := s.o.Cluster.Changes.PrunePresenceChanges(s.ctx, changeKeep); err != nil && s.ctx.Err() == nil {
				s.log.Warn("change log not pruned", "err", err)
			}
		}
	}
}

// sync reads the change log from where it was left and applies the other
// instances' changes.
func (s *Server) sync(ctx context.Context) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	// The entries this instance wrote or applied already are not read
	// again (s.changes changes under syncMu only).
	skip := func(id int64, origin string) bool { return origin == s.o.Cluster.Instance || s.changes.seen[id] }
	after := s.changes.low
	for first := true; ; first = false {
		cs, err := s.o.Cluster.Changes.PresenceChanges(ctx, after, changePage, skip)
		if err != nil {
			return err
		}
		if first && len(cs) == 0 {
			if err := s.checkCursor(ctx); err != nil {
				return err
			}
		}
		s.mu.Lock()
		now := s.clk.Now()
		for _, c := range cs {
			after = max(after, c.ID)
			if s.changes.seen[c.ID] {
				continue
			}
			s.changes.seen[c.ID] = true
			delete(s.changes.gaps, c.ID)
			if c.Origin != s.o.Cluster.Instance && !s.stopped {
				s.apply(c, now)
			}
		}
		s.changes.advance(now)
		s.mu.Unlock()
		if len(cs) < changePage {
			return nil
		}
	}
}

// checkCursor starts the change log again from its beginning when its
// newest id is below the cursor: the ids started again (a database
// restored, or restarted after every entry was pruned on a server that
// takes the next id from MAX(id)); every entry there is newer than the
// cursor. Checked every changeGapWait while nothing is new (syncMu held).
func (s *Server) checkCursor(ctx context.Context) error {
	now := s.clk.Now()
	if now.Sub(s.changes.checked) < changeGapWait {
		return nil
	}
	last, err := s.o.Cluster.Changes.LastPresenceChange(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changes.checked = now
	if last < s.changes.low {
		s.log.Warn("change log ids started again; read from its beginning", "newest", last, "cursor", s.changes.low)
		s.changes = newChangeCursor(0)
		s.changes.checked = now
	}
	return nil
}

// apply brings the memory to a row another instance wrote (s.mu held).
func (s *Server) apply(c Change, now time.Time) {
	if c.Watcher {
		s.applyWatcher(c.Subscription, c.Gone, now)
		return
	}
	s.applyPublication(c.Publication, c.Gone, now)
}

// applyWatcher: a subscription accepted, refreshed, decided or ended at
// another instance.
func (s *Server) applyWatcher(r WatcherRecord, gone bool, now time.Time) {
	k := dialogKey{r.CallID, r.FromTag}
	w := s.subs[k]
	if w != nil && (w.final || w.toTag != r.ToTag) {
		return
	}
	if gone {
		if w != nil {
			// Ended there (an unsubscribe, a decision): the owner sends
			// the final NOTIFY; the row is gone already.
			w.noWrite = true
			s.terminate(w, "timeout")
		}
		return
	}
	ev, ok := normalizeEvent(r.Event)
	if !ok || r.Expires <= now.Unix() {
		return
	}
	if w == nil {
		w = watcherFromRecord(r, ev, now)
		w.notified = 0
		s.attach(w)
		w.touch(now)
		s.kick(w)
		return
	}
	w.cseqRes, w.versionRes = max(w.cseqRes, r.LocalCSeq), max(w.versionRes, r.Version)
	changed := false
	if r.RemoteCSeq > w.remoteCSeq {
		// A refresh: the NOTIFY that follows it, and the new expiry.
		w.remoteCSeq, w.contact, w.expires = r.RemoteCSeq, r.Contact, time.Unix(r.Expires, 0)
		w.flow, w.flowTransport = "", ""
		s.schedule(w)
		changed = true
	}
	if r.Status != "" && r.Status != w.status {
		w.status, w.reason = r.Status, r.Reason
		changed = true
		if w.event == EventPresence {
			s.watchersChanged(w.presURI)
		}
		s.tellWatchers(w.presURI)
	}
	if changed {
		w.touch(now)
		s.kick(w)
	}
}

// applyPublication: a PUBLISH from outside accepted at another instance,
// or its removal.
func (s *Server) applyPublication(r PublicationRecord, gone bool, now time.Time) {
	id := pubID{presKey{aor.Key(r.PresURI), r.Event}, r.ID}
	var old *publication
	if pr := s.pres[id.presKey]; pr != nil {
		for _, p := range pr.pubs {
			if p.id == id {
				old = p
			}
		}
	}
	if gone || r.Expires != 0 && r.Expires <= now.Unix() {
		if old != nil {
			s.drop(old)
			delete(s.goneP, id)
		}
		return
	}
	if old != nil && bytes.Equal(old.body, r.Body) {
		// A refresh: a new ETag and expiry, no new state.
		s.pubSched.Cancel(old)
		if old.etag != "" {
			delete(s.etags, old.etag)
		}
		old.etag = r.ETag
		old.expires = time.Time{}
		if r.Expires != 0 {
			old.expires = time.Unix(r.Expires, 0)
			s.pubSched.Schedule(old, old.expires)
		}
		if old.etag != "" {
			s.etags[old.etag] = old
		}
		return
	}
	p, err := s.publicationFromRecord(r)
	if err != nil {
		s.log.Warn("publication of another instance not served", "presentity", r.PresURI, "event", r.Event, "err", err)
		return
	}
	s.seq = max(s.seq, r.Seq)
	s.place(p, now)
}

// ShardsGained continues the subscriptions of the shards gained (shard →
// epoch): the change log is read to the end, every dialog continues above
// its stored CSeq and version, and the watchers whose state differs from
// the one last notified are notified. The in-process publications of the
// shards are written under the new epoch, the expired rows the previous
// owners left removed. Until the stored subscriptions are read the shards
// are not notified for (tried again every takeoverRetry). (shard.Listener,
// beside the pua engine's.)
func (s *Server) ShardsGained(ctx context.Context, gained map[int]int64) {
	if s.o.Cluster == nil || len(gained) == 0 {
		return
	}
	s.mu.Lock()
	for sh, ep := range gained {
		s.gaining[sh] = ep
	}
	s.mu.Unlock()
	s.takeOver(ctx, maps.Clone(gained))
}

// takeOver continues the shards of gained still being gained.
func (s *Server) takeOver(ctx context.Context, gained map[int]int64) {
	if err := s.sync(ctx); err != nil {
		s.log.Warn("takeover: change log not read", "err", err)
	}
	pubs, subs, err := s.o.Store.LoadPresence(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	for sh, ep := range gained {
		if ep2, ok := s.gaining[sh]; !ok || ep2 != ep {
			delete(gained, sh) // lost again meanwhile
		}
	}
	if len(gained) == 0 || s.stopped {
		return
	}
	if err != nil {
		s.met.storeError()
		s.log.Error("takeover: stored subscriptions not read; the shards wait", "shards", len(gained), "retry", takeoverRetry, "err", err)
		s.clk.AfterFunc(takeoverRetry, func() {
			if s.ctx.Err() == nil {
				s.takeOver(s.ctx, gained)
			}
		})
		return
	}
	in := func(presURI string) bool {
		sh, _, _ := s.o.Cluster.Ownership.Fence(presURI)
		_, ok := gained[sh]
		return ok
	}
	rows := map[dialogKey]WatcherRecord{}
	for _, r := range subs {
		if in(r.PresURI) {
			rows[dialogKey{r.CallID, r.FromTag}] = r
		}
	}
	now := s.clk.Now()
	s.reconcile(in, gained, pubs, rows, now)
	for sh := range gained {
		delete(s.gaining, sh)
		s.ready[sh] = true
	}
	var continued, notified int
	for _, w := range s.subs {
		if w.final || w.fetch || !in(w.presURI) {
			continue
		}
		if r, ok := rows[w.key]; ok && r.ToTag == w.toTag {
			w.cseqRes, w.versionRes = max(w.cseqRes, r.LocalCSeq), max(w.versionRes, r.Version)
			w.notified = r.Notified
		}
		// Above every number the previous owner may have used.
		w.cseq, w.version = max(w.cseq, w.cseqRes), max(w.version, w.versionRes)
		continued++
		if s.currentDigest(w) != w.notified {
			w.touch(now)
			s.kick(w)
			notified++
		}
	}
	for k, pr := range s.pres {
		if !in(k.uri) {
			continue
		}
		for _, p := range pr.pubs {
			if p.etag == "" {
				s.dirtyP[p.id] = p
			}
		}
	}
	s.kickWriter()
	s.log.Info("presence shards taken over", "shards", len(gained), "subscriptions", continued, "notified", notified)
}

// reconcile brings the warm state of the shards gained to the stored
// rows, should the change log have missed some (an instance paused past
// its pruning): a stored subscription or PUBLISH from outside unknown here
// is loaded, a subscription known here for a while whose row is gone is
// forgotten, and the rows that expired while no instance notified for
// their shard are removed (conditional on their stored expiry) under the
// new epoch (s.mu held).
func (s *Server) reconcile(in func(string) bool, gained map[int]int64, pubs []PublicationRecord, rows map[dialogKey]WatcherRecord, now time.Time) {
	fenced := func(presURI string) (int, int64) {
		sh, _, _ := s.o.Cluster.Ownership.Fence(presURI)
		return sh, gained[sh]
	}
	for k, r := range rows {
		if r.Expires <= now.Unix() {
			if w := s.subs[k]; w == nil || !w.expires.After(now) {
				r.Shard, r.Epoch = fenced(r.PresURI)
				r.Expired = true
				s.goneW[k] = r
			}
			continue
		}
		if s.subs[k] == nil {
			s.applyWatcher(r, false, now)
		}
	}
	for _, w := range s.subs {
		if _, ok := rows[w.key]; !ok && in(w.presURI) && !w.final && !w.fetch && now.Sub(w.created) > reconcileAge {
			w.noWrite = true
			s.finish(w)
			s.forget(w)
		}
	}
	for _, r := range pubs {
		if !in(r.PresURI) {
			continue
		}
		if r.Expires != 0 && r.Expires <= now.Unix() {
			id := pubID{presKey{aor.Key(r.PresURI), r.Event}, r.ID}
			if _, dirty := s.dirtyP[id]; !dirty {
				r.Shard, r.Epoch = fenced(r.PresURI)
				r.Expired = true
				s.goneP[id] = r
			}
			continue
		}
		if r.ETag == "" {
			continue
		}
		if _, ok := s.etags[r.ETag]; !ok {
			s.applyPublication(r, false, now)
		}
	}
}

// ShardLost stops notifying for shard: the NOTIFYs in flight are answered
// (or time out) and what is queued is written while the lease allows.
// The subscriptions stay, warm, for a later takeover. (shard.Listener.)
func (s *Server) ShardLost(ctx context.Context, shard int) {
	if s.o.Cluster == nil {
		return
	}
	s.mu.Lock()
	delete(s.ready, shard)
	delete(s.gaining, shard)
	s.handing[shard] = true // written for, no longer sent for
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.handing, shard)
		s.mu.Unlock()
	}()
	deadline := s.clk.Now().Add(s.cfg.RequestTimeout + time.Second)
	for s.inFlightIn(shard) && s.clk.Now().Before(deadline) {
		if !s.sleep(ctx, handOverPoll) {
			break
		}
	}
	if err := s.flush(ctx); err != nil {
		s.log.Warn("presence shard handed over with rows not written", "shard", shard, "err", err)
	}
}

// inFlightIn reports whether a NOTIFY of a subscription of shard awaits
// its reply.
func (s *Server) inFlightIn(shard int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.subs {
		if sh, _, _ := s.o.Cluster.Ownership.Fence(w.presURI); sh == shard && w.inFlight {
			return true
		}
	}
	return false
}
