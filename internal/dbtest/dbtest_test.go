package dbtest

import (
	"context"
	"strings"
	"testing"

	"github.com/puaside/puaside/store"
)

// TestCheckStrict: the test database runs in strict mode, and a session
// that does not is refused.
func TestCheckStrict(t *testing.T) {
	ctx := context.Background()
	db := Open(t, store.MySQL)
	if err := CheckStrict(ctx, db.X); err != nil {
		t.Fatal(err)
	}
	conn, err := db.X.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, mode := range []string{"", "NO_ENGINE_SUBSTITUTION", "ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER"} {
		if _, err := conn.ExecContext(ctx, "SET SESSION sql_mode = ?", mode); err != nil {
			t.Fatal(err)
		}
		if err := CheckStrict(ctx, conn); err == nil || !strings.Contains(err.Error(), "STRICT_TRANS_TABLES") {
			t.Errorf("sql_mode %q: %v, want a refusal", mode, err)
		}
	}
	if _, err := conn.ExecContext(ctx, "SET SESSION sql_mode = 'STRICT_ALL_TABLES'"); err != nil {
		t.Fatal(err)
	}
	if err := CheckStrict(ctx, conn); err != nil {
		t.Errorf("STRICT_ALL_TABLES: %v", err)
	}
}
