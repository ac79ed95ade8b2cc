package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseEmptyIsDefault(t *testing.T) {
	for _, in := range []string{"", "# only a comment\n"} {
		c, err := Parse([]byte(in))
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		if c.DBURL != "sqlite://puaside.db" || !c.Features.Usrloc {
			t.Fatalf("defaults not applied: %+v", c)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"unknown top key", "log_levl: debug\n", []string{`line 1: unknown key "log_levl" in the top level`}},
		{"unknown nested key", "pua:\n  listen: []\n  listn: []\n", []string{`line 3: unknown key "listn" in pua`}},
		{"two unknown keys", "usrloc:\n  foo: 1\nbar: 2\n", []string{`line 2: unknown key "foo" in usrloc`, `line 3: unknown key "bar"`}},
		{"wrong type", "pua:\n  hash_size: many\n", []string{"line 2", "many"}},
		{"bad duration", "pua:\n  update_period: soon\n", []string{"line 2", "soon"}},
		{"bad scheme", "db_url: postgres://x/y\n", []string{"db_url", "postgres"}},
		{"bad level", "log_level: loud\n", []string{"log_level", "loud"}},
		{"not yaml", "pua: [\n", []string{"invalid configuration"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestDurationsAcceptSeconds(t *testing.T) {
	c, err := Parse([]byte("pua:\n  default_expires: 600\n  update_period: 1m\n  min_expires: 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.PUA.DefaultExpires != 600*time.Second || c.PUA.UpdatePeriod != time.Minute || c.PUA.MinExpires != 0 {
		t.Fatalf("durations: %v %v %v", c.PUA.DefaultExpires, c.PUA.UpdatePeriod, c.PUA.MinExpires)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "log_level: debug\n", "pua:\n  listen: [udp:127.0.0.1:0]\n  default_expires: 600\n",
		"bla:\n  lines:\n    - aor: sip:line1@example.com\n", "db_url: mysql://u:p@h:1/d\n", "a: [\n", "pua: {hash_size: -1}\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("Parse accepted a config that does not validate: %v", verr)
			}
		}
	})
}

func TestSectionsAreValidated(t *testing.T) {
	for _, in := range []string{
		"pua:\n  listen: [bogus]\n",
		"dialoginfo:\n  ring_timeout: -1s\n",
		"ingest:\n  trusted_sources: [not-a-cidr]\n",
	} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%q) accepted an invalid section", in)
		}
	}
}

// TestOneDefaultDomain: usrloc's default_domain serves the bla and
// reconcile sections; a section's own key still wins.
func TestOneDefaultDomain(t *testing.T) {
	c, err := Parse([]byte("usrloc:\n  default_domain: example.com\nbla:\n  lines:\n    - aor: \"100\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.BLA.DefaultDomain != "example.com" || c.Reconcile.DefaultDomain != "example.com" {
		t.Errorf("bla %q, reconcile %q; want example.com", c.BLA.DefaultDomain, c.Reconcile.DefaultDomain)
	}
	c, err = Parse([]byte("usrloc:\n  default_domain: example.com\nbla:\n  default_domain: lines.example.com\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.BLA.DefaultDomain != "lines.example.com" {
		t.Errorf("bla %q; the section's own key must win", c.BLA.DefaultDomain)
	}
}

// TestDefaultsAreOneStep: Validate changes nothing and rejects a zero that
// only WithDefaults turns into the default; Parse applies WithDefaults, so
// a written 0 documented as "0 means 9" is 9.
func TestDefaultsAreOneStep(t *testing.T) {
	c := Default()
	c.PUA.HashSize = 0
	c.Dialoginfo.RingTimeout = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "pua.hash_size: 0: must be between 2 and 16") {
		t.Fatalf("Validate of a zero hash_size: %v", err)
	}
	if c.PUA.HashSize != 0 || c.Dialoginfo.RingTimeout != 0 {
		t.Fatalf("Validate changed the configuration: %d %v", c.PUA.HashSize, c.Dialoginfo.RingTimeout)
	}
	if d := c.WithDefaults(); d.PUA.HashSize != 9 || d.Dialoginfo.RingTimeout != 120*time.Second || d.Validate() != nil {
		t.Fatalf("WithDefaults: %d %v %v", d.PUA.HashSize, d.Dialoginfo.RingTimeout, d.Validate())
	}
	p, err := Parse([]byte("pua:\n  hash_size: 0\nusrloc:\n  default_expires: 90\n  max_expires: 2h\n"))
	if err != nil || p.PUA.HashSize != 9 || p.Usrloc.DefaultExpires != 90*time.Second || p.Usrloc.MaxExpires != 2*time.Hour {
		t.Fatalf("Parse: %v %d %v %v", err, p.PUA.HashSize, p.Usrloc.DefaultExpires, p.Usrloc.MaxExpires)
	}
}

// TestETagJournalPath: auto is a file beside an SQLite database, off for
// MySQL, an in-memory database, cluster.enabled and sync_etags off; a path
// is taken as it is, and refused with cluster.enabled.
func TestETagJournalPath(t *testing.T) {
	for _, tc := range []struct {
		name, dbURL, journal string
		cluster, noSync      bool
		want                 string
	}{
		{name: "auto sqlite", dbURL: "sqlite:///var/lib/puaside/pua.db", journal: "auto", want: "/var/lib/puaside/pua.db.etags"},
		{name: "default", dbURL: "sqlite://puaside.db", want: "puaside.db.etags"},
		{name: "memory", dbURL: "sqlite://:memory:", journal: "auto"},
		{name: "mysql", dbURL: "mysql://u:p@127.0.0.1:3306/db", journal: "auto"},
		{name: "cluster", dbURL: "sqlite://puaside.db", journal: "auto", cluster: true},
		{name: "sync off", dbURL: "sqlite://puaside.db", journal: "auto", noSync: true},
		{name: "off", dbURL: "sqlite://puaside.db", journal: "off"},
		{name: "path", dbURL: "mysql://u:p@127.0.0.1:3306/db", journal: "/run/puaside/etags", want: "/run/puaside/etags"},
	} {
		c := Default()
		c.DBURL, c.Cluster.Enabled, c.PUA.SyncETags = tc.dbURL, tc.cluster, !tc.noSync
		if tc.journal != "" {
			c.PUA.ETagJournal = tc.journal
		}
		if got := c.ETagJournalPath(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		if tc.want != "" && !slices.Contains(c.ETagJournalPaths(), tc.want) {
			t.Errorf("%s: paths %q without the one in use %q", tc.name, c.ETagJournalPaths(), tc.want)
		}
	}
	// Where a journal may be left, whatever the settings now.
	for _, tc := range []struct {
		name, dbURL, journal string
		cluster, noSync      bool
		want                 []string
	}{
		{name: "off", dbURL: "sqlite:///d/pua.db", journal: "off", want: []string{"/d/pua.db.etags"}},
		{name: "sync off", dbURL: "sqlite:///d/pua.db", journal: "auto", noSync: true, want: []string{"/d/pua.db.etags"}},
		{name: "cluster", dbURL: "sqlite:///d/pua.db", journal: "auto", cluster: true, want: []string{"/d/pua.db.etags"}},
		{name: "path", dbURL: "sqlite:///d/pua.db", journal: "/run/etags", noSync: true, want: []string{"/d/pua.db.etags", "/run/etags"}},
		{name: "mysql", dbURL: "mysql://u:p@127.0.0.1:3306/db", journal: "off"},
	} {
		c := Default()
		c.DBURL, c.Cluster.Enabled, c.PUA.SyncETags, c.PUA.ETagJournal = tc.dbURL, tc.cluster, !tc.noSync, tc.journal
		if got := c.ETagJournalPaths(); !slices.Equal(got, tc.want) {
			t.Errorf("paths %s: %q, want %q", tc.name, got, tc.want)
		}
	}
	c := Default()
	c.Cluster.Enabled = true
	c.PUA.ETagJournal = "/run/puaside/etags"
	c = c.WithDefaults()
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "etag_journal") {
		t.Fatalf("a journal path with cluster.enabled: %v", err)
	}
}
