package dialoginfo

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/puatest"
	"github.com/puaside/puaside/internal/puatest/recorder"
)

var update = flag.Bool("update", false, "rewrite testdata/*/expected from the current output")

// goldenRun feeds a case's steps to a tracker and returns the operations
// log and the documents published, in order. dup feeds every message twice.
func goldenRun(t *testing.T, dir string, dup bool) (string, [][]byte) {
	t.Helper()
	cfg := DefaultConfig()
	if b, err := os.ReadFile(filepath.Join(dir, "config.json")); err == nil {
		if err := json.Unmarshal(b, &cfg); err != nil {
			t.Fatalf("config.json: %v", err)
		}
	}
	clk := newFakeClock()
	pub := recorder.New()
	tr, err := New(cfg, Options{Publisher: pub, Clock: clk, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".sip") || strings.HasSuffix(e.Name(), ".advance") || strings.HasSuffix(e.Name(), ".json")) && e.Name() != "config.json" {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	val := newValidator()
	var log strings.Builder
	var docs [][]byte
	record := func(step string) {
		for _, op := range pub.Take() {
			if op.Kind == recorder.Remove {
				fmt.Fprintf(&log, "%s remove %s %s\n", step, op.Key.PresURI, op.Key.ID)
				continue
			}
			docs = append(docs, op.Req.Body)
			lifetime := ""
			if op.Req.Lifetime > 0 {
				lifetime = " lifetime=" + op.Req.Lifetime.String()
			}
			fmt.Fprintf(&log, "%s publish %s %s flag=%d expires=%s%s -> %03d.xml\n", step, op.Key.PresURI, op.Key.ID, op.Req.Flag, op.Req.Expires, lifetime, len(docs))
			if op.Req.ContentType != dialogdoc.ContentType || op.Key.Event != "dialog" {
				t.Errorf("%s: content type %q event %q", step, op.Req.ContentType, op.Key.Event)
			}
			if err := val.check(op.Key.PresURI, op.Req.Body); err != nil {
				t.Errorf("%s: invalid document %03d: %v\n%s", step, len(docs), err, op.Req.Body)
			}
		}
	}
	ctx := context.Background()
	for _, name := range names {
		path := filepath.Join(dir, name)
		clk.Advance(100 * time.Millisecond)
		tr.Expire(clk.Now())
		record(name + " (timers)")
		switch filepath.Ext(name) {
		case ".sip":
			m := puatest.ParseSIP(t, loadSIP(t, path))
			n := 1
			if dup {
				n = 2
			}
			for i := 0; i < n; i++ {
				tr.HandleSIP(ctx, event.SIP{Msg: m, Source: event.SourceTrace, Time: clk.Now()})
			}
		case ".advance":
			b, _ := os.ReadFile(path)
			d, err := time.ParseDuration(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			tr.Expire(clk.Advance(d))
		case ".json":
			b, _ := os.ReadFile(path)
			var ds event.DialogState
			if err := json.Unmarshal(b, &ds); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if err := tr.ApplyDialogState(ctx, ds); err != nil {
				fmt.Fprintf(&log, "%s error %v\n", name, err)
			}
		}
		record(name)
	}
	// Let every timer run: nothing may stay published.
	tr.Expire(clk.Advance(24 * time.Hour))
	tr.Expire(clk.Advance(cfg.TerminatedLinger + time.Second))
	record("end")
	if len(tr.calls) != 0 || stuck(pub) != 0 {
		t.Errorf("after all timers: %d calls tracked, %d publications left: %v", len(tr.calls), stuck(pub), pub.Live())
	}
	return log.String(), docs
}

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		dir  string
		dup  bool
	}{
		{"basic", "basic", false},
		{"basic-duplicated", "basic", true},
		{"bye-callee", "bye-callee", false},
		{"cancel", "cancel", false},
		{"cancel-duplicated", "cancel", true},
		{"rejected", "rejected", false},
		{"busy-noring", "busy-noring", false},
		{"forking", "forking", false},
		{"forking-duplicated", "forking", true},
		{"fork-busy", "fork-busy", false},
		{"fork-decline", "fork-decline", false},
		{"fork-all-busy", "fork-all-busy", false},
		{"hold", "hold", false},
		{"hold-duplicated", "hold", true},
		{"out-of-order", "out-of-order", false},
		{"ring-timeout", "ring-timeout", false},
		{"lifetime", "lifetime", false},
		{"auth", "auth", false},
		{"json", "json", false},
		{"domains", "domains", false},
		{"include-req-uri", "include-req-uri", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join("testdata", tc.dir)
			log, docs := goldenRun(t, dir, tc.dup)
			exp := filepath.Join(dir, "expected")
			if *update && !tc.dup {
				if err := os.RemoveAll(exp); err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll(exp, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(exp, "ops.txt"), []byte(log), 0o644); err != nil {
					t.Fatal(err)
				}
				for i, d := range docs {
					if err := os.WriteFile(filepath.Join(exp, fmt.Sprintf("%03d.xml", i+1)), d, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				return
			}
			want, err := os.ReadFile(filepath.Join(exp, "ops.txt"))
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if tc.dup {
				// Every message twice: same documents, same operations.
				if log != string(want) {
					t.Errorf("duplicated input changed the operations:\n got:\n%s\nwant:\n%s", log, want)
				}
			} else if log != string(want) {
				t.Errorf("operations:\n got:\n%s\nwant:\n%s", log, want)
			}
			files, _ := filepath.Glob(filepath.Join(exp, "*.xml"))
			if len(files) != len(docs) {
				t.Errorf("%d documents, want %d", len(docs), len(files))
			}
			for i, d := range docs {
				w, err := os.ReadFile(filepath.Join(exp, fmt.Sprintf("%03d.xml", i+1)))
				if err != nil {
					t.Errorf("%v", err)
					continue
				}
				if string(w) != string(d) {
					t.Errorf("document %03d:\n got:\n%s\nwant:\n%s", i+1, d, w)
				}
			}
		})
	}
}
