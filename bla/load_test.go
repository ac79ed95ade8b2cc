package bla

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/puaside/puaside/metrics"
	"github.com/puaside/puaside/pua"
)

// slowStore is a LineStore whose LoadSharedLines waits for release.
type slowStore struct {
	*memStore
	entered chan struct{}
	release chan struct{}
}

func (s *slowStore) LoadSharedLines(ctx context.Context) (map[string][]string, error) {
	close(s.entered)
	<-s.release
	return s.memStore.LoadSharedLines(ctx)
}

// A NOTIFY for a database line that arrives while the lines are being
// loaded waits for them instead of being answered 481.
func TestNotifyWaitsForDatabaseLines(t *testing.T) {
	st := &slowStore{memStore: newMemStore(), entered: make(chan struct{}), release: make(chan struct{})}
	st.lines.Put("sip:200@example.com", nil)
	eng := newFakeEngine()
	cfg := DefaultConfig()
	cfg.DefaultDomain = "example.com"
	m, err := New(cfg, Options{Subscriber: eng, Publisher: eng, Store: st, Metrics: metrics.New(),
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	loadErr := make(chan error, 1)
	go func() { loadErr <- m.Load(context.Background()) }()
	<-st.entered

	const aor = "sip:200@example.com"
	n := pua.Notify{Key: pua.SubKey{PresURI: aor, WatcherURI: aor, Event: EventSLA, ID: ContactID(phoneA)},
		State: "active", Expires: 3600, ContentType: ContentType, Body: readTestdata(t, "notify/wire_trying.xml"),
		Contact: "<" + phoneA + ">"}
	type reply struct {
		code   int
		reason string
	}
	got := make(chan reply, 1)
	go func() {
		code, reason := m.HandleNotify(context.Background(), n)
		got <- reply{code, reason}
	}()
	// Leave the NOTIFY time to be answered early, as it was before.
	time.Sleep(100 * time.Millisecond)
	close(st.release)
	if err := <-loadErr; err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.code != 200 {
		t.Fatalf("NOTIFY during the load answered %d %s, want 200", r.code, r.reason)
	}
	if calls := eng.TakeCalls(); len(calls) != 1 || calls[0] != "publish "+LinePublicationID {
		t.Fatalf("calls %v, want one publish", calls)
	}
	// Once loaded, an unknown line is refused at once.
	n.Key.PresURI = "sip:999@example.com"
	if code, _ := m.HandleNotify(context.Background(), n); code != 481 {
		t.Fatalf("unknown line answered %d", code)
	}
}
