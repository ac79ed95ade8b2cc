package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/kamailiotest"
)

// TestSIGHUPKeepsTheDaemon runs the built binary and sends it SIGHUP: the
// daemon stays up and logs the reload, applies a new log level, refuses a
// broken file, and SIGTERM then stops it cleanly (exit 0, "stopped").
func TestSIGHUPKeepsTheDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "puaside")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfgPath := filepath.Join(dir, "puaside.yaml")
	writeCfg := func(level string) {
		writeQuietConfig(t, cfgPath, filepath.Join(dir, "puaside.db"), "log_level: "+level+"\n")
	}
	writeCfg("info")

	logs := &kamailiotest.SyncBuffer{}
	cmd := exec.Command(bin, "run", "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	waitLog := func(what string) {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for !strings.Contains(logs.String(), what) {
			select {
			case <-exited:
				t.Fatalf("daemon exited (%v) while waiting for %q:\n%s", waitErr, what, logs.String())
			case <-deadline:
				t.Fatalf("no %q in the log within 60s:\n%s", what, logs.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	waitLog("puaside started")

	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("reload: done")

	writeCfg("debug")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("reload: log level changed")

	if err := os.WriteFile(cfgPath, []byte("log_level: [broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("reload refused")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", waitErr, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit within 30s of SIGTERM:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "puaside stopped") {
		t.Errorf("no \"puaside stopped\" line:\n%s", logs.String())
	}
}
