package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/sipphone"
)

// Waiting on a watcher (sipphone.Watcher) for the NOTIFY a test expects.

// pidfOpen matches a PIDF showing ph's contact online.
func pidfOpen(ph *sipphone.Phone) func(string) bool {
	u := ph.ContactURI(ph.User)
	contact := u.String()
	return func(b string) bool {
		return strings.Contains(b, "<basic>open</basic>") && strings.Contains(b, contact)
	}
}

// pidfClosed matches a PIDF showing the presentity offline.
func pidfClosed(b string) bool {
	return strings.Contains(b, "<basic>closed</basic>") && !strings.Contains(b, "<basic>open</basic>")
}

// notifyBodies renders every NOTIFY of w for a failure message.
func notifyBodies(w *sipphone.Watcher) string {
	var b strings.Builder
	for i, n := range w.Notifications() {
		fmt.Fprintf(&b, "--- #%d (%s)\n%s\n", i, n.State, n.Body)
	}
	return b.String()
}

// waitNotify waits, at most limit, for the next NOTIFY of w whose body
// matches; the test fails at once if none comes.
func waitNotify(ctx context.Context, t testing.TB, w *sipphone.Watcher, limit time.Duration, what string, match func(string) bool) {
	t.Helper()
	if err := awaitNotify(ctx, w, limit, match); err != nil {
		t.Fatalf("%s not seen within %s: %v\nNOTIFYs:\n%s", what, limit, err, notifyBodies(w))
	}
}

// expectNotify is waitNotify that marks the test failed and carries on.
func expectNotify(ctx context.Context, t *testing.T, w *sipphone.Watcher, limit time.Duration, what string, match func(string) bool) {
	t.Helper()
	if err := awaitNotify(ctx, w, limit, match); err != nil {
		t.Errorf("%s not seen within %s: %v\nNOTIFYs:\n%s", what, limit, err, notifyBodies(w))
	}
}

// awaitNotify waits, at most limit, for the next NOTIFY of w whose body
// matches.
func awaitNotify(ctx context.Context, w *sipphone.Watcher, limit time.Duration, match func(string) bool) error {
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	_, err := w.WaitFor(wctx, match)
	return err
}
