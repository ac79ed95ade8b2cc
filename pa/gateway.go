package pa

import (
	"context"
)

// Gateway is a presence gateway in process whose presentities' owners
// decide their watchers on the other side (the XMPP gateway: an XMPP
// user answers a subscription request). pa tells it when a SIP watcher
// starts and stops watching the presence of one of its presentities; the
// owner's answer comes back through Authorize or AuthorizeWatcher. With a
// gateway here, the gateway has no need to watch presence.winfo at a
// presence server for the same users.
type Gateway interface {
	// Serves reports whether presURI (an AoR key) is in the gateway's
	// domains, and with an error, why such an address names none of its
	// presentities (pa refuses subscriptions to it with 404).
	Serves(presURI string) (bool, error)
	// WatcherAdded is told that watcher subscribed to presentity's
	// presence (every new subscription: the gateway asks its owner once
	// per pair).
	WatcherAdded(ctx context.Context, presentity, watcher string) error
	// WatcherRemoved is told that watcher's last subscription to
	// presentity's presence ended (not for a refusal by the owner).
	WatcherRemoved(ctx context.Context, presentity, watcher string) error
}

// servedByGateway reports whether presURI is one of the gateway's
// presentities.
func (s *Server) servedByGateway(presURI string) bool {
	if s.o.Gateway == nil {
		return false
	}
	ours, err := s.o.Gateway.Serves(presURI)
	return ours && err == nil
}

// nobodyAtGateway returns why presURI, an address in the gateway's
// domains, names none of its presentities (nil for any other address).
func (s *Server) nobodyAtGateway(presURI string) error {
	if s.o.Gateway == nil {
		return nil
	}
	if ours, err := s.o.Gateway.Serves(presURI); ours {
		return err
	}
	return nil
}

// activeSibling reports whether watcherURI has another live, active
// presence subscription to presURI than w (s.mu held): a new one of a
// gateway presentity inherits the owner's approval of it.
func (s *Server) activeSibling(presURI, watcherURI string, w *watcher) bool {
	pr := s.pres[presKey{presURI, EventPresence}]
	if pr == nil {
		return false
	}
	for x := range pr.watchers {
		if x != w && !x.final && x.watcherURI == watcherURI && x.status == "active" {
			return true
		}
	}
	return false
}

// watchesStill reports whether watcherURI still has a live presence
// subscription to presURI (s.mu held).
func (s *Server) watchesStill(presURI, watcherURI string) bool {
	pr := s.pres[presKey{presURI, EventPresence}]
	if pr == nil {
		return false
	}
	for x := range pr.watchers {
		if !x.final && x.watcherURI == watcherURI {
			return true
		}
	}
	return false
}

// gatewayAdded tells the gateway of a new presence subscription of one of
// its presentities (called without s.mu, from the SUBSCRIBE's handler).
func (s *Server) gatewayAdded(w *watcher) {
	if w.event != EventPresence || w.fetch || !s.servedByGateway(w.presURI) {
		return
	}
	if err := s.o.Gateway.WatcherAdded(s.ctx, w.presURI, w.watcherURI); err != nil {
		s.met.gatewayError()
		s.log.Warn("gateway refused a watcher", "presentity", w.presURI, "watcher", w.watcherURI, "err", err)
	}
}

// gatewayRemoved tells the gateway that w ended, if it was the watcher's
// last presence subscription of one of its presentities (s.mu held: the
// call runs on its own goroutine, within the server's lifetime).
func (s *Server) gatewayRemoved(w *watcher) {
	if w.event != EventPresence || w.fetch || w.reason == "rejected" || s.stopped || !s.servedByGateway(w.presURI) {
		return
	}
	if s.watchesStill(w.presURI, w.watcherURI) {
		return
	}
	pres, watcher := w.presURI, w.watcherURI
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.o.Gateway.WatcherRemoved(s.ctx, pres, watcher); err != nil {
			s.met.gatewayError()
			s.log.Warn("gateway: watcher removal failed", "presentity", pres, "watcher", watcher, "err", err)
		}
	}()
}
