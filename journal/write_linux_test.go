package journal

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
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
// reader, another process, drains it only later) says it slept; one the
// kernel takes at once (a small write to a pipe with room) says it did
// not. The reader is a process of its own: a raw write that waits holds
// its processor, and a goroutine of this process could not drain the
// pipe while the collector waits for that processor to stop the world.
func TestWriteRawTellsASleep(t *testing.T) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil { // blocking descriptors
		t.Fatal(err)
	}
	r, w := os.NewFile(uintptr(fds[0]), "pipe-r"), os.NewFile(uintptr(fds[1]), "pipe-w")
	defer r.Close()
	defer w.Close()
	// A write with room does not sleep. (Should the goroutine be moved to
	// another thread between the two counts, a rare preemption, the
	// write reads as slept: three tries.)
	awake := false
	for range 3 {
		n, ok, slept, err := writeRaw(w, []byte("x"))
		if n != 1 || !ok || err != nil {
			t.Fatalf("write to a pipe with room: %d, %v, %v", n, ok, err)
		}
		awake = awake || !slept
	}
	if !awake {
		t.Fatal("every write to a pipe with room said it slept")
	}
	reader := exec.Command("sh", "-c", "sleep 0.05; exec cat >/dev/null") // the writer is waiting by then
	reader.Stdin = r
	if err := reader.Start(); err != nil {
		t.Fatalf("reader: %v", err)
	}
	r.Close()
	big := make([]byte, 1<<20) // more than a pipe holds
	n, ok, slept, err := writeRaw(w, big)
	w.Close()
	if werr := reader.Wait(); werr != nil {
		t.Errorf("reader: %v", werr)
	}
	if n != len(big) || !ok || err != nil || !slept {
		t.Fatalf("write that waits for its reader: %d, %v, slept %v, %v", n, ok, slept, err)
	}
}
