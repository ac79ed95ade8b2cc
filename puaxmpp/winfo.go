package puaxmpp

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strings"
)

// WinfoContentType is the media type of presence.winfo NOTIFY bodies.
const WinfoContentType = "application/watcherinfo+xml"

// maxWinfoSize bounds a watcherinfo document; maxWatchers the watchers
// read from one.
const (
	maxWinfoSize = 256 << 10
	maxWatchers  = 1024
)

// Watcher is one watcher of an RFC 3858 watcherinfo document.
type Watcher struct {
	// Resource is the watched presentity (the watcher-list's resource).
	Resource string
	// URI is the watcher's address.
	URI string
	// Status is pending, active, waiting or terminated.
	Status string
}

type xmlWinfo struct {
	XMLName xml.Name `xml:"urn:ietf:params:xml:ns:watcherinfo watcherinfo"`
	State   string   `xml:"state,attr"`
	Lists   []struct {
		Resource string `xml:"resource,attr"`
		Package  string `xml:"package,attr"`
		Watchers []struct {
			Status string `xml:"status,attr"`
			URI    string `xml:",chardata"`
		} `xml:"urn:ietf:params:xml:ns:watcherinfo watcher"`
	} `xml:"urn:ietf:params:xml:ns:watcherinfo watcher-list"`
}

// ParseWatcherinfo reads the presence watchers of a watcherinfo document
// (bounded in size and in watchers). full reports state="full".
func ParseWatcherinfo(b []byte) (ws []Watcher, full bool, err error) {
	if len(b) > maxWinfoSize {
		return nil, false, fmt.Errorf("watcherinfo: %d bytes (more than %d)", len(b), maxWinfoSize)
	}
	var x xmlWinfo
	if err := xml.NewDecoder(bytes.NewReader(b)).Decode(&x); err != nil {
		return nil, false, fmt.Errorf("watcherinfo: %w", err)
	}
	for _, l := range x.Lists {
		if l.Package != "" && l.Package != "presence" {
			continue
		}
		for _, w := range l.Watchers {
			if len(ws) == maxWatchers {
				return ws, x.State == "full", nil
			}
			u := strings.TrimSpace(w.URI)
			if u == "" {
				continue
			}
			ws = append(ws, Watcher{Resource: clipText(strings.TrimSpace(l.Resource), 512), URI: clipText(u, 512), Status: strings.ToLower(strings.TrimSpace(w.Status))})
		}
	}
	return ws, x.State == "full", nil
}
