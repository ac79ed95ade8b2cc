package pa

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/puaside/puaside/aor"
	"github.com/puaside/puaside/pua"
)

// groupDelay is how long the writer gathers changes into one transaction.
const groupDelay = 5 * time.Millisecond

// markWatcher queues w for the next write and returns that write (s.mu held).
func (s *Server) markWatcher(w *watcher) *flushWait {
	if w.fetch || w.final {
		return nil
	}
	delete(s.goneW, w.key)
	s.dirtyW[w.key] = w
	s.kickWriter()
	return s.waiting
}

// kickWriter wakes the writer (s.mu held).
func (s *Server) kickWriter() {
	select {
	case s.kickCh <- struct{}{}:
	default:
	}
}

// writer writes the queued changes, one batch at a time.
func (s *Server) writer() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.kickCh:
		}
		time.Sleep(groupDelay)
		_ = s.flush(s.ctx)
	}
}

// flush writes what is queued now and completes its waiters. Records the
// store refused by the epoch guard (several instances) are not queued
// again; the waiters learn of the refusal, flush's caller does not (the
// rest is written).
func (s *Server) flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	var b Batch
	for _, w := range s.dirtyW {
		b.Watchers = append(b.Watchers, w.record())
	}
	for _, r := range s.goneW {
		b.RemovedWatchers = append(b.RemovedWatchers, r)
	}
	for _, p := range s.dirtyP {
		b.Publications = append(b.Publications, p.record())
	}
	for _, r := range s.goneP {
		b.RemovedPublications = append(b.RemovedPublications, r)
	}
	if s.o.Cluster != nil {
		s.fenceBatch(&b)
	}
	clear(s.dirtyW)
	clear(s.goneW)
	clear(s.dirtyP)
	clear(s.goneP)
	clear(s.notifiedW)
	wait := s.waiting
	s.waiting = &flushWait{done: make(chan struct{})}
	s.mu.Unlock()
	var err, refused error
	if s.o.Store != nil && !b.Empty() {
		var stale *pua.StaleEpochError
		err = s.o.Store.ApplyPresence(context.WithoutCancel(ctx), b)
		switch {
		case errors.As(err, &stale):
			// The rest is written; the refused rows belong to the new owner.
			refused, err = fmt.Errorf("pa: store: %w", err), nil
			s.log.Warn("presence rows refused, their shards have a new owner", "shards", stale.Shards, "refused", stale.Refused)
		case err != nil:
			err = fmt.Errorf("pa: store: %w", err)
			s.met.storeError()
			s.log.Error("presence state not stored; queued again", "err", err)
			s.requeue(b)
		}
	}
	wait.err = cmp.Or(err, refused)
	close(wait.done)
	return err
}

// requeue puts a failed batch back, unless newer changes replaced it.
func (s *Server) requeue(b Batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range b.Watchers {
		k := dialogKey{r.CallID, r.FromTag}
		if w := s.subs[k]; w != nil && !w.final {
			if _, ok := s.dirtyW[k]; !ok {
				s.dirtyW[k] = w
			}
		}
	}
	for _, r := range b.RemovedWatchers {
		k := dialogKey{r.CallID, r.FromTag}
		if _, ok := s.dirtyW[k]; !ok {
			s.goneW[k] = r
		}
	}
	for _, r := range b.Publications {
		id := pubID{presKey{r.PresURI, r.Event}, r.ID}
		if pr := s.pres[id.presKey]; pr != nil {
			for _, p := range pr.pubs {
				if p.id == id {
					if _, ok := s.dirtyP[id]; !ok {
						s.dirtyP[id] = p
					}
				}
			}
		}
	}
	for _, r := range b.RemovedPublications {
		id := pubID{presKey{r.PresURI, r.Event}, r.ID}
		if _, ok := s.dirtyP[id]; !ok {
			s.goneP[id] = r
		}
	}
	for _, r := range b.Notified {
		k := dialogKey{r.CallID, r.FromTag}
		if w := s.subs[k]; w != nil && !w.final {
			s.notifiedW[k] = w
		}
	}
	s.kickWriter()
}

// watcherFromRecord is a stored subscription continued above its
// reserved CSeq and version.
func watcherFromRecord(r WatcherRecord, ev string, now time.Time) *watcher {
	w := &watcher{
		key: dialogKey{r.CallID, r.FromTag}, toTag: r.ToTag, presURI: r.PresURI, watcherURI: r.WatcherURI, event: ev, eventID: r.EventID,
		contact: r.Contact, routeSet: r.RouteSet, localContact: r.LocalContact, userAgent: r.UserAgent,
		remoteCSeq: r.RemoteCSeq, cseq: r.LocalCSeq, cseqRes: r.LocalCSeq,
		version: r.Version, versionRes: r.Version,
		expires: time.Unix(r.Expires, 0), status: r.Status, reason: r.Reason, created: now, notified: r.Notified,
	}
	if w.status == "" {
		w.status = "active"
	}
	return w
}

// publicationFromRecord is a stored publication, parsed; nil with the
// reason when its body or event is not served.
func (s *Server) publicationFromRecord(r PublicationRecord) (*publication, error) {
	id := pubID{presKey{aor.Key(r.PresURI), r.Event}, r.ID}
	p := &publication{id: id, etag: r.ETag, body: r.Body, sender: r.Sender, flag: r.Flag,
		received: time.Unix(r.Received, 0), seq: r.Seq}
	if r.Expires != 0 {
		p.expires = time.Unix(r.Expires, 0)
	}
	if _, ok := normalizeEvent(r.Event); !ok {
		return nil, fmt.Errorf("event %q not served", r.Event)
	}
	if err := parseBody(r.Event, r.Body, s.cfg.MaxBodySize, p); err != nil {
		return nil, err
	}
	return p, nil
}

// restore rebuilds the state from the store: expired rows are dropped
// (and deleted), every subscription continues above its reserved CSeq.
// The watchers whose state changed with a dropped row (a publication that
// expired while the server was down, a presence subscription gone from a
// presence.winfo list) are marked to be notified once Start is done;
// the others are told their next change.
func (s *Server) restore(pubs []PublicationRecord, subs []WatcherRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clk.Now()
	changed := map[presKey]bool{}
	sort.Slice(pubs, func(i, j int) bool { return pubs[i].Seq < pubs[j].Seq })
	for _, r := range pubs {
		id := pubID{presKey{aor.Key(r.PresURI), r.Event}, r.ID}
		if r.Expires != 0 && r.Expires <= now.Unix() {
			// Several instances: another may have refreshed it meanwhile.
			r.Expired = s.o.Cluster != nil
			s.goneP[id] = r
			// One instance: the watchers are told. Several: the change log
			// and the shard's takeover tell them what holds.
			changed[id.presKey] = s.o.Cluster == nil
			continue
		}
		if _, ok := normalizeEvent(r.Event); !ok {
			s.goneP[id] = r
			continue
		}
		p, err := s.publicationFromRecord(r)
		if err != nil {
			s.log.Warn("stored publication dropped: bad body", "presentity", r.PresURI, "event", r.Event, "err", err)
			s.goneP[id] = r
			changed[id.presKey] = true
			continue
		}
		s.seq = max(s.seq, r.Seq)
		if p.etag == "" && p.flag != 0 && p.flag != pua.FlagRPCPublish {
			s.unclaimed[id] = p.flag
		}
		pr := s.presentity(id.presKey)
		pr.pubs = append(pr.pubs, p)
		if p.etag != "" {
			s.etags[p.etag] = p
		}
		if !p.expires.IsZero() {
			s.pubSched.Schedule(p, p.expires)
		}
	}
	for _, r := range subs {
		k := dialogKey{r.CallID, r.FromTag}
		ev, ok := normalizeEvent(r.Event)
		if !ok || r.Expires <= now.Unix() {
			r.Expired = ok && s.o.Cluster != nil
			s.goneW[k] = r
			if ev == EventPresence {
				changed[presKey{aor.Key(r.PresURI), EventWinfo}] = true
			}
			if ok && s.o.Cluster == nil && r.Expires > now.Add(-s.cfg.MaxExpires).Unix() {
				// Ended within the longest lease: its watcher may still be
				// there to be told (an older one has long given up).
				s.expiredWhileDown(r, ev, now)
			}
			continue
		}
		s.attach(watcherFromRecord(r, ev, now))
	}
	for _, w := range s.subs {
		// attach marks the presence.winfo watchers of every restored
		// presence subscription: only a change is told.
		w.dirty, w.changedAt = w.final || changed[w.pres.key], time.Time{}
		if w.dirty {
			w.touch(now)
		}
	}
	if len(s.goneP)+len(s.goneW) > 0 {
		s.kickWriter()
	}
}

// expiredWhileDown keeps the subscription r, which expired while the
// server was down (its row is being removed), for its final NOTIFY
// terminated;reason=timeout only, as if it had expired running (s.mu
// held). With several instances another instance may have refreshed it:
// such rows are only removed, conditionally.
func (s *Server) expiredWhileDown(r WatcherRecord, ev string, now time.Time) {
	w := watcherFromRecord(r, ev, now)
	if s.subs[w.key] != nil {
		return // the dialog's live subscription is loaded already
	}
	w.final, w.reason = true, "timeout"
	w.pres = s.presentity(presKey{w.presURI, winfoOr(ev)})
	s.subs[w.key] = w
}

// notifyPending sends the NOTIFYs that waited for Start: the changes found
// while loading the state, or made before the server was running.
func (s *Server) notifyPending() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.subs {
		if w.dirty && !w.inFlight {
			s.kick(w)
		}
	}
}
