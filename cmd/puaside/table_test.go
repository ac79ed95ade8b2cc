package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/dialoginfo"
	"github.com/puaside/puaside/mgmt"
	"github.com/puaside/puaside/mgmt/mgmttest"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/usrloc"
)

// realRegistrations lists registrations with usrloc's own listing type.
type realRegistrations struct{ fake mgmt.Registrations }

func (r realRegistrations) Registration(aor string) (any, bool) { return r.fake.Registration(aor) }
func (r realRegistrations) SetFlag(ctx context.Context, aor string, on bool) error {
	return r.fake.SetFlag(ctx, aor, on)
}
func (r realRegistrations) ClearFlag(ctx context.Context, aor string) error {
	return r.fake.ClearFlag(ctx, aor)
}
func (r realRegistrations) Flags() any { return r.fake.Flags() }

func (realRegistrations) Registrations() any {
	return []usrloc.AoRInfo{{AoR: "sip:alice@example.com", Entity: "sip:alice@example.com", Publish: true, State: "open",
		Contacts: []usrloc.Binding{
			{URI: "sip:alice@10.0.0.1:5060", Expires: time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC), Q: -1, CallID: "r1", CSeq: 3, UserAgent: "Polycom"},
			{URI: "sip:alice@10.0.0.2:5060;transport=tcp", Expires: time.Date(2026, 12, 1, 10, 5, 0, 0, time.UTC), Q: 0.5},
		}}}
}

// realDialogs lists dialogs with dialoginfo's own listing type.
type realDialogs struct{}

func (realDialogs) Dialogs() any {
	return []dialoginfo.DialogInfo{{ID: "d1", CallID: "c1", FromTag: "f1", Caller: "sip:alice@example.com", Callee: "sip:bob@example.com",
		State: "confirmed", Created: time.Date(2026, 12, 1, 9, 59, 58, 987654321, time.UTC), LastActive: time.Date(2026, 12, 1, 10, 0, 1, 5, time.UTC)}}
}

// TestCLITablesReadable: the tables show contacts as their URIs and times
// as RFC 3339 seconds ("-" for none), and --json keeps XML unescaped.
func TestCLITablesReadable(t *testing.T) {
	eng := mgmttest.NewEngine()
	cfg := mgmt.DefaultConfig()
	cfg.HTTPListen = "127.0.0.1:0"
	srv, err := mgmt.New(cfg, mgmt.Deps{Engine: eng, Registrations: realRegistrations{mgmttest.NewRegistrations()}, Dialogs: realDialogs{}}, mgmt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
	})
	api := "--api=http://" + srv.Addr()

	code, out, errs := run(cliEnv{}, "ls", api, "registrations")
	if code != 0 {
		t.Fatalf("ls registrations: %d %s", code, errs)
	}
	if !strings.Contains(out, "sip:alice@10.0.0.1:5060,sip:alice@10.0.0.2:5060;transport=tcp") || strings.ContainsAny(out, "{}\"") {
		t.Errorf("ls registrations: contacts not shown as URIs:\n%s", out)
	}

	code, out, errs = run(cliEnv{}, "ls", api, "dialogs")
	if code != 0 {
		t.Fatalf("ls dialogs: %d %s", code, errs)
	}
	for _, bad := range []string{"0001-01-01", ".987654321", ".000000005"} {
		if strings.Contains(out, bad) {
			t.Errorf("ls dialogs shows %q:\n%s", bad, out)
		}
	}
	for _, want := range []string{"2026-12-01T09:59:58Z", "2026-12-01T10:00:01Z"} {
		if !strings.Contains(out, want) {
			t.Errorf("ls dialogs lacks %q:\n%s", want, out)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := eng.PublishWait(ctx, pua.PublishRequest{Key: pua.Key{PresURI: "sip:alice@example.com", Event: "presence"},
		Body: []byte(`<presence entity="sip:alice@example.com">&amp;</presence>`), Flag: pua.FlagRPCPublish}); err != nil {
		t.Fatal(err)
	}
	code, out, errs = run(cliEnv{}, "ls", api, "publications", "--json")
	if code != 0 {
		t.Fatalf("ls publications --json: %d %s", code, errs)
	}
	if strings.Contains(out, `\u003c`) || strings.Contains(out, `\u0026`) || !strings.Contains(out, `<presence entity=\"sip:alice@example.com\">&amp;</presence>`) {
		t.Errorf("--json escapes the XML body:\n%s", out)
	}
}

// TestVersionFlag: --version prints the version like the version
// subcommand.
func TestVersionFlag(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		var out, errb strings.Builder
		if code := runMain(args, &out, &errb); code != exitOK || !strings.HasPrefix(out.String(), "puaside ") {
			t.Errorf("puaside %v: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
}
