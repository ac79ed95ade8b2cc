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

// TestPresenceCfgSQLiteDefault follows the documented first start of
// deploy/kamailio/presence.cfg on SQLite: deploy/kamailio/presence-db.sh
// creates the default database (/var/lib/kamailio/presence.db, which
// Debian's packages do not create), after which Kamailio starts with the
// configuration's defaults and stays up. It runs in mount and network
// namespaces of its own, with a fresh /var/lib, so the machine's is not
// touched and port 5060 is free.
func TestPresenceCfgSQLiteDefault(t *testing.T) {
	for _, tool := range []string{"unshare", "kamailio", "sqlite3", "timeout"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (scripts/test.sh installs it): %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("a mount namespace needs root (scripts/test.sh runs the tests as root)")
	}
	root := repoRoot(t)
	work := t.TempDir()
	script := `set -u
mount -t tmpfs tmpfs /var/lib || exit 10
ip link set lo up || exit 11
"$ROOT/deploy/kamailio/presence-db.sh" || exit 12
"$ROOT/deploy/kamailio/presence-db.sh" | grep -q 'left as it is' || exit 13
[ "$(sqlite3 /var/lib/kamailio/presence.db 'PRAGMA journal_mode;')" = wal ] || exit 14
sqlite3 /var/lib/kamailio/presence.db 'SELECT count(*) FROM presentity;' >/dev/null || exit 15
# Started with the defaults: it must still run after 4 s (timeout's 124).
timeout 4 kamailio -f "$ROOT/deploy/kamailio/presence.cfg" -DD -E -w "$WORK" >"$WORK/kamailio.log" 2>&1
echo $? >"$WORK/kamailio.exit"
`
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-m", "-n", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "ROOT="+root, "WORK="+work)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	logs, _ := os.ReadFile(filepath.Join(work, "kamailio.log"))
	if err != nil {
		t.Fatalf("presence-db.sh steps: %v\n%s", err, out)
	}
	code, _ := os.ReadFile(filepath.Join(work, "kamailio.exit"))
	if strings.TrimSpace(string(code)) != "124" || strings.Contains(string(logs), "failed to open sqlite database") {
		t.Fatalf("kamailio with presence.cfg's defaults did not stay up (exit %s):\n%s", strings.TrimSpace(string(code)), logs)
	}
}
