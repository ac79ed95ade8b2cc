// Package journal is an append-only log of opaque payloads on local disk,
// kept in numbered generation files beside each other (PATH.1, PATH.2, ...).
//
// A generation is a file that starts with an 8-byte magic and holds frames:
//
//	length uint32 (little endian) | CRC-32C of the payload uint32 | payload
//
// Append writes a batch of frames with one write(2) and no fsync: what has
// been appended survives a crash of the process (SIGKILL, a panic, the
// OOM killer), not one of the machine — the guarantee of SQLite in WAL mode
// with synchronous=NORMAL, which is what the store runs. Open reads every
// existing generation in order and starts a new one for the appends, so a
// torn tail left by a crash is never written after. A frame that is torn
// or corrupt (short, a bad CRC, a length over MaxFrame) ends the reading of
// its file: the rest of that file is skipped, counted and logged, never
// fatal; the other generations are read. Rotate closes the current
// generation and starts the next; Drop deletes the generations up to one.
//
// The journal knows nothing of what it holds: the pua engine appends its
// records' changes (see pua.Journal) and the daemon replays them into the
// database at start.
package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// MaxFrame bounds one payload: Append refuses a larger one, and a frame
// header naming a larger length is corrupt.
const MaxFrame = 16 << 20

// frameHeader is the length and the CRC before each payload.
const frameHeader = 8

// magic starts every generation file.
var magic = []byte("PSJRNL\x00\x01")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrTooLarge is returned by Append for a payload over MaxFrame.
var ErrTooLarge = errors.New("journal: payload over MaxFrame")

// ErrClosed is returned by the methods of a closed journal.
var ErrClosed = errors.New("journal: closed")

// Journal is an open journal. Its methods are safe for concurrent use.
type Journal struct {
	path string
	log  *slog.Logger

	mu     sync.Mutex
	f      *os.File // the current generation
	gen    uint64   // its number
	sizes  map[uint64]int64
	size   int64 // bytes of every generation
	closed bool
	buf    []byte
}

// Stats says what Open read.
type Stats struct {
	// Generations is the number of generation files read.
	Generations int
	// Frames is the number of good frames read.
	Frames int
	// Corrupt is the number of files whose reading stopped at a torn or
	// corrupt frame (or that did not start with the magic).
	Corrupt int
	// SkippedBytes are the bytes left unread by those stops.
	SkippedBytes int64
}

// Open reads every generation of the journal at path (files path.N) and
// returns their payloads in order, then starts generation N+1 for the
// appends. log receives a warning for each torn or corrupt file; nil means
// slog.Default(). The error is only for a directory or file that cannot be
// read or created.
func Open(path string, log *slog.Logger) (*Journal, [][]byte, Stats, error) {
	if log == nil {
		log = slog.Default()
	}
	var st Stats
	gens, err := generations(path)
	if err != nil {
		return nil, nil, st, err
	}
	j := &Journal{path: path, log: log, sizes: map[uint64]int64{}}
	var out [][]byte
	for _, g := range gens {
		data, err := os.ReadFile(j.name(g))
		if err != nil {
			return nil, nil, st, fmt.Errorf("journal: read generation %d: %w", g, err)
		}
		st.Generations++
		j.sizes[g] = int64(len(data))
		j.size += int64(len(data))
		payloads, rest, derr := Decode(data)
		out = append(out, payloads...)
		st.Frames += len(payloads)
		if derr != nil {
			st.Corrupt++
			st.SkippedBytes += int64(rest)
			log.Warn("journal: torn or corrupt frame, rest of the generation skipped", "file", j.name(g),
				"frames_read", len(payloads), "bytes_skipped", rest, "err", derr)
		}
		j.gen = g
	}
	if err := j.create(j.gen + 1); err != nil {
		return nil, nil, st, err
	}
	return j, out, st, nil
}

// generations lists the generation numbers present at path, ascending.
func generations(path string) ([]uint64, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("journal: list %s: %w", dir, err)
	}
	var gens []uint64
	for _, e := range ents {
		n, ok := strings.CutPrefix(e.Name(), base+".")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		g, err := strconv.ParseUint(n, 10, 64)
		if err != nil || g == 0 || strconv.FormatUint(g, 10) != n {
			continue
		}
		gens = append(gens, g)
	}
	slices.Sort(gens)
	return gens, nil
}

func (j *Journal) name(gen uint64) string { return j.path + "." + strconv.FormatUint(gen, 10) }

// create starts generation gen as the current one. Locked (or not shared yet).
func (j *Journal) create(gen uint64) error {
	f, err := os.OpenFile(j.name(gen), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("journal: create generation %d: %w", gen, err)
	}
	if _, err := f.Write(magic); err != nil {
		f.Close()
		os.Remove(j.name(gen))
		return fmt.Errorf("journal: create generation %d: %w", gen, err)
	}
	j.f, j.gen = f, gen
	j.sizes[gen] = int64(len(magic))
	j.size += int64(len(magic))
	return nil
}

// Append writes the payloads, one frame each, with one write to the
// current generation. Nothing is written when one is over MaxFrame.
func (j *Journal) Append(payloads [][]byte) error {
	n := 0
	for _, p := range payloads {
		if len(p) > MaxFrame {
			return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(p))
		}
		n += frameHeader + len(p)
	}
	if n == 0 {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	buf := j.buf[:0]
	for _, p := range payloads {
		buf = AppendFrame(buf, p)
	}
	// A large batch (a write-behind's snapshot) does not stay allocated.
	if cap(buf) <= 1<<20 {
		j.buf = buf
	} else {
		j.buf = nil
	}
	w, err := j.f.Write(buf)
	j.sizes[j.gen] += int64(w)
	j.size += int64(w)
	if err != nil {
		return fmt.Errorf("journal: append to generation %d: %w", j.gen, err)
	}
	return nil
}

// Rotate closes the current generation and starts the next; it returns
// the number of the one closed. Everything appended before it is in that
// generation or an earlier one.
func (j *Journal) Rotate() (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return 0, ErrClosed
	}
	old := j.gen
	if err := j.f.Close(); err != nil {
		j.log.Warn("journal: close generation", "gen", old, "err", err)
	}
	if err := j.create(old + 1); err != nil {
		// Go on appending to the old one rather than to nothing.
		f, rerr := os.OpenFile(j.name(old), os.O_WRONLY|os.O_APPEND, 0o600)
		if rerr != nil {
			j.closed = true
			return 0, errors.Join(err, fmt.Errorf("journal: reopen generation %d: %w", old, rerr))
		}
		j.f = f
		return 0, err
	}
	return old, nil
}

// Drop deletes the generations up to upTo, never the current one.
func (j *Journal) Drop(upTo uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	var errs []error
	for g, sz := range j.sizes {
		if g > upTo || g == j.gen {
			continue
		}
		if err := os.Remove(j.name(g)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("journal: drop generation %d: %w", g, err))
			continue
		}
		delete(j.sizes, g)
		j.size -= sz
	}
	return errors.Join(errs...)
}

// Size is the number of bytes of every generation on disk.
func (j *Journal) Size() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.size
}

// Generation is the number of the current generation.
func (j *Journal) Generation() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.gen
}

// Close closes the current generation, and deletes it when nothing was
// appended to it and no older generation is left (an empty journal leaves
// no file).
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	err := j.f.Close()
	if len(j.sizes) == 1 && j.sizes[j.gen] == int64(len(magic)) {
		if rerr := os.Remove(j.name(j.gen)); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	if err != nil {
		return fmt.Errorf("journal: close: %w", err)
	}
	return nil
}

// AppendFrame appends the frame of payload p to buf.
func AppendFrame(buf, p []byte) []byte {
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(p)))
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(p, castagnoli))
	return append(buf, p...)
}

// Decode reads a generation file's contents: the magic, then frames. It
// returns the payloads of the good frames up to the first torn or corrupt
// one, and then the number of bytes left unread and what was wrong. The
// payloads share data's memory.
func Decode(data []byte) (payloads [][]byte, skipped int, err error) {
	if len(data) < len(magic) || string(data[:len(magic)]) != string(magic) {
		if len(data) == 0 {
			return nil, 0, nil // created, the magic never written
		}
		return nil, len(data), errors.New("journal: not a journal generation (bad magic)")
	}
	rest := data[len(magic):]
	for len(rest) > 0 {
		if len(rest) < frameHeader {
			return payloads, len(rest), io.ErrUnexpectedEOF
		}
		n := binary.LittleEndian.Uint32(rest)
		sum := binary.LittleEndian.Uint32(rest[4:])
		if n > MaxFrame {
			return payloads, len(rest), fmt.Errorf("journal: frame of %d bytes over MaxFrame", n)
		}
		if uint64(len(rest)-frameHeader) < uint64(n) {
			return payloads, len(rest), io.ErrUnexpectedEOF
		}
		p := rest[frameHeader : frameHeader+int(n) : frameHeader+int(n)]
		if crc32.Checksum(p, castagnoli) != sum {
			return payloads, len(rest), errors.New("journal: frame CRC mismatch")
		}
		payloads = append(payloads, p)
		rest = rest[frameHeader+int(n):]
	}
	return payloads, 0, nil
}
