package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckShippedConfigs runs the real binary's `puaside check` on the
// configuration files the project ships (their addresses, 192.0.2.x, are
// not on this host: check binds nothing), then on the effective
// configuration `puaside config` prints for each, and on a broken file.
func TestCheckShippedConfigs(t *testing.T) {
	bin := puasideBinary(t)
	root := filepath.Join("..")
	for _, f := range []string{"puaside.example.yaml", "deploy/puaside.production.yaml", "deploy/compose/puaside.yaml"} {
		path := filepath.Join(root, f)
		if r := runBinary(t, bin, "check", "-config", path); r.code != 0 || !strings.Contains(r.stdout, "configuration OK") {
			t.Errorf("check %s: exit %d\n%s%s", f, r.code, r.stdout, r.stderr)
			continue
		}
		r := runBinary(t, bin, "config", "-config", path)
		if r.code != 0 {
			t.Errorf("config %s: exit %d\n%s", f, r.code, r.stderr)
			continue
		}
		if strings.Contains(r.stdout, "CHANGE-ME") {
			t.Errorf("config %s shows a secret:\n%s", f, r.stdout)
		}
		eff := filepath.Join(t.TempDir(), "effective.yaml")
		if err := os.WriteFile(eff, []byte(r.stdout), 0o600); err != nil {
			t.Fatal(err)
		}
		if r := runBinary(t, bin, "check", "-config", eff); r.code != 0 {
			t.Errorf("check of the effective configuration of %s: exit %d\n%s", f, r.code, r.stderr)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("pua:\n  hash_size: 20\nusrloc:\n  max_expires: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runBinary(t, bin, "check", "-config", bad)
	if r.code != 2 {
		t.Fatalf("check of a bad file: exit %d, want 2\n%s", r.code, r.stderr)
	}
	for _, w := range []string{
		bad + ": line 2: pua.hash_size: 20: must be between 2 and 16",
		bad + ": line 4: usrloc.max_expires: 10s: must be 0 (no cap) or at least min_expires (1m)",
	} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
		}
	}
}
