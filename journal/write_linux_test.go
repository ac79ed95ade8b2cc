package journal

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestWriteRaw: the raw write puts every byte where os.File.Write would,
// fails as it does on a descriptor not open for writing, and leaves a
// closed file to it.
func TestWriteRaw(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 3<<20) // larger than one write of a pipe or a page
	for i := range big {
		big[i] = byte(i * 7)
	}
	want := append([]byte("first "), big...)
	for _, b := range [][]byte{[]byte("first "), big, {}} {
		if n, ok, _, err := writeRaw(f, b); err != nil || !ok || n != len(b) {
			t.Fatalf("write of %d bytes: %d, %v, %v", len(b), n, ok, err)
		}
	}
	f.Close()
	if got, _ := os.ReadFile(path); !slices.Equal(got, want) {
		t.Fatalf("file holds %d bytes, want %d", len(got), len(want))
	}
	// A closed file's descriptor cannot be reached: writeFile falls back
	// to os.File.Write, which reports the closed file.
	if n, ok, _, err := writeRaw(f, []byte("x")); n != 0 || ok || err != nil {
		t.Fatalf("closed file: %d, %v, %v", n, ok, err)
	}
	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	var pe *os.PathError
	if n, _, _, err := writeRaw(ro, []byte("x")); n != 0 || !errors.As(err, &pe) || pe.Path != path {
		t.Fatalf("read-only file: %d, %v", n, err)
	}
}

// TestWriteRawTellsASleep: a write that waits in the kernel (a pipe whose
// reader drains it only later) says it slept; one the kernel takes at
// once (a small write to a pipe with room) says it did not.
func TestWriteRawTellsASleep(t *testing.T) {
	var fds [2]int
	if err := syscall.Pipe(fds[:]); err != nil { // blocking descriptors
		t.Fatal(err)
	}
	r, w := os.NewFile(uintptr(fds[0]), "pipe-r"), os.NewFile(uintptr(fds[1]), "pipe-w")
	defer r.Close()
	defer w.Close()
	if n, ok, slept, err := writeRaw(w, []byte("x")); n != 1 || !ok || err != nil || slept {
		t.Fatalf("write to a pipe with room: %d, %v, slept %v, %v", n, ok, slept, err)
	}
	big := make([]byte, 1<<20) // more than a pipe holds
	done := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond) // the writer is waiting by then
		_, err := io.ReadFull(r, make([]byte, 1+len(big)))
		done <- err
	}()
	if n, ok, slept, err := writeRaw(w, big); n != len(big) || !ok || err != nil || !slept {
		t.Fatalf("write that waits for its reader: %d, %v, slept %v, %v", n, ok, slept, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
