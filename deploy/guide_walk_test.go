package deploy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// guideElsewhere are the operator guide's sh commands another test runs, by
// prefix, with that test's name.
func guideElsewhere() map[string]string {
	return map[string]string{
		"scripts/stack.sh":               "TestStack runs the stack script's commands on free ports",
		"deploy/kamailio/presence-db.sh": "TestPresenceCfgSQLiteDefault runs it in a mount namespace with a fresh /var/lib",
	}
}

// guideNotRunnable are command lines of the guide's text blocks that no test
// runs here, each with the reason.
func guideNotRunnable() map[string]string {
	return map[string]string{
		"docker compose up -d --build":                             "no Docker engine on the test machines; TestCompose* check the compose file and TestDockerBuildCommandMakesStaticBinary its build",
		"PUASIDE_MIRROR=WITH_HEP docker compose up -d":             "no Docker engine on the test machines",
		"docker compose ps":                                        "no Docker engine on the test machines",
		"docker compose logs -f puaside":                           "no Docker engine on the test machines",
		"install -m 0755 puaside /usr/local/bin/puaside":           "installs over the machine's binary; TestDebianPackage installs the packaged one",
		"systemctl restart puaside":                                "systemd is not PID 1 on the test machines; TestDebianPackage runs the installed unit's command line and systemd-analyze verifies the unit",
		"puaside migrate -config /etc/puaside/puaside.yaml":        "the same line is in an sh block, walked by TestDebianPackage",
		"go build -o puaside ./cmd/puaside":                        "writes into the checkout; TestDockerBuildCommandMakesStaticBinary and the e2e tests run the same build with an output elsewhere",
		"go install github.com/puaside/puaside/cmd/puaside@latest": "needs the module from the network; the local build is the same package",
		"scripts/build-deb.sh":                                     "TestDebianPackage runs it, writing to a temporary directory (-o) with a test version (-v)",
		"dpkg -i dist/puaside_*.deb":                               "TestDebianPackage installs the package it built with dpkg -i",
		"systemctl enable --now puaside":                           "systemd is not PID 1 on the test machines; TestDebianPackage runs the installed unit's ExecStart as its user and systemd-analyze verifies the unit",
	}
}

// guideInlineExcused are the commands the guide's prose names (inline code)
// that neither the walk nor another test runs as written, by prefix, each
// with the reason.
func guideInlineExcused() map[string]string {
	return map[string]string{
		"docker compose logs puaside": "no Docker engine on the test machines",
		"dpkg -r puaside":             "TestDebianPackage removes the package after the walk, then checks what stays",
		"dpkg -P":                     "TestDebianPackage purges the package after the walk, then checks that nothing stays",
		"go install":                  "needs the module from the network; the local build is the same package",
		"go build -tags sqlite_cgo":   "scripts/test.sh runs the store's tests built with -tags sqlite_cgo, the part the tag changes",
		"journalctl -u puaside":       "systemd is not PID 1 on the test machines; TestDebianPackage reads the daemon's stderr, which journald would keep",
		"systemctl start":             "systemd is not PID 1 on the test machines; TestDebianPackage runs the installed unit's ExecStart as its user",
		"systemctl reload puaside":    "systemd is not PID 1 on the test machines; TestSIGHUPKeepsTheDaemon sends the SIGHUP the unit's ExecReload sends",
		"puaside ls shards":           "lists cluster mode's leases, off in the packaged configuration; TestCluster* (e2e) read them from GET /v1/shards",
		"puaside ls xmpp":             "the XMPP gateway is off in the packaged configuration; TestXMPPUserSeesSIPRegistration (e2e) runs it",
		"puaside publish --uri sip:alice@example.com --event presence --body @alice.pidf": "needs the operator's PIDF file; TestCLI runs publish --body @FILE",
		"puaside subscribe":                             "subscribes at pua.server_address, empty in the packaged configuration; TestCLI runs it",
		"sqlite3 presence.db 'PRAGMA journal_mode=WAL'": "deploy/kamailio/presence-db.sh runs it, which TestPresenceCfgSQLiteDefault runs",
	}
}

// guidePlaceholder is a placeholder word of a command the prose names
// (AOR, FILE, URI): it stands for any one word.
var guidePlaceholder = regexp.MustCompile(`^[A-Z]{3,}$`)

// namesWalked reports whether the prose's command span is a walked command
// or the start of one, its placeholders standing for any word.
func namesWalked(span string, walked map[string]bool) bool {
	sf := strings.Fields(span)
	for w := range walked {
		wf := strings.Fields(w)
		if len(wf) < len(sf) {
			continue
		}
		ok := true
		for i, f := range sf {
			if f != wf[i] && !guidePlaceholder.MatchString(f) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// guideCommandWords are the first words of the lines the guide's code
// blocks present as commands to run.
var guideCommandWords = regexp.MustCompile(`^(puaside|curl|install|systemctl|docker|dpkg|apt-get|apt|go|scripts/[a-z-]+\.sh|deploy/kamailio/[a-z-]+\.sh|sqlite3|mkdir|chown|kamailio|kamctl|journalctl|mysql|useradd|sudo|git)$`)

// guideCommand returns the command of a code-block line without leading
// VAR=value assignments, and whether the line is a command at all.
func guideCommand(line string) (string, bool) {
	l := strings.TrimSpace(line)
	if c, _, ok := strings.Cut(l, "  #"); ok {
		l = strings.TrimSpace(c)
	}
	if l == "" || strings.HasPrefix(l, "#") {
		return "", false
	}
	f := strings.Fields(l)
	i := 0
	for i < len(f) && regexp.MustCompile(`^[A-Z_]+=`).MatchString(f[i]) {
		i++
	}
	if i == len(f) || !guideCommandWords.MatchString(f[i]) {
		return "", false
	}
	return strings.Join(strings.Fields(l), " "), true
}

// guideSteps returns the guide's sh lines the walk runs, in order.
func guideSteps(t *testing.T, root string) []string {
	t.Helper()
	var steps []string
	for _, b := range fencedBlocks(readFile(t, filepath.Join(root, "docs", "operator-guide.md")))["sh"] {
		for _, l := range strings.Split(b, "\n") {
			cmd, ok := guideCommand(l)
			if !ok {
				continue
			}
			elsewhere := false
			for p := range guideElsewhere() {
				f := strings.Fields(cmd)
				for len(f) > 0 && strings.Contains(f[0], "=") {
					f = f[1:]
				}
				if strings.HasPrefix(strings.Join(f, " "), p) {
					elsewhere = true
				}
			}
			if !elsewhere {
				steps = append(steps, cmd)
			}
		}
	}
	return steps
}

// TestOperatorGuideCommandsAccounted: every command line in the guide's code
// blocks is run, by the walk of TestDebianPackage (sh blocks) or by the test
// guideElsewhere names, or is listed in guideNotRunnable with the reason.
func TestOperatorGuideCommandsAccounted(t *testing.T) {
	root := repoRoot(t)
	blocks := fencedBlocks(readFile(t, filepath.Join(root, "docs", "operator-guide.md")))
	walked := map[string]bool{}
	for _, s := range guideSteps(t, root) {
		walked[s] = true
	}
	if len(walked) < 5 {
		t.Errorf("only %d guide commands walked", len(walked))
	}
	used := map[string]bool{}
	for lang, bs := range blocks {
		if lang == "sh" {
			continue
		}
		for _, b := range bs {
			for _, l := range strings.Split(b, "\n") {
				cmd, ok := guideCommand(l)
				if !ok {
					continue
				}
				if _, ok := guideNotRunnable()[cmd]; ok {
					used[cmd] = true
					continue
				}
				t.Errorf("the guide's %s block has the command %q: put it in an sh block (the walk runs it) or list it in guideNotRunnable with the reason", lang, cmd)
			}
		}
	}
	// The commands the prose names (a command word and at least one
	// argument; a bare name such as `curl` is no command).
	usedInline := map[string]bool{}
	for _, span := range proseSpans(readFile(t, filepath.Join(root, "docs", "operator-guide.md"))) {
		cmd, ok := guideCommand(span)
		if !ok || len(strings.Fields(cmd)) < 2 {
			continue
		}
		if namesWalked(cmd, walked) {
			continue
		}
		if _, ok := guideNotRunnable()[cmd]; ok {
			used[cmd] = true
			continue
		}
		accounted := false
		for p := range guideElsewhere() {
			if strings.HasPrefix(cmd, p) {
				accounted = true
			}
		}
		for p := range guideInlineExcused() {
			if strings.HasPrefix(cmd, p) || strings.HasPrefix(p, cmd+" ") {
				usedInline[p], accounted = true, true
			}
		}
		if !accounted {
			t.Errorf("the guide's text names the command %q: put it in an sh block (the walk runs it) or list it in guideInlineExcused with the reason", cmd)
		}
	}
	for p := range guideInlineExcused() {
		if !usedInline[p] {
			t.Errorf("guideInlineExcused lists %q, which the guide's text no longer names", p)
		}
	}
	for cmd := range guideNotRunnable() {
		if !used[cmd] {
			t.Errorf("guideNotRunnable lists %q, which the guide no longer has", cmd)
		}
	}
}

// walkGuide runs the operator guide's sh commands, literally, as the
// puaside user against the installed daemon, started with the installed
// configuration from the state directory as the unit does, in a network
// namespace of its own (the configuration's ports are fixed).
func walkGuide(t *testing.T, root string) {
	t.Helper()
	steps := guideSteps(t, root)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range steps {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("step-%02d.sh", i)), []byte(s+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	unit := readFile(t, "/lib/systemd/system/puaside.service")
	exec0 := regexp.MustCompile(`(?m)^ExecStart=(.*)$`).FindStringSubmatch(unit)
	if exec0 == nil {
		t.Fatal("installed unit has no ExecStart")
	}
	script := `set -u
ip link set lo up || exit 10
as_puaside() { setpriv --reuid=puaside --regid=puaside --init-groups env HOME=/var/lib/puaside PATH=/usr/bin:/bin "$@"; }
cd /var/lib/puaside || exit 11
# Not through as_puaside: $! must be the daemon itself (setpriv and env
# exec it), so that SIGTERM reaches it.
setpriv --reuid=puaside --regid=puaside --init-groups ` + exec0[1] + ` 2>"$DIR/daemon.log" & pid=$!
i=0
until /usr/bin/puaside ls flags >/dev/null 2>&1; do
  i=$((i+1))
  if [ $i -gt 300 ]; then kill -KILL $pid; exit 12; fi
  sleep 0.1
done
for f in "$DIR"/step-*.sh; do
  [ -e "$f" ] || continue
  as_puaside timeout 30 sh -ec "$(cat "$f")" >"$f.out" 2>&1 || echo "$(cat "$f"): exit $?" >>"$DIR/failed"
done
curl -fsS http://127.0.0.1:8080/metrics >"$DIR/metrics" || echo "metrics: exit $?" >>"$DIR/failed"
kill -TERM $pid
wait $pid
echo $? >"$DIR/daemon.exit"
`
	// Bounded: on the deadline the whole process group (the daemon too)
	// is killed.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-n", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "DIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	logs, _ := os.ReadFile(filepath.Join(dir, "daemon.log"))
	if err != nil {
		t.Fatalf("guide walk: %v\n%s\ndaemon log:\n%s", err, out, logs)
	}
	if failed, _ := os.ReadFile(filepath.Join(dir, "failed")); len(failed) > 0 {
		var detail strings.Builder
		for i := range steps {
			o, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("step-%02d.sh.out", i)))
			fmt.Fprintf(&detail, "$ %s\n%s", steps[i], o)
		}
		t.Errorf("guide commands failed:\n%s\n%s\ndaemon log:\n%s", failed, detail.String(), logs)
	}
	if code, _ := os.ReadFile(filepath.Join(dir, "daemon.exit")); strings.TrimSpace(string(code)) != "0" {
		t.Errorf("installed daemon exit status %q after SIGTERM\n%s", code, logs)
	}
	if !strings.Contains(string(logs), "puaside started") || !strings.Contains(string(logs), "puaside stopped") {
		t.Errorf("daemon log lacks start/stop:\n%s", logs)
	}
	metrics, _ := os.ReadFile(filepath.Join(dir, "metrics"))
	re := regexp.MustCompile(`(?m)^puaside_build_info\{goversion="go[^"]+",revision="[^"]+",version="` + regexp.QuoteMeta(debTestVersion) + `"\} 1$`)
	if !re.Match(metrics) {
		t.Errorf("/metrics has no puaside_build_info for %s:\n%s", debTestVersion, grepLines(string(metrics), "build_info"))
	}
	if out, err := runCmd(t, 10*time.Second, "stat", "-c", "%U", "/var/lib/puaside/puaside.db"); err != nil || strings.TrimSpace(out) != "puaside" {
		t.Errorf("the SQLite database is not the puaside user's file in the state directory: %v %s", err, out)
	}
}

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
