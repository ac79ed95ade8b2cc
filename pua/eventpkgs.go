package pua

import (
	"fmt"
	"strings"
	"sync"

	"github.com/puaside/puaside/dialogdoc"
)

// eventInfo describes one event package known to the engine.
type eventInfo struct {
	name        string
	contentType string
	// bodyAlways sends the current body on refreshes and removals too.
	// Kamailio's presence module parses the body of every PUBLISH that
	// updates a dialog;sla presentity and answers 500 without one, so for
	// that event a body-less RFC 3903 refresh or removal never succeeds.
	bodyAlways bool
	// dialog marks the dialog event packages (dialog, dialog;sla, any
	// "dialog;..."), whose all-terminated documents Kamailio never updates
	// (see dialogdoc.AllTerminated).
	dialog bool
}

// events is the per-engine registry of event packages.
type events struct {
	mu     sync.RWMutex
	byName map[string]*eventInfo
}

// newEvents returns a registry with Kamailio's default events.
func newEvents() *events {
	ev := &events{byName: make(map[string]*eventInfo)}
	for _, e := range []eventInfo{
		{name: "presence", contentType: "application/pidf+xml"},
		{name: "presence.winfo", contentType: "application/watcherinfo+xml"},
		{name: "dialog;sla", contentType: "application/dialog-info+xml", bodyAlways: true},
		{name: "message-summary", contentType: "application/simple-message-summary"},
		{name: "dialog", contentType: "application/dialog-info+xml"},
		{name: "reg", contentType: "application/reginfo+xml"},
	} {
		e := e
		e.dialog = isDialogEvent(e.name)
		ev.byName[e.name] = &e
	}
	return ev
}

// normEvent canonicalises an Event header value for lookup: lower case,
// no blanks ("dialog; sla" → "dialog;sla").
func normEvent(name string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(name), " ", ""))
}

// isDialogEvent reports whether a normalised event name is the dialog
// package, with or without parameters.
func isDialogEvent(n string) bool {
	return n == "dialog" || strings.HasPrefix(n, "dialog;")
}

// lookup returns the event named name, nil when none is registered.
func (ev *events) lookup(name string) *eventInfo {
	ev.mu.RLock()
	defer ev.mu.RUnlock()
	return ev.byName[normEvent(name)]
}

// get returns the event named name.
func (ev *events) get(name string) (*eventInfo, error) {
	e := ev.lookup(name)
	if e == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownEvent, name)
	}
	return e, nil
}

// canon returns the registered name of the event named name, or name as
// given when no such event is registered (a lookup then finds nothing).
func (ev *events) canon(name string) string {
	if e := ev.lookup(name); e != nil {
		return e.name
	}
	return name
}

// register adds an event package.
func (ev *events) register(name, contentType string) error {
	n := normEvent(name)
	if n == "" || strings.ContainsAny(n, "\r\n,") {
		return fmt.Errorf("pua: register event %q: invalid name", name)
	}
	if contentType == "" || strings.ContainsAny(contentType, "\r\n") {
		return fmt.Errorf("pua: register event %q: invalid content type %q", name, contentType)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if old, ok := ev.byName[n]; ok {
		if old.contentType == contentType {
			return nil
		}
		return fmt.Errorf("pua: register event %q: already registered with %s", name, old.contentType)
	}
	ev.byName[n] = &eventInfo{name: n, contentType: contentType, dialog: isDialogEvent(n)}
	return nil
}

// lapses reports whether a publication of this event with body ends by
// lapsing at the server when its lifetime ends, instead of by a removal: a
// dialog document (not dialog;sla, whose every request carries the
// document) whose dialogs are all terminated. Its lamp is dark already;
// removing it would cost a PUBLISH for nothing, since Kamailio's presence
// server keeps notifying the last document of a removed dialog
// publication, and a refresh would only keep it longer.
func (ev *eventInfo) lapses(body []byte) bool {
	return ev.dialog && !ev.bodyAlways && dialogdoc.AllTerminated(body)
}
