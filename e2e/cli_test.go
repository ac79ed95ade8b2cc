package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/puaside/puaside/mgmt"
	"github.com/puaside/puaside/store"
)

// cliDaemonConfig writes a configuration file for a daemon whose every
// listener is on a free loopback port, with its SQLite database in the
// test's directory and the presence server at server; it returns the file,
// the API's host:port and the database file.
func cliDaemonConfig(t *testing.T, server string) (path, httpAddr, dbPath string) {
	t.Helper()
	cfg := baseConfig(t, nil)
	cfg.PUA.ServerAddress = server
	cfg.PUA.RequestTimeout = 2 * time.Second
	cfg.PUA.UpdatePeriod = time.Hour
	// The commands' Expires must reach the wire as given: the short first
	// lease (initial_expires) has tests of its own.
	cfg.PUA.InitialExpires = time.Hour
	cfg.HTTP.WaitTimeout = 5 * time.Second
	return writeDaemonConfig(t, cfg), cfg.HTTP.HTTPListen, strings.TrimPrefix(cfg.DBURL, "sqlite://")
}

// TestCLIAgainstDaemon runs the built binary: the daemon as a subprocess
// with a configuration file and a fake presence server, and the management
// subcommands against it; then it stops the daemon with SIGTERM and checks
// that it exited 0 having flushed its publications to SQLite.
func TestCLIAgainstDaemon(t *testing.T) {
	bin := puasideBinary(t)
	fake := startAPIFakePS(t)
	dir := t.TempDir()
	cfgPath, httpAddr, dbPath := cliDaemonConfig(t, fake.URI())
	api := "http://" + httpAddr
	d := startDaemonProc(t, "daemon", bin, cfgPath, httpAddr)

	bodyFile := filepath.Join(dir, "alice.pidf")
	if err := os.WriteFile(bodyFile, []byte(apiPIDF("alice")), 0o600); err != nil {
		t.Fatal(err)
	}
	var aliceETag string

	t.Run("version", func(t *testing.T) {
		r := runBinary(t, bin, "version")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "puaside ") || len(strings.TrimSpace(r.stdout)) <= len("puaside") {
			t.Fatalf("version: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("help", func(t *testing.T) {
		r := runBinary(t, bin, "help")
		if r.code != 0 {
			t.Errorf("puaside help: exit %d: %s", r.code, r.stderr)
		}
		for _, want := range []string{"run", "migrate", "version", "publish", "subscribe", "ls"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("puaside help: output lacks %q:\n%s", want, r.stdout)
			}
		}
		r = runBinary(t, bin, "publish", "-h")
		if r.code != 0 || !strings.Contains(r.stdout, "-uri") || !strings.Contains(r.stdout, "-body") {
			t.Errorf("publish -h: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("publish", func(t *testing.T) {
		r := runBinary(t, bin, "publish", "--api", api, "--uri", "sip:alice@example.com", "--event", "presence",
			"--expires", "300", "--body", "@"+bodyFile)
		if r.code != 0 {
			t.Fatalf("publish: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		ps := fake.publishes("alice")
		if len(ps) != 1 || ps[0].Body != apiPIDF("alice") || ps[0].Expires != "300" {
			t.Fatalf("PUBLISH on the wire: %+v", ps)
		}
		aliceETag = ps[0].ETag
		if !strings.Contains(r.stdout, "200") || !strings.Contains(r.stdout, "etag="+aliceETag) {
			t.Fatalf("publish output %q, want 200 and etag=%s", r.stdout, aliceETag)
		}
	})

	t.Run("publish refused", func(t *testing.T) {
		r := runBinary(t, bin, "publish", "--api", api, "--uri", "sip:bad@example.com", "--event", "presence",
			"--body", "@"+bodyFile)
		if r.code != 1 {
			t.Fatalf("publish for bad: exit %d, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stderr, "489") || !strings.Contains(r.stderr, "Bad Event") {
			t.Fatalf("stderr %q, want the SIP 489 Bad Event", r.stderr)
		}
		if len(fake.publishes("bad")) == 0 {
			t.Fatalf("no PUBLISH for bad reached the presence server")
		}
	})

	t.Run("usage errors", func(t *testing.T) {
		for _, args := range [][]string{
			{"publish", "--api", api, "--event", "presence"},
			{"publish", "--api", api, "--uri", "sip:alice@example.com", "--event", "presence", "--nosuch"},
			{"ls", "--api", api, "nosuch"},
		} {
			if r := runBinary(t, bin, args...); r.code != 2 || r.stderr == "" {
				t.Errorf("%v: exit %d, want 2 with a message; stderr %q", args, r.code, r.stderr)
			}
		}
		// An unreachable API is a remote failure.
		r := runBinary(t, bin, "ls", "--api", "http://127.0.0.1:1", "publications")
		if r.code != 1 || r.stderr == "" {
			t.Errorf("unreachable API: exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("ls json", func(t *testing.T) {
		r := runBinary(t, bin, "ls", "--api", api, "--json", "publications")
		if r.code != 0 {
			t.Fatalf("ls --json: exit %d: %s", r.code, r.stderr)
		}
		var l mgmt.List[mgmt.Publication]
		if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
			t.Fatalf("ls --json output is not a listing: %v\n%s", err, r.stdout)
		}
		found := false
		for _, p := range l.Items {
			if p.PresentityURI == "sip:alice@example.com" {
				found = true
				if p.ETag != aliceETag || p.State != "active" || p.Event != "presence" {
					t.Errorf("alice listed as %+v", p)
				}
			}
		}
		if !found || l.Total != 2 {
			t.Fatalf("listing %+v, want alice and bad", l)
		}
		// The flag may come after the listing's name too.
		r = runBinary(t, bin, "ls", "publications", "--api", api, "--json", "--presentity", "sip:bad@example.com")
		if err := json.Unmarshal([]byte(r.stdout), &l); r.code != 0 || err != nil || l.Total != 1 || l.Items[0].LastStatus != 489 {
			t.Fatalf("filtered listing: exit %d %v %+v", r.code, err, l)
		}
	})

	t.Run("ls table", func(t *testing.T) {
		r := runBinary(t, bin, "ls", "--api", api, "publications")
		if r.code != 0 {
			t.Fatalf("ls: exit %d: %s", r.code, r.stderr)
		}
		lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("ls table: %d lines, want a header and 2 rows:\n%s", len(lines), r.stdout)
		}
		head := strings.Fields(lines[0])
		if len(head) < 4 || head[0] != "PRESENTITY_URI" || !strings.Contains(lines[0], "ETAG") || !strings.Contains(lines[0], "STATE") {
			t.Fatalf("ls table header %q", lines[0])
		}
		var alice string
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, "sip:alice@example.com ") {
				alice = l
			}
		}
		if alice == "" || !strings.Contains(alice, aliceETag) || !strings.Contains(alice, "active") {
			t.Fatalf("ls table has no row for alice with etag %s:\n%s", aliceETag, r.stdout)
		}
		// Columns are aligned: the ETAG column starts at the same offset.
		col := strings.Index(lines[0], "ETAG")
		if i := strings.Index(alice, aliceETag); i != col {
			t.Errorf("etag at column %d, header at %d:\n%s", i, col, r.stdout)
		}
	})

	t.Run("bad config key", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(bad, []byte("log_level: info\npua: {listn: []}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, sub := range []string{"run", "migrate"} {
			r := runBinary(t, bin, sub, "-config", bad)
			if r.code == 0 || !strings.Contains(r.stderr, "listn") || !strings.Contains(r.stderr, "line 2") {
				t.Errorf("%s with a bad key: exit %d, stderr %q; want non-zero and an error naming listn at line 2", sub, r.code, r.stderr)
			}
		}
	})

	t.Run("migrate", func(t *testing.T) {
		mdir := t.TempDir()
		mcfg := filepath.Join(mdir, "m.yaml")
		if err := os.WriteFile(mcfg, []byte("db_url: sqlite://"+filepath.Join(mdir, "m.db")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := runBinary(t, bin, "migrate", "-config", mcfg)
		if r.code != 0 || !strings.Contains(r.stdout, "applied") || !strings.Contains(r.stdout, "pua") {
			t.Fatalf("first migrate: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		r = runBinary(t, bin, "migrate", "-config", mcfg)
		if r.code != 0 || !strings.Contains(r.stdout, "up to date") || strings.Contains(r.stdout, "applied") {
			t.Fatalf("second migrate: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		db, err := store.Open(ctx, "sqlite://"+filepath.Join(mdir, "m.db"), "pua")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		if err := db.X.GetContext(ctx, &n, "SELECT COUNT(*) FROM pua"); err != nil || n != 0 {
			t.Fatalf("pua table after migrate: %d rows, %v", n, err)
		}
	})

	t.Run("sigterm flushes", func(t *testing.T) {
		if err := syscall.Kill(d.cmd.Process.Pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-d.exited:
		case <-time.After(waitLimit):
			t.Fatalf("daemon did not exit in %s after SIGTERM:\n%s", waitLimit, d.logs.String())
		}
		if d.err != nil {
			t.Fatalf("daemon exit after SIGTERM: %v, want status 0:\n%s", d.err, d.logs.String())
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		db, err := store.Open(ctx, "sqlite://"+dbPath, "pua")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var etags []string
		if err := db.X.SelectContext(ctx, &etags, "SELECT etag FROM pua WHERE pres_uri = ? AND event_name = ?", "sip:alice@example.com", "presence"); err != nil {
			t.Fatal(err)
		}
		if len(etags) != 1 || etags[0] != aliceETag {
			t.Fatalf("alice's rows in pua after SIGTERM: etags %v, want [%s]", etags, aliceETag)
		}
		var n int
		if err := db.X.GetContext(ctx, &n, "SELECT COUNT(*) FROM pua"); err != nil || n < 1 {
			t.Fatalf("pua rows: %d, %v", n, err)
		}
	})
}

// TestCLITopLevelHelpListsSubcommands: `puaside -h` (and --help) exits 0 and
// shows the usage with the subcommands, as `puaside help` does.
func TestCLITopLevelHelpListsSubcommands(t *testing.T) {
	bin := puasideBinary(t)
	for _, flag := range []string{"-h", "--help"} {
		r := runBinary(t, bin, flag)
		out := r.stdout + r.stderr
		if r.code != 0 {
			t.Errorf("puaside %s: exit %d: %s", flag, r.code, out)
		}
		var missing []string
		for _, want := range []string{"migrate", "version", "publish", "subscribe", "ls"} {
			if !strings.Contains(out, want) {
				missing = append(missing, want)
			}
		}
		if len(missing) > 0 {
			t.Errorf("puaside %s: output lacks the subcommands %v:\n%s", flag, missing, out)
		}
	}
}
