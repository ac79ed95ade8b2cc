package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/kamailiotest"
)

// The puaside binary as a subprocess: built once per test binary, run to
// completion for its subcommands, or started as a daemon (`puaside run`)
// in its own process group; and the configuration file it reads.

// buildLimit bounds the build of the binary.
const buildLimit = 5 * time.Minute

// binDir is the directory the binary is built in: one per test process,
// removed by TestMain.
func binDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("puaside-e2e-bin-%d", os.Getpid()))
}

// builtBinary builds ./cmd/puaside into binDir, once per test binary, and
// returns the binary's absolute path.
var builtBinary = sync.OnceValues(func() (string, error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	if err := os.MkdirAll(binDir(), 0o755); err != nil {
		return "", fmt.Errorf("binary directory: %w", err)
	}
	bin := filepath.Join(binDir(), "puaside")
	ctx, cancel := context.WithTimeout(context.Background(), buildLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/puaside")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/puaside: %w\n%s", err, out)
	}
	return bin, nil
})

// TestMain runs the tests and then removes the built binary, if any.
func TestMain(m *testing.M) {
	code := m.Run()
	_ = os.RemoveAll(binDir())
	os.Exit(code)
}

// puasideBinary returns the binary (built on first use) or fails the test.
// PUASIDE_E2E_BINARY names another build to run instead (to measure an
// earlier build with the same benchmark).
func puasideBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("PUASIDE_E2E_BINARY"); bin != "" {
		return bin
	}
	bin, err := builtBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// procEnv is the environment of a run of the binary: the test's, without
// the variables that would point it at another API or configuration.
func procEnv() []string {
	return append(os.Environ(), "PUASIDE_API=", "PUASIDE_TOKEN=", "PUASIDE_CONFIG=")
}

// runProc runs bin with args to completion (bounded by waitLimit, its
// process group killed at the limit), its output going to stdout and
// stderr (which may be the same buffer), and returns its exit status. A
// run that cannot start or does not end in time fails the test.
func runProc(t *testing.T, bin string, stdout, stderr *kamailiotest.SyncBuffer, args ...string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = procEnv()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("puaside %s: did not exit within %s\nstderr: %s", strings.Join(args, " "), waitLimit, stderr.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("puaside %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr.String())
	return 0
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
	var out, errb kamailiotest.SyncBuffer
	code := runProc(t, bin, &out, &errb, args...)
	return cliResult{stdout: out.String(), stderr: errb.String(), code: code}
}

// runCombined runs the binary with args (bounded by waitLimit) and returns
// its combined output and exit status.
func runCombined(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	var out kamailiotest.SyncBuffer
	code := runProc(t, bin, &out, &out, args...)
	return out.String(), code
}

// daemonProc is one `puaside run` subprocess, in its own process group.
type daemonProc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	logs   *kamailiotest.SyncBuffer
	exited chan struct{}
	err    error // Wait's result, valid once exited is closed
}

// startDaemonProc runs `bin run -config cfgPath` and waits until the
// management server at httpAddr (host:port) answers /readyz with 200. The
// process group is killed (SIGKILL) when the test ends; its output is
// logged if the test failed.
func startDaemonProc(t testing.TB, name, bin, cfgPath, httpAddr string) *daemonProc {
	t.Helper()
	p := &daemonProc{t: t, name: name, logs: &kamailiotest.SyncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "run", "-config", cfgPath)
	p.cmd.Env = procEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: start: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() && os.Getenv("PUASIDE_TEST_QUIET") == "" {
			t.Logf("%s output:\n%s", p.name, p.logs.String())
		}
	})
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(waitLimit)
	for {
		select {
		case <-p.exited:
			t.Fatalf("%s exited before ready (%v):\n%s", name, p.err, p.logs.String())
		default:
		}
		if resp, err := hc.Get("http://" + httpAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within %s:\n%s", name, waitLimit, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL to the process group and waits for the process to
// exit (bounded). Safe to call more than once.
func (p *daemonProc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(waitLimit):
		p.t.Errorf("%s: still running %s after SIGKILL", p.name, waitLimit)
	}
}

// term sends SIGTERM to the daemon (not its group) and waits, bounded, for
// a clean exit: status 0 and the "puaside stopped" log line.
func (p *daemonProc) term() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(waitLimit):
		p.t.Fatalf("%s: still running %s after SIGTERM", p.name, waitLimit)
	}
	if p.err != nil {
		p.t.Fatalf("%s: exit after SIGTERM: %v\n%s", p.name, p.err, p.logs.String())
	}
	if !strings.Contains(p.logs.String(), "puaside stopped") {
		p.t.Fatalf("%s: no \"puaside stopped\" line after SIGTERM:\n%s", p.name, p.logs.String())
	}
}

// yamlList renders strings as a YAML flow sequence of quoted scalars.
func yamlList(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = strconv.Quote(v)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// daemonConfigYAML renders the parts of cfg these tests set as an operator
// would write them in the configuration file.
func daemonConfigYAML(cfg config.Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log_level: %s\n", cfg.LogLevel)
	fmt.Fprintf(&b, "db_url: %s\n", strconv.Quote(cfg.DBURL))
	fmt.Fprintf(&b, "features:\n  usrloc: %t\n  dialoginfo: %t\n  bla: %t\n",
		cfg.Features.Usrloc, cfg.Features.Dialoginfo, cfg.Features.BLA)
	fmt.Fprintf(&b, "pua:\n  listen: %s\n  server_address: %s\n", yamlList(cfg.PUA.Listen), strconv.Quote(cfg.PUA.ServerAddress))
	fmt.Fprintf(&b, "  default_expires: %s\n  update_period: %s\n  sync_etags: %t\n  retry_min: %s\n  retry_max: %s\n  request_timeout: %s\n",
		cfg.PUA.DefaultExpires, cfg.PUA.UpdatePeriod, cfg.PUA.SyncETags, cfg.PUA.RetryMin, cfg.PUA.RetryMax, cfg.PUA.RequestTimeout)
	if cfg.PUA.InitialExpires > 0 {
		fmt.Fprintf(&b, "  initial_expires: %s\n", cfg.PUA.InitialExpires)
	}
	if cfg.PUA.ClaimTimeout > 0 {
		fmt.Fprintf(&b, "  claim_timeout: %s\n", cfg.PUA.ClaimTimeout)
	}
	fmt.Fprintf(&b, "ingest:\n  replicate_listen: %s\n  trace_listen: %s\n  hep_listen: %s\n",
		yamlList(cfg.Ingest.ReplicateListen), yamlList(cfg.Ingest.TraceListen), yamlList(cfg.Ingest.HEPListen))
	fmt.Fprintf(&b, "usrloc:\n  publish_expires: %s\n  closed_linger: %s\n  flush_interval: %s\n  min_expires: %s\n",
		cfg.Usrloc.PublishExpires, cfg.Usrloc.ClosedLinger, cfg.Usrloc.FlushInterval, cfg.Usrloc.MinExpires)
	fmt.Fprintf(&b, "dialoginfo:\n  publish_expires: %s\n  terminated_linger: %s\n  flush_interval: %s\n",
		cfg.Dialoginfo.PublishExpires, cfg.Dialoginfo.TerminatedLinger, cfg.Dialoginfo.FlushInterval)
	fmt.Fprintf(&b, "pa:\n  mode: %s\n  listen: %s\n", cfg.PA.Mode, yamlList(cfg.PA.Listen))
	fmt.Fprintf(&b, "http:\n  http_listen: %s\n  wait_timeout: %s\n", strconv.Quote(cfg.HTTP.HTTPListen), cfg.HTTP.WaitTimeout)
	if cl := cfg.Cluster; cl.Enabled {
		fmt.Fprintf(&b, "cluster:\n  enabled: true\n  instance_id: %s\n  lease_ttl: %s\n  shard_count: %d\n",
			strconv.Quote(cl.InstanceID), cl.TTL, cl.Shards)
	}
	if rc := cfg.Reconcile; rc.Enabled {
		fmt.Fprintf(&b, "reconcile:\n  enabled: true\n  rpc_url: %s\n  interval: %s\n  timeout: %s\n  grace: %s\n  default_domain: %s\n",
			strconv.Quote(rc.RPCURL), rc.Interval, rc.Timeout, rc.Grace, strconv.Quote(rc.DefaultDomain))
	}
	return b.String()
}

// writeDaemonConfig writes cfg's YAML to a file in the test's directory
// after checking that the daemon's own loader reads back the same values.
func writeDaemonConfig(t testing.TB, cfg config.Config) string {
	t.Helper()
	yml := daemonConfigYAML(cfg)
	got, err := config.Parse([]byte(yml))
	if err != nil {
		t.Fatalf("configuration file does not load: %v\n%s", err, yml)
	}
	if got.DBURL != cfg.DBURL || got.PUA.UpdatePeriod != cfg.PUA.UpdatePeriod || got.PUA.SyncETags != cfg.PUA.SyncETags || got.HTTP.WaitTimeout != cfg.HTTP.WaitTimeout ||
		got.Usrloc.PublishExpires != cfg.Usrloc.PublishExpires || got.Dialoginfo.PublishExpires != cfg.Dialoginfo.PublishExpires ||
		got.Reconcile != cfg.Reconcile {
		t.Fatalf("configuration file reads back differently:\n%s", yml)
	}
	path := filepath.Join(t.TempDir(), "puaside.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
