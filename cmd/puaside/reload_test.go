package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestReloadSharedLinesAndNotify runs the built binary under an emulated
// systemd notify socket with two registered phones: SIGHUP with a changed
// line list subscribes the new line's phone and unsubscribes the removed
// line's, a broken file changes nothing, and the socket sees READY=1,
// RELOADING=1/READY=1 around each reload and STOPPING=1 at SIGTERM.
func TestReloadSharedLinesAndNotify(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	sd := listenNotify(t, dir)
	p100, p200 := newSubPhone(t), newSubPhone(t)

	cfgPath := filepath.Join(dir, "puaside.yaml")
	writeCfg := func(line string) {
		writeQuietConfig(t, cfgPath, filepath.Join(dir, "puaside.db"), fmt.Sprintf(`features: {usrloc: true, dialoginfo: false, bla: true}
usrloc:
  default_domain: example.com
  publish_default: false
bla:
  lines:
    - aor: sip:%s@example.com
`, line))
	}
	writeCfg("100")
	d := startDaemon(t, bin, cfgPath, "NOTIFY_SOCKET="+sd.path)
	base := "http://" + d.httpAddr()
	sd.expect(t, "READY=1")

	for _, ph := range []struct {
		user string
		p    *subPhone
	}{{"100", p100}, {"200", p200}} {
		post(t, base+"/v1/events", fmt.Sprintf(`{"type":"registration","aor":"sip:%s@example.com",
			"contacts":[{"uri":"sip:%s@127.0.0.1:%d","expires":600,"received":"sip:127.0.0.1:%d"}]}`,
			ph.user, ph.user, ph.p.port(), ph.p.port()))
	}
	p100.expectSubscribe(t, false)

	writeCfg("200")
	d.signal(syscall.SIGHUP)
	sd.expect(t, "RELOADING=1")
	sd.expect(t, "READY=1")
	p200.expectSubscribe(t, false)
	p100.expectSubscribe(t, true)
	d.waitLog("reload: applied")
	if !strings.Contains(lines(t, base), `"sip:200@example.com"`) || strings.Contains(lines(t, base), `"sip:100@example.com"`) {
		t.Fatalf("lines after the reload: %s", lines(t, base))
	}

	before := lines(t, base)
	if err := os.WriteFile(cfgPath, []byte("bla: {lines: [broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.signal(syscall.SIGHUP)
	sd.expect(t, "RELOADING=1")
	sd.expect(t, "READY=1")
	d.waitLog("reload refused")
	p100.noSubscribe(t, "broken file")
	p200.noSubscribe(t, "broken file")
	if got := lines(t, base); !sameLines(got, before) {
		t.Fatalf("a broken file changed the lines:\n%s\nwas\n%s", got, before)
	}

	d.signal(syscall.SIGTERM)
	sd.expect(t, "STOPPING=1")
	d.waitExit()
	if !strings.Contains(d.logs.String(), "stopping: draining") {
		t.Errorf("SIGTERM not logged at once:\n%s", d.logs.String())
	}
}

// lines is the body of GET /v1/lines.
func lines(t *testing.T, base string) string {
	t.Helper()
	return get(t, base+"/v1/lines")
}

// sameLines compares two line listings, ignoring the phones' volatile
// fields.
func sameLines(a, b string) bool {
	strip := func(s string) string {
		for _, k := range []string{`"last_notify"`, `"expires"`} {
			for {
				i := strings.Index(s, k)
				if i < 0 {
					break
				}
				j := strings.IndexAny(s[i:], ",}")
				s = s[:i] + s[i+j:]
			}
		}
		return s
	}
	return strip(a) == strip(b)
}
