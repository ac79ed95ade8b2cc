package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
)

// TestSchemaColumns: the widths read from both dialects' schema files are
// the same, and every column the store fits is among them.
func TestSchemaColumns(t *testing.T) {
	lite, err := schemaColumns(SQLite)
	if err != nil {
		t.Fatal(err)
	}
	my, err := schemaColumns(MySQL)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(lite, my) {
		t.Errorf("sqlite and mysql widths differ:\nsqlite %v\nmysql  %v", lite, my)
	}
	for _, c := range []struct {
		table, column string
		want          width
	}{
		{puaTemplate, "pres_uri", width{n: 255}},
		{puaTemplate, "tuple_id", width{n: 64}},
		{puaTemplate, "etag", width{n: 128}},
		{puaTemplate, "event_name", width{n: 64}},
		{puaTemplate, "record_route", width{n: 65535, bytes: true}},
		{puaTemplate, "extra_headers", width{n: 65535, bytes: true}},
		{puaTemplate, "outbound_proxy", width{n: 255}},
		{puaTemplate, "target", width{n: 255}},
		{contactsTable, "contact", width{n: 65535, bytes: true}},
		{contactsTable, "user_agent", width{n: 255}},
		{flagsTable, "aor", width{n: 255}},
		{dialogsTable, "id", width{n: 64}},
		{dialogsTable, "from_tag", width{n: 128}},
		{dialogsTable, "state", width{n: 16}},
		{versionsTable, "entity", width{n: 255}},
		{"puaside_shared_lines", "member", width{n: 255}},
	} {
		if got, ok := my.width(c.table, c.column); !ok || got != c.want {
			t.Errorf("%s.%s: %v %v, want %v", c.table, c.column, got, ok, c.want)
		}
	}
	for table, cols := range map[string][]string{
		puaTemplate: {"pres_uri", "pres_id", "event_name", "watcher_uri", "etag", "tuple_id", "call_id", "to_tag",
			"from_tag", "record_route", "contact", "remote_contact", "extra_headers", "content_type", "outbound_proxy", "target"},
		contactsTable: {"aor", "contact", "received", "call_id", "instance", "user_agent"},
		dialogsTable:  {"id", "call_id", "from_tag", "caller", "callee", "state"},
		versionsTable: {"entity"},
	} {
		for _, c := range cols {
			if _, ok := lite.width(table, c); !ok {
				t.Errorf("%s.%s: no width in the schema", table, c)
			}
		}
	}
	if _, ok := lite.width(puaTemplate, "expires"); ok {
		t.Error("a number column has a text width")
	}
}

func TestWidthFit(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    width
		in   string
		want string
	}{
		{"short", width{n: 5}, "abc", "abc"},
		{"ascii cut", width{n: 3}, "abcdef", "abc"},
		{"characters not bytes", width{n: 3}, "ééééé", "ééé"},
		{"four-byte characters", width{n: 2}, "😀😀😀", "😀😀"},
		{"invalid replaced", width{n: 10}, "a\xffb", "a\uFFFDb"},
		{"invalid then cut", width{n: 2}, "\xff\xfeabc", "\uFFFDa"},
		{"bytes never split a character", width{n: 4, bytes: true}, "a€€", "a€"},
		{"bytes exact", width{n: 7, bytes: true}, "a€€", "a€€"},
		{"no width", width{}, "anything", "anything"},
	} {
		got := tc.w.fit(tc.in)
		if got != tc.want {
			t.Errorf("%s: fit(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
		if !utf8.ValidString(got) || (tc.w.n > 0 && tc.w.length(got) > tc.w.n) {
			t.Errorf("%s: %q does not fit %v", tc.name, got, tc.w)
		}
	}
	if err := (width{n: 3}).exact("aor", "ééé"); err != nil {
		t.Errorf("three characters in three: %v", err)
	}
	for _, s := range []string{"éééé", "a\xff"} {
		if err := (width{n: 3}).exact("aor", s); !errors.Is(err, errUnstorable) {
			t.Errorf("exact(%q) = %v, want errUnstorable", s, err)
		}
	}
}

func TestRowError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("x: %w", errUnstorable), true},
		{fmt.Errorf("insert: %w", &mysql.MySQLError{Number: 1406, Message: "Data too long"}), true},
		{&mysql.MySQLError{Number: 1366, Message: "Incorrect string value"}, true},
		{&mysql.MySQLError{Number: 1062, Message: "Duplicate entry"}, true},
		{&mysql.MySQLError{Number: 1213, Message: "Deadlock"}, false},
		{&mysql.MySQLError{Number: 2006, Message: "gone away"}, false},
		{errors.New("connection refused"), false},
		{context.DeadlineExceeded, false},
	} {
		if got := rowError(tc.err); got != tc.want {
			t.Errorf("rowError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestIsolate: a batch with poisoned items is split until each poisoned
// item is alone; every other item is written once; an error about the
// database stops the work and is returned.
func TestIsolate(t *testing.T) {
	poison := map[int]bool{3: true, 4: true, 17: true}
	var written []int
	calls := 0
	write := func(part []int) error {
		calls++
		for _, v := range part {
			if poison[v] {
				return fmt.Errorf("%w: item %d", errUnstorable, v)
			}
		}
		written = append(written, part...)
		return nil
	}
	var bad []int
	items := make([]int, 40)
	for i := range items {
		items[i] = i
	}
	if err := isolate(context.Background(), items, write, func(v int, err error) { bad = append(bad, v) }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(bad, []int{3, 4, 17}) {
		t.Errorf("set aside %v", bad)
	}
	if len(written) != 37 {
		t.Errorf("wrote %d items, want 37", len(written))
	}
	for i := 1; i < len(written); i++ {
		if written[i] <= written[i-1] {
			t.Fatalf("items written out of order: %v", written)
		}
	}
	if calls > 30 {
		t.Errorf("%d writes for 3 poisoned items among 40", calls)
	}

	down := errors.New("connection refused")
	n := 0
	err := isolate(context.Background(), items, func(part []int) error {
		n++
		if n == 1 {
			return fmt.Errorf("%w", errUnstorable)
		}
		return down
	}, func(int, error) { t.Error("an item set aside while the database is down") })
	if !errors.Is(err, down) {
		t.Errorf("isolate = %v, want the database error", err)
	}
	if !strings.Contains(err.Error(), "refused") || n != 2 {
		t.Errorf("writes after the database error: %d", n)
	}
}
