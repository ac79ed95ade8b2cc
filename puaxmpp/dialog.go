package puaxmpp

import (
	"context"

	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/pua"
)

// eventDialog is the event package of the call state subscriptions.
const eventDialog = "dialog"

// MaxCallDialogs bounds the dialogs the gateway tracks per SIP user and
// XMPP watcher; the dialogs of a document beyond it are not tracked.
const MaxCallDialogs = 32

// StatusOnThePhone is the <status/> of a SIP user in a call.
const StatusOnThePhone = "On the phone"

// dialogKey is the call state subscription held beside the presence
// subscription key (same SIP user, same XMPP watcher, same flag).
func dialogKey(presence pua.SubKey) pua.SubKey {
	k := presence
	k.Event = eventDialog
	return k
}

// presenceKeyOf is the presence subscription a call state subscription
// goes with.
func presenceKeyOf(dialog pua.SubKey) pua.SubKey {
	k := dialog
	k.Event = eventPresence
	return k
}

// ensureDialog subscribes to the dialog state of the SIP user of a
// presence subscription, once: its calls turn the XMPP user's view of the
// SIP user to away "On the phone". A notifier that does not serve the
// dialog event only leaves the presence as it is.
func (g *Gateway) ensureDialog(presence pua.SubKey) {
	k := dialogKey(presence)
	g.mu.Lock()
	if g.dialogs[k] != nil {
		g.mu.Unlock()
		return
	}
	g.dialogs[k] = map[string]string{}
	g.mu.Unlock()
	if err := g.opts.Subscriber.Subscribe(pua.SubscribeRequest{SubKey: k, Expires: g.cfg.DefaultExpires, Flag: pua.FlagXMPPSubscribe}); err != nil {
		g.mu.Lock()
		delete(g.dialogs, k)
		g.mu.Unlock()
		g.refuse("dialog_subscribe_failed", err, "sip", k.PresURI, "xmpp", k.WatcherURI)
	}
}

// dropDialog ends the call state subscription of a presence subscription.
func (g *Gateway) dropDialog(presence pua.SubKey) {
	k := dialogKey(presence)
	g.mu.Lock()
	_, had := g.dialogs[k]
	delete(g.dialogs, k)
	g.mu.Unlock()
	if !had {
		return
	}
	if err := g.opts.Subscriber.Unsubscribe(k); err != nil {
		g.refuse("unsubscribe_failed", err)
	}
}

// applyDialogDocLocked updates the tracked dialogs of a call state subscription
// from one dialog-info document (a full one replaces them, a partial one
// is merged) and reports whether the SIP user is on the phone before and
// after. Must hold mu.
func (g *Gateway) applyDialogDocLocked(k pua.SubKey, doc *dialogdoc.Document) (before, after bool) {
	ds := g.dialogs[k]
	if ds == nil {
		ds = map[string]string{}
		g.dialogs[k] = ds
	}
	before = onThePhone(ds)
	if !doc.Partial() {
		clear(ds)
	}
	for _, d := range doc.Dialogs {
		if d.State == "terminated" {
			delete(ds, d.ID)
			continue
		}
		if _, ok := ds[d.ID]; !ok && len(ds) >= MaxCallDialogs {
			continue
		}
		ds[d.ID] = d.State
	}
	return before, onThePhone(ds)
}

// onThePhone reports whether one of the dialogs is confirmed. An early
// dialog (ringing) does not count: the user is not talking yet, and a call
// that is never answered would show them away for nothing.
func onThePhone(ds map[string]string) bool {
	for _, s := range ds {
		if s == "confirmed" {
			return true
		}
	}
	return false
}

// withCalls is the presence an XMPP watcher is sent for the SIP user of a
// presence subscription: an available one becomes away "On the phone"
// while a dialog of the SIP user is confirmed; otherwise it is the
// presence as the PIDF gives it.
func (g *Gateway) withCalls(presence pua.SubKey, p Presence) Presence {
	g.mu.Lock()
	busy := onThePhone(g.dialogs[dialogKey(presence)])
	g.mu.Unlock()
	if busy && p.Type == "" {
		p.Show = ShowAway
		p.Status = StatusOnThePhone
	}
	return p
}

// handleDialogNotify takes a NOTIFY of a call state subscription: when the
// SIP user's being on the phone changes, the XMPP watcher is sent the
// presence again (once the presence subscription is active and notified).
func (g *Gateway) handleDialogNotify(ctx context.Context, n pua.Notify, from, to string) {
	pk := presenceKeyOf(n.Key)
	g.count("dialog_notify")
	var before, after bool
	switch {
	case n.State == "terminated":
		g.mu.Lock()
		before = onThePhone(g.dialogs[n.Key])
		_, ours := g.dialogs[n.Key]
		delete(g.dialogs, n.Key)
		wanted := g.wanted[pk]
		g.mu.Unlock()
		switch n.Reason {
		case "rejected", "noresource", "giveup", "invariant":
		default:
			if ours && wanted {
				g.ensureDialog(pk)
			}
		}
	case len(n.Body) == 0:
		return
	default:
		doc, err := dialogdoc.Parse(n.Body, 0)
		if err != nil {
			g.refuse("bad_dialog", err, "aor", n.Key.PresURI)
			return
		}
		g.mu.Lock()
		if _, ours := g.dialogs[n.Key]; !ours {
			g.mu.Unlock()
			return // unsubscribed meanwhile
		}
		before, after = g.applyDialogDocLocked(n.Key, doc)
		g.mu.Unlock()
	}
	if before == after {
		return
	}
	g.mu.Lock()
	approved := g.approved[pk]
	g.mu.Unlock()
	info, ok := g.opts.Subscriber.Subscription(pk)
	if !approved || !ok || info.LastNotify.IsZero() {
		return // the presence NOTIFY to come carries the call state
	}
	p, err := PresenceOfPIDF(info.LastNotifyDoc)
	if err != nil {
		g.refuse("bad_pidf", err, "aor", pk.PresURI)
		return
	}
	g.count("on_the_phone_changed")
	_ = g.send(ctx, stanzaOf(from, to, g.withCalls(pk, p)))
}

// restoreDialog takes back a call state subscription of an earlier run,
// with the dialogs of its last NOTIFY.
func (g *Gateway) restoreDialog(s pua.SubscriptionInfo) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.dialogs[s.Key] = map[string]string{}
	if len(s.LastNotifyDoc) == 0 {
		return
	}
	if doc, err := dialogdoc.Parse(s.LastNotifyDoc, 0); err == nil {
		g.applyDialogDocLocked(s.Key, doc)
	}
}
