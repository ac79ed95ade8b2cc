package dialoginfo

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"

	"github.com/puaside/puaside/dialogdoc"
)

func TestSDPDirection(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
	for _, tc := range []struct {
		name string
		sdp  string
		want Direction
	}{
		{"empty", "", DirUnknown},
		{"not sdp", "hello world", DirUnknown},
		{"binary", "\x00\xff\x01a=sendonly", DirUnknown},
		{"default sendrecv", head + "m=audio 4000 RTP/AVP 0\r\n", DirSendRecv},
		{"media sendonly", head + "m=audio 4000 RTP/AVP 0\r\na=sendonly\r\n", DirSendOnly},
		{"media inactive", head + "m=audio 4000 RTP/AVP 0\r\na=inactive\r\n", DirInactive},
		{"session sendonly", head + "a=sendonly\r\nm=audio 4000 RTP/AVP 0\r\n", DirSendOnly},
		{"media overrides session", head + "a=sendonly\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n", DirSendRecv},
		{"recvonly", head + "m=audio 4000 RTP/AVP 0\r\na=recvonly\r\n", DirRecvOnly},
		{"null connection", strings.Replace(head, "10.0.0.1\r\nt", "0.0.0.0\r\nt", 1) + "m=audio 4000 RTP/AVP 0\r\n", DirInactive},
		{"media null connection", head + "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\n", DirInactive},
		{"media real conn beats session null", strings.Replace(head, "10.0.0.1\r\nt", "0.0.0.0\r\nt", 1) + "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\n", DirSendRecv},
		{"audio held, video disabled", head + "m=audio 4000 RTP/AVP 0\r\na=sendonly\r\nm=video 0 RTP/AVP 31\r\n", DirSendOnly},
		{"audio held, video active", head + "m=audio 4000 RTP/AVP 0\r\na=sendonly\r\nm=video 5000 RTP/AVP 31\r\n", DirSendRecv},
		{"LF only", "v=0\nm=audio 1 RTP/AVP 0\na=inactive\n", DirInactive},
		{"no media, session attr", "v=0\r\na=inactive\r\n", DirInactive},
		{"garbage lines", "v=0\r\n=\r\na\r\nm=\r\na=sendonly", DirSendOnly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SDPDirection([]byte(tc.sdp)); got != tc.want {
				t.Errorf("SDPDirection = %s, want %s", got, tc.want)
			}
		})
	}
	huge := []byte("v=0\r\nm=audio 1 RTP/AVP 0\r\n" + strings.Repeat("a=x\r\n", 50000) + "a=sendonly\r\n")
	if got := SDPDirection(huge); got != DirSendRecv {
		t.Errorf("huge body: direction past 64 KiB was read: %s", got)
	}
}

func FuzzSDPDirection(f *testing.F) {
	f.Add([]byte("v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n"))
	f.Add([]byte("v=0\nm=audio 0 RTP/AVP 0\nm=video 1/2 RTP/AVP 0\na=inactive"))
	f.Add([]byte{0, 1, 2, '\n', 'a', '='})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := SDPDirection(b)
		if d > DirInactive {
			t.Fatalf("direction %d out of range", d)
		}
		// A direction must not depend on CRLF vs LF line ends.
		if d2 := SDPDirection(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))); d2 != d && !bytes.Contains(b, []byte("\r\r")) {
			t.Fatalf("CRLF %s vs LF %s", d, d2)
		}
	})
}

func TestBuildEscapesAndParses(t *testing.T) {
	hostile := "a\"b<c>&d'\x00\x01\xff" + "]]>"
	doc := dialogdoc.Build(dialogdoc.Document{Version: 7, Entity: "sip:" + hostile, Dialogs: []dialogdoc.Dialog{{
		ID: hostile, CallID: hostile, LocalTag: hostile, RemoteTag: hostile, Direction: "initiator",
		State: "terminated", Event: "rejected", Code: 486,
		Local:  &dialogdoc.Participant{Identity: hostile, Display: hostile, Target: hostile, Rendering: "no"},
		Remote: &dialogdoc.Participant{Identity: "sip:b@x", Target: "sip:b@x"},
	}}})
	var v struct {
		XMLName xml.Name `xml:"urn:ietf:params:xml:ns:dialog-info dialog-info"`
		Version string   `xml:"version,attr"`
		Dialog  []struct {
			ID string `xml:"id,attr"`
		} `xml:"dialog"`
	}
	if err := xml.Unmarshal(doc, &v); err != nil {
		t.Fatalf("not XML: %v\n%s", err, doc)
	}
	if v.Version != "7" || len(v.Dialog) != 1 {
		t.Fatalf("parsed %+v", v)
	}
	if err := newValidator().check("sip:"+strings.ToValidUTF8(hostile, "\uFFFD"), doc); err != nil && !strings.Contains(err.Error(), "entity") {
		t.Fatalf("validator: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	d := DefaultConfig()
	if c.RingTimeout != d.RingTimeout || c.LifetimeCap != d.LifetimeCap || c.TerminatedLinger != d.TerminatedLinger || c.PublishExpires != d.PublishExpires ||
		c.MaxBranches != d.MaxBranches || c.MaxCalls != d.MaxCalls {
		t.Errorf("zero durations not defaulted: %+v", c)
	}
	for _, bad := range []Config{
		{RingTimeout: -1},
		{OverrideLifetime: -1},
		{Domains: []string{"bad domain"}},
		{Domains: []string{""}},
		{MaxBranches: -1},
		{MaxCalls: -1},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted", bad)
		}
	}
	in := []string{" Example.COM "}
	c = Config{Domains: in}.WithDefaults()
	if err := c.Validate(); err != nil || c.Domains[0] != "example.com" || in[0] != " Example.COM " {
		t.Errorf("domain normalisation: %v (caller's list %v) %v", c.Domains, in, err)
	}
	before := Config{RingTimeout: -1}
	_ = before.Validate()
	if before.RingTimeout != -1 {
		t.Errorf("Validate changed the configuration: %+v", before)
	}
}
