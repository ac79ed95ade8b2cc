package pa

import (
	"sort"
	"time"

	"github.com/puaside/puaside/aor"
)

// PresentityInfo is one publication as listings show it.
type PresentityInfo struct {
	PresURI string    `json:"presentity"`
	Event   string    `json:"event"`
	ID      string    `json:"id"`
	ETag    string    `json:"etag,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
	Sender  string    `json:"sender,omitempty"`
	Size    int       `json:"size"`
	Body    string    `json:"body,omitempty"`
}

// WatcherInfo is one subscription as listings show it.
type WatcherInfo struct {
	PresURI    string    `json:"presentity"`
	WatcherURI string    `json:"watcher"`
	Event      string    `json:"event"`
	Status     string    `json:"status"`
	Contact    string    `json:"contact"`
	RouteSet   []string  `json:"route_set,omitempty"`
	CallID     string    `json:"call_id"`
	FromTag    string    `json:"from_tag"`
	ToTag      string    `json:"to_tag"`
	CSeq       uint32    `json:"cseq"`
	Expires    time.Time `json:"expires"`
	Failures   int       `json:"failures,omitempty"`
}

// Presentities lists the live publications, by presentity, event, id.
func (s *Server) Presentities() []PresentityInfo {
	s.mu.Lock()
	out := []PresentityInfo{}
	for _, pr := range s.pres {
		for _, p := range pr.pubs {
			out = append(out, PresentityInfo{PresURI: p.id.uri, Event: p.id.event, ID: p.id.id, ETag: p.etag,
				Expires: p.expires, Sender: p.sender, Size: len(p.body), Body: string(p.body)})
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
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

// Watchers lists the subscriptions, by presentity, event, watcher.
func (s *Server) Watchers() []WatcherInfo {
	s.mu.Lock()
	out := []WatcherInfo{}
	for _, w := range s.subs {
		if w.final {
			continue
		}
		out = append(out, WatcherInfo{PresURI: w.presURI, WatcherURI: w.watcherURI, Event: w.event, Status: w.status,
			Contact: w.contact, RouteSet: w.routeSet, CallID: w.key.callID, FromTag: w.key.fromTag, ToTag: w.toTag, CSeq: w.cseq,
			Expires: w.expires, Failures: w.failures})
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.PresURI != b.PresURI {
			return a.PresURI < b.PresURI
		}
		if a.Event != b.Event {
			return a.Event < b.Event
		}
		if a.WatcherURI != b.WatcherURI {
			return a.WatcherURI < b.WatcherURI
		}
		return a.CallID < b.CallID
	})
	return out
}

// DeletePresentity removes every publication of presURI (of event, or of
// every event when event is empty); it reports how many there were.
func (s *Server) DeletePresentity(presURI, event string) int {
	presURI = aor.Key(presURI)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, pr := range s.pres {
		if k.uri != presURI || event != "" && k.event != event {
			continue
		}
		for _, p := range append([]*publication(nil), pr.pubs...) {
			s.drop(p)
			n++
		}
	}
	return n
}

// DeleteWatcher ends the subscription with Call-ID callID (a final
// NOTIFY terminated;reason=deactivated is sent); false when unknown.
func (s *Server) DeleteWatcher(callID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	found := false
	for _, w := range s.subs {
		if w.key.callID == callID && !w.final {
			s.terminate(w, "deactivated")
			found = true
		}
	}
	return found
}

func (s *Server) presentityCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pres)
}

func (s *Server) subscriptionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// AuthorizeWatcher applies Authorize to every subscription of watcherURI
// to presURI (an XMPP user's answer through the gateway names them, not
// a dialog); it reports how many there were.
func (s *Server) AuthorizeWatcher(presURI, watcherURI string, allow bool) int {
	presURI, watcherURI = aor.Key(presURI), aor.Key(watcherURI)
	s.mu.Lock()
	var ids []string
	for _, w := range s.subs {
		if !w.final && w.presURI == presURI && w.watcherURI == watcherURI {
			ids = append(ids, w.key.callID)
		}
	}
	s.mu.Unlock()
	for _, id := range ids {
		s.Authorize(id, allow)
	}
	return len(ids)
}

// Authorize decides a pending subscription (the owner's answer, RFC 3857
// §3.2): allow makes the subscription with Call-ID callID active and
// notifies its state at once; deny ends it (terminated;reason=rejected).
// It reports whether such a subscription exists. The decision holds for
// the subscription's life, refreshes included; a new subscription of the
// same watcher is decided by the policy again.
func (s *Server) Authorize(callID string, allow bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	found := false
	for _, w := range s.subs {
		if w.key.callID != callID || w.final {
			continue
		}
		found = true
		if !allow {
			s.terminate(w, "rejected")
			continue
		}
		if w.status == "active" {
			continue
		}
		s.activate(w)
	}
	return found
}

// activate makes a pending subscription active and notifies its state
// (s.mu held).
func (s *Server) activate(w *watcher) {
	w.status, w.reason = "active", ""
	s.markWatcher(w)
	w.touch(s.clk.Now())
	s.kick(w)
	if w.event == EventPresence {
		s.watchersChanged(w.presURI)
	}
	s.tellWatchers(w.presURI)
}
