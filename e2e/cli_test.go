package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/puaside/puaside/mgmt"
	"github.com/puaside/puaside/store"
)

// cliBuildLimit bounds the build of the binary.
const cliBuildLimit = 5 * time.Minute

// buildCLI builds ./cmd/puaside into dir and returns the binary's path.
func buildCLI(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "puaside")
	ctx, cancel := context.WithTimeout(context.Background(), cliBuildLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/puaside")
	cmd.Dir = ".." // the module root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/puaside: %v\n%s", err, out)
	}
	return bin
}

// cliResult is the outcome of one run of the binary.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runBinary runs the binary with args (bounded by waitLimit) and returns
// its output and exit status.
func runBinary(t *testing.T, bin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "PUASIDE_API=", "PUASIDE_TOKEN=", "PUASIDE_CONFIG=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := cliResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		res.code = ee.ExitCode()
	default:
		t.Fatalf("puaside %s: %v\nstderr: %s", strings.Join(args, " "), err, res.stderr)
	}
	return res
}

// lockedBuffer is a bytes.Buffer safe for a writer goroutine and readers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// daemonProc is `puaside run` as a subprocess in its own process group.
type daemonProc struct {
	cmd    *exec.Cmd
	logs   *lockedBuffer
	exited chan struct{}
	err    error // Wait's result, once exited is closed
	api    string
}

// cliDaemonConfig writes a configuration file for a daemon whose every
// listener is on a free loopback port, with its SQLite database in dir and
// the presence server at server; it returns the file and the API's URL.
func cliDaemonConfig(t *testing.T, dir, server string) (path, api, dbPath string) {
	t.Helper()
	sip, rep := freePort(t), freePort(t)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	dbPath = filepath.Join(dir, "puaside.db")
	yml := fmt.Sprintf(`log_level: debug
db_url: sqlite://%s
pua:
  listen: [udp:127.0.0.1:%d, tcp:127.0.0.1:%d]
  server_address: %s
  request_timeout: 2s
  retry_min: 200ms
  retry_max: 2s
  update_period: 1h
ingest:
  replicate_listen: [udp:127.0.0.1:%d, tcp:127.0.0.1:%d]
  trace_listen: [udp:127.0.0.1:%d]
  hep_listen: [udp:127.0.0.1:%d]
http:
  http_listen: %s
  wait_timeout: 5s
`, dbPath, sip, sip, server, rep, rep, freePort(t), freePort(t), httpAddr)
	path = filepath.Join(dir, "puaside.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, "http://" + httpAddr, dbPath
}

// startDaemonProc starts `bin run -config cfgPath` and waits until /readyz
// answers 200. The process group is killed when the test ends if the
// process is still running.
func startDaemonProc(t *testing.T, bin, cfgPath, api string) *daemonProc {
	t.Helper()
	p := &daemonProc{logs: &lockedBuffer{}, exited: make(chan struct{}), api: api}
	p.cmd = exec.Command(bin, "run", "-config", cfgPath)
	p.cmd.Env = append(os.Environ(), "PUASIDE_CONFIG=")
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start daemon: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		if t.Failed() && os.Getenv("PUASIDE_TEST_QUIET") == "" {
			t.Logf("daemon output:\n%s", p.logs.String())
		}
	})
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(waitLimit)
	for {
		select {
		case <-p.exited:
			t.Fatalf("daemon exited before ready (%v):\n%s", p.err, p.logs.String())
		default:
		}
		if resp, err := hc.Get(api + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready in %s:\n%s", waitLimit, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCLIAgainstDaemon runs the built binary: the daemon as a subprocess
// with a configuration file and a fake presence server, and the management
// subcommands against it; then it stops the daemon with SIGTERM and checks
// that it exited 0 having flushed its publications to SQLite.
func TestCLIAgainstDaemon(t *testing.T) {
	bin := buildCLI(t, t.TempDir())
	fake := startAPIFakePS(t)
	dir := t.TempDir()
	cfgPath, api, dbPath := cliDaemonConfig(t, dir, fake.URI())
	d := startDaemonProc(t, bin, cfgPath, api)

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
	bin := buildCLI(t, t.TempDir())
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
