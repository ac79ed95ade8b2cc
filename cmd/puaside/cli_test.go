package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/mgmt"
	"github.com/puaside/puaside/mgmt/mgmttest"
	"github.com/puaside/puaside/pua"
)

type cliFixture struct {
	api   string
	eng   *mgmttest.Engine
	regs  *mgmttest.Registrations
	lines *mgmttest.Lines
	pol   *mgmttest.Policy
}

func startAPI(t *testing.T, token string) *cliFixture {
	t.Helper()
	f := &cliFixture{
		eng:   mgmttest.NewEngine(),
		regs:  mgmttest.NewRegistrations(mgmttest.Registration{AoR: "sip:alice@example.com", State: "open", Contacts: []mgmttest.Contact{{URI: "sip:alice@10.0.0.1", Expires: 60}}}),
		lines: mgmttest.NewLines(),
		pol:   mgmttest.NewPolicy(),
	}
	cfg := mgmt.DefaultConfig()
	cfg.HTTPListen = "127.0.0.1:0"
	cfg.Token = token
	cfg.WaitTimeout = 5 * time.Second
	srv, err := mgmt.New(cfg, mgmt.Deps{Engine: f.eng, Registrations: f.regs, Lines: f.lines, Policy: f.pol,
		Dialogs: &mgmttest.Dialogs{List: []mgmttest.Dialog{{CallID: "c1", AoR: "sip:alice@example.com", State: "early"}}}}, mgmt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
	})
	f.api = "http://" + srv.Addr()
	return f
}

func run(env cliEnv, name string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	env.stdout, env.stderr = &out, &errb
	if env.stdin == nil {
		env.stdin = strings.NewReader("")
	}
	if env.getenv == nil {
		env.getenv = func(string) string { return "" }
	}
	code := runCLIEnv(env, name, args)
	return code, out.String(), errb.String()
}

func TestCLI(t *testing.T) {
	f := startAPI(t, "")
	dir := t.TempDir()
	pidfFile := filepath.Join(dir, "a.pidf")
	if err := os.WriteFile(pidfFile, []byte("<presence from-file/>"), 0o600); err != nil {
		t.Fatal(err)
	}
	api := "--api=" + f.api
	tests := []struct {
		name     string
		stdin    string
		cmd      string
		args     []string
		wantCode int
		wantOut  []string // substrings of stdout
		wantErr  string   // substring of stderr
		check    func(t *testing.T)
	}{
		{name: "publish text", cmd: "publish", args: []string{api, "--uri", "sip:a@example.com", "--event", "presence", "--expires", "600", "--header", "Sender: sip:p@10.0.0.9", "--body", "<presence/>"},
			wantOut: []string{"200 OK etag=etag-1 expires=600"}, check: func(t *testing.T) {
				p := f.eng.Publications()
				if len(p) != 1 || string(p[0].Body) != "<presence/>" || len(p[0].ExtraHeaders) != 1 || p[0].ExtraHeaders[0].Name != "Sender" {
					t.Errorf("publication %+v", p)
				}
			}},
		{name: "publish from file", cmd: "publish", args: []string{api, "--uri", "sip:b@example.com", "--event", "presence", "--id", "f", "--body", "@" + pidfFile},
			wantOut: []string{"200 OK"}, check: func(t *testing.T) {
				for _, p := range f.eng.Publications() {
					if p.Key.ID == "f" && string(p.Body) == "<presence from-file/>" {
						return
					}
				}
				t.Errorf("body from file not published: %+v", f.eng.Publications())
			}},
		{name: "publish from stdin, json", stdin: "<from-stdin/>", cmd: "publish", args: []string{api, "--uri", "sip:c@example.com", "--event", "dialog", "--body", "-", "--json"},
			wantOut: []string{`"status": 200`, `"etag": "etag-`}},
		{name: "publish unknown event", cmd: "publish", args: []string{api, "--uri", "sip:c@example.com", "--event", "nope", "--body", "x"},
			wantCode: 1, wantErr: "HTTP 400"},
		{name: "publish missing uri", cmd: "publish", args: []string{api, "--event", "presence"}, wantCode: 2, wantErr: "--uri is required"},
		{name: "publish missing file", cmd: "publish", args: []string{api, "--uri", "sip:c@x", "--event", "presence", "--body", "@" + filepath.Join(dir, "nope")}, wantCode: 2, wantErr: "read body"},
		{name: "publish bad flag", cmd: "publish", args: []string{api, "--bogus"}, wantCode: 2, wantErr: "bogus"},
		{name: "publish help", cmd: "publish", args: []string{"-h"}, wantCode: 0, wantOut: []string{"usage: puaside publish", "--body", "exit status"}},
		{name: "subscribe", cmd: "subscribe", args: []string{"--uri", "sip:bob@example.com", "--watcher", "sip:mon@example.com", "--event", "presence", "--expires", "120", api},
			wantOut: []string{"202 Accepted expires=120"}},
		{name: "subscribe missing watcher", cmd: "subscribe", args: []string{api, "--uri", "sip:bob@example.com", "--event", "presence"}, wantCode: 2, wantErr: "--watcher"},
		{name: "ls publications", cmd: "ls", args: []string{"publications", api},
			wantOut: []string{"PRESENTITY_URI     EVENT     ID", "sip:a@example.com", "sip:b@example.com", "api"}},
		{name: "ls publications filtered", cmd: "ls", args: []string{"publications", api, "--event", "dialog", "--json"},
			wantOut: []string{`"total": 1`, "sip:c@example.com"}},
		{name: "ls publications paged", cmd: "ls", args: []string{"publications", api, "--limit", "1"},
			wantOut: []string{"(1 of 3 shown"}},
		{name: "ls bad limit", cmd: "ls", args: []string{"publications", api, "--limit", "x"}, wantCode: 2, wantErr: "not an integer"},
		{name: "ls subscriptions", cmd: "ls", args: []string{api, "subscriptions"}, wantOut: []string{"sip:mon@example.com", "active"}},
		{name: "ls registrations", cmd: "ls", args: []string{api, "registrations"}, wantOut: []string{"AOR", "CONTACTS", "sip:alice@example.com", "sip:alice@10.0.0.1"}},
		{name: "ls dialogs", cmd: "ls", args: []string{api, "dialogs"}, wantOut: []string{"CALL_ID", "c1", "early"}},
		{name: "ls unknown", cmd: "ls", args: []string{api, "cats"}, wantCode: 2, wantErr: "unknown listing"},
		{name: "ls nothing", cmd: "ls", args: []string{api}, wantCode: 2, wantErr: "name one listing"},
		{name: "flag set", cmd: "flag", args: []string{api, "set", "sip:alice@example.com"}, wantOut: []string{"flag set"}},
		{name: "flag set off", cmd: "flag", args: []string{api, "set", "--off", "sip:bob@example.com"}, wantOut: []string{"flag set"}},
		{name: "flag ls", cmd: "flag", args: []string{api, "ls"}, wantOut: []string{"AOR", "ENABLED", "sip:alice@example.com  true", "sip:bob@example.com    false"}},
		{name: "flag clear", cmd: "flag", args: []string{api, "clear", "sip:alice@example.com"}, wantOut: []string{"cleared"}},
		{name: "flag clear unknown", cmd: "flag", args: []string{api, "clear", "sip:alice@example.com"}, wantCode: 1, wantErr: "HTTP 404"},
		{name: "flag no aor", cmd: "flag", args: []string{api, "set"}, wantCode: 2, wantErr: "one AOR"},
		{name: "line add", cmd: "line", args: []string{api, "add", "sip:line1@example.com", "--member", "sip:p1@10.0.0.5", "--member", "sip:p2@10.0.0.6"}, wantOut: []string{"line added"}},
		{name: "line add bad member", cmd: "line", args: []string{api, "add", "sip:line2@example.com", "--member", "p1"}, wantCode: 1, wantErr: "members[0]"},
		{name: "line ls", cmd: "line", args: []string{api, "ls"}, wantOut: []string{"MEMBERS", "sip:p1@10.0.0.5,sip:p2@10.0.0.6"}},
		{name: "line rm", cmd: "line", args: []string{api, "rm", "sip:line1@example.com"}, wantOut: []string{"line removed"}},
		{name: "ls lines empty", cmd: "ls", args: []string{api, "lines"}, wantOut: []string{"(none)"}},
		{name: "line bad action", cmd: "line", args: []string{api, "paint"}, wantCode: 2, wantErr: "unknown action"},
		{name: "policy add", cmd: "policy", args: []string{api, "add", "allow", "--presentity", "sip:alice@example.com", "--watcher", "partner.example"},
			wantOut: []string{"sip:alice@example.com <- partner.example: allow"}},
		{name: "policy add any", cmd: "policy", args: []string{api, "add", "deny", "--watcher", "spam.example"}, wantOut: []string{"* <- spam.example: deny"}},
		{name: "policy add bad action", cmd: "policy", args: []string{api, "add", "maybe"}, wantCode: 2, wantErr: "unknown action"},
		{name: "policy add refused", cmd: "policy", args: []string{api, "add", "deny", "--watcher", "a b"}, wantCode: 1, wantErr: "HTTP 400"},
		{name: "policy ls", cmd: "policy", args: []string{api, "ls"}, wantOut: []string{"PRESENTITY", "ACTION", "SOURCE", "partner.example", "spam.example", "database"}},
		{name: "ls policy", cmd: "ls", args: []string{api, "policy"}, wantOut: []string{"spam.example"}},
		{name: "policy rm", cmd: "policy", args: []string{api, "rm", "--watcher", "spam.example"}, wantOut: []string{"* <- spam.example: removed"},
			check: func(t *testing.T) {
				if rs := f.pol.PolicyRules().([]mgmttest.Rule); len(rs) != 1 || rs[0].Watcher != "partner.example" {
					t.Errorf("rules left: %+v", rs)
				}
			}},
		{name: "policy rm unknown", cmd: "policy", args: []string{api, "rm", "--watcher", "spam.example"}, wantCode: 1, wantErr: "HTTP 404"},
		{name: "policy nothing", cmd: "policy", args: []string{api}, wantCode: 2, wantErr: "name an action"},
		{name: "unknown command", cmd: "frobnicate", wantCode: 2, wantErr: "unknown command"},
		{name: "api unreachable", cmd: "ls", args: []string{"--api", "http://127.0.0.1:1", "publications"}, wantCode: 1, wantErr: "puaside ls:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(cliEnv{stdin: strings.NewReader(tc.stdin)}, tc.cmd, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out, errs)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if tc.wantErr != "" && !strings.Contains(errs, tc.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantErr, errs)
			}
			if tc.wantCode == 0 && errs != "" {
				t.Errorf("stderr on success: %s", errs)
			}
			if tc.check != nil {
				tc.check(t)
			}
		})
	}
}

func TestCLISIPFailureAndToken(t *testing.T) {
	f := startAPI(t, "tok")
	f.eng.PublishReply = func(pua.PublishRequest) pua.Result { return pua.Result{Status: 489, Reason: "Bad Event"} }
	args := []string{"--uri", "sip:a@example.com", "--event", "presence", "--body", "x"}
	// no token: 401
	code, _, errs := run(cliEnv{getenv: func(k string) string {
		return map[string]string{envAPI: f.api}[k]
	}}, "publish", args...)
	if code != 1 || !strings.Contains(errs, "HTTP 401") {
		t.Errorf("without token: %d %s", code, errs)
	}
	// token and API from the environment: the SIP failure is reported
	code, _, errs = run(cliEnv{getenv: func(k string) string {
		return map[string]string{envAPI: f.api, envToken: "tok"}[k]
	}}, "publish", args...)
	if code != 1 || !strings.Contains(errs, "SIP 489 Bad Event") {
		t.Errorf("SIP failure: %d %s", code, errs)
	}
	// the public entry point with flags; the refused manual publish has
	// ended, it is not kept as failed
	var out, eb bytes.Buffer
	if code := runCLI("ls", []string{"--api", f.api, "--token", "tok", "publications"}, &out, &eb); code != 0 || strings.Contains(out.String(), "failed") {
		t.Errorf("runCLI ls: %d %s %s", code, out.String(), eb.String())
	}
	for name := range cliCommands() {
		var o, e bytes.Buffer
		if code := runCLI(name, []string{"-h"}, &o, &e); code != 0 || !strings.Contains(o.String(), "usage: puaside "+name) {
			t.Errorf("%s -h: %d %q %q", name, code, o.String(), e.String())
		}
	}
}
