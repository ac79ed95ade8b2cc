package ingest

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/event"
)

// FuzzPrescan: prescanKey never panics, and where both it and the full
// parse read a copy they find the same identity, so a prescanned duplicate
// is one the full path would have dropped.
func FuzzPrescan(f *testing.F) {
	files, _ := filepath.Glob("testdata/siptrace/*.sip.txt")
	for _, p := range files {
		f.Add(wireBytes(f, p))
	}
	p := sip.NewParser()
	p.MaxMessageLength = 65535
	f.Fuzz(func(t *testing.T, b []byte) {
		k, ok := prescanKey(b)
		if !ok {
			return
		}
		m, err := parseMirror(p, b)
		if err != nil {
			return
		}
		if want := m.keyFields(); k != want {
			t.Fatalf("prescan read %+v, the parse %+v:\n%q", k, want, b)
		}
	})
}

// TestPrescanReadsTraces: the siptrace fixtures (Kamailio's plain copies)
// are all read by prescan, with the parse's identity.
func TestPrescanReadsTraces(t *testing.T) {
	files, _ := filepath.Glob("testdata/siptrace/*.sip.txt")
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	p := sip.NewParser()
	for _, path := range files {
		b := wireBytes(t, path)
		m, err := parseMirror(p, b)
		if err != nil {
			continue // fixtures of bad input
		}
		k, ok := prescanKey(b)
		if !ok {
			// Only forms prescan leaves to the parse (compact headers,
			// quoted display names, bare URIs) may be skipped.
			if !bytes.Contains(b, []byte("\"")) && !bytes.Contains(b, []byte("\r\nf:")) && !bytes.Contains(b, []byte("\r\ni:")) &&
				!bytes.Contains(b, []byte("\r\nt:")) && !bytes.Contains(b, []byte("\r\nv:")) && !bytes.Contains(b, []byte("\r\nFrom: sip")) &&
				!bytes.Contains(b, []byte("\r\nTo: sip")) {
				t.Errorf("%s: not prescanned", path)
			}
			continue
		}
		if want := m.keyFields(); k != want {
			t.Errorf("%s: prescan %+v, parse %+v", path, k, want)
		}
	}
}

// TestPrescanGivesUp: the forms prescan leaves to the full parse.
func TestPrescanGivesUp(t *testing.T) {
	base := "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\r\n"
	if _, ok := prescanKey([]byte(base)); !ok {
		t.Fatal("the plain form is not read")
	}
	for name, edit := range map[string][2]string{
		"compact call-id":  {"Call-ID: c1", "i: c1"},
		"folded header":    {"To: <sip:b@x>\r\n", "To:\r\n <sip:b@x>\r\n"},
		"bare LF":          {"CSeq: 1 INVITE\r\n", "CSeq: 1 INVITE\n"},
		"quoted display":   {"From: <sip:a@x>", "From: \"A\" <sip:a@x>"},
		"bare URI":         {"To: <sip:b@x>", "To: sip:b@x"},
		"Tag in capitals":  {";tag=1", ";TAG=1"},
		"two tags":         {";tag=1", ";tag=1;tag=2"},
		"two Call-IDs":     {"Call-ID: c1\r\n", "Call-ID: c1\r\nCall-ID: c2\r\n"},
		"method mismatch":  {"CSeq: 1 INVITE", "CSeq: 1 BYE"},
		"no Via":           {"Via: SIP/2.0/UDP 1.2.3.4\r\n", ""},
		"lowercase method": {"CSeq: 1 INVITE", "CSeq: 1 invite"},
		"no end of head":   {"\r\n\r\n", "\r\n"},
	} {
		if _, ok := prescanKey([]byte(strings.Replace(base, edit[0], edit[1], 1))); ok {
			t.Errorf("%s: read by prescan", name)
		}
	}
}

// TestPrescanDropsForwardedCopy: the forwarded copy of a message is
// counted as a duplicate before it is parsed, and the first copy still
// reaches the handler once.
func TestPrescanDropsForwardedCopy(t *testing.T) {
	got := make(chan event.SIP, 4)
	in, err := New(testConfig(), Handlers{Call: func(_ context.Context, m event.SIP) { got <- m }}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	first := "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\n" +
		"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
	fwd := strings.Replace(first, "Via: ", "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKp\r\nVia: ", 1)
	src := mustAddrPort("127.0.0.1:5070")
	in.handleSIP(InputTrace, src, []byte(first), nil, false)
	<-got
	if !in.duplicateCopy(InputTrace, []byte(fwd)) {
		t.Fatal("the forwarded copy is not found a duplicate by its prescanned identity")
	}
	in.handleSIP(InputTrace, src, []byte(fwd), nil, false)
	select {
	case m := <-got:
		t.Fatalf("the duplicate reached the handler: %v", m.Msg)
	default:
	}
}

// TestMethodStringKnownMethods checks that a known method is returned
// without a copy and an unknown one as it is.
func TestMethodStringKnownMethods(t *testing.T) {
	var got string
	if n := testing.AllocsPerRun(100, func() { got = methodString([]byte("REGISTER")) }); n != 0 || got != "REGISTER" {
		t.Fatalf("methodString(REGISTER) = %q with %v allocations", got, n)
	}
	if got := methodString([]byte("FOO")); got != "FOO" {
		t.Fatalf("methodString(FOO) = %q", got)
	}
}
