package deploy_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestComposeHealthcheckWithToken runs the compose stack's puaside
// configuration with the token its comment asks for, and the healthcheck
// command of docker-compose.yml against it: the healthcheck must pass
// (the registrar waits for it), while the token is really on (an API call
// without it is refused). The container's addresses are put on the loopback
// interface of a network namespace of its own; the database is SQLite
// instead of the stack's MariaDB and the presence server an address
// nothing listens on (no publication is sent, so it is not found down).
func TestComposeHealthcheckWithToken(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare (util-linux) is needed: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("adding addresses in a network namespace needs root (scripts/test.sh runs the tests as root)")
	}
	root := repoRoot(t)
	c := loadCompose(t, root)
	hc := c.Services["puaside"].Healthcheck.Test
	if len(hc) < 2 || hc[0] != "CMD" || hc[1] != "/puaside" {
		t.Fatalf("puaside healthcheck %q: want [CMD /puaside ...]", hc)
	}
	bin := buildPuaside(t)
	work := t.TempDir()

	const token = "compose-test-token-0123456789abcdef"
	cfg := readFile(t, filepath.Join(root, "deploy", "compose", "puaside.yaml"))
	for old, repl := range map[string]string{
		"db_url: mysql://puaside:puaside@mariadb:3306/puaside": "db_url: sqlite://" + filepath.Join(work, "puaside.db"),
		"server_address: sip:presence:5060":                    "server_address: sip:127.0.0.1:5060",
		"  allow_insecure: true\n":                             "  allow_insecure: true\n  token: " + token + "\n",
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("deploy/compose/puaside.yaml lacks %q", old)
		}
		cfg = strings.Replace(cfg, old, repl, 1)
	}
	if err := os.WriteFile(filepath.Join(work, "puaside.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	check := bin + " " + strings.Join(hc[2:], " ")
	script := `set -u
ip link set lo up || exit 10
ip addr add 172.28.0.20/32 dev lo || exit 11
` + check + ` >/dev/null 2>&1 && exit 12   # nothing runs yet: must fail
"$BIN" run -config "$WORK/puaside.yaml" 2>"$WORK/daemon.log" & pid=$!
i=0
until ` + check + ` >"$WORK/health.out" 2>&1; do
  i=$((i+1))
  if [ $i -gt 100 ]; then kill -KILL $pid; exit 13; fi
  sleep 0.1
done
# The token is on: the API refuses a call without it.
"$BIN" ls publications --api http://127.0.0.1:8080 >/dev/null 2>&1 && { kill -KILL $pid; exit 14; }
"$BIN" ls publications --api http://127.0.0.1:8080 --token "$TOKEN" >/dev/null || { kill -KILL $pid; exit 15; }
kill -TERM $pid
wait $pid
`
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-n", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "BIN="+bin, "WORK="+work, "TOKEN="+token)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		logs, _ := os.ReadFile(filepath.Join(work, "daemon.log"))
		health, _ := os.ReadFile(filepath.Join(work, "health.out"))
		t.Fatalf("healthcheck %q with http.token set: %v\n%s\nlast healthcheck output: %s\ndaemon log:\n%s", hc, err, out, health, logs)
	}
}
