// Package configref renders puaside's configuration reference — every key
// of config.Config with its default and the doc comment of its Go field — as
// the Markdown table in README.md and as puaside.example.yaml. Its test
// keeps both files true to the code (go test ./internal/configref -update
// rewrites them).
//
// Place in the flow: outside it, documentation of config.
package configref

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/puaside/puaside/config"
)

// Entry is one configuration key.
type Entry struct {
	// Key is the dotted path, e.g. "pua.server_address".
	Key string
	// Depth is the nesting level (0 for top-level keys).
	Depth int
	// Section is true for a key holding a nested mapping.
	Section bool
	// Default is the default value rendered as YAML ("" for sections).
	Default string
	// Doc is the field's doc comment, on one line.
	Doc string
}

// packages holds the directories whose Config types make up the file.
var packages = []string{"config", "internal/siptls", "pua", "ingest", "usrloc", "dialoginfo", "bla", "pa", "mgmt", "reconcile", "puaxmpp", "shard"}

// Entries walks config.Default() and returns every key in file order. root
// is the module's root directory (to read the doc comments).
func Entries(root string) ([]Entry, error) {
	return EntriesOf(root, config.Default())
}

// EntriesOf is Entries for the values of c instead of the defaults.
func EntriesOf(root string, c config.Config) ([]Entry, error) {
	docs := map[string]string{}
	for _, p := range packages {
		if err := loadDocs(filepath.Join(root, p), docs); err != nil {
			return nil, err
		}
	}
	var out []Entry
	walk(reflect.ValueOf(c), "", 0, "config", docs, &out)
	return out, nil
}

// loadDocs reads the doc comments of struct fields in a package directory
// into docs["pkg.Type.Field"]. A field without a comment takes the comment
// of the field before it (fields documented as a group).
func loadDocs(dir string, docs map[string]string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return fmt.Errorf("configref: %w", err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			return fmt.Errorf("configref: %w", err)
		}
		ast.Inspect(af, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			prev := ""
			for _, fl := range st.Fields.List {
				d := strings.Join(strings.Fields(fl.Doc.Text()), " ")
				if d == "" {
					d = prev
				}
				prev = d
				for _, nm := range fl.Names {
					docs[filepath.Base(dir)+"."+ts.Name.Name+"."+nm.Name] = d
				}
			}
			return true
		})
	}
	return nil
}

var durationType = reflect.TypeOf(time.Duration(0))

func walk(v reflect.Value, path string, depth int, pkg string, docs map[string]string, out *[]Entry) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		key := name
		if path != "" {
			key = path + "." + name
		}
		fv := v.Field(i)
		doc := docs[pkg+"."+t.Name()+"."+f.Name]
		// Comments open with the Go field name; operators know the key.
		if rest, ok := strings.CutPrefix(doc, f.Name+" "); ok {
			doc = name + " " + rest
		}
		if fv.Kind() == reflect.Struct && fv.Type() != durationType {
			*out = append(*out, Entry{Key: key, Depth: depth, Section: true, Doc: doc})
			sub := filepath.Base(fv.Type().PkgPath())
			walk(fv, key, depth+1, sub, docs, out)
			continue
		}
		*out = append(*out, Entry{Key: key, Depth: depth, Default: render(fv), Doc: doc})
	}
}

// render returns a value as a one-line YAML flow scalar or sequence.
func render(v reflect.Value) string {
	if v.Type() == durationType {
		return config.FormatDuration(v.Interface().(time.Duration))
	}
	if v.Kind() == reflect.Slice && v.Len() == 0 {
		return "[]"
	}
	var n yaml.Node
	if err := n.Encode(v.Interface()); err != nil {
		return fmt.Sprint(v.Interface())
	}
	n.Style = yaml.FlowStyle
	b, err := yaml.Marshal(&n)
	if err != nil {
		return fmt.Sprint(v.Interface())
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return `""`
	}
	return s
}

// Markdown renders the reference table for README.md.
func Markdown(entries []Entry) string {
	var b strings.Builder
	b.WriteString("| key | default | meaning |\n|---|---|---|\n")
	for _, e := range entries {
		doc := strings.ReplaceAll(e.Doc, "|", `\|`)
		if e.Section {
			fmt.Fprintf(&b, "| **`%s`** | | %s |\n", e.Key, doc)
			continue
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", e.Key, strings.ReplaceAll(e.Default, "|", `\|`), doc)
	}
	return b.String()
}

// ExampleYAML renders puaside.example.yaml: every key at its default, each
// preceded by its comment.
func ExampleYAML(entries []Entry) string {
	var b bytes.Buffer
	b.WriteString("# puaside configuration: every key at its default value.\n")
	b.WriteString("# Every key is optional. Durations: 30s, 5m, 1h (a bare integer is seconds).\n")
	b.WriteString("# Generated from the code by `go test ./internal/configref -update`.\n")
	for _, e := range entries {
		ind := strings.Repeat("  ", e.Depth)
		b.WriteString("\n")
		for _, line := range wrap(e.Doc, 96-len(ind)) {
			fmt.Fprintf(&b, "%s# %s\n", ind, line)
		}
		name := e.Key[strings.LastIndex(e.Key, ".")+1:]
		if e.Section {
			fmt.Fprintf(&b, "%s%s:\n", ind, name)
			continue
		}
		fmt.Fprintf(&b, "%s%s: %s\n", ind, name, e.Default)
	}
	return b.String()
}

// wrap splits text into lines of at most width characters.
func wrap(text string, width int) []string {
	var lines []string
	var cur string
	for _, w := range strings.Fields(text) {
		if cur != "" && len(cur)+1+len(w) > width {
			lines = append(lines, cur)
			cur = w
			continue
		}
		if cur != "" {
			cur += " "
		}
		cur += w
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}
