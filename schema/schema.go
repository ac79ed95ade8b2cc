// Package schema embeds the SQL schema of puaside, one directory per
// dialect (sqlite, mysql). Each file NNN_name.sql is one migration, applied
// once and in name order by package store (`puaside migrate`, or at start).
// The `pua` table keeps Kamailio's columns and table version 7; puaside's
// own tables are named puaside_*.
//
// Place in the flow: below the store, the last stage, which applies it.
package schema

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

//go:embed sqlite/*.sql mysql/*.sql
var files embed.FS

// Migration is one schema file.
type Migration struct {
	// Name is the file name, e.g. "002_pua.sql".
	Name string
	// Statements are the SQL statements of the file, in order.
	Statements []string
}

// Migrations returns the migrations of a dialect ("sqlite" or "mysql") in
// the order they must be applied.
func Migrations(dialect string) ([]Migration, error) {
	entries, err := fs.ReadDir(files, dialect)
	if err != nil {
		return nil, fmt.Errorf("schema: unknown dialect %q: %w", dialect, err)
	}
	var out []Migration
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		b, err := fs.ReadFile(files, dialect+"/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("schema: read %s/%s: %w", dialect, e.Name(), err)
		}
		out = append(out, Migration{Name: e.Name(), Statements: Split(string(b))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Split cuts a SQL script into statements at semicolons that end a line.
// Lines starting with "--" are comments and dropped.
func Split(script string) []string {
	var stmts []string
	var cur strings.Builder
	for _, line := range strings.Split(script, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteString("\n")
		if strings.HasSuffix(t, ";") {
			s := strings.TrimSpace(cur.String())
			stmts = append(stmts, strings.TrimSuffix(s, ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		stmts = append(stmts, s)
	}
	return stmts
}
