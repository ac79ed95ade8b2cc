package deploy_test

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// saveFailure matches the failure branch of save("location") up to the end
// of its block (or, without braces, its one statement).
var saveFailure = regexp.MustCompile(`if\s*\(\s*!\s*save\("location"[^)]*\)\s*\)\s*(\{[^}]*\}|[^;{]*;)`)

// TestSaveFailureExits: in every registrar snippet (the shipped Kamailio and
// OpenSIPS configurations and the operator guide's copies) a REGISTER that
// save("location") refuses ends the route, so the mirroring that follows
// never copies it: puaside would otherwise publish a registration the
// registrar refused.
func TestSaveFailureExits(t *testing.T) {
	root := repoRoot(t)
	var texts []string
	for _, f := range []string{"deploy/kamailio/registrar.cfg", "deploy/opensips/opensips-registrar.cfg"} {
		texts = append(texts, readFile(t, filepath.Join(root, f)))
	}
	blocks := fencedBlocks(readFile(t, filepath.Join(root, "docs", "operator-guide.md")))
	texts = append(texts, blocks["kamailio"]...)
	texts = append(texts, blocks["opensips"]...)
	found := 0
	for _, text := range texts {
		for _, m := range saveFailure.FindAllString(text, -1) {
			found++
			if !regexp.MustCompile(`\bexit\s*;`).MatchString(m) {
				t.Errorf("the failure branch of save() does not exit, so a refused REGISTER is mirrored:\n%s", m)
			}
		}
		if strings.Contains(text, `save("location")`) && !saveFailure.MatchString(text) {
			t.Errorf("save(\"location\") without a failure branch:\n%s", text)
		}
	}
	if found < 4 {
		t.Errorf("%d save() failure branches found, want one in each of the two configurations and two guide copies", found)
	}
}
