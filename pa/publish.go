package pa

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/aor"
	"github.com/puaside/puaside/pua"
)

// Errors of in-process publishing.
var (
	// ErrStopped is returned after Stop.
	ErrStopped = errors.New("pa: stopped")
	// ErrBadEvent is returned for an event package pa does not serve.
	ErrBadEvent = errors.New("pa: event package not served")
	// ErrBadBody is returned for a body that does not parse.
	ErrBadBody = errors.New("pa: bad publication body")
)

// Publisher is pa's in-process publishing entry point, the contract the
// trackers (usrloc, dialoginfo, bla), the management API and gateways
// publish through: the same two methods as the pua engine's, so a tracker
// is wired to either. There is no ETag and no round trip: a publication is
// accepted (or refused with an error) at once, written to the store within
// milliseconds, and its watchers are notified. *Server implements it.
type Publisher interface {
	// Publish creates or replaces the publication req.Key with req.Body.
	Publish(req pua.PublishRequest) error
	// Remove withdraws a publication; an unknown one is no error.
	Remove(key pua.Key) error
}

var _ Publisher = (*Server)(nil)

// Publish implements Publisher. The publication lives until Remove (or
// req.Lifetime, when set). A Sender header in req.ExtraHeaders is kept.
func (s *Server) Publish(req pua.PublishRequest) error {
	ev, ok := normalizeEvent(req.Event)
	if !ok || ev == EventWinfo || ev == EventMA {
		s.met.publication("inprocess", "bad_event")
		return fmt.Errorf("%w: %q", ErrBadEvent, req.Event)
	}
	presURI := aor.Key(req.PresURI)
	p := &publication{id: pubID{presKey{presURI, ev}, req.ID}}
	if err := parseBody(ev, req.Body, s.cfg.MaxBodySize, p); err != nil {
		s.met.publication("inprocess", "bad_body")
		s.log.Warn("publication refused: bad body", "presentity", presURI, "event", ev, "id", req.ID, "err", err)
		return fmt.Errorf("%w: %w", ErrBadBody, err)
	}
	p.body = append([]byte(nil), req.Body...)
	p.flag = req.Flag
	for _, h := range req.ExtraHeaders {
		if strings.EqualFold(h.Name, "Sender") {
			p.sender = h.Value
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	now := s.clk.Now()
	if req.Lifetime > 0 {
		p.expires = now.Add(req.Lifetime)
	}
	s.put(p, now)
	s.met.publication("inprocess", "ok")
	return nil
}

// Remove implements Publisher.
func (s *Server) Remove(key pua.Key) error {
	ev, ok := normalizeEvent(key.Event)
	if !ok {
		return fmt.Errorf("%w: %q", ErrBadEvent, key.Event)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if pr := s.pres[presKey{aor.Key(key.PresURI), ev}]; pr != nil {
		for _, p := range pr.pubs {
			if p.id.id == key.ID {
				s.drop(p)
				break
			}
		}
	}
	return nil
}

// Claim keeps a publication loaded from the store: its owner still
// wants it. It reports whether pa holds it (usrloc's, dialoginfo's and
// bla's Claimer, as the pua engine implements it).
func (s *Server) Claim(key pua.Key) bool {
	ev, ok := normalizeEvent(key.Event)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := pubID{presKey{aor.Key(key.PresURI), ev}, key.ID}
	delete(s.unclaimed, id)
	if pr := s.pres[id.presKey]; pr != nil {
		for _, p := range pr.pubs {
			if p.id == id {
				return true
			}
		}
	}
	return false
}

// ClaimsDone says the owner of flag has claimed what it wants: its loaded
// in-process publications not claimed are removed (a tracker that forgot
// them in a crash would never remove them). Publications of the
// management API (pua.FlagRPCPublish) and from outside are never swept.
func (s *Server) ClaimsDone(flag int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, f := range s.unclaimed {
		if f != flag {
			continue
		}
		delete(s.unclaimed, id)
		if pr := s.pres[id.presKey]; pr != nil {
			for _, p := range pr.pubs {
				if p.id == id {
					s.log.Info("unclaimed publication removed", "presentity", id.uri, "event", id.event, "id", id.id, "flag", flag)
					s.drop(p)
					break
				}
			}
		}
	}
}

// Publications lists the live publications as the pua engine does, so
// that a tracker compares its state with pa's at start (usrloc's
// PublicationLister).
func (s *Server) Publications() []pua.PublicationInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []pua.PublicationInfo
	for _, pr := range s.pres {
		for _, p := range pr.pubs {
			info := pua.PublicationInfo{
				Key: pua.Key{PresURI: p.id.uri, Event: p.id.event, ID: p.id.id}, Flag: p.flag,
				ContentType: contentType(p.id.event), Body: p.body, ETag: p.etag,
				State: pua.StateActive, LastStatus: 200, LastReason: "OK", Expires: p.expires,
			}
			if p.sender != "" {
				info.ExtraHeaders = []pua.Header{{Name: "Sender", Value: p.sender}}
			}
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Key, out[j].Key
		if a.PresURI != b.PresURI {
			return a.PresURI < b.PresURI
		}
		if a.Event != b.Event {
			return a.Event < b.Event
		}
		return a.ID < b.ID
	})
	return out
}

// put stores p, replacing the publication of the same id (s.mu held).
func (s *Server) put(p *publication, now time.Time) {
	s.seq++
	p.seq, p.received = s.seq, now
	delete(s.goneP, p.id)
	delete(s.unclaimed, p.id)
	s.dirtyP[p.id] = p
	s.kickWriter()
	s.place(p, now)
}

// place puts p in its presentity, replacing the publication of the same
// id, and notifies the watchers (s.mu held).
func (s *Server) place(p *publication, now time.Time) {
	pr := s.presentity(p.id.presKey)
	for i, old := range pr.pubs {
		if old.id == p.id {
			s.pubSched.Cancel(old)
			if old.etag != "" {
				delete(s.etags, old.etag)
			}
			pr.pubs = append(pr.pubs[:i], pr.pubs[i+1:]...)
			break
		}
	}
	pr.pubs = append(pr.pubs, p)
	if p.etag != "" {
		s.etags[p.etag] = p
	}
	if !p.expires.IsZero() {
		s.pubSched.Schedule(p, p.expires)
	}
	s.changed(pr, now)
}

// drop removes p (s.mu held).
func (s *Server) drop(p *publication) {
	pr := s.pres[p.id.presKey]
	if pr == nil {
		return
	}
	for i, x := range pr.pubs {
		if x == p {
			pr.pubs = append(pr.pubs[:i], pr.pubs[i+1:]...)
			s.pubSched.Cancel(p)
			if p.etag != "" {
				delete(s.etags, p.etag)
			}
			delete(s.dirtyP, p.id)
			s.goneP[p.id] = p.record()
			s.kickWriter()
			s.changed(pr, s.clk.Now())
			s.gc(pr)
			return
		}
	}
}

// changed notifies every watcher of pr (s.mu held).
func (s *Server) changed(pr *presentity, now time.Time) {
	pr.composed = nil
	for w := range pr.watchers {
		w.touch(now)
		s.kick(w)
	}
}

// firePublications removes expired publications.
func (s *Server) firePublications(now time.Time, due []*publication) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range due {
		if !p.expires.IsZero() && !p.expires.After(now) {
			s.drop(p)
			// Several instances: the owner of the shard writes the
			// removal, the others forget it.
			if !s.sends(p.id.uri) {
				delete(s.goneP, p.id)
			} else {
				s.fencePubGone(p.id)
			}
		}
	}
}

// onPublish handles a PUBLISH (RFC 3903 §6).
func (s *Server) onPublish(req *sip.Request, tx sip.ServerTransaction) {
	ev, ok := normalizeEvent(headerValue(req, "Event"))
	if !ok || ev == EventWinfo || ev == EventMA {
		s.met.publication("sip", "489")
		s.reply(req, tx, 489, "Bad Event", sip.NewHeader("Allow-Events", "presence, dialog, dialog;sla, message-summary"))
		return
	}
	exp, ok := expiresOf(req)
	if !ok {
		s.met.publication("sip", "400")
		s.reply(req, tx, 400, "Bad Expires")
		return
	}
	if why := insecureSIPS(req); why != "" {
		s.met.publication("sip", "403")
		s.reply(req, tx, 403, why)
		return
	}
	d, tooShort := s.grant(exp)
	if tooShort {
		s.met.publication("sip", "423")
		s.reply(req, tx, 423, "Interval Too Brief", s.minExpiresHeader())
		return
	}
	to := req.To()
	if to == nil {
		s.met.publication("sip", "400")
		s.reply(req, tx, 400, "Missing To")
		return
	}
	presURI := aor.KeyOfURI(&to.Address)
	body := req.Body()
	ifMatch := headerValue(req, "SIP-If-Match")
	if len(body) > 0 {
		if ct := req.ContentType(); ct == nil || !strings.EqualFold(strings.TrimSpace(strings.Split(ct.Value(), ";")[0]), contentType(ev)) {
			s.met.publication("sip", "415")
			s.reply(req, tx, 415, "Unsupported Media Type", sip.NewHeader("Accept", contentType(ev)))
			return
		}
		if len(body) > s.cfg.MaxBodySize {
			s.met.publication("sip", "413")
			s.reply(req, tx, 413, "Request Entity Too Large")
			return
		}
	}
	np := &publication{id: pubID{presKey{presURI, ev}, ""}}
	if len(body) > 0 {
		if err := parseBody(ev, body, s.cfg.MaxBodySize, np); err != nil {
			s.met.publication("sip", "400")
			s.log.Warn("PUBLISH refused: bad body", "presentity", presURI, "event", ev, "err", err)
			s.reply(req, tx, 400, "Bad Body")
			return
		}
		np.body = append([]byte(nil), body...)
	}
	if h := req.GetHeader("Sender"); h != nil {
		np.sender = h.Value()
	}
	now := s.clk.Now()
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		s.reply(req, tx, 503, "Service Unavailable")
		return
	}
	var old *publication
	if ifMatch != "" {
		old = s.etags[ifMatch]
		if old == nil || old.id.presKey != np.id.presKey {
			s.mu.Unlock()
			s.met.publication("sip", "412")
			s.reply(req, tx, 412, "Conditional Request Failed")
			return
		}
	} else if len(body) == 0 {
		s.mu.Unlock()
		s.met.publication("sip", "400")
		s.reply(req, tx, 400, "Missing Body")
		return
	}
	if d == 0 {
		if old != nil {
			s.drop(old)
		}
		s.mu.Unlock()
		s.met.publication("sip", "200")
		s.reply(req, tx, 200, "OK", sip.NewHeader("Expires", "0"))
		return
	}
	if old != nil {
		np.id.id = old.id.id
		if len(body) == 0 { // refresh
			np.body, np.pidf, np.dialog, np.sender = old.body, old.pidf, old.dialog, old.sender
		}
	} else {
		np.id.id = "x" + sip.GenerateTagN(12)
	}
	np.etag = sip.GenerateTagN(20)
	np.expires = now.Add(d)
	if old != nil && len(body) == 0 {
		// A refresh changes no state: keep the order, tell nobody.
		s.pubSched.Cancel(old)
		delete(s.etags, old.etag)
		old.etag, old.expires = np.etag, np.expires
		s.etags[old.etag] = old
		s.pubSched.Schedule(old, old.expires)
		s.dirtyP[old.id] = old
		s.kickWriter()
	} else {
		s.put(np, now)
	}
	wait := s.waiting
	s.mu.Unlock()
	if err := s.await(wait); err != nil {
		s.log.Warn("publication not stored", "presentity", presURI, "err", err)
	}
	s.met.publication("sip", "200")
	s.reply(req, tx, 200, "OK", sip.NewHeader("SIP-ETag", np.etag), sip.NewHeader("Expires", strconv.Itoa(int(d/time.Second))))
}
