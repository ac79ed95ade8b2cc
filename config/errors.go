package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Problem is one configuration error: the key path it concerns
// ("pua.listen[0]"), the line of the file where that key is written (0 when
// the value is a default, not written in the file) and what is wrong.
type Problem struct {
	Line int
	Key  string
	Msg  string
}

// String is "line N: key: message", without the line part when it is unknown.
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Errors is every problem of a configuration, in the order found.
type Errors []Problem

// Error joins the problems with "; ".
func (e Errors) Error() string {
	parts := make([]string, len(e))
	for i, p := range e {
		parts[i] = p.String()
	}
	return "invalid configuration: " + strings.Join(parts, "; ")
}

// sorted orders the problems by line, those of keys not written in the
// file last, keeping the order of the checks otherwise.
func (e Errors) sorted() Errors {
	sort.SliceStable(e, func(i, j int) bool {
		a, b := e[i].Line, e[j].Line
		if a == 0 || b == 0 {
			return a != 0 && b == 0
		}
		return a < b
	})
	return e
}

// withLines sets each problem's line from the key lines of the file: the
// line of its key or, when that key is not written, of the nearest written
// key above it (a missing "aor" of lines[0] points at lines[0], a missing
// pua.auth_password at pua).
func (e Errors) withLines(lines map[string]int) Errors {
	for i := range e {
		if e[i].Line > 0 {
			continue
		}
		for k := e[i].Key; k != ""; k = parentKey(k) {
			if l, ok := lines[k]; ok {
				e[i].Line = l
				break
			}
		}
	}
	return e.sorted()
}

// parentKey strips the last component of a key path: "a.b[0]" → "a.b",
// "a.b" → "a", "a" → "".
func parentKey(k string) string {
	i := strings.LastIndexAny(k, ".[")
	if i < 0 {
		return ""
	}
	return k[:i]
}

// keyPrefix matches the key path a section's Validate puts before ": ".
var keyPrefix = regexp.MustCompile(`^[a-z0-9_]+(\[[0-9]+\])?(\.[a-z0-9_]+(\[[0-9]+\])?)*$`)

// sectionProblems turns a section's Validate error (one problem a line,
// each "key: message") into problems keyed below the section.
func sectionProblems(section string, err error) Errors {
	var out Errors
	for _, line := range strings.Split(err.Error(), "\n") {
		if line == "" {
			continue
		}
		key, msg, ok := strings.Cut(line, ": ")
		if !ok || !keyPrefix.MatchString(key) {
			out = append(out, Problem{Key: section, Msg: line})
			continue
		}
		out = append(out, Problem{Key: section + "." + key, Msg: shortenDurations(msg)})
	}
	return out
}

// longDuration matches Go's spelling of a duration with zero parts: 1h0m0s, 2m0s.
var longDuration = regexp.MustCompile(`\b[0-9]+h[0-9]+m0s\b|\b[0-9]+m0s\b`)

// shortenDurations rewrites the durations of a message as FormatDuration does.
func shortenDurations(msg string) string {
	return longDuration.ReplaceAllStringFunc(msg, func(s string) string {
		d, err := time.ParseDuration(s)
		if err != nil {
			return s
		}
		return FormatDuration(d)
	})
}

// typeMismatch matches yaml.v3's "line 2: cannot unmarshal !!str `many` into int".
var typeMismatch = regexp.MustCompile("^line ([0-9]+): cannot unmarshal !!([a-z]+) `(.*)` into (.+)$")

// syntaxLine matches yaml.v3's "yaml: line 3: did not find expected key".
var syntaxLine = regexp.MustCompile(`^(?:yaml: )?line ([0-9]+): (.*)$`)

// kinds names the Go types of the configuration in operator terms.
var kinds = map[string]string{
	"int":           "a whole number",
	"int64":         "a whole number",
	"bool":          "true or false",
	"string":        "a string",
	"time.Duration": "a duration such as 30s, 5m or 1h (a bare number is seconds)",
}

// yamlErrors turns a yaml.v3 decoding error into problems naming the key
// (found by its line) and the expected kind of value in operator terms.
func yamlErrors(err error, lines map[string]int) Errors {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	byLine := map[int]string{}
	for k, l := range lines {
		if old, ok := byLine[l]; !ok || len(k) > len(old) {
			byLine[l] = k
		}
	}
	out := make(Errors, 0, len(msgs))
	for _, m := range msgs {
		if g := typeMismatch.FindStringSubmatch(m); g != nil {
			l, _ := strconv.Atoi(g[1])
			want, ok := kinds[g[4]]
			switch {
			case ok:
			case strings.HasPrefix(g[4], "[]"):
				want = "a list"
			default:
				want = "a mapping of keys"
			}
			out = append(out, Problem{Line: l, Key: byLine[l], Msg: fmt.Sprintf("%q is not %s", g[3], want)})
			continue
		}
		if g := syntaxLine.FindStringSubmatch(m); g != nil {
			l, _ := strconv.Atoi(g[1])
			out = append(out, Problem{Line: l, Msg: "not valid YAML: " + g[2]})
			continue
		}
		out = append(out, Problem{Msg: "not valid YAML: " + strings.TrimPrefix(m, "yaml: ")})
	}
	return out
}

// redactURL hides the password of a URL such as a mysql:// db_url.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	return u.Redacted()
}
