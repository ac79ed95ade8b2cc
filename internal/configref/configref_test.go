package configref

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/puaside/puaside/config"
)

var update = flag.Bool("update", false, "rewrite README.md's configuration reference and puaside.example.yaml")

const (
	begin = "<!-- configref:begin -->\n"
	end   = "<!-- configref:end -->"
)

func root() string { return filepath.Join("..", "..") }

func entries(t *testing.T) []Entry {
	t.Helper()
	es, err := Entries(root())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Doc == "" {
			t.Errorf("key %s has no doc comment on its Go field", e.Key)
		}
	}
	return es
}

// TestREADMEReference keeps README.md's configuration reference equal to the code.
func TestREADMEReference(t *testing.T) {
	path := filepath.Join(root(), "README.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the %q … %q markers", begin, end)
	}
	want := Markdown(entries(t))
	got := s[i+len(begin) : j]
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(s[:i+len(begin)]+want+s[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md configuration reference is stale; run go test ./internal/configref -update")
}

// TestExampleConfig keeps puaside.example.yaml equal to the code, and checks
// that it parses strictly to exactly the defaults.
func TestExampleConfig(t *testing.T) {
	path := filepath.Join(root(), "puaside.example.yaml")
	want := ExampleYAML(entries(t))
	b, err := os.ReadFile(path)
	if err != nil && !*update {
		t.Fatal(err)
	}
	if string(b) != want {
		if !*update {
			t.Fatalf("puaside.example.yaml is stale; run go test ./internal/configref -update")
		}
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := config.Parse([]byte(want))
	if err != nil {
		t.Fatalf("example does not parse: %v", err)
	}
	if Markdown(mustEntriesOf(t, c)) != Markdown(entries(t)) {
		t.Fatal("example parses to values other than the defaults")
	}
}

func mustEntriesOf(t *testing.T, c config.Config) []Entry {
	t.Helper()
	es, err := EntriesOf(root(), c)
	if err != nil {
		t.Fatal(err)
	}
	return es
}
