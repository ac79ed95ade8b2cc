package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/puaside/puaside/config"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "puaside.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runArgs(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := runMain(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestCheckGood: a good file exits 0 without binding its ports or creating
// its database: the listen address is in use and the database directory
// stays empty.
func TestCheckGood(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dbDir := t.TempDir()
	path := writeConfig(t, "db_url: sqlite://"+filepath.Join(dbDir, "p.db")+"\nhttp:\n  http_listen: "+ln.Addr().String()+"\n")
	code, out, errOut := runArgs("check", "-config", path)
	if code != exitOK || !strings.Contains(out, "configuration OK") {
		t.Fatalf("check: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if ents, _ := os.ReadDir(dbDir); len(ents) != 0 {
		t.Fatalf("check touched the database: %v", ents)
	}
}

// TestCheckBad: every problem, with the file, its line and its key path,
// and exit status 2.
func TestCheckBad(t *testing.T) {
	path := writeConfig(t, "db_url: mysql://u:pw@127.0.0.1:3306\ndialoginfo:\n  ring_timeout: -1s\npua:\n  hash_size: 17\nhttp:\n  tls_cert: /nonexistent/c.pem\n  tls_key: /nonexistent/k.pem\n")
	code, _, errOut := runArgs("check", "-config", path)
	if code != exitUsage {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitUsage, errOut)
	}
	for _, w := range []string{
		path + ": line 5: pua.hash_size: 17: must be between 2 and 16\n",
		path + ": line 3: dialoginfo.ring_timeout: -1s: must not be negative\n",
		path + ": line 7: http.tls_cert: \"/nonexistent/c.pem\": cannot be read: no such file or directory\n",
		path + ": line 8: http.tls_key: ",
		path + ": line 1: db_url: \"mysql://u:xxxxx@127.0.0.1:3306\": missing database name\n",
	} {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errOut)
		}
	}
	if strings.Contains(errOut, "pw@") {
		t.Errorf("stderr shows the password:\n%s", errOut)
	}
	if code, _, _ := runArgs("check", "-config", filepath.Join(t.TempDir(), "missing.yaml")); code != exitUsage {
		t.Errorf("missing file: exit %d, want %d", code, exitUsage)
	}
}

// TestRunRefusesWhatCheckRefuses: run validates as check does and exits 2
// (the unit's RestartPreventExitStatus) on a configuration check refuses:
// an unreadable certificate, a db_url without a database; nothing is
// started, so the database directory stays empty.
func TestRunRefusesWhatCheckRefuses(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"tls_cert": "db_url: sqlite://" + filepath.Join(dir, "p.db") + "\nhttp:\n  http_listen: 127.0.0.1:0\n  tls_cert: /nonexistent/c.pem\n  tls_key: /nonexistent/k.pem\n",
		"db_url":   "db_url: mysql://u:pw@127.0.0.1:3306\nhttp:\n  http_listen: 127.0.0.1:0\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := writeConfig(t, text)
			ccode, _, cerr := runArgs("check", "-config", path)
			code, _, errOut := runArgs("run", "-config", path)
			if ccode != exitUsage || code != exitUsage {
				t.Fatalf("check exit %d, run exit %d, want %d for both; run stderr:\n%s", ccode, code, exitUsage, errOut)
			}
			if errOut != cerr {
				t.Errorf("run reports\n%s\ncheck reports\n%s", errOut, cerr)
			}
		})
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("run started on a refused configuration: %v", ents)
	}
}

// TestConfigPrintsEffective: defaults applied, secrets masked, and the
// output is itself a configuration that loads to the same values.
func TestConfigPrintsEffective(t *testing.T) {
	path := writeConfig(t, "db_url: mysql://u:pw@127.0.0.1:3306/d\nhttp:\n  token: tok3n\ningest:\n  hep_auth_key: hepk3y\npua:\n  hash_size: 0\n  auth_username: u\n  auth_password: passw0rd\n")
	code, out, errOut := runArgs("config", "-config", path)
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, errOut)
	}
	for _, s := range []string{"pw@", "tok3n", "hepk3y", "passw0rd"} {
		if strings.Contains(out, s) {
			t.Errorf("output shows the secret %q:\n%s", s, out)
		}
	}
	c, err := config.Parse([]byte(out))
	if err != nil {
		t.Fatalf("output does not load: %v\n%s", err, out)
	}
	if c.PUA.HashSize != 9 || c.Usrloc.DefaultDomain != "" || c.HTTP.Token != "xxxxx" || !strings.Contains(out, "usrloc:\n") {
		t.Errorf("not the effective configuration: hash_size %d token %q\n%s", c.PUA.HashSize, c.HTTP.Token, out)
	}
	if code, _, _ := runArgs("config", "-config", writeConfig(t, "pua:\n  hash_size: 99\n")); code != exitUsage {
		t.Errorf("bad file: exit %d, want %d", code, exitUsage)
	}
}

// TestReloadRefusesWhatCheckRefuses: a reload validates as check does; a
// file naming an unreadable certificate keeps the running configuration.
func TestReloadRefusesWhatCheckRefuses(t *testing.T) {
	path := writeConfig(t, "log_level: debug\nhttp:\n  tls_cert: /nonexistent/c.pem\n  tls_key: /nonexistent/k.pem\n")
	var logs bytes.Buffer
	r := &reloader{path: path, cur: config.Default(), level: new(slog.LevelVar), log: slog.New(slog.NewTextHandler(&logs, nil))}
	r.reload(context.Background())
	if r.cur.LogLevel != config.Default().LogLevel || r.level.Level() != slog.LevelInfo {
		t.Errorf("reload applied a refused file: log_level %q", r.cur.LogLevel)
	}
	if !strings.Contains(logs.String(), "reload refused") || !strings.Contains(logs.String(), "http.tls_cert") {
		t.Errorf("log lacks the refusal naming http.tls_cert:\n%s", logs.String())
	}
}
