package store

import (
	"strings"

	"github.com/puaside/puaside/pua"
)

// puaRow is a record as the pua table holds it: the engine's snapshot plus
// the columns it has in SQL form only, Kamailio's event bit and the extra
// headers as CRLF-separated lines. The snapshot's own ExtraHeaders is not
// written; headerLines is.
type puaRow struct {
	pua.Record
	eventBit    int    // Kamailio's `event` column (0: an event Kamailio lacks)
	headerLines string // extra_headers: "Name: value\r\n" per header
}

// kamailioEvents are Kamailio's event bits (pua hash.h) and their event
// package names: the `event` column written for a record's event and the
// event of a row whose event_name is empty (a row Kamailio wrote itself).
var kamailioEvents = [...]struct {
	bit  int
	name string
}{
	{1, "presence"}, {2, "presence.winfo"}, {4, "dialog;sla"}, {8, "message-summary"},
	{16, "conference"}, {32, "dialog"}, {64, "reg"}, {128, "xcap-diff"}, {256, "as-feature-event"},
}

// kamailioEventName is the event package of a Kamailio event bit, "" for none.
func kamailioEventName(bit int64) string {
	for _, e := range kamailioEvents {
		if int64(e.bit) == bit {
			return e.name
		}
	}
	return ""
}

// kamailioEventBit is Kamailio's bit of an event package name (matched
// without case or blanks, "dialog; sla" is "dialog;sla"), 0 for none.
func kamailioEventBit(name string) int {
	n := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(name), " ", ""))
	for _, e := range kamailioEvents {
		if e.name == n {
			return e.bit
		}
	}
	return 0
}

// joinHeaders renders extra headers as CRLF-separated "Name: value" lines.
func joinHeaders(hs []pua.Header) string {
	var b strings.Builder
	for _, h := range hs {
		b.WriteString(h.Name)
		b.WriteString(": ")
		b.WriteString(h.Value)
		b.WriteString("\r\n")
	}
	return b.String()
}

// splitHeaders parses joinHeaders' output (or Kamailio's), skipping
// malformed lines.
func splitHeaders(s string) []pua.Header {
	var hs []pua.Header
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimRight(line, "\r")
		name, val, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			continue
		}
		hs = append(hs, pua.Header{Name: name, Value: strings.TrimSpace(val)})
	}
	return hs
}
