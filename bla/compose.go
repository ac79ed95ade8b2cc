package bla

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/pua"
)

// LinePublicationID is the publication id (pres_id) of a line's composed
// dialog;sla document: one publication per line AoR.
const LinePublicationID = "bla-line"

// idSep separates a dialog id from the tag of the phone that holds it in a
// composed document: "a1~3f2c9d10" is dialog a1 of the phone tagged
// 3f2c9d10.
const idSep = "~"

// phoneTag is the short, stable tag of a phone in composed dialog ids: the
// first 8 hex digits of its ContactID.
func phoneTag(id string) string {
	t := strings.TrimPrefix(id, "bla-")
	if len(t) > 8 {
		t = t[:8]
	}
	return t
}

// qualifyID is the id of a phone's dialog in a composed document. Every id
// is qualified, so that two phones using one id never merge and an id never
// changes while its dialog lives.
func qualifyID(phoneID, dialogID string) string {
	return dialogID + idSep + phoneTag(phoneID)
}

// unqualifyID maps an id a phone took from a composed document back to its
// own: the phone's tag is stripped, any other id is the phone's own.
func unqualifyID(phoneID, dialogID string) string {
	return strings.TrimSuffix(dialogID, idSep+phoneTag(phoneID))
}

// nextDialogs is the phone's state after doc: a full document replaces the
// known dialogs, a partial one updates the dialogs it names (RFC 4235
// §4.1); terminated dialogs are dropped. known is not changed.
func nextDialogs(known map[string]dialogdoc.Dialog, doc *dialogdoc.Document) map[string]dialogdoc.Dialog {
	next := make(map[string]dialogdoc.Dialog, len(known)+len(doc.Dialogs))
	if doc.State != dialogdoc.DocFull {
		for id, d := range known {
			next[id] = d
		}
	}
	for _, d := range doc.Dialogs {
		if d.State == "terminated" {
			delete(next, d.ID)
			continue
		}
		next[d.ID] = d
	}
	return next
}

// change is one phone's new state offered to composeLine before it is
// committed: its next dialogs, the dialogs it just ended (shown once as
// terminated) and its document's namespace declarations.
type change struct {
	phoneID    string
	dialogs    map[string]dialogdoc.Dialog
	ended      []dialogdoc.Dialog
	namespaces map[string]string
}

// composeLine renders the line's dialog;sla document at version: every
// phone's live dialogs (ch's next state for the phone that changed), ids
// qualified by the phone, phones in id order, dialogs in id order; the
// dialogs ch ended come last, terminated. m.mu is held.
func (m *Manager) composeLine(ln *line, version uint64, ch *change) []byte {
	ids := sortedKeys(ln.phones)
	if ch != nil {
		if _, ok := ln.phones[ch.phoneID]; !ok {
			ids = append(ids, ch.phoneID)
		}
	}
	parts := make([]dialogdoc.Part, 0, len(ids)+1)
	for _, id := range ids {
		dialogs, ns := map[string]dialogdoc.Dialog(nil), map[string]string(nil)
		if p := ln.phones[id]; p != nil {
			dialogs, ns = p.dialogs, p.namespaces
		}
		if ch != nil && id == ch.phoneID {
			dialogs, ns = ch.dialogs, ch.namespaces
		}
		part := dialogdoc.Part{Namespaces: ns, Dialogs: make([]dialogdoc.Dialog, 0, len(dialogs))}
		for _, did := range sortedKeys(dialogs) {
			part.Dialogs = append(part.Dialogs, dialogs[did].WithID(qualifyID(id, did)))
		}
		parts = append(parts, part)
	}
	if ch != nil && len(ch.ended) > 0 {
		part := dialogdoc.Part{Namespaces: ch.namespaces}
		for _, d := range ch.ended {
			part.Dialogs = append(part.Dialogs, d.WithID(qualifyID(ch.phoneID, d.ID)))
		}
		parts = append(parts, part)
	}
	body, conflicts := dialogdoc.Compose(ln.aor, version, parts)
	if conflicts > 0 {
		m.m.Tracker("bla", "namespace_conflict")
		m.log.Warn("bla: phones declare one namespace prefix with different URIs; the first phone's kept",
			"aor", ln.aor, "conflicts", conflicts)
	}
	return body
}

// mergeNS is a's declarations updated with b's (a new map when b has any).
func mergeNS(a, b map[string]string) map[string]string {
	if len(b) == 0 {
		return a
	}
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// nextVersion is the version of the line's next document. The first one
// of a line is the clock in seconds, so that versions keep increasing
// across restarts (at up to one document a second on average since the
// first) while fitting the 32 bits some phones parse them into; then each
// document counts one more. m.mu is held.
func (m *Manager) nextVersion(ln *line) uint64 {
	if ln.version == 0 {
		if s := m.now().Unix(); s > 0 {
			ln.version = uint64(s)
		}
	}
	ln.version++
	return ln.version
}

// publishLine publishes the line's composed document: ch is the phone's
// state being committed (nil: the phones' current state), sender the phone
// whose NOTIFY changed the line ("" when none did: every watcher is to be
// told). A line none of whose phones has reported state is not published;
// its publication, if any, is removed. m.mu is held.
func (m *Manager) publishLine(ctx context.Context, ln *line, ch *change, sender string, expires time.Duration) error {
	if ch == nil && !ln.hasState() {
		m.removeLine(ln)
		return nil
	}
	version := m.nextVersion(ln)
	body := m.composeLine(ln, version, ch)
	if len(body) > m.cfg.MaxBodySize {
		ln.version-- // nothing was published at this version
		return fmt.Errorf("%w: the line's composed document is %d bytes, limit %d",
			dialogdoc.ErrTooLarge, len(body), m.cfg.MaxBodySize)
	}
	if expires <= 0 {
		expires = m.cfg.SubscribeExpires
	}
	req := pua.PublishRequest{
		Key:         m.linePubKey(ln.aor),
		Body:        body,
		ContentType: ContentType,
		Expires:     expires,
		Flag:        pua.FlagBLAPublish,
	}
	if sender != "" && m.cfg.HeaderName != "" {
		req.ExtraHeaders = []pua.Header{{Name: m.cfg.HeaderName, Value: sender}}
	}
	if err := m.pub.Publish(req); err != nil {
		return fmt.Errorf("publish %s: %w", ln.aor, err)
	}
	ln.published, ln.mayBePublished = true, false
	m.m.Tracker("bla", "composed")
	m.log.LogAttrs(ctx, slog.LevelDebug, "bla: line state published", slog.String("aor", ln.aor),
		slog.Uint64("version", version), slog.String("sender", sender))
	return nil
}

// lineChanged publishes the line after a phone's state went away (its
// subscription ended or its contact left), telling every watcher. m.mu is
// held.
func (m *Manager) lineChanged(ctx context.Context, ln *line, why string) {
	if err := m.publishLine(ctx, ln, nil, "", 0); err != nil {
		m.m.Tracker("bla", "publish_error")
		m.log.LogAttrs(ctx, slog.LevelError, "bla: line state not published", slog.String("aor", ln.aor),
			slog.String("after", why), slog.Any("err", err))
	}
}

// hasState reports whether a phone of the line has reported its state.
func (ln *line) hasState() bool {
	for _, p := range ln.phones {
		if p.haveBase || len(p.dialogs) > 0 {
			return true
		}
	}
	return false
}

// removeLine ends the line's publication, if it has (or may have, after a
// restart) one. m.mu is held.
func (m *Manager) removeLine(ln *line) {
	if !ln.published && !ln.mayBePublished {
		return
	}
	if err := m.pub.Remove(m.linePubKey(ln.aor)); err != nil {
		m.log.Warn("bla: remove line publication failed", "aor", ln.aor, "err", err)
	}
	if ln.published {
		m.m.Tracker("bla", "removed")
	}
	ln.published, ln.mayBePublished = false, false
	for _, p := range ln.phones {
		p.published = false
	}
}

// linePubKey is the key of the line's composed publication.
func (m *Manager) linePubKey(aor string) pua.Key {
	return pua.Key{PresURI: aor, Event: m.cfg.Event, ID: LinePublicationID}
}

// legacyPubKey is the key of a phone's own publication as made before
// publications were composed per line; such publications are removed.
func (m *Manager) legacyPubKey(aor, id string) pua.Key {
	return pua.Key{PresURI: aor, Event: m.cfg.Event, ID: id}
}

// OwnDialog reports whether the dialog dialogID of a line's composed
// document belongs to the phone whose contact is watcherContact: its id is
// qualified with that phone's tag. An embedded presence server leaves a
// phone's own dialogs out of the line it tells that phone (the phone
// knows them; pua_bla's presence server sends such a phone an empty body).
// The contact is compared as usrloc registered it (its addr-spec).
func OwnDialog(watcherContact, dialogID string) bool {
	return strings.HasSuffix(dialogID, idSep+phoneTag(ContactID(watcherContact)))
}
