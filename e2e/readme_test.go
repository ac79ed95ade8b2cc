package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestREADMERunCommandWithDefaults runs puaside exactly as README.md's first
// set-up command does — no configuration file, built-in defaults — and checks
// that it serves its API, runs the embedded presence server (phones can
// subscribe: the default run lights lamps) and stops cleanly on SIGTERM,
// leaving its SQLite database in the working directory. The defaults use
// fixed loopback ports (5065, 5080, 5090, 5091, 9060, 8080), so the run
// happens in a network namespace of its own, where those ports are free
// whatever the machine runs.
func TestREADMERunCommandWithDefaults(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare (util-linux) is needed: %v", err)
	}
	dir := t.TempDir()
	bin := puasideBinary(t)
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	script := `set -u
ip link set lo up || exit 10
"$BIN" 2>daemon.log & pid=$!
i=0
until "$BIN" ls flags >/dev/null 2>&1; do
  i=$((i+1))
  if [ $i -gt 200 ]; then kill -KILL $pid; exit 11; fi
  sleep 0.1
done
"$BIN" ls publications --json >ls.json || { kill -KILL $pid; exit 12; }
"$BIN" ls watchers --json >watchers.json || { kill -KILL $pid; exit 13; }
kill -TERM $pid
wait $pid
`
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-n", "sh", "-c", script)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "BIN="+bin)
	out, err := cmd.CombinedOutput()
	logs, _ := os.ReadFile(filepath.Join(work, "daemon.log"))
	if err != nil {
		t.Fatalf("default run: %v\n%s\ndaemon log:\n%s", err, out, logs)
	}
	if !strings.Contains(string(logs), "puaside started") || !strings.Contains(string(logs), "puaside stopped") {
		t.Fatalf("daemon log lacks start/stop:\n%s", logs)
	}
	if _, err := os.Stat(filepath.Join(work, "puaside.db")); err != nil {
		t.Fatalf("no puaside.db in the working directory: %v", err)
	}
	if !strings.Contains(string(logs), "presence server listening") || !strings.Contains(string(logs), "udp:127.0.0.1:5065") {
		t.Fatalf("the default run has no presence server on 127.0.0.1:5065:\n%s", logs)
	}
	if ws, _ := os.ReadFile(filepath.Join(work, "watchers.json")); !strings.Contains(string(ws), `"items"`) {
		t.Fatalf("ls watchers --json: %s", ws)
	}
	ls, _ := os.ReadFile(filepath.Join(work, "ls.json"))
	if !strings.Contains(string(ls), `"items"`) {
		t.Fatalf("ls publications --json: %s", ls)
	}
}
