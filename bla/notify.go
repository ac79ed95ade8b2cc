package bla

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"strings"
	"time"

	"github.com/puaside/puaside/aor"
	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/pua"
)

// HandleNotify is the pua.NotifyHandler for pua.FlagBLASubscribe: it relays
// a phone's NOTIFY as a PUBLISH of the line's state, or refuses it with a
// precise code (400 malformed, 413 too large, 415 wrong content type, 409
// seize conflict, 481 unknown line).
func (m *Manager) HandleNotify(ctx context.Context, n pua.Notify) (code int, reason string) {
	lineURI, id := n.Key.PresURI, n.Key.ID
	st := strings.ToLower(strings.TrimSpace(n.State))
	switch st {
	case "terminated":
		return m.terminated(ctx, n)
	case "active", "pending":
	default:
		return m.reject(ctx, n, 400, "Bad Subscription-State", "bad_state", fmt.Errorf("subscription state %q", n.State))
	}
	if len(bytes.TrimSpace(n.Body)) == 0 {
		if st == "pending" {
			return 200, "OK" // no state to show yet
		}
		return m.reject(ctx, n, 400, "Empty dialog-info body", "empty_body", dialogdoc.ErrEmptyBody)
	}
	if len(n.Body) > m.cfg.MaxBodySize {
		return m.reject(ctx, n, 413, "Request Entity Too Large", "too_large",
			fmt.Errorf("%w: %d bytes, limit %d", dialogdoc.ErrTooLarge, len(n.Body), m.cfg.MaxBodySize))
	}
	if mt, _, err := mime.ParseMediaType(n.ContentType); err != nil || mt != ContentType {
		return m.reject(ctx, n, 415, "Unsupported Media Type", "content_type",
			fmt.Errorf("content type %q, want %s", n.ContentType, ContentType))
	}
	doc, err := dialogdoc.Parse(n.Body, m.cfg.MaxBodySize)
	if err != nil {
		what := "malformed"
		if errors.Is(err, dialogdoc.ErrDoctype) {
			what = "doctype"
		}
		return m.reject(ctx, n, 400, "Malformed dialog-info body", what, err)
	}
	for i, d := range doc.Dialogs {
		// An id the phone took from a composed document is its own again.
		if own := unqualifyID(id, d.ID); own != d.ID {
			doc.Dialogs[i] = d.WithID(own)
		}
	}
	expires := time.Duration(n.Expires) * time.Second
	if n.Expires <= 0 {
		expires = m.cfg.SubscribeExpires
		m.m.Tracker("bla", "missing_expires")
		m.log.LogAttrs(ctx, slog.LevelInfo, "bla: NOTIFY without Subscription-State expires, using subscribe_expires",
			slog.String("aor", lineURI), slog.String("call_id", headerOf(n, "Call-ID")), slog.Duration("expires", expires))
	}

	ln, err := m.lockLine(ctx, lineURI)
	defer m.mu.Unlock()
	if err != nil {
		return m.reject(ctx, n, 500, "Server Internal Error", "lines_not_loaded", err)
	}
	if ln == nil {
		return m.reject(ctx, n, 481, "Subscription Does Not Exist", "unknown_line", ErrUnknownLine)
	}
	p := ln.phones[id]
	sender := aor.AddrSpec(n.Contact)
	if sender == "" && p != nil {
		sender = p.contact
	}
	if sender == "" {
		return m.reject(ctx, n, 400, "Missing Contact", "no_contact", errors.New("NOTIFY without Contact"))
	}
	if p == nil && ln.contactsKnown {
		// A phone reconcile dropped (unregistered, or no longer a
		// member): its subscription is being ended, and a late NOTIFY of
		// it must not bring its dialogs back onto the line.
		return m.reject(ctx, n, 481, "Subscription Does Not Exist", "phone_gone", errors.New("NOTIFY of a phone no longer on the line"))
	}
	callID := headerOf(n, "Call-ID")
	if p != nil && p.subCallID != callID {
		p.subCallID = callID // a new subscription dialog: a new sequence
		p.haveVersion, p.haveBase = false, false
	}
	if p != nil && p.haveVersion && doc.HasVersion && doc.Version <= p.version {
		m.m.Tracker("bla", "ignored_old_version")
		m.log.LogAttrs(ctx, slog.LevelInfo, "bla: NOTIFY ignored, dialog-info version not newer",
			slog.String("aor", lineURI), slog.String("call_id", callID), slog.String("contact", sender),
			slog.Uint64("version", doc.Version), slog.Uint64("last_version", p.version))
		return 200, "OK"
	}
	gap := false
	var known map[string]dialogdoc.Dialog
	if p != nil && p.haveBase {
		known = p.dialogs
		gap = doc.State == dialogdoc.DocPartial && p.haveVersion && doc.HasVersion && doc.Version > p.version+1
	} else if doc.State == dialogdoc.DocPartial {
		// A partial document with nothing to update (the first of a
		// subscription restored after a restart): the phone's other
		// dialogs are unknown until its full state is asked for.
		gap = true
	}
	var refused map[string]bool
	if m.cfg.Arbitration {
		for _, c := range ln.conflicts(id, doc, m.now(), m.cfg.SeizeTimeout) {
			m.log.LogAttrs(ctx, slog.LevelInfo, "bla: seize refused, line index in use",
				slog.String("aor", lineURI), slog.String("call_id", callID),
				slog.String("contact", sender), slog.String("line_id", c.dialog.LineID),
				slog.String("dialog", c.dialog.ID), slog.String("holder", c.holder))
			if refused == nil {
				refused = map[string]bool{}
			}
			refused[c.dialog.ID] = true
		}
		if refused != nil {
			// Only the refused seizes are left out: the document's other
			// dialogs (the hang-up of another call) still apply.
			m.m.Tracker("bla", "seize_conflict")
			doc.Dialogs = withoutRefused(doc, refused, known)
		}
	}
	// The line's document is composed from every phone's latest state,
	// this phone's after this document (RFC 4235 §4.1: a partial document
	// updates the state it follows).
	ns := doc.Namespaces()
	if known != nil && doc.State == dialogdoc.DocPartial {
		ns = mergeNS(p.namespaces, ns)
	}
	ch := &change{phoneID: id, dialogs: nextDialogs(known, doc), namespaces: ns}
	shown := map[string]bool{}
	for _, d := range doc.Dialogs {
		if _, live := ch.dialogs[d.ID]; d.State == "terminated" && !live && !shown[d.ID] {
			shown[d.ID] = true
			ch.ended = append(ch.ended, d) // shown once, terminated
		}
	}
	var onLine map[string]dialogdoc.Dialog
	if p != nil {
		onLine = p.dialogs
	}
	if refused != nil && !ch.changes(onLine) {
		// Nothing but the refused seize: the line stays as it is.
		if p != nil && doc.HasVersion {
			// Refused, but received: not a gap before the next one.
			p.version, p.haveVersion = doc.Version, true
		}
		return 409, "Conflict"
	}
	if doc.State == dialogdoc.DocPartial {
		m.m.Tracker("bla", "merged_partial")
	}
	if err := m.publishLine(ctx, ln, ch, sender, expires); err != nil {
		if errors.Is(err, dialogdoc.ErrTooLarge) {
			return m.reject(ctx, n, 413, "Request Entity Too Large", "composed_too_large", err)
		}
		m.m.Tracker("bla", "publish_error")
		m.log.LogAttrs(ctx, slog.LevelError, "bla: publish refused by the engine",
			slog.String("aor", lineURI), slog.String("event", m.cfg.Event), slog.Any("err", err))
		return 500, "Server Internal Error"
	}
	if p == nil { // subscription restored by the engine, contact not reported yet
		p = &phone{id: id, contact: sender, subscribed: true, dialogs: map[string]dialogdoc.Dialog{}, subCallID: callID}
		ln.phones[id] = p
	}
	if !p.haveBase {
		p.dialogs = map[string]dialogdoc.Dialog{} // what an earlier dialog said is not the base
	}
	p.apply(doc, m.now())
	p.namespaces = ch.namespaces
	p.haveBase = true
	p.published = true
	p.lastNotify = m.now()
	if doc.HasVersion {
		p.version, p.haveVersion = doc.Version, true
	}
	m.m.Tracker("bla", "relayed")
	if gap {
		m.askFullState(ctx, ln, p, doc.Version)
	}
	if refused != nil {
		return 409, "Conflict"
	}
	return 200, "OK"
}

// headerOf is n.Headers(name), or "" when n.Headers is nil.
func headerOf(n pua.Notify, name string) string {
	if n.Headers == nil {
		return ""
	}
	return n.Headers(name)
}

// terminated handles a NOTIFY ending the phone's subscription: its
// publication is removed and its line indexes are freed.
func (m *Manager) terminated(ctx context.Context, n pua.Notify) (int, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ln := m.lines[n.Key.PresURI]
	if ln == nil {
		return 200, "OK"
	}
	p := ln.phones[n.Key.ID]
	if p == nil {
		return 200, "OK"
	}
	hadState := p.haveBase || len(p.dialogs) > 0
	p.dialogs = map[string]dialogdoc.Dialog{}
	p.subscribed, p.published = false, false // the engine dropped the subscription
	p.haveVersion, p.haveBase = false, false
	if hadState {
		m.lineChanged(ctx, ln, "subscription ended") // its dialogs leave the line's document
	}
	m.m.Tracker("bla", "terminated")
	m.log.LogAttrs(ctx, slog.LevelInfo, "bla: phone ended its subscription", slog.String("aor", ln.aor),
		slog.String("contact", p.contact), slog.String("reason", n.Reason))
	switch n.Reason {
	case "rejected", "noresource", "invariant":
		// RFC 6665 §4.2.2: do not subscribe again (while the contact stays).
		p.noResubscribe = true
	case "probation", "giveup":
		// RFC 6665 §4.2.2: subscribe again later, after retry-after; not
		// in a loop when every subscription ends so (retry-after=0).
		d := m.retryAfter(n)
		if now := m.now(); !p.lastTerminated.IsZero() && now.Sub(p.lastTerminated) < m.cfg.ResubscribeDelay {
			d = max(d, m.cfg.ResubscribeDelay)
		}
		p.lastTerminated = m.now()
		m.resubscribeLater(ln, p, d)
	default:
		// deactivated, timeout or none: while the phone stays registered,
		// subscribe again (a rebooted phone re-registers with the same
		// contact, which usrloc does not report as a change) – at once,
		// unless its previous subscription ended moments ago too: a phone
		// that ends every subscription is not subscribed in a loop.
		if now := m.now(); !p.lastTerminated.IsZero() && now.Sub(p.lastTerminated) < m.cfg.ResubscribeDelay {
			p.lastTerminated = now
			m.resubscribeLater(ln, p, m.cfg.ResubscribeDelay)
			return 200, "OK"
		}
		p.lastTerminated = m.now()
		m.reconcile(ctx, ln)
	}
	return 200, "OK"
}

// reject logs and counts a refused NOTIFY.
func (m *Manager) reject(ctx context.Context, n pua.Notify, code int, reason, what string, err error) (int, string) {
	m.m.Tracker("bla", "rejected_"+what)
	m.log.LogAttrs(ctx, slog.LevelWarn, "bla: NOTIFY refused", slog.String("aor", n.Key.PresURI),
		slog.String("call_id", headerOf(n, "Call-ID")), slog.String("contact", n.Contact),
		slog.Int("code", code), slog.String("reason", what), slog.Any("err", err))
	return code, reason
}

// seizeConflict is a trying dialog of a document that seizes a line index
// another phone of the line holds; holder is that phone's contact.
type seizeConflict struct {
	dialog dialogdoc.Dialog
	holder string
}

// conflicts finds the trying dialogs of the document that seize a line
// index held by another phone of the line. m.mu is held.
func (ln *line) conflicts(id string, doc *dialogdoc.Document, now time.Time, seizeTimeout time.Duration) []seizeConflict {
	var out []seizeConflict
	for _, d := range doc.Dialogs {
		if d.State != "trying" || d.LineID == "" {
			continue
		}
		if holder, ok := ln.holder(id, d.LineID, now, seizeTimeout); ok {
			out = append(out, seizeConflict{dialog: d, holder: holder})
		}
	}
	return out
}

// holder finds a phone other than id holding the line index lineID and
// returns its contact. m.mu is held.
func (ln *line) holder(id, lineID string, now time.Time, seizeTimeout time.Duration) (string, bool) {
	for _, pid := range sortedKeys(ln.phones) {
		if pid == id {
			continue
		}
		p := ln.phones[pid]
		for _, h := range p.dialogs {
			if h.LineID != lineID || !h.Holds() {
				continue
			}
			if h.State == "trying" && seizeTimeout > 0 && now.Sub(p.seizedAt[h.ID]) > seizeTimeout {
				continue // a stale seize (the phone never dialled through)
			}
			return p.contact, true
		}
	}
	return "", false
}

// withoutRefused is the document's dialogs without the refused ones (by
// id). A refused dialog leaves the phone's state as it was: in a full
// document, one the known state holds is kept as known.
func withoutRefused(doc *dialogdoc.Document, refused map[string]bool, known map[string]dialogdoc.Dialog) []dialogdoc.Dialog {
	out := make([]dialogdoc.Dialog, 0, len(doc.Dialogs))
	for _, d := range doc.Dialogs {
		if !refused[d.ID] {
			out = append(out, d)
			continue
		}
		if k, ok := known[d.ID]; ok && doc.State == dialogdoc.DocFull {
			out = append(out, k)
		}
	}
	return out
}

// changes reports whether the phone's next state differs from the dialogs
// the line shows for it (onLine): a dialog added, changed or ended.
func (ch *change) changes(onLine map[string]dialogdoc.Dialog) bool {
	if len(ch.ended) > 0 || len(ch.dialogs) != len(onLine) {
		return true
	}
	for id, d := range ch.dialogs {
		o, ok := onLine[id]
		if !ok || o.State != d.State || !bytes.Equal(o.Raw, d.Raw) {
			return true
		}
	}
	return false
}

// apply merges a document into the phone's dialogs: a full document
// replaces them, a partial one updates the dialogs it names. Terminated
// dialogs are dropped.
//
// A dialog's seize time is when the phone first reported it trying: a
// document repeating it trying keeps it, a full one too (the first NOTIFY
// of a subscription refresh, or of a new subscription after one ended); a
// dialog reported in another state, or left out of a full document, loses
// it, so a later seize starts afresh.
func (p *phone) apply(doc *dialogdoc.Document, now time.Time) {
	if p.seizedAt == nil {
		p.seizedAt = map[string]time.Time{}
	}
	if doc.State == dialogdoc.DocFull {
		p.dialogs = make(map[string]dialogdoc.Dialog, len(doc.Dialogs))
		inDoc := make(map[string]bool, len(doc.Dialogs))
		for _, d := range doc.Dialogs {
			inDoc[d.ID] = true
		}
		for id := range p.seizedAt {
			if !inDoc[id] {
				delete(p.seizedAt, id)
			}
		}
	}
	for _, d := range doc.Dialogs {
		if d.State != "trying" {
			delete(p.seizedAt, d.ID)
		} else if _, ok := p.seizedAt[d.ID]; !ok {
			p.seizedAt[d.ID] = now
		}
		if d.State == "terminated" {
			delete(p.dialogs, d.ID)
			continue
		}
		d.Raw = bytes.Clone(d.Raw)
		p.dialogs[d.ID] = d
	}
}

// isMember reports whether a contact URI belongs to the line.
func (ln *line) isMember(contact string) bool {
	if len(ln.match) == 0 {
		return true
	}
	c, err := aor.Parse(contact, "")
	if err != nil {
		return false
	}
	for _, mm := range ln.match {
		if mm.Matches(c) {
			return true
		}
	}
	return false
}
