package journal

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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
	if len(ps) != 0 || j.Generation() != 1 {
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
	// No Close: a crash.
	j2, ps, st := open(t, path)
	if got, want := strs(ps), []string{"a", "b", "c", "", "d"}; !slices.Equal(got, want) {
		t.Fatalf("payloads %q, want %q", got, want)
	}
	if st.Generations != 2 || st.Frames != 5 || st.Corrupt != 0 {
		t.Fatalf("stats %+v", st)
	}
	if j2.Generation() != 3 {
		t.Fatalf("generation %d, want 3", j2.Generation())
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
	if ents, _ := os.ReadDir(dir2); len(ents) != 0 {
		t.Fatalf("files left by an empty journal: %v", ents)
	}
}

// TestTornAndCorruptTailsAreSkipped: a generation cut in the middle of a
// frame, one with a flipped payload byte and one that is not a journal
// file are read up to the damage, counted, and the next generations are
// still read.
func TestTornAndCorruptTailsAreSkipped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "j")
	gen := func(n int, frames ...string) []byte {
		b := slices.Clone(magic)
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
		path + ".3": []byte("garbage, not a journal"),
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
	if st.Generations != 5 || st.Corrupt != 3 || st.Frames != 3 {
		t.Fatalf("stats %+v", st)
	}
	if j.Generation() != 6 {
		t.Fatalf("generation %d, want 6", j.Generation())
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
	hdr := slices.Clone(magic)
	hdr = append(hdr, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0)
	if ps, skipped, err := Decode(hdr); err == nil || len(ps) != 0 || skipped != 8 {
		t.Fatalf("huge length: %d payloads, %d skipped, %v", len(ps), skipped, err)
	}
}

// FuzzDecode: the decoder never panics, never reads beyond its input, and
// what it accepts is exactly the frames it would write: re-encoding the
// payloads gives back the input up to where it stopped.
func FuzzDecode(f *testing.F) {
	f.Add(slices.Clone(magic))
	f.Add(AppendFrame(slices.Clone(magic), []byte(`{"op":"put"}`)))
	f.Add(AppendFrame(AppendFrame(slices.Clone(magic), []byte("a")), nil)[:len(magic)+12])
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, skipped, err := Decode(data)
		if skipped < 0 || skipped > len(data) || (err == nil) != (skipped == 0) && len(data) > 0 {
			t.Fatalf("skipped %d of %d, err %v", skipped, len(data), err)
		}
		if len(ps) == 0 {
			return
		}
		enc := slices.Clone(magic)
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
