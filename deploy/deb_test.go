package deploy_test

// TestDebianPackage builds the .deb with scripts/build-deb.sh, installs it
// on this machine with dpkg, checks what it installed, runs the installed
// binary with the installed configuration as the puaside user (in a network
// namespace of its own, so the configuration's fixed ports are free) while
// the operator guide's commands are run against it, verifies the installed
// unit with systemd-analyze, and removes and purges the package, checking
// that nothing is left.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/puaside/puaside/config"
)

// debTestVersion is the version the test stamps; a package left installed
// by an interrupted run is recognised by it and purged.
const debTestVersion = "1.2.3+deb.test"

// packagePaths are the paths the package creates, directly or through its
// maintainer scripts; none may be left after a purge.
var packagePaths = []string{
	"/usr/bin/puaside", "/lib/systemd/system/puaside.service", "/etc/puaside",
	"/var/lib/puaside", "/usr/share/doc/puaside",
}

// runCmd runs a command with a deadline and returns its combined output.
func runCmd(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// mustRunCmd is runCmd that fails the test on an error.
func mustRunCmd(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := runCmd(t, timeout, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// installedVersion is the installed version of the puaside package, "" if
// it is not installed.
func installedVersion(t *testing.T) string {
	out, err := runCmd(t, 30*time.Second, "dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", "puaside")
	if err != nil {
		return ""
	}
	status, ver, _ := strings.Cut(strings.TrimSpace(out), " ")
	if status == "not-installed" {
		return ""
	}
	return ver
}

// lockMachine serialises the tests that install packages on this machine.
func lockMachine(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "puaside-deb-test.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
}

func TestDebianPackage(t *testing.T) {
	for _, tool := range []string{"dpkg-deb", "dpkg", "unshare", "setpriv", "ip", "curl", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (scripts/test.sh installs it): %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("installing a package needs root (scripts/test.sh runs the tests as root)")
	}
	lockMachine(t)
	switch v := installedVersion(t); {
	case v == debTestVersion:
		mustRunCmd(t, 2*time.Minute, "dpkg", "-P", "puaside")
	case v != "":
		t.Skipf("puaside %s is installed on this machine; the test does not replace it", v)
	}
	if _, err := runCmd(t, 10*time.Second, "getent", "passwd", "puaside"); err == nil {
		t.Skip("a puaside user exists without the package; the test's purge would remove it")
	}

	root := repoRoot(t)
	dist := t.TempDir()
	cmd := exec.Command(filepath.Join(root, "scripts", "build-deb.sh"), "-o", dist, "-v", debTestVersion)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/build-deb.sh: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	deb := lines[len(lines)-1]
	if filepath.Base(deb) != "puaside_"+debTestVersion+"_"+debArch(t)+".deb" {
		t.Fatalf("package file %q", deb)
	}

	t.Cleanup(func() {
		if installedVersion(t) == debTestVersion {
			if out, err := runCmd(t, 2*time.Minute, "dpkg", "-P", "puaside"); err != nil {
				t.Errorf("cleanup: dpkg -P puaside: %v\n%s", err, out)
			}
		}
	})
	mustRunCmd(t, 2*time.Minute, "dpkg", "-i", deb)
	checkInstalled(t)
	// The maintainer scripts are idempotent: installing the same package
	// again (prerm upgrade, postinst configure) keeps everything as it is.
	mustRunCmd(t, 2*time.Minute, "dpkg", "-i", deb)
	checkInstalled(t)

	// The installed configuration is valid.
	if out := mustRunCmd(t, 30*time.Second, "/usr/bin/puaside", "check", "-config", "/etc/puaside/puaside.yaml"); !strings.Contains(out, "configuration OK") {
		t.Errorf("puaside check of the installed configuration: %q", out)
	}
	cfg, err := config.Load("/etc/puaside/puaside.yaml")
	if err != nil {
		t.Fatalf("installed configuration: %v", err)
	}
	if cfg.DBURL != "sqlite:///var/lib/puaside/puaside.db" {
		t.Errorf("installed db_url %q, want the state directory's SQLite file", cfg.DBURL)
	}
	// As README says: the embedded presence server by default, and the
	// file's head says to check the file before enabling the unit.
	if cfg.PUA.ServerAddress != "" || cfg.PA.Mode != "auto" {
		t.Errorf("installed configuration: pua.server_address %q, pa.mode %q; want the embedded presence server", cfg.PUA.ServerAddress, cfg.PA.Mode)
	}
	head := readFile(t, "/etc/puaside/puaside.yaml")
	for _, w := range []string{"# puaside serves presence itself (pa,", "#   puaside check -config /etc/puaside/puaside.yaml\n", "#   systemctl enable --now puaside\n"} {
		if !strings.Contains(head, w) {
			t.Errorf("installed configuration's comment lacks %q", w)
		}
	}
	if strings.Contains(head, "(if available)") {
		t.Error("installed configuration's comment still says check is available only perhaps")
	}

	// systemd's own checks of the installed unit (any output is a finding).
	if out, err := runCmd(t, time.Minute, "systemd-analyze", "verify", "/lib/systemd/system/puaside.service"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	walkGuide(t, root)

	mustRunCmd(t, 2*time.Minute, "dpkg", "-r", "puaside")
	for _, p := range []string{"/usr/bin/puaside", "/lib/systemd/system/puaside.service"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("dpkg -r left %s", p)
		}
	}
	if _, err := os.Stat("/etc/puaside/puaside.yaml"); err != nil {
		t.Errorf("dpkg -r removed the configuration (a conffile stays until purge): %v", err)
	}
	mustRunCmd(t, 2*time.Minute, "dpkg", "-P", "puaside")
	for _, p := range packagePaths {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("dpkg -P left %s", p)
		}
	}
	for _, db := range []string{"passwd", "group"} {
		if _, err := runCmd(t, 10*time.Second, "getent", db, "puaside"); err == nil {
			t.Errorf("dpkg -P left the puaside entry in %s", db)
		}
	}
	if v := installedVersion(t); v != "" {
		t.Errorf("dpkg still lists puaside %s", v)
	}
}

// debArch is Debian's name of the architecture the Go toolchain targets.
func debArch(t *testing.T) string {
	out := mustRunCmd(t, 10*time.Second, "dpkg", "--print-architecture")
	return strings.TrimSpace(out)
}

// checkInstalled checks the files, the user and the permissions the
// package's installation leaves.
func checkInstalled(t *testing.T) {
	t.Helper()
	if out := mustRunCmd(t, 10*time.Second, "/usr/bin/puaside", "version"); !strings.HasPrefix(out, "puaside "+debTestVersion+" (revision ") {
		t.Errorf("installed puaside version: %q", out)
	}
	if out := mustRunCmd(t, 10*time.Second, "/usr/bin/puaside", "--version"); !strings.HasPrefix(out, "puaside "+debTestVersion+" ") {
		t.Errorf("installed puaside --version: %q", out)
	}
	pw := strings.Split(strings.TrimSpace(mustRunCmd(t, 10*time.Second, "getent", "passwd", "puaside")), ":")
	if len(pw) != 7 || pw[5] != "/var/lib/puaside" || pw[6] != "/usr/sbin/nologin" {
		t.Errorf("puaside user: %v", pw)
	}
	if uid := pw[2]; len(uid) > 0 && uid != "" {
		if n := mustAtoi(t, uid); n == 0 || n >= 1000 {
			t.Errorf("puaside user has uid %d, want a system uid", n)
		}
	}
	for _, c := range []struct {
		path, owner string
		mode        os.FileMode
	}{
		{"/var/lib/puaside", "puaside:puaside", os.ModeDir | 0o750},
		{"/etc/puaside", "root:puaside", os.ModeDir | 0o750},
		{"/etc/puaside/puaside.yaml", "root:puaside", 0o640},
		{"/usr/bin/puaside", "root:root", 0o755},
		{"/lib/systemd/system/puaside.service", "root:root", 0o644},
	} {
		out, err := runCmd(t, 10*time.Second, "stat", "-c", "%U:%G", c.path)
		fi, serr := os.Stat(c.path)
		if err != nil || serr != nil {
			t.Errorf("%s: %v %v", c.path, err, serr)
			continue
		}
		if strings.TrimSpace(out) != c.owner || fi.Mode() != c.mode {
			t.Errorf("%s: %s %v, want %s %v", c.path, strings.TrimSpace(out), fi.Mode(), c.owner, c.mode)
		}
	}
	if out := mustRunCmd(t, 10*time.Second, "dpkg-query", "-W", "-f", "${Conffiles}", "puaside"); !strings.Contains(out, "/etc/puaside/puaside.yaml ") {
		t.Errorf("the configuration is not a conffile: %q", out)
	}
	unit := readFile(t, "/lib/systemd/system/puaside.service")
	if !strings.Contains(unit, "ExecStart=/usr/bin/puaside run -config /etc/puaside/puaside.yaml\n") {
		t.Errorf("installed unit does not start the installed binary:\n%s", unit)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}
