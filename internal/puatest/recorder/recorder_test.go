package recorder

import (
	"errors"
	"reflect"
	"testing"

	"github.com/puaside/puaside/pua"
)

func TestRecorder(t *testing.T) {
	r := New()
	k := pua.Key{PresURI: "sip:a@x", Event: "presence", ID: "usrloc"}
	if err := r.Publish(pua.PublishRequest{Key: k}); !errors.Is(err, ErrEmptyBody) {
		t.Fatalf("empty body: %v", err)
	}
	if err := r.Publish(pua.PublishRequest{Key: k, Body: []byte("doc")}); err != nil {
		t.Fatal(err)
	}
	sk := pua.SubKey{PresURI: "sip:l@x", WatcherURI: "sip:l@x", Event: "dialog;sla", ID: "p1"}
	if err := r.Subscribe(pua.SubscribeRequest{SubKey: sk, Target: "sip:l@10.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	r.FailSubscribe(errors.New("refused"))
	if err := r.Subscribe(pua.SubscribeRequest{SubKey: sk, Target: "sip:other"}); err == nil {
		t.Fatal("FailSubscribe ignored")
	}
	r.FailSubscribe(nil)
	r.Note("refresh p1")
	if !r.Subscribed(sk) || string(r.Live()[k].Body) != "doc" || string(r.Last().Body) != "doc" {
		t.Fatalf("state: subscribed %v, live %v", r.Subscribed(sk), r.Live())
	}
	if err := r.Remove(k); err != nil {
		t.Fatal(err)
	}
	if err := r.Unsubscribe(sk); err != nil {
		t.Fatal(err)
	}
	want := []string{"publish usrloc", "subscribe sip:l@10.0.0.1", "refresh p1", "remove usrloc", "unsubscribe p1"}
	if got := r.TakeCalls(); !reflect.DeepEqual(got, want) {
		t.Fatalf("calls %q, want %q", got, want)
	}
	if len(r.Ops()) != 0 || len(r.Live()) != 0 || len(r.Subscriptions()) != 0 {
		t.Fatal("state left after Take and removals")
	}
}
