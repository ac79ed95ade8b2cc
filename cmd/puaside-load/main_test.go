package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRunSmoke runs the whole tool at a small rate and checks that the
// report is consistent: every copy answered and published once, ordered
// latency percentiles, memory and CPU read.
func TestRunSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const users = 100
	r, err := run(ctx, options{Rate: 200, Users: users, Duration: 30 * time.Second, Drain: 30 * time.Second, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", r)
	if r.Sent != users || r.Answered != users || r.Published != users || r.Lost != 0 {
		t.Fatalf("sent %d, answered %d, published %d, lost %d; want %d, %d, %d, 0", r.Sent, r.Answered, r.Published, r.Lost, users, users, users)
	}
	if r.PublishTotal < users || r.PublishStatus["200"] < users {
		t.Errorf("PUBLISH requests %d, puaside's 200s %v; want at least %d", r.PublishTotal, r.PublishStatus["200"], users)
	}
	if !(r.P50ms <= r.P90ms && r.P90ms <= r.P99ms && r.P99ms <= r.Maxms && r.Maxms > 0) {
		t.Errorf("latency percentiles out of order: %+v", r)
	}
	if r.Throughput <= 0 || r.SendRate <= 0 || r.RSSMiB <= 0 || r.HWMMiB < r.RSSMiB || r.CPUSeconds <= 0 {
		t.Errorf("missing figures: %+v", r)
	}
	for _, k := range []string{"replicate", "pua", "presence", "sender"} {
		if _, ok := r.SocketDrops[k]; !ok {
			t.Errorf("no socket drop counter for %s: %v", k, r.SocketDrops)
		}
	}
	var sb strings.Builder
	r.print(&sb)
	if !strings.Contains(sb.String(), "p99") || !strings.Contains(sb.String(), "VmRSS") {
		t.Errorf("report lacks figures:\n%s", sb.String())
	}
}

func TestOptionsBounds(t *testing.T) {
	ok := options{Rate: 1000, Users: 10, Duration: time.Second, Drain: time.Second}
	tests := []struct {
		name  string
		edit  func(*options)
		valid bool
	}{
		{"defaults", func(*options) {}, true},
		{"unpaced", func(o *options) { o.Rate = 0 }, true},
		{"negative rate", func(o *options) { o.Rate = -1 }, false},
		{"rate too high", func(o *options) { o.Rate = maxRate + 1 }, false},
		{"no users", func(o *options) { o.Users = 0 }, false},
		{"too many users", func(o *options) { o.Users = maxUsers + 1 }, false},
		{"no duration", func(o *options) { o.Duration = 0 }, false},
		{"duration too long", func(o *options) { o.Duration = maxDuration + time.Second }, false},
		{"no drain", func(o *options) { o.Drain = 0 }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			if err := o.validate(); (err == nil) != tc.valid {
				t.Fatalf("validate(%+v) = %v, want valid %v", o, err, tc.valid)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		in   []time.Duration
		p    float64
		want float64
	}{
		{nil, 50, 0},
		{ms(7), 99, 7},
		{ms(1, 2, 3, 4), 50, 2},
		{ms(hundred...), 50, 50},
		{ms(hundred...), 99, 99},
		{ms(hundred...), 100, 100},
		{ms(hundred...), 99.9, 100},
		{ms(append(append([]int{}, hundred...), hundred...)...), 99.9, 100},
	}
	for _, tc := range tests {
		if got := pct(tc.in, tc.p); got != tc.want {
			t.Errorf("pct(%v, %v) = %v, want %v", tc.in, tc.p, got, tc.want)
		}
	}
}

func TestLabel(t *testing.T) {
	s := `puaside_ingest_dropped_total{input="replicate",reason="queue_full"}`
	for k, want := range map[string]string{"input": "replicate", "reason": "queue_full", "status": ""} {
		if got := label(s, k); got != want {
			t.Errorf("label(%q) = %q, want %q", k, got, want)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestRunSeparateProcess runs the built puaside binary as its own process
// for both inputs: every AoR published, the daemon's own CPU and memory
// read from /proc apart from the tool's.
func TestRunSeparateProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := buildPuaside(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const users = 100
	for _, input := range []string{inputReplicate, inputHEP} {
		t.Run(input, func(t *testing.T) {
			r, err := run(ctx, options{Rate: 200, Users: users, Duration: 30 * time.Second, Drain: 30 * time.Second,
				Input: input, Proc: true, Bin: bin, Log: testWriter{t}})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", r)
			if r.Sent != users || r.Published != users || r.Lost != 0 || r.Input != input || !r.Separate {
				t.Fatalf("input %s: sent %d, published %d, lost %d, separate %v; want %d, %d, 0, true", r.Input, r.Sent, r.Published, r.Lost, r.Separate, users, users)
			}
			wantAnswered := int64(users)
			if input == inputHEP {
				wantAnswered = 0 // HEP is never answered
			}
			if r.Answered != wantAnswered {
				t.Errorf("answered %d, want %d", r.Answered, wantAnswered)
			}
			if r.PublishStatus["200"] < users {
				t.Errorf("puaside's PUBLISH 200s %v, want at least %d (metrics of the separate process)", r.PublishStatus, users)
			}
			if r.CPUSeconds <= 0 || r.ToolCPUSeconds <= 0 || r.RSSMiB <= 0 || r.HWMMiB < r.RSSMiB || r.HeapMiB != 0 {
				t.Errorf("figures of the separate process missing: %+v", r)
			}
			if !(r.P99ms <= r.P999ms && r.P999ms <= r.Maxms) {
				t.Errorf("p99.9 out of order: %+v", r)
			}
		})
	}
}
