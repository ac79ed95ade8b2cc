package layout

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// rules are what CONTRIBUTING.md allows.
type rules struct {
	// allowed maps a production package (relative to the module) to the
	// module's packages it may import; all is set for a package that may
	// import every production package.
	allowed map[string]map[string]bool
	all     map[string]bool
	// testSupport are the packages only tests may import.
	testSupport map[string]bool
}

var codeRE = regexp.MustCompile("`([^`]+)`")

// parseRules reads the two tables of the "Repository layout" section.
func parseRules(r io.Reader) (rules, error) {
	ru := rules{allowed: map[string]map[string]bool{}, all: map[string]bool{}, testSupport: map[string]bool{}}
	sc := bufio.NewScanner(r)
	in, table := false, 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Repository layout"
			continue
		}
		if !in {
			continue
		}
		if strings.HasPrefix(line, "| package |") {
			table++
			continue
		}
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		pkg := strings.Trim(strings.TrimSpace(cells[0]), "`")
		switch table {
		case 1:
			if len(cells) != 4 {
				return ru, fmt.Errorf("layout row %q: want 4 cells, have %d", line, len(cells))
			}
			imports := strings.TrimSpace(cells[3])
			set := map[string]bool{}
			switch {
			case imports == "—":
			case strings.HasPrefix(imports, "every production package"):
				ru.all[pkg] = true
			default:
				for _, m := range codeRE.FindAllStringSubmatch(imports, -1) {
					set[m[1]] = true
				}
				if len(set) == 0 {
					return ru, fmt.Errorf("layout row %q: no imports named", line)
				}
			}
			ru.allowed[pkg] = set
		case 2:
			ru.testSupport[pkg] = true
		}
	}
	if err := sc.Err(); err != nil {
		return ru, err
	}
	if len(ru.allowed) == 0 || len(ru.testSupport) == 0 {
		return ru, errors.New("no Repository layout tables found")
	}
	return ru, nil
}

// pkgImports is one package of `go list`.
type pkgImports struct {
	ImportPath string
	Imports    []string
}

// check returns one line per broken rule.
func (ru rules) check(module string, pkgs []pkgImports) []string {
	var bad []string
	rel := func(p string) (string, bool) {
		if p == module {
			return ".", true
		}
		r, ok := strings.CutPrefix(p, module+"/")
		return r, ok
	}
	for _, p := range pkgs {
		name, _ := rel(p.ImportPath)
		allowed, prod := ru.allowed[name]
		if !prod && !ru.testSupport[name] {
			bad = append(bad, fmt.Sprintf("%s: no row in CONTRIBUTING.md's Repository layout", name))
			continue
		}
		if !prod {
			continue // test support may import anything
		}
		for _, imp := range p.Imports {
			dep, own := rel(imp)
			if !own {
				continue
			}
			switch {
			case ru.testSupport[dep]:
				bad = append(bad, fmt.Sprintf("%s imports test support %s", name, dep))
			case ru.all[name] && ru.allowed[dep] != nil:
			case !allowed[dep]:
				bad = append(bad, fmt.Sprintf("%s imports %s, which its row does not allow", name, dep))
			}
		}
	}
	return bad
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func goList(t *testing.T, root string) (string, []pkgImports) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", "list", "-json=ImportPath,Imports,Module", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var module string
	var pkgs []pkgImports
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			pkgImports
			Module struct{ Path string }
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list output: %v", err)
		}
		module = p.Module.Path
		pkgs = append(pkgs, p.pkgImports)
	}
	return module, pkgs
}

// TestImportRules: every package of the module has a row in
// CONTRIBUTING.md and imports only what its row allows; no production
// package imports test support.
func TestImportRules(t *testing.T) {
	root := moduleRoot(t)
	f, err := os.Open(filepath.Join(root, "CONTRIBUTING.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ru, err := parseRules(f)
	if err != nil {
		t.Fatal(err)
	}
	module, pkgs := goList(t, root)
	for _, b := range ru.check(module, pkgs) {
		t.Error(b)
	}
	// A row for a package that is gone is stale.
	have := map[string]bool{}
	for _, p := range pkgs {
		have[strings.TrimPrefix(p.ImportPath, module+"/")] = true
	}
	for name := range ru.allowed {
		if !have[name] {
			t.Errorf("CONTRIBUTING.md has a row for %s, which is not a package", name)
		}
	}
}

// TestCheckCatchesBadImports: the checker refuses an upward import, an
// import of test support and a package without a row.
func TestCheckCatchesBadImports(t *testing.T) {
	doc := "## Repository layout\n\n| package | job | place | may import |\n|---|---|---|---|\n" +
		"| `aor` | a | codec | — |\n| `pua` | e | engine | `aor` |\n| `usrloc` | t | tracker | `aor` `pua` |\n" +
		"| `internal/daemon` | w | top | every production package above |\n\n" +
		"| package | job |\n|---|---|\n| `clock/clocktest` | fake |\n\n## Checks\n| `ignored` | x | y | z |\n"
	ru, err := parseRules(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	const m = "example.com/mod"
	pkgs := []pkgImports{
		{ImportPath: m + "/aor", Imports: []string{"strings"}},
		{ImportPath: m + "/pua", Imports: []string{m + "/aor", m + "/usrloc", m + "/clock/clocktest"}},
		{ImportPath: m + "/usrloc", Imports: []string{m + "/aor", m + "/pua", "github.com/other/pkg"}},
		{ImportPath: m + "/internal/daemon", Imports: []string{m + "/usrloc", m + "/pua"}},
		{ImportPath: m + "/clock/clocktest", Imports: []string{m + "/pua"}},
		{ImportPath: m + "/newpkg"},
	}
	got := ru.check(m, pkgs)
	want := []string{
		"pua imports usrloc, which its row does not allow",
		"pua imports test support clock/clocktest",
		"newpkg: no row in CONTRIBUTING.md's Repository layout",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("check:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if ru.allowed["ignored"] != nil {
		t.Error("a row outside the section was read")
	}
}
