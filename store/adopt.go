package store

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strings"
)

// Migration steps are idempotent, so that a migration cut short (MySQL
// commits every DDL statement at once) is finished by the next run, and so
// that a database made by Kamailio's own create scripts is adopted: a
// CREATE TABLE of a table that exists adds the columns the table lacks
// (Kamailio's pua table gets puaside's columns), a CREATE INDEX of an index
// that exists and an ADD COLUMN of a column that exists are skipped. On
// SQLite each migration runs in one transaction as well.

// execQuerier is what a migration step runs on: the database or a transaction.
type execQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

var (
	createTableRe = regexp.MustCompile("(?is)^CREATE\\s+TABLE\\s+`?(\\w+)`?\\s*\\((.*)\\)([^)]*)$")
	createIndexRe = regexp.MustCompile("(?is)^CREATE\\s+(?:UNIQUE\\s+)?INDEX\\s+`?(\\w+)`?\\s+ON\\s+`?(\\w+)`?")
	addColumnRe   = regexp.MustCompile("(?is)^ALTER\\s+TABLE\\s+`?(\\w+)`?\\s+ADD\\s+COLUMN\\s+`?(\\w+)`?")
	columnDefRe   = regexp.MustCompile("(?s)^`?(\\w+)`?\\s+\\S")
)

// kamailioPuaVersion is the version of Kamailio's pua table puaside shares.
const kamailioPuaVersion = 7

// step runs one migration statement idempotently on q.
func (db *DB) step(ctx context.Context, q execQuerier, st string) error {
	if m := createTableRe.FindStringSubmatch(st); m != nil {
		exists, err := db.tableExists(ctx, q, m[1])
		if err != nil {
			return err
		}
		if exists {
			return db.adoptTable(ctx, q, m[1], m[2], m[3])
		}
	}
	if m := createIndexRe.FindStringSubmatch(st); m != nil {
		exists, err := db.indexExists(ctx, q, m[2], m[1])
		if err != nil || exists {
			return err
		}
	}
	if m := addColumnRe.FindStringSubmatch(st); m != nil {
		have, err := db.tableColumns(ctx, q, m[1])
		if err != nil {
			return err
		}
		if have[strings.ToLower(m[2])] {
			return nil
		}
	}
	if _, err := q.ExecContext(ctx, st); err != nil {
		return fmt.Errorf("%s: %w", firstLine(st), err)
	}
	return nil
}

// adoptTable brings an existing table to the definition of a CREATE TABLE:
// every column of body the table lacks is added with its definition
// (constraints and keys are not touched: Kamailio's pua table has them). On
// MySQL a definition asking for a binary utf8mb4 collation converts the
// table to it, so that Call-IDs, tags and URIs compare case-sensitively.
func (db *DB) adoptTable(ctx context.Context, q execQuerier, table, body, options string) error {
	if table == db.Table {
		if err := db.checkPuaVersion(ctx, q); err != nil {
			return err
		}
	}
	have, err := db.tableColumns(ctx, q, table)
	if err != nil {
		return err
	}
	for _, def := range splitDefs(body) {
		def = strings.TrimSpace(def)
		m := columnDefRe.FindStringSubmatch(def)
		if m == nil {
			continue
		}
		switch strings.ToUpper(m[1]) {
		case "CONSTRAINT", "PRIMARY", "UNIQUE", "KEY", "INDEX", "FOREIGN", "CHECK":
			continue
		}
		if have[strings.ToLower(m[1])] {
			continue
		}
		alter := fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s", quoteIdent(db.Dialect, table), def)
		if _, err := q.ExecContext(ctx, alter); err != nil {
			return fmt.Errorf("adopt table %s: add column %s: %w", table, m[1], err)
		}
	}
	if db.Dialect == MySQL && strings.Contains(strings.ToLower(options), "utf8mb4_bin") {
		var coll sql.NullString
		rows, err := q.QueryContext(ctx, `SELECT table_collation FROM information_schema.tables
			WHERE table_schema = DATABASE() AND table_name = ?`, table)
		if err != nil {
			return fmt.Errorf("adopt table %s: read collation: %w", table, err)
		}
		if rows.Next() {
			err = rows.Scan(&coll)
		}
		rows.Close()
		if err != nil {
			return fmt.Errorf("adopt table %s: read collation: %w", table, err)
		}
		if coll.String != "utf8mb4_bin" {
			alter := fmt.Sprintf("ALTER TABLE %s ROW_FORMAT=DYNAMIC, CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", quoteIdent(db.Dialect, table))
			if _, err := q.ExecContext(ctx, alter); err != nil {
				return fmt.Errorf("adopt table %s: convert to utf8mb4_bin: %w", table, err)
			}
		}
	}
	return nil
}

// checkPuaVersion refuses to adopt a pua table whose Kamailio table version
// is not the one puaside shares.
func (db *DB) checkPuaVersion(ctx context.Context, q execQuerier) error {
	ok, err := db.tableExists(ctx, q, "version")
	if err != nil || !ok {
		return err
	}
	rows, err := q.QueryContext(ctx, `SELECT table_version FROM version WHERE table_name = ?`, db.Table)
	if err != nil {
		return fmt.Errorf("adopt table %s: read its version: %w", db.Table, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return rows.Err()
	}
	var v int64
	if err := rows.Scan(&v); err != nil {
		return fmt.Errorf("adopt table %s: read its version: %w", db.Table, err)
	}
	if v != kamailioPuaVersion {
		return fmt.Errorf("adopt table %s: table version %d, puaside shares version %d (Kamailio 5.x)", db.Table, v, kamailioPuaVersion)
	}
	return nil
}

// tableExists reports whether the table exists in the current database.
func (db *DB) tableExists(ctx context.Context, q execQuerier, table string) (bool, error) {
	query := `SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`
	if db.Dialect == MySQL {
		query = `SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?`
	}
	return db.any(ctx, q, query, table)
}

// indexExists reports whether table has an index named index.
func (db *DB) indexExists(ctx context.Context, q execQuerier, table, index string) (bool, error) {
	query := `SELECT 1 FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND name = ?`
	if db.Dialect == MySQL {
		query = `SELECT 1 FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = ? AND index_name = ?`
	}
	return db.any(ctx, q, query, table, index)
}

// any reports whether query returns a row.
func (db *DB) any(ctx context.Context, q execQuerier, query string, args ...any) (bool, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return false, fmt.Errorf("read schema: %w", err)
	}
	defer rows.Close()
	found := rows.Next()
	return found, rows.Err()
}

// tableColumns returns the lower-case column names of table.
func (db *DB) tableColumns(ctx context.Context, q execQuerier, table string) (map[string]bool, error) {
	query := `SELECT name FROM pragma_table_info(?)`
	if db.Dialect == MySQL {
		query = `SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?`
	}
	rows, err := q.QueryContext(ctx, query, table)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", table, err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", table, err)
		}
		out[strings.ToLower(n)] = true
	}
	return out, rows.Err()
}

// quoteIdent quotes a plain identifier for the dialect.
func quoteIdent(dialect, name string) string {
	if dialect == MySQL {
		return "`" + name + "`"
	}
	return `"` + name + `"`
}

// firstLine returns the first line of a statement, for error messages.
func firstLine(st string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(st), "\n")
	return strings.TrimSpace(line)
}
