package puaxmpp

import (
	"strings"
	"testing"
)

const winfoDoc = `<?xml version="1.0"?>
<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="0" state="full">
  <watcher-list resource="sip:bob@xmpp.localhost" package="presence">
    <watcher status="pending" event="subscribe" id="a1">sip:dave@example.com</watcher>
    <watcher status="terminated" event="timeout" id="a2">sip:erin@example.com</watcher>
  </watcher-list>
  <watcher-list resource="sip:bob@xmpp.localhost" package="dialog">
    <watcher status="active" id="a3">sip:frank@example.com</watcher>
  </watcher-list>
</watcherinfo>`

func TestParseWatcherinfo(t *testing.T) {
	ws, full, err := ParseWatcherinfo([]byte(winfoDoc))
	if err != nil || !full || len(ws) != 2 {
		t.Fatalf("%+v %v %v", ws, full, err)
	}
	if ws[0] != (Watcher{Resource: "sip:bob@xmpp.localhost", URI: "sip:dave@example.com", Status: "pending"}) || ws[1].Status != "terminated" {
		t.Fatalf("%+v", ws)
	}
	if _, _, err := ParseWatcherinfo([]byte(`<presence/>`)); err == nil {
		t.Fatal("not watcherinfo accepted")
	}
	big := `<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo"><watcher-list resource="r" package="presence">` +
		strings.Repeat(`<watcher status="active">sip:w@x</watcher>`, 2000) + `</watcher-list></watcherinfo>`
	if ws, _, err := ParseWatcherinfo([]byte(big)); err != nil || len(ws) != maxWatchers {
		t.Fatalf("bounded: %d, %v", len(ws), err)
	}
}

func FuzzParseWatcherinfo(f *testing.F) {
	f.Add([]byte(winfoDoc))
	f.Add([]byte(`<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" state="partial"/>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ws, _, err := ParseWatcherinfo(b)
		if err != nil {
			return
		}
		if len(ws) > maxWatchers {
			t.Fatalf("%d watchers", len(ws))
		}
		for _, w := range ws {
			if w.URI == "" || len(w.URI) > 512 {
				t.Fatalf("watcher %+v", w)
			}
		}
	})
}
