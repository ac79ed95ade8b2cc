package configref

import (
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/config"
)

// domainTerms are field names that are also the words operators use.
var domainTerms = map[string]bool{"AoR": true, "PUA": true, "BLA": true, "HTTP": true, "TLS": true}

// goFieldNames returns the names of the fields of the configuration's
// struct types that read as Go identifiers (an upper-case letter past the
// first, as in RetryMax, HEPAuthKey, DBURL), not as English words.
func goFieldNames(t reflect.Type, seen map[reflect.Type]bool, out map[string]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == reflect.TypeOf(time.Duration(0)) || seen[t] {
		return
	}
	seen[t] = true
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if !domainTerms[f.Name] && strings.IndexFunc(f.Name[1:], func(r rune) bool { return r >= 'A' && r <= 'Z' }) >= 0 {
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			out[f.Name] = key
		}
		goFieldNames(f.Type, seen, out)
	}
}

// TestDocsNameKeysNotGoFields: the reference speaks of keys (retry_max),
// never of the Go fields behind them (RetryMax), which operators never see.
func TestDocsNameKeysNotGoFields(t *testing.T) {
	names := map[string]string{}
	goFieldNames(reflect.TypeOf(config.Config{}), map[reflect.Type]bool{}, names)
	if len(names) < 20 {
		t.Fatalf("found only %d Go field names: %v", len(names), names)
	}
	words := make([]string, 0, len(names))
	for n := range names {
		words = append(words, regexp.QuoteMeta(n))
	}
	sort.Strings(words)
	re := regexp.MustCompile(`\b(` + strings.Join(words, "|") + `)\b`)
	for _, e := range entries(t) {
		for _, m := range re.FindAllString(e.Doc, -1) {
			t.Errorf("%s: doc comment names the Go field %s; write the key (%s) instead: %q", e.Key, m, names[m], e.Doc)
		}
	}
}
