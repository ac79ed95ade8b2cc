package journal

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
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
		if n, ok, err := writeRaw(f, b); err != nil || !ok || n != len(b) {
			t.Fatalf("write of %d bytes: %d, %v, %v", len(b), n, ok, err)
		}
	}
	f.Close()
	if got, _ := os.ReadFile(path); !slices.Equal(got, want) {
		t.Fatalf("file holds %d bytes, want %d", len(got), len(want))
	}
	// A closed file's descriptor cannot be reached: writeFile falls back
	// to os.File.Write, which reports the closed file.
	if n, ok, err := writeRaw(f, []byte("x")); n != 0 || ok || err != nil {
		t.Fatalf("closed file: %d, %v, %v", n, ok, err)
	}
	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	var pe *os.PathError
	if n, _, err := writeRaw(ro, []byte("x")); n != 0 || !errors.As(err, &pe) || pe.Path != path {
		t.Fatalf("read-only file: %d, %v", n, err)
	}
}
