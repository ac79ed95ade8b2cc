package puatest

import (
	"testing"
	"time"
)

// Eventually polls cond every 2 ms until it holds, and fails the test
// (naming what) when it still does not after 10 s.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
