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
)

// fcBuildLimit bounds the build of the daemon binary.
const fcBuildLimit = 5 * time.Minute

// fcBinary builds ./cmd/puaside into tmp/puaside at the module root, once
// per test binary, and returns the binary's absolute path.
var fcBinary = sync.OnceValues(func() (string, error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	bin := filepath.Join(root, "tmp", "puaside")
	ctx, cancel := context.WithTimeout(context.Background(), fcBuildLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/puaside")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/puaside: %w\n%s", err, out)
	}
	return bin, nil
})

// fcBuild returns the daemon binary or fails the test.
func fcBuild(t *testing.T) string {
	t.Helper()
	bin, err := fcBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// fcLogs is a goroutine-safe output buffer of a subprocess.
type fcLogs struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *fcLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *fcLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fcProc is one `puaside run` subprocess, in its own process group.
type fcProc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	logs   *fcLogs
	exited chan struct{}
	err    error // Wait's result, valid once exited is closed
}

// fcStart runs `bin run -config cfgPath` and waits until the management
// server at httpAddr answers /readyz with 200. The process group is killed
// (SIGKILL) when the test ends; its output is logged if the test failed.
func fcStart(t *testing.T, name, bin, cfgPath, httpAddr string) *fcProc {
	t.Helper()
	p := &fcProc{t: t, name: name, logs: &fcLogs{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "run", "-config", cfgPath)
	p.cmd.Env = append(os.Environ(), "PUASIDE_CONFIG=")
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
func (p *fcProc) kill() {
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

// fcRun runs the binary to completion (bounded by waitLimit) and returns
// its combined output and exit status; a run that does not end in time
// fails the test.
func fcRun(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "PUASIDE_CONFIG=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("puaside %s: did not exit within %s\n%s", strings.Join(args, " "), waitLimit, out)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("puaside %s: %v\n%s", strings.Join(args, " "), err, out)
	return "", 0
}

// fcYAMLList renders strings as a YAML flow sequence of quoted scalars.
func fcYAMLList(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = strconv.Quote(v)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// fcConfigYAML renders the parts of cfg the full-chain test sets as an
// operator would write them in the configuration file.
func fcConfigYAML(cfg config.Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "log_level: %s\n", cfg.LogLevel)
	fmt.Fprintf(&b, "db_url: %s\n", strconv.Quote(cfg.DBURL))
	fmt.Fprintf(&b, "features:\n  usrloc: %t\n  dialoginfo: %t\n  bla: %t\n",
		cfg.Features.Usrloc, cfg.Features.Dialoginfo, cfg.Features.BLA)
	fmt.Fprintf(&b, "pua:\n  listen: %s\n  server_address: %s\n", fcYAMLList(cfg.PUA.Listen), strconv.Quote(cfg.PUA.ServerAddress))
	fmt.Fprintf(&b, "  default_expires: %s\n  update_period: %s\n  retry_min: %s\n  retry_max: %s\n  request_timeout: %s\n",
		cfg.PUA.DefaultExpires, cfg.PUA.UpdatePeriod, cfg.PUA.RetryMin, cfg.PUA.RetryMax, cfg.PUA.RequestTimeout)
	fmt.Fprintf(&b, "ingest:\n  replicate_listen: %s\n  trace_listen: %s\n  hep_listen: %s\n",
		fcYAMLList(cfg.Ingest.ReplicateListen), fcYAMLList(cfg.Ingest.TraceListen), fcYAMLList(cfg.Ingest.HEPListen))
	fmt.Fprintf(&b, "usrloc:\n  publish_expires: %s\n  closed_linger: %s\n  flush_interval: %s\n  min_expires: %d\n",
		cfg.Usrloc.PublishExpires, cfg.Usrloc.ClosedLinger, cfg.Usrloc.FlushInterval, cfg.Usrloc.MinExpires)
	fmt.Fprintf(&b, "dialoginfo:\n  publish_expires: %s\n  terminated_linger: %s\n  flush_interval: %s\n",
		cfg.Dialoginfo.PublishExpires, cfg.Dialoginfo.TerminatedLinger, cfg.Dialoginfo.FlushInterval)
	fmt.Fprintf(&b, "http:\n  http_listen: %s\n", strconv.Quote(cfg.HTTP.HTTPListen))
	return b.String()
}

// fcWriteConfig writes cfg's YAML to a file in the test's directory after
// checking that the daemon's own loader reads back the same values.
func fcWriteConfig(t *testing.T, cfg config.Config) string {
	t.Helper()
	yml := fcConfigYAML(cfg)
	got, err := config.Parse([]byte(yml))
	if err != nil {
		t.Fatalf("configuration file does not load: %v\n%s", err, yml)
	}
	if got.DBURL != cfg.DBURL || got.PUA.UpdatePeriod != cfg.PUA.UpdatePeriod ||
		got.Usrloc.PublishExpires != cfg.Usrloc.PublishExpires || got.Dialoginfo.PublishExpires != cfg.Dialoginfo.PublishExpires {
		t.Fatalf("configuration file reads back differently:\n%s", yml)
	}
	path := filepath.Join(t.TempDir(), "puaside.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
