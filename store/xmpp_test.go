package store_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/puaxmpp"
	"github.com/puaside/puaside/store"
)

func TestXMPPRequests(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a := puaxmpp.Request{XMPPUser: "bob@xmpp.example.com", Watcher: "sip:dave@example.com"}
		b := puaxmpp.Request{XMPPUser: "bob@xmpp.example.com", Watcher: "sip:Dave@example.com"} // case matters
		for _, r := range []puaxmpp.Request{a, b, a} {
			if err := db.SaveXMPPRequest(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.LoadXMPPRequests(ctx)
		if err != nil || !reflect.DeepEqual(got, []puaxmpp.Request{b, a}) {
			t.Fatalf("load: %+v, %v", got, err)
		}
		if err := db.DeleteXMPPRequest(ctx, b); err != nil {
			t.Fatal(err)
		}
		if got, err := db.LoadXMPPRequests(ctx); err != nil || !reflect.DeepEqual(got, []puaxmpp.Request{a}) {
			t.Fatalf("after delete: %+v, %v", got, err)
		}
		if err := db.SaveXMPPRequest(ctx, puaxmpp.Request{XMPPUser: "x"}); !errors.Is(err, store.ErrEmptyRequest) {
			t.Fatalf("empty watcher: %v", err)
		}
		if err := db.SaveXMPPRequest(ctx, puaxmpp.Request{XMPPUser: "x", Watcher: "sip:" + strings.Repeat("w", 300) + "@x"}); err == nil {
			t.Fatal("a watcher longer than its column was stored")
		}
	})
}
