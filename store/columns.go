package store

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/puaside/puaside/schema"
)

// width is the capacity of a text column, read from the schema: n
// characters for VARCHAR(n) and CHAR(n), n bytes for the TEXT types (MySQL
// counts them in bytes). SQLite does not enforce declared widths, but the
// store holds values to them alike, so that both dialects keep the same data.
type width struct {
	n     int
	bytes bool
}

// String renders the width for log lines and errors.
func (w width) String() string {
	if w.bytes {
		return strconv.Itoa(w.n) + " bytes"
	}
	return strconv.Itoa(w.n) + " characters"
}

// length is the size of s in w's unit.
func (w width) length(s string) int {
	if w.bytes {
		return len(s)
	}
	return utf8.RuneCountInString(s)
}

// fit returns s as the column can hold it: invalid UTF-8 replaced with
// U+FFFD, then cut to the width, never inside a character.
func (w width) fit(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if w.n <= 0 || len(s) <= w.n { // fewer bytes than n: fits in either unit
		return s
	}
	if w.bytes {
		cut := w.n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return s[:cut]
	}
	count := 0
	for i := range s {
		if count == w.n {
			return s[:i]
		}
		count++
	}
	return s
}

// exact checks that s can be stored as it is: valid UTF-8 and within the
// width. Key columns (a record's identity, an AoR, an entity) are checked
// with it rather than clipped: a cut key would name another user.
func (w width) exact(column, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", errUnstorable, column)
	}
	if w.n > 0 && len(s) > w.n {
		if n := w.length(s); n > w.n {
			return fmt.Errorf("%w: %s is %d %s long, the column holds %s", errUnstorable, column, n, unit(w), w)
		}
	}
	return nil
}

func unit(w width) string {
	if w.bytes {
		return "bytes"
	}
	return "characters"
}

// columns holds the text column widths of every table of the schema:
// table → column → width. The pua table is under its schema name "{{pua}}".
type columns map[string]map[string]width

// puaTemplate is the pua table's name in the schema files.
const puaTemplate = "{{pua}}"

var (
	createRe = regexp.MustCompile("(?is)^\\s*CREATE\\s+TABLE\\s+(?:IF\\s+NOT\\s+EXISTS\\s+)?`?([\\w{}]+)`?\\s*\\((.*)\\)[^)]*$")
	alterRe  = regexp.MustCompile("(?is)^\\s*ALTER\\s+TABLE\\s+`?([\\w{}]+)`?\\s+ADD\\s+(?:COLUMN\\s+)?`?(\\w+)`?\\s+(.*)$")
	colRe    = regexp.MustCompile("(?is)^\\s*`?(\\w+)`?\\s+(\\w+)\\s*(?:\\(\\s*(\\d+)\\s*\\))?")
)

// schemaColumns reads the text column widths of a dialect's schema.
func schemaColumns(dialect string) (columns, error) {
	migs, err := schema.Migrations(dialect)
	if err != nil {
		return nil, err
	}
	out := columns{}
	add := func(table, def string) {
		m := colRe.FindStringSubmatch(def)
		if m == nil {
			return
		}
		switch strings.ToUpper(m[1]) {
		case "CONSTRAINT", "PRIMARY", "KEY", "UNIQUE", "INDEX", "FOREIGN", "CHECK":
			return
		}
		n, _ := strconv.Atoi(m[3])
		var w width
		switch strings.ToUpper(m[2]) {
		case "VARCHAR", "CHAR":
			w = width{n: n}
		case "TINYTEXT":
			w = width{n: 255, bytes: true}
		case "TEXT":
			w = width{n: 65535, bytes: true}
		case "MEDIUMTEXT":
			w = width{n: 1<<24 - 1, bytes: true}
		default:
			return // numbers and blobs: not text
		}
		if out[table] == nil {
			out[table] = map[string]width{}
		}
		out[table][strings.ToLower(m[1])] = w
	}
	for _, mig := range migs {
		for _, st := range mig.Statements {
			if m := createRe.FindStringSubmatch(st); m != nil {
				for _, def := range splitDefs(m[2]) {
					add(m[1], def)
				}
			} else if m := alterRe.FindStringSubmatch(st); m != nil {
				add(m[1], m[2]+" "+m[3])
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("store: no text columns found in the %s schema", dialect)
	}
	return out, nil
}

// splitDefs splits the body of a CREATE TABLE at the commas outside
// parentheses.
func splitDefs(body string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range body {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, body[start:i])
				start = i + 1
			}
		}
	}
	return append(out, body[start:])
}

// width returns the width of a column of table (puaTemplate for the pua
// table); ok is false for a column the schema does not declare as text.
func (c columns) width(table, column string) (width, bool) {
	w, ok := c[table][column]
	return w, ok
}

// row fits the values of one row of a table to its columns; the first value
// that cannot be stored is kept in err.
type row struct {
	cols  columns
	table string
	err   error
}

// clip returns s fitted to the column (see width.fit): for values whose
// exact text matters to nobody but a reader (a User-Agent, a caller's
// display URI) or that are re-learnt from the network.
func (r *row) clip(column, s string) string {
	if w, ok := r.cols.width(r.table, column); ok {
		return w.fit(s)
	}
	return s
}

// key returns s unchanged and records an error when the column cannot hold
// it exactly (see width.exact).
func (r *row) key(column, s string) string {
	if w, ok := r.cols.width(r.table, column); ok && r.err == nil {
		r.err = w.exact(column, s)
	}
	return s
}
