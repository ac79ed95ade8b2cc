package pua

import (
	"fmt"
	"strings"
	"sync"
)

// eventInfo describes one event package known to the engine.
type eventInfo struct {
	name        string
	contentType string
	bit         int // Kamailio's `event` column value; 0 if Kamailio has none
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

// newEvents returns a registry with Kamailio's default events and bits.
func newEvents() *events {
	ev := &events{byName: make(map[string]*eventInfo)}
	for _, e := range []eventInfo{
		{name: "presence", contentType: "application/pidf+xml", bit: 1},
		{name: "presence.winfo", contentType: "application/watcherinfo+xml", bit: 2},
		{name: "dialog;sla", contentType: "application/dialog-info+xml", bit: 4, bodyAlways: true},
		{name: "message-summary", contentType: "application/simple-message-summary", bit: 8},
		{name: "dialog", contentType: "application/dialog-info+xml", bit: 32},
		{name: "reg", contentType: "application/reginfo+xml", bit: 64},
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

// get returns the event named name.
func (ev *events) get(name string) (*eventInfo, error) {
	ev.mu.RLock()
	e := ev.byName[normEvent(name)]
	ev.mu.RUnlock()
	if e == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownEvent, name)
	}
	return e, nil
}

// byBit returns the event with Kamailio bit b (for stored records without an
// event name).
func (ev *events) byBit(b int) *eventInfo {
	ev.mu.RLock()
	defer ev.mu.RUnlock()
	for _, e := range ev.byName {
		if e.bit == b && b != 0 {
			return e
		}
	}
	return nil
}

// register adds an event package.
func (ev *events) register(name, contentType string, bit int) error {
	n := normEvent(name)
	if n == "" || strings.ContainsAny(n, "\r\n,") {
		return fmt.Errorf("pua: register event %q: invalid name", name)
	}
	if contentType == "" || strings.ContainsAny(contentType, "\r\n") {
		return fmt.Errorf("pua: register event %q: invalid content type %q", name, contentType)
	}
	if bit < 0 {
		return fmt.Errorf("pua: register event %q: negative bit %d", name, bit)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if old, ok := ev.byName[n]; ok {
		if old.contentType == contentType && old.bit == bit {
			return nil
		}
		return fmt.Errorf("pua: register event %q: already registered with %s/%d", name, old.contentType, old.bit)
	}
	ev.byName[n] = &eventInfo{name: n, contentType: contentType, bit: bit, dialog: isDialogEvent(n)}
	return nil
}
