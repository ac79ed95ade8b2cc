package store_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/pa"
	"github.com/puaside/puaside/store"
)

func TestPolicyRules(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a := pa.Rule{Presentity: "sip:alice@example.com", Watcher: "partner.example", Action: "allow"}
		b := pa.Rule{Presentity: "", Watcher: "sip:Eve@example.com", Action: "deny"} // case matters
		a2 := a
		a2.Action = "pending"
		for _, r := range []pa.Rule{a, b, a2} {
			if err := db.SavePolicyRule(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.LoadPolicyRules(ctx)
		if err != nil || !reflect.DeepEqual(got, []pa.Rule{b, a2}) {
			t.Fatalf("load: %+v, %v", got, err)
		}
		if ok, err := db.DeletePolicyRule(ctx, "", "sip:eve@example.com"); err != nil || ok {
			t.Fatalf("delete of another case: %v, %v", ok, err)
		}
		if ok, err := db.DeletePolicyRule(ctx, "", "sip:Eve@example.com"); err != nil || !ok {
			t.Fatalf("delete: %v, %v", ok, err)
		}
		if got, err := db.LoadPolicyRules(ctx); err != nil || !reflect.DeepEqual(got, []pa.Rule{a2}) {
			t.Fatalf("after delete: %+v, %v", got, err)
		}
		if err := db.SavePolicyRule(ctx, pa.Rule{Presentity: "sip:" + strings.Repeat("p", 300) + "@x", Action: "allow"}); err == nil {
			t.Fatal("a presentity longer than its column was stored")
		}
	})
}
