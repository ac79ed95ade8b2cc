package pa

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"

	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/internal/xmltext"
	"github.com/puaside/puaside/pidf"
)

// noMessages is the message-summary body of an account nobody published.
const noMessages = "Messages-Waiting: no\r\n"

// parseBody checks a publication body of ev and returns its parsed form
// on p. It is the one place publication bodies are read.
func parseBody(ev string, body []byte, maxSize int, p *publication) error {
	if maxSize <= 0 {
		maxSize = DefaultConfig().MaxBodySize
	}
	switch ev {
	case EventPresence:
		parts, err := pidf.Split(body, maxSize)
		if err != nil {
			return err
		}
		p.pidf = parts
	case EventDialog, EventSLA:
		doc, err := dialogdoc.Parse(body, maxSize)
		if err != nil {
			return err
		}
		p.dialog = doc
	case EventMWI:
		if len(body) > maxSize {
			return fmt.Errorf("message-summary: %w: %d bytes, limit %d", pidf.ErrTooLarge, len(body), maxSize)
		}
	}
	return nil
}

// body renders the state w is told now (s.mu held): the document and its
// content type; nil for no body.
func (s *Server) body(w *watcher) ([]byte, string) {
	pr := w.pres
	switch w.event {
	case EventPresence:
		if pr.composed == nil {
			parts := make([]*pidf.Parts, 0, len(pr.pubs))
			for _, p := range pr.pubs {
				parts = append(parts, p.pidf)
			}
			pr.composed, _ = pidf.Compose(w.presURI, parts)
		}
		s.met.composed(EventPresence, len(pr.pubs), len(pr.composed))
		return pr.composed, ctPIDF
	case EventDialog, EventMA:
		parts := make([]dialogdoc.Part, 0, len(pr.pubs))
		for _, p := range pr.pubs {
			parts = append(parts, dialogdoc.Part{Dialogs: p.dialog.Dialogs, Namespaces: p.dialog.Namespaces()})
		}
		b, _ := dialogdoc.Compose(w.presURI, w.version, parts)
		s.met.composed(EventDialog, len(pr.pubs), len(b))
		return b, ctDialog
	case EventSLA:
		// bla composes the line: one publication is the whole line. Should
		// there be several (PUBLISHes from outside), the newest counts.
		var parts []dialogdoc.Part
		if n := len(pr.pubs); n > 0 {
			doc := pr.pubs[n-1].dialog
			ds := make([]dialogdoc.Dialog, 0, len(doc.Dialogs))
			for _, d := range doc.Dialogs {
				if s.o.OwnDialog != nil && s.o.OwnDialog(w.contact, d.ID) {
					continue
				}
				ds = append(ds, d)
			}
			parts = append(parts, dialogdoc.Part{Dialogs: ds, Namespaces: doc.Namespaces()})
		}
		b, _ := dialogdoc.Compose(w.presURI, w.version, parts)
		s.met.composed(EventSLA, len(pr.pubs), len(b))
		return b, ctDialog
	case EventMWI:
		if n := len(pr.pubs); n > 0 {
			return pr.pubs[n-1].body, ctMWI
		}
		return []byte(noMessages), ctMWI
	case EventWinfo:
		return s.winfo(w), ctWinfo
	}
	return nil, ""
}

// winfo renders the RFC 3858 full watcher list of w's presentity's
// presence subscriptions.
func (s *Server) winfo(w *watcher) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="` +
		strconv.FormatUint(w.version, 10) + `" state="full">` + "\n")
	b.WriteString(`  <watcher-list resource="`)
	xmltext.Escape(&b, w.presURI)
	b.WriteString(`" package="presence">` + "\n")
	if pr := s.pres[presKey{w.presURI, EventPresence}]; pr != nil {
		ws := make([]*watcher, 0, len(pr.watchers))
		for x := range pr.watchers {
			ws = append(ws, x)
		}
		sort.Slice(ws, func(i, j int) bool {
			if ws[i].watcherURI != ws[j].watcherURI {
				return ws[i].watcherURI < ws[j].watcherURI
			}
			return ws[i].key.callID < ws[j].key.callID
		})
		for _, x := range ws {
			b.WriteString(`    <watcher id="`)
			xmltext.Escape(&b, x.toTag)
			b.WriteString(`" event="subscribe" status="`)
			xmltext.Escape(&b, x.status)
			b.WriteString(`">`)
			xmltext.Escape(&b, x.watcherURI)
			b.WriteString("</watcher>\n")
		}
	}
	b.WriteString("  </watcher-list>\n</watcherinfo>\n")
	return b.Bytes()
}
