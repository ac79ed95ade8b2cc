package journal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func open(t *testing.T, path string) (*Journal, [][]byte, Stats) {
	t.Helper()
	j, ps, st, err := Open(path, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j, ps, st
}

func strs(ps [][]byte) []string {
	var out []string
	for _, p := range ps {
		out = append(out, string(p))
	}
	return out
}

func payloads(ss ...string) [][]byte {
	var out [][]byte
	for _, s := range ss {
		out = append(out, []byte(s))
	}
	return out
}

// TestReopenReadsEveryGenerationInOrder: what was appended, across
// rotations, is read back in order by the next Open, which starts a
// generation of its own.
func TestReopenReadsEveryGenerationInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pua.db.etags")
	j, ps, _ := open(t, path)
	if len(ps) != 0 || j.Generation() != 0 {
		t.Fatalf("fresh journal: %d payloads, generation %d", len(ps), j.Generation())
	}
	if err := j.Append(payloads("a", "b")); err != nil {
		t.Fatal(err)
	}
	if g, err := j.Rotate(); err != nil || g != 1 {
		t.Fatalf("rotate: %d %v", g, err)
	}
	if err := j.Append(payloads("c", "")); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(payloads("d")); err != nil {
		t.Fatal(err)
	}
	j.Abandon() // a crash
	j2, ps, st := open(t, path)
	if got, want := strs(ps), []string{"a", "b", "c", "", "d"}; !slices.Equal(got, want) {
		t.Fatalf("payloads %q, want %q", got, want)
	}
	if st.Generations != 2 || st.Frames != 5 || st.Corrupt != 0 {
		t.Fatalf("stats %+v", st)
	}
	if j2.Generation() != 2 {
		t.Fatalf("generation %d, want 2 (the next append starts 3)", j2.Generation())
	}
	if err := j2.Append(payloads("e")); err != nil || j2.Generation() != 3 {
		t.Fatalf("append after reopen: generation %d, %v", j2.Generation(), err)
	}
}

// TestDropDeletesUpToAndCloseLeavesNoEmptyFile: Drop removes the
// generations up to the one named (never the current), Size follows, and
// a journal closed empty leaves no file behind.
func TestDropDeletesUpToAndCloseLeavesNoEmptyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "j")
	j, _, _ := open(t, path)
	j.Append(payloads("one"))
	g1, _ := j.Rotate()
	j.Append(payloads("two"))
	g2, _ := j.Rotate()
	j.Append(payloads("three"))
	before := j.Size()
	if err := j.Drop(g1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".1"); !os.IsNotExist(err) {
		t.Fatalf("generation 1 still there: %v", err)
	}
	if want := before - int64(len(magic)+frameHeader+3); j.Size() != want {
		t.Fatalf("size %d, want %d", j.Size(), want)
	}
	if err := j.Drop(j.Generation() + 5); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fmt.Sprintf("%s.%d", path, g2)); !os.IsNotExist(err) {
		t.Fatalf("generation %d still there: %v", g2, err)
	}
	if _, err := os.Stat(fmt.Sprintf("%s.%d", path, j.Generation())); err != nil {
		t.Fatalf("current generation dropped: %v", err)
	}
	j.Close()
	_, ps, _ := open(t, path)
	if got := strs(ps); !slices.Equal(got, []string{"three"}) {
		t.Fatalf("after drop: %q", got)
	}

	// An empty journal closed leaves nothing.
	dir2 := t.TempDir()
	e, _, _ := open(t, filepath.Join(dir2, "j"))
	e.Close()
	if ents, _ := os.ReadDir(dir2); len(ents) != 1 || ents[0].Name() != "j.lock" {
		t.Fatalf("files left by an empty journal: %v", ents)
	}
}

// TestTornAndCorruptTailsAreSkipped: a generation cut in the middle of a
// frame and one with a flipped payload byte are read up to the damage,
// counted, and the next generations are still read.
func TestTornAndCorruptTailsAreSkipped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "j")
	gen := func(n int, frames ...string) []byte {
		b := []byte(magic)
		for _, f := range frames {
			b = AppendFrame(b, []byte(f))
		}
		return b
	}
	torn := gen(1, "t1", "t2-long-payload")
	torn = torn[:len(torn)-4]
	bad := gen(2, "b1", "b2")
	bad[len(bad)-1] ^= 0xff
	files := map[string][]byte{
		path + ".1": torn,
		path + ".2": bad,
		path + ".3": []byte(magic[:5]), // created, crashed in the magic
		path + ".4": gen(4, "ok"),
		path + ".5": {}, // created, crashed before the magic
		path + ".x": gen(0, "not a generation name"),
	}
	for name, b := range files {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	j, ps, st := open(t, path)
	if got, want := strs(ps), []string{"t1", "b1", "ok"}; !slices.Equal(got, want) {
		t.Fatalf("payloads %q, want %q", got, want)
	}
	if st.Generations != 5 || st.Corrupt != 2 || st.Frames != 3 {
		t.Fatalf("stats %+v", st)
	}
	if j.Generation() != 5 {
		t.Fatalf("generation %d, want 5", j.Generation())
	}
}

// TestAppendBounds: a payload over MaxFrame is refused and nothing of its
// batch is written; a decoder never accepts a length over MaxFrame.
func TestAppendBounds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, _, _ := open(t, path)
	size := j.Size()
	err := j.Append([][]byte{[]byte("small"), make([]byte, MaxFrame+1)})
	if err == nil {
		t.Fatal("oversized payload accepted")
	}
	if j.Size() != size {
		t.Fatalf("size grew to %d from %d", j.Size(), size)
	}
	hdr := []byte(magic)
	hdr = append(hdr, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0)
	if ps, skipped, err := Decode(hdr); err == nil || len(ps) != 0 || skipped != 8 {
		t.Fatalf("huge length: %d payloads, %d skipped, %v", len(ps), skipped, err)
	}
}

// FuzzDecode: the decoder never panics, never reads beyond its input, and
// what it accepts is exactly the frames it would write: re-encoding the
// payloads gives back the input up to where it stopped.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(magic))
	f.Add(AppendFrame([]byte(magic), []byte(`{"op":"put"}`)))
	f.Add(AppendFrame(AppendFrame([]byte(magic), []byte("a")), nil)[:len(magic)+12])
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, skipped, err := Decode(data)
		if skipped < 0 || skipped > len(data) || (err == nil) != (skipped == 0) && len(data) > 0 {
			t.Fatalf("skipped %d of %d, err %v", skipped, len(data), err)
		}
		if len(ps) == 0 {
			return
		}
		enc := []byte(magic)
		for _, p := range ps {
			if len(p) > MaxFrame {
				t.Fatalf("payload of %d bytes", len(p))
			}
			enc = AppendFrame(enc, p)
		}
		if !bytes.Equal(enc, data[:len(data)-skipped]) {
			t.Fatalf("re-encoded frames differ from the input they came from")
		}
	})
}

// TestUnknownFormatFailsOpen: a generation of another format version (a
// newer build's) or a file that is not a journal fails the Open, and the
// file is kept.
func TestUnknownFormatFailsOpen(t *testing.T) {
	for name, data := range map[string][]byte{
		"version 2":   AppendFrame([]byte(magicName+"\x00\x02"), []byte("x")),
		"not journal": []byte("garbage, not a journal"),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "j")
			if err := os.WriteFile(path+".1", data, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := Open(path, quiet()); !errors.Is(err, ErrFormat) {
				t.Fatalf("open: %v, want ErrFormat", err)
			}
			if b, err := os.ReadFile(path + ".1"); err != nil || !bytes.Equal(b, data) {
				t.Fatalf("generation not kept: %v", err)
			}
			// The lock was released: a later Open gets as far as the file.
			if _, _, _, err := Open(path, quiet()); !errors.Is(err, ErrFormat) {
				t.Fatalf("second open: %v", err)
			}
		})
	}
}

// TestOpenCreatesNothingAndCloseRemovesEmptyCurrent: Open on an existing
// journal creates no generation (a full disk, a failed start in a loop);
// the first Append does; Close removes a current generation that holds
// nothing even when older ones are left.
func TestOpenCreatesNothingAndCloseRemovesEmptyCurrent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "j")
	j, _, _ := open(t, path)
	j.Append(payloads("one"))
	j.Close()
	for range 3 { // failed starts: opened, closed
		j, _, _ = open(t, path)
		j.Close()
	}
	gens, _ := generations(path)
	if !slices.Equal(gens, []uint64{1}) {
		t.Fatalf("generations %v, want [1]", gens)
	}
	// A current generation that got only its magic (the append failed).
	j, _, _ = open(t, path)
	j.write = func(f *os.File, b []byte) (int, error) {
		if string(b) == magic {
			return f.Write(b)
		}
		return 0, syscall.ENOSPC
	}
	if err := j.Append(payloads("two")); err == nil {
		t.Fatal("append succeeded")
	}
	j.Close()
	if gens, _ := generations(path); !slices.Equal(gens, []uint64{1}) {
		t.Fatalf("generations after a failed append %v, want [1]", gens)
	}
}

// TestRotateKeepsEmptyCurrent: rotating with nothing appended since the
// last rotation starts no file.
func TestRotateKeepsEmptyCurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, _, _ := open(t, path)
	j.Append(payloads("one"))
	for range 100 {
		if _, err := j.Rotate(); err != nil {
			t.Fatal(err)
		}
	}
	j.Append(payloads("two"))
	for range 100 {
		g, err := j.Rotate()
		if err != nil || g != 2 {
			t.Fatalf("rotate: %d %v", g, err)
		}
	}
	if n := j.Generations(); n != 2 {
		t.Fatalf("%d generations, want 2", n)
	}
}

// TestShortWriteLeavesNoTornFrame: an append cut short (a full disk) is
// cut back, so the frames appended after it are read at the next Open.
func TestShortWriteLeavesNoTornFrame(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, _, _ := open(t, path)
	j.Append(payloads("one"))
	j.write = func(f *os.File, b []byte) (int, error) {
		n, _ := f.Write(b[:len(b)/2])
		return n, syscall.ENOSPC
	}
	if err := j.Append(payloads("torn-payload")); err == nil {
		t.Fatal("short write succeeded")
	}
	j.write = nil
	if err := j.Append(payloads("three")); err != nil {
		t.Fatal(err)
	}
	size := j.Size()
	j.Close()
	_, ps, st := open(t, path)
	if got := strs(ps); !slices.Equal(got, []string{"one", "three"}) || st.Corrupt != 0 {
		t.Fatalf("payloads %q, stats %+v", got, st)
	}
	if fi, _ := os.Stat(path + ".1"); fi.Size() != size {
		t.Fatalf("file of %d bytes, size said %d", fi.Size(), size)
	}
}

// TestSecondOpenFails: a second process on the same journal is refused.
func TestSecondOpenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, _, _ := open(t, path)
	if _, _, _, err := Open(path, quiet()); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	j.Close()
	j2, _, _ := open(t, path)
	j2.Close()
}

// TestResetRemovesEverythingOrMarksStale: Reset deletes every generation,
// the current one included; a generation it can neither delete nor
// truncate makes the next Open refuse the journal rather than replay it.
func TestResetRemovesEverythingOrMarksStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, _, _ := open(t, path)
	j.Append(payloads("one"))
	j.Rotate()
	j.Append(payloads("two"))
	if err := j.Reset(); err != nil {
		t.Fatal(err)
	}
	if gens, _ := generations(path); len(gens) != 0 || j.Size() != 0 {
		t.Fatalf("after reset: generations %v, size %d", gens, j.Size())
	}
	j.Append(payloads("three"))
	j.Rotate()
	j.Append(payloads("four"))
	j.remove = func(string) error { return syscall.EIO }
	// The files can still be truncated: nothing is left to replay.
	if err := j.Reset(); err != nil {
		t.Fatal(err)
	}
	j.Close()
	j, ps, _ := open(t, path)
	if len(ps) != 0 {
		t.Fatalf("replayed after a reset: %q", strs(ps))
	}
	j.Append(payloads("five"))
	j.remove = func(string) error { return syscall.EIO }
	j.truncate = func(string) error { return syscall.EIO }
	if err := j.Reset(); err == nil {
		t.Fatal("reset reported success")
	}
	j.Close()
	if _, _, _, err := Open(path, quiet()); !errors.Is(err, ErrStale) {
		t.Fatalf("open after a failed reset: %v, want ErrStale", err)
	}
	// Once the operator deletes the generations, the marker goes.
	gens, _ := generations(path)
	for _, g := range gens {
		os.Remove(fmt.Sprintf("%s.%d", path, g))
	}
	_, ps, _ = open(t, path)
	if len(ps) != 0 {
		t.Fatalf("payloads %q", strs(ps))
	}
	if _, err := os.Stat(path + ".stale"); !os.IsNotExist(err) {
		t.Fatalf("stale marker left: %v", err)
	}
}
