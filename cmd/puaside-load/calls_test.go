package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRunCallsSmoke places a few calls and checks the report: every call
// ended at the fake server, seven PUBLISHes a call (no removal: the
// terminated documents lapse), no lamp lit, ordered percentiles.
func TestRunCallsSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const calls = 50
	for _, input := range []string{inputTrace, inputHEP} {
		r, err := runCalls(ctx, callOptions{Calls: calls, Rate: 50, Ring: 50 * time.Millisecond, Talk: 100 * time.Millisecond,
			Linger: time.Second, Input: input, Log: testWriter{t}})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %+v", input, r)
		checkCallResult(t, r, calls)
	}
}

// checkCallResult checks one call-mode report.
func checkCallResult(t *testing.T, r callResult, calls int64) {
	t.Helper()
	if r.Lost != 0 || r.Copies != 12*calls || r.LampsLit != 0 || r.SocketDrops[r.Input] != 0 {
		t.Fatalf("lost %d, copies %d, lamps lit %d; want 0, %d, 0", r.Lost, r.Copies, r.LampsLit, 12*calls)
	}
	if got := float64(r.PublishTotal) / float64(calls); got > 7 || r.PublishPerCall["remove"] != 0 || r.PublishPerCall["initial"] != 2 {
		t.Errorf("PUBLISH per call %.2f %v, want at most 7, two initial and no removal", got, r.PublishPerCall)
	}
	if !(r.P50ms <= r.P99ms && r.P99ms <= r.P999ms && r.P999ms <= r.Maxms && r.Maxms > 0) || r.CPUSeconds <= 0 {
		t.Errorf("figures out of order or missing: %+v", r)
	}
	var sb strings.Builder
	r.print(&sb)
	if !strings.Contains(sb.String(), "PUBLISH per call") || !strings.Contains(sb.String(), "lamps lit") {
		t.Errorf("report lacks figures:\n%s", sb.String())
	}
}

func TestCallOptionsBounds(t *testing.T) {
	ok := callOptions{Calls: 10, Rate: 100, Ring: time.Second, Talk: time.Second}
	for _, tc := range []struct {
		name  string
		edit  func(*callOptions)
		valid bool
	}{
		{"valid", func(*callOptions) {}, true},
		{"no calls", func(o *callOptions) { o.Calls = 0 }, false},
		{"too many calls", func(o *callOptions) { o.Calls = maxCalls + 1 }, false},
		{"no rate", func(o *callOptions) { o.Rate = 0 }, false},
		{"rate too high", func(o *callOptions) { o.Rate = maxCallRate + 1 }, false},
		{"negative ring", func(o *callOptions) { o.Ring = -time.Second }, false},
		{"talk too long", func(o *callOptions) { o.Talk = maxHold + time.Second }, false},
		{"run too long", func(o *callOptions) { o.Calls, o.Rate = maxCalls, 1 }, false},
		{"hep", func(o *callOptions) { o.Input = inputHEP }, true},
		{"replicate input", func(o *callOptions) { o.Input = inputReplicate }, false},
		{"bin without proc", func(o *callOptions) { o.Bin = "/bin/puaside" }, false},
	} {
		o := ok
		tc.edit(&o)
		if err := o.validate(); (err == nil) != tc.valid {
			t.Errorf("%s: validate() = %v, want valid=%v", tc.name, err, tc.valid)
		}
	}
}
