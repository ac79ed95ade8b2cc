package puaxmpp

import (
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/puaside/puaside/pidf"
)

// XMPP <show/> values (RFC 6121 §4.7.2.1).
const (
	ShowAway = "away"
	ShowChat = "chat"
	ShowDND  = "dnd"
	ShowXA   = "xa"
)

// Resource is the available presence of one resource of an XMPP user.
type Resource struct {
	// Name is the resourcepart.
	Name string
	// Show is "", away, chat, dnd or xa.
	Show string
	// Status is the <status/> text.
	Status string
	// Priority is the resource's priority, -128..127.
	Priority int
}

// showActivity maps <show/> to the RFC 4480 activity published for it
// (RFC 8048 §4: away and xa are away, dnd is busy; chat and plain
// availability have no activity).
func showActivity(show string) string {
	switch show {
	case ShowAway, ShowXA:
		return "away"
	case ShowDND:
		return "busy"
	}
	return ""
}

// tupleID is a valid xs:ID for a resource, stable across publications.
func tupleID(resource string) string {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(resource); i++ {
		h ^= uint64(resource[i])
		h *= 1099511628211
	}
	return "x" + strconv.FormatUint(h, 36)
}

// ComposePIDF is the presence document of an XMPP user (entity, its SIP
// URI) with the given available resources: one open tuple per resource
// (contact xmpp:full-JID, priority scaled to 0..1, note = status), the
// person's activity and the document's note from the resource of highest
// priority. With no resource it is one closed tuple.
func ComposePIDF(entity, bareJID string, rs []Resource) []byte {
	doc := pidf.Document{Entity: entity}
	if len(rs) == 0 {
		doc.Tuples = []pidf.Tuple{{ID: "xmpp", Basic: pidf.Closed, Contact: "xmpp:" + bareJID, Priority: -1}}
		return pidf.Build(doc)
	}
	rs = append([]Resource(nil), rs...)
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Priority != rs[j].Priority {
			return rs[i].Priority > rs[j].Priority
		}
		return rs[i].Name < rs[j].Name
	})
	for _, r := range rs {
		t := pidf.Tuple{ID: tupleID(r.Name), Basic: pidf.Open, Contact: "xmpp:" + bareJID + "/" + r.Name, Priority: qOfPriority(r.Priority)}
		if r.Status != "" {
			t.Notes = []string{r.Status}
		}
		doc.Tuples = append(doc.Tuples, t)
	}
	best := rs[0]
	if best.Status != "" {
		doc.Notes = []string{best.Status}
	}
	if a := showActivity(best.Show); a != "" {
		doc.Activities = []string{a}
	}
	return pidf.Build(doc)
}

// qOfPriority maps an XMPP priority to a PIDF contact priority: negative
// priorities are 0, 127 is 1.
func qOfPriority(p int) float64 {
	if p <= 0 {
		return 0
	}
	if p > 127 {
		p = 127
	}
	return math.Round(float64(p)/127*1000) / 1000
}

// priorityOfQ maps a PIDF contact priority back to a valid XMPP priority
// (an integer -128..127, RFC 6121 §4.7.2.3).
func priorityOfQ(q float64) int {
	if q <= 0 || math.IsNaN(q) {
		return 0
	}
	if q >= 1 {
		return 127
	}
	return int(math.Round(q * 127))
}

// Presence is an XMPP presence as the gateway sends it to an XMPP user.
type Presence struct {
	// Type is "" (available) or unavailable, subscribe, subscribed,
	// unsubscribe, unsubscribed, probe, error.
	Type string
	// Show, Status and Priority are those of an available presence.
	Show     string
	Status   string
	Priority int
}

// activityShow maps RFC 4480 activities to <show/> (RFC 8048 §5).
func activityShow(a string) (show, status string) {
	switch strings.ToLower(a) {
	case "busy", "meeting", "performance", "presentation", "worship":
		return ShowDND, ""
	case "on-the-phone":
		return ShowAway, "On the phone"
	case "away", "appointment", "breakfast", "dinner", "lunch", "meal", "shopping", "travel", "steering":
		return ShowAway, ""
	case "vacation", "sleeping", "holiday":
		return ShowXA, ""
	}
	return "", ""
}

// noteShow is pua_xmpp's reading of a note without activities ("On the
// phone" and "away" are away, "busy" and "dnd" are dnd).
func noteShow(note string) string {
	n := strings.ToLower(note)
	switch {
	case strings.Contains(n, "on the phone"), strings.Contains(n, "away"):
		return ShowAway
	case strings.Contains(n, "dnd"), strings.Contains(n, "do not disturb"), strings.Contains(n, "busy"):
		return ShowDND
	}
	return ""
}

// PresenceOfPIDF is the XMPP presence of a SIP user's PIDF document (the
// body of a NOTIFY): an empty body or no open tuple is unavailable; an
// open one is available with <show/> from the activities (or the notes),
// <status/> the first note of an open tuple or of the document, and the
// priority from the highest open contact priority.
func PresenceOfPIDF(body []byte) (Presence, error) {
	if len(strings.TrimSpace(string(body))) == 0 {
		return Presence{Type: "unavailable"}, nil
	}
	doc, err := pidf.Parse(body)
	if err != nil {
		return Presence{}, err
	}
	note := ""
	q := -1.0
	for _, t := range doc.Tuples {
		if t.Basic != pidf.Open {
			continue
		}
		if t.Priority > q {
			q = t.Priority
		}
		if note == "" && len(t.Notes) > 0 {
			note = t.Notes[0]
		}
	}
	if note == "" && len(doc.Notes) > 0 {
		note = doc.Notes[0]
	}
	if !doc.Open() {
		return Presence{Type: "unavailable", Status: note}, nil
	}
	p := Presence{Status: note, Priority: priorityOfQ(q)}
	for _, a := range doc.Activities {
		if show, status := activityShow(a); show != "" {
			p.Show = show
			if p.Status == "" {
				p.Status = status
			}
			break
		}
	}
	if p.Show == "" && len(doc.Activities) == 0 {
		p.Show = noteShow(note)
	}
	return p, nil
}
