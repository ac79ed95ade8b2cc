package usrloc

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestParseGolden parses every fixture under testdata/sip and compares the
// result (or the rejection reason) with testdata/parse/<name>.json.
func TestParseGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "sip", "*.sip"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".sip")
		t.Run(name, func(t *testing.T) {
			out := struct {
				Reject string    `json:"reject,omitempty"`
				Reg    *Register `json:"register,omitempty"`
			}{}
			msg, err := sip.ParseMessage(readSIP(t, name))
			switch {
			case err != nil:
				out.Reject = "sip_parse"
			default:
				var reg Register
				switch m := msg.(type) {
				case *sip.Request:
					reg, err = ParseRegister(m, "X-Puaside-Publish")
				case *sip.Response:
					reg, err = ParseRegisterReply(m)
				}
				if err != nil {
					out.Reject = reason(err)
				} else {
					out.Reg = &reg
				}
			}
			b, _ := json.MarshalIndent(out, "", "  ")
			golden(t, filepath.Join("parse", name+".json"), append(b, '\n'))
		})
	}
}

// TestUserAoRReasons: userAoR gives package aor's AoR (its rule is tested
// there) and reports each refusal as the reason usrloc counts.
func TestUserAoRReasons(t *testing.T) {
	tests := []struct {
		in, dom, want string
		err           error
	}{
		{"sip:Alice@EXAMPLE.com:5060;transport=udp", "", "sip:Alice@example.com", nil},
		{"alice", "pbx.example.com", "sip:alice@pbx.example.com", nil},
		{"alice", "", "", ErrNoDomain},
		{"tel:+1555", "", "", ErrToNotSIP},
		{"sip:@example.com", "", "", ErrToNoUser},
		{"", "x", "", ErrToNoUser},
		{"sip:a b@example.com", "", "", ErrToNoUser},
	}
	for _, tc := range tests {
		got, err := userAoR(tc.in, tc.dom)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("userAoR(%q, %q) = %q, %v; want %q, %v", tc.in, tc.dom, got, err, tc.want, tc.err)
		}
	}
}

func TestFlagValue(t *testing.T) {
	for v, want := range map[string]bool{"1": true, "yes": true, "": true, "on": true, "0": false, "No": false, " off ": false, "false": false} {
		if got := flagValue(v); got != want {
			t.Errorf("flagValue(%q) = %v", v, got)
		}
	}
}

// TestPIDFGolden builds documents and compares them byte for byte with
// testdata/pidf/*.xml; each must also be well-formed XML.
func TestPIDFGolden(t *testing.T) {
	exp := time.Unix(1800000000, 0)
	tests := []struct {
		name, entity string
		contacts     []Binding
	}{
		{"one", "sip:user0001@harness.test", []Binding{{URI: "sip:user0001@127.0.0.1:5111", Expires: exp, Q: -1}}},
		{"prefix", Entity("sip:alice@example.com", "pres"), []Binding{{URI: "sip:alice@10.0.0.1", Q: -1}}},
		{"multi_q", "sip:alice@example.com", []Binding{
			{URI: "sip:alice@10.0.0.1:5060;ob", Q: 0.5},
			{URI: "sip:alice@10.0.0.3?x=a&y=b", Q: -1},
			{URI: "sip:alice@10.0.0.2;transport=tcp", Q: 1},
			{URI: "sip:alice@10.0.0.4", Q: 0},
		}},
		{"escape", `sip:a&b"<c>@example.com`, []Binding{{URI: "sip:x@h?a=<1>&b='2'", Q: 0.125}}},
		{"closed", "sip:alice@example.com", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := BuildPIDF(tc.entity, tc.contacts)
			checkWellFormed(t, doc)
			golden(t, filepath.Join("pidf", tc.name+".xml"), doc)
			// Order of the input does not matter.
			rev := make([]Binding, len(tc.contacts))
			for i, c := range tc.contacts {
				rev[len(rev)-1-i] = c
			}
			if again := BuildPIDF(tc.entity, rev); string(again) != string(doc) {
				t.Errorf("document depends on input order")
			}
		})
	}
}

// checkWellFormed decodes doc fully and checks tuple ids are valid xs:ID
// values (start with a letter).
func checkWellFormed(t *testing.T, doc []byte) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(string(doc)))
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, doc)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "tuple" {
			for _, a := range se.Attr {
				if a.Name.Local == "id" && (a.Value == "" || !strings.ContainsAny(a.Value[:1], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")) {
					t.Errorf("tuple id %q is not an xs:ID", a.Value)
				}
			}
		}
	}
}

func TestTupleIDStable(t *testing.T) {
	a, b := TupleID("sip:a@h"), TupleID("sip:a@h")
	if a != b || a == TupleID("sip:b@h") || len(a) != 17 || a[0] != 't' {
		t.Fatalf("TupleID: %q %q", a, b)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	bad := []func(*Config){
		func(c *Config) { c.DefaultExpires = 0 },
		func(c *Config) { c.MinExpires = -1 },
		func(c *Config) { c.MaxExpires = 10 * time.Second },
		func(c *Config) { c.PresID = "" },
		func(c *Config) { c.PublishPatterns = []string{"re:("} },
		func(c *Config) { c.DefaultDomain = "a@b" },
		func(c *Config) { c.PendingMax = 0 },
		func(c *Config) { c.FlushInterval = 0 },
	}
	for i, mod := range bad {
		c := DefaultConfig()
		mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("case %d: got %v", i, err)
		}
	}
}

func TestPatterns(t *testing.T) {
	res, err := compilePatterns([]string{"*@example.com", "10??@pbx.example.com", "re:^9[0-9]+@x\\.org$", "a.b@c"})
	if err != nil {
		t.Fatal(err)
	}
	match := func(s string) bool {
		for _, re := range res {
			if re.MatchString(s) {
				return true
			}
		}
		return false
	}
	for s, want := range map[string]bool{
		"alice@example.com": true, "alice@example.com.evil": false, "1001@pbx.example.com": true,
		"10011@pbx.example.com": false, "9123@x.org": true, "9123@xxorg": false, "a.b@c": true, "axb@c": false,
	} {
		if got := match(s); got != want {
			t.Errorf("%s: got %v want %v", s, got, want)
		}
	}
}

func FuzzParseRegister(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "sip", "*.sip"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(strings.ReplaceAll(string(b), "\n", "\r\n")))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := sip.ParseMessage(b)
		if err != nil {
			return
		}
		checkScanHeaders(t, msg)
		var reg Register
		switch m := msg.(type) {
		case *sip.Request:
			reg, err = ParseRegister(m, "X-Puaside-Publish")
		case *sip.Response:
			reg, err = ParseRegisterReply(m)
		}
		if err != nil {
			if reason(err) == "invalid" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if !strings.HasPrefix(reg.AoR, "sip:") || !strings.Contains(reg.AoR, "@") {
			t.Fatalf("bad AoR %q", reg.AoR)
		}
		for _, c := range reg.Contacts {
			if c.URI == "" || c.Q > 1 || c.Expires < -1 {
				t.Fatalf("bad contact %+v", c)
			}
			checkWellFormed(t, BuildPIDF(reg.AoR, []Binding{{URI: c.URI, Q: c.Q}}))
		}
	})
}

// checkScanHeaders compares scanHeaders with sipgo's own header lookups.
func checkScanHeaders(t *testing.T, msg sip.Message) {
	t.Helper()
	first := func(name string) sip.Header {
		if hs := msg.GetHeaders(name); len(hs) > 0 {
			return hs[0]
		}
		return nil
	}
	for _, pub := range []string{"X-Puaside-Publish", "expires", ""} {
		got := scanHeaders(msg, pub)
		want := registerHeaders{expires: first("Expires"), userAgent: first("User-Agent"), contacts: msg.GetHeaders("Contact")}
		if pub != "" {
			want.publish = first(pub)
		}
		if got.expires != want.expires || got.userAgent != want.userAgent || got.publish != want.publish ||
			!slices.Equal(got.contacts, want.contacts) {
			t.Fatalf("publish header %q: scanHeaders %+v, sipgo's lookups %+v", pub, got, want)
		}
	}
}

func TestScanHeadersMatchesSipgo(t *testing.T) {
	msg, err := sip.ParseMessage([]byte("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n" +
		"From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n" +
		"m: <sip:a@h1>\r\nEXPIRES: 60\r\nexpires: 70\r\nuser-agent: p\r\nX-PUAside-publish: no\r\n" +
		"Contact: <sip:a@h2>, <sip:a@h3>\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	checkScanHeaders(t, msg)
	if hs := scanHeaders(msg, "X-Puaside-Publish"); len(hs.contacts) != 3 || hs.publish == nil || hs.expires.Value() != "60" {
		t.Fatalf("scanHeaders %+v", hs)
	}
}
