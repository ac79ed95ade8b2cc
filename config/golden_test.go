package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite config/testdata/bad-*.err from the current error text")

// TestGoldenFiles walks config/testdata: every good-*.yaml must load, and
// every bad-*.yaml must fail with exactly the problems of its .err file, one
// a line, each "line N: key: message".
func TestGoldenFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(b)
			switch {
			case strings.HasPrefix(name, "good-"):
				if err != nil {
					t.Fatalf("want no error, got:\n%v", err)
				}
			case strings.HasPrefix(name, "bad-"):
				var errs Errors
				if !errors.As(err, &errs) {
					t.Fatalf("want an Errors, got %T %v", err, err)
				}
				var got strings.Builder
				for _, p := range errs {
					got.WriteString(p.String() + "\n")
				}
				golden := strings.TrimSuffix(f, ".yaml") + ".err"
				if *update {
					if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatal(err)
				}
				if got.String() != string(want) {
					t.Errorf("errors differ from %s\ngot:\n%swant:\n%s", golden, got.String(), want)
				}
			default:
				t.Fatalf("golden file %s is neither good-* nor bad-*", name)
			}
		})
	}
}
