package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestProfilesWritten(t *testing.T) {
	dir := t.TempDir()
	p := profiles{CPU: filepath.Join(dir, "cpu.prof"), Trace: filepath.Join(dir, "trace.out")}
	stop, err := p.start()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		_ = bytes.Repeat([]byte{byte(i)}, 1000)
	}
	stop()
	for _, c := range []struct {
		path  string
		magic []byte
	}{
		{p.CPU, []byte{0x1f, 0x8b}}, // gzip'd pprof
		{p.Trace, []byte("go 1.")},  // the trace header: go 1.N trace
	} {
		b, err := os.ReadFile(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, c.magic) {
			t.Errorf("%s starts %q, want %q", c.path, b[:min(len(b), 16)], c.magic)
		}
	}
	// Nothing asked, nothing written; a path that cannot be made is an error.
	if stop, err := (profiles{}).start(); err != nil {
		t.Fatal(err)
	} else {
		stop()
	}
	// The trace failing after the CPU profile started stops the profile.
	bad := profiles{CPU: filepath.Join(dir, "cpu2.prof"), Trace: filepath.Join(dir, "no", "such", "dir", "t")}
	if _, err := bad.start(); err == nil {
		t.Error("a trace in a missing directory started")
	}
	stop, err = (profiles{CPU: filepath.Join(dir, "cpu3.prof")}).start()
	if err != nil {
		t.Fatalf("the CPU profile of the failed start was left running: %v", err)
	}
	stop()
}
