// Package journal is an append-only log of opaque payloads on local disk,
// kept in numbered generation files beside each other (PATH.1, PATH.2, ...).
//
// A generation is a file that starts with an 8-byte magic (six letters and
// a format version) and holds frames:
//
//	length uint32 (little endian) | CRC-32C of the payload uint32 | payload
//
// Append writes a batch of frames with one write(2) and no fsync: what has
// been appended survives a crash of the process (SIGKILL, a panic, the
// OOM killer), not one of the machine — the guarantee of SQLite in WAL mode
// with synchronous=NORMAL, which is what the store runs. Open takes the
// journal's lock (PATH.lock: one process at a time) and reads every
// existing generation in order; the first Append after it starts a new
// generation, so a torn tail left by a crash is never written after, and
// an Open on a full disk needs no space. A frame that is torn or corrupt
// (short, a bad CRC, a length over MaxFrame) ends the reading of its file:
// the rest of that file is skipped, counted and logged, never fatal; the
// other generations are read. A file of another format version, or not a
// journal at all, fails the Open and is left as it is. Rotate closes the
// current generation (the next Append starts one); Drop deletes the
// generations up to one; Reset deletes them all, needing no free space.
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
	"syscall"
	"time"
)

// MaxFrame bounds one payload: Append refuses a larger one, and a frame
// header naming a larger length is corrupt.
const MaxFrame = 16 << 20

// frameHeader is the length and the CRC before each payload.
const frameHeader = 8

// magic starts every generation file: magicName, a zero byte and the
// format version.
const (
	magicName = "PSJRNL"
	version   = 1
	magic     = magicName + "\x00\x01"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrTooLarge is returned by Append for a payload over MaxFrame.
var ErrTooLarge = errors.New("journal: payload over MaxFrame")

// ErrClosed is returned by the methods of a closed journal.
var ErrClosed = errors.New("journal: closed")

// ErrFormat is returned by Open for a generation of another format
// version (a newer build's) or a file that is not a journal generation:
// it is left as it is.
var ErrFormat = errors.New("journal: unknown generation format")

// ErrStale is returned by Open when a Reset could not delete every
// generation: what is left is older than the database and must not be
// replayed.
var ErrStale = errors.New("journal: generations left by a failed reset are older than the database")

// ErrLocked is returned by Open when another process holds the journal.
var ErrLocked = errors.New("journal: in use by another process")

// Journal is an open journal. Its methods are safe for concurrent use.
type Journal struct {
	path string
	log  *slog.Logger
	lock *os.File // PATH.lock, flocked while open

	// Faults, for tests: nil means the operating system's.
	write    func(f *os.File, b []byte) (int, error)
	remove   func(name string) error
	truncate func(name string) error
	// rawWrite, when set, stands in for writeRaw (tests).
	rawWrite func(f *os.File, b []byte) (n int, ok, slept bool, err error)

	mu     sync.Mutex
	f      *os.File // the current generation, nil until the next Append
	gen    uint64   // the current generation, or the last one when f is nil
	sizes  map[uint64]int64
	size   int64 // bytes of every generation
	closed bool
	buf    []byte

	rawSlow  time.Duration // writeFile: a raw write slower than this ...
	rawAfter time.Time     // ... makes the writes before this time plain ones
}

// Stats says what Open read.
type Stats struct {
	// Generations is the number of generation files read.
	Generations int
	// Frames is the number of good frames read.
	Frames int
	// Corrupt is the number of files whose reading stopped at a torn or
	// corrupt frame.
	Corrupt int
	// SkippedBytes are the bytes left unread by those stops.
	SkippedBytes int64
}

// Open takes the lock of the journal at path, reads every generation
// (files path.N) and returns their payloads in order. Nothing is created
// but the lock file: the first Append starts generation N+1. log receives a
// warning for each torn or corrupt file; nil means slog.Default(). The
// error is for a directory or file that cannot be read, a journal held by
// another process (ErrLocked), a generation of an unknown format
// (ErrFormat) or generations a failed Reset left (ErrStale).
func Open(path string, log *slog.Logger) (*Journal, [][]byte, Stats, error) {
	if log == nil {
		log = slog.Default()
	}
	var st Stats
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, st, fmt.Errorf("journal: lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil, st, fmt.Errorf("%w: %s.lock", ErrLocked, path)
		}
		return nil, nil, st, fmt.Errorf("journal: lock %s.lock: %w", path, err)
	}
	j := &Journal{path: path, log: log, lock: lock, sizes: map[uint64]int64{}, rawSlow: rawSlow}
	payloads, err := j.read(&st)
	if err != nil {
		j.unlock()
		return nil, nil, st, err
	}
	return j, payloads, st, nil
}

// read reads every generation at Open.
func (j *Journal) read(st *Stats) ([][]byte, error) {
	gens, err := generations(j.path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(j.staleName()); err == nil {
		for _, g := range gens {
			if fi, err := os.Stat(j.name(g)); err == nil && fi.Size() > 0 {
				return nil, fmt.Errorf("%w: delete %s.* once the database is known good", ErrStale, j.path)
			}
		}
		// Every generation is gone or empty: the marker has done its job.
		for _, g := range gens {
			os.Remove(j.name(g))
		}
		gens = nil
		if err := os.Remove(j.staleName()); err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
	}
	var out [][]byte
	for _, g := range gens {
		data, err := os.ReadFile(j.name(g))
		if err != nil {
			return nil, fmt.Errorf("journal: read generation %d: %w", g, err)
		}
		st.Generations++
		j.sizes[g] = int64(len(data))
		j.size += int64(len(data))
		payloads, rest, derr := Decode(data)
		if errors.Is(derr, ErrFormat) {
			return nil, fmt.Errorf("journal: generation %s: %w", j.name(g), derr)
		}
		out = append(out, payloads...)
		st.Frames += len(payloads)
		if derr != nil {
			st.Corrupt++
			st.SkippedBytes += int64(rest)
			j.log.Warn("journal: torn or corrupt frame, rest of the generation skipped", "file", j.name(g),
				"frames_read", len(payloads), "bytes_skipped", rest, "err", derr)
		}
		j.gen = g
	}
	return out, nil
}

func (j *Journal) unlock() {
	syscall.Flock(int(j.lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing releases it anyway
	j.lock.Close()
}

// Exists reports whether a journal is left at path: a generation file or
// the marker of a failed Reset. It creates nothing.
func Exists(path string) (bool, error) {
	gens, err := generations(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	if len(gens) > 0 {
		return true, nil
	}
	if _, err := os.Stat(path + ".stale"); err == nil {
		return true, nil
	}
	return false, nil
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

func (j *Journal) staleName() string { return j.path + ".stale" }

// rawSlow is how long a raw write may take before the journal stops
// making them for rawBackoff; rawMax is the largest write made raw (a
// prompt append is a few KiB, a write-behind's snapshot can be megabytes,
// once a period) (writeFile).
const (
	rawSlow    = time.Millisecond
	rawBackoff = 10 * time.Second
	rawMax     = 64 << 10
)

// writeFile writes b to f. Where it can (Linux) it makes the write a raw
// system call (writeRaw): os.File.Write enters the scheduler's
// blocking-syscall state, which wakes the runtime's system monitor when it
// sleeps (a process idle between appends), and at the engine's hundred
// prompt appends a second that wake-up cost more than the write itself
// (BENCHMARKS.md). A raw write holds its processor until the kernel
// returns, which is microseconds while the page cache takes a write of a
// few KiB (larger ones, over rawMax, are plain). One that slept in the
// kernel and took longer than rawSlow (a disk that throttles its writers,
// memory pressure) sends the writes of the next rawBackoff through
// os.File.Write, which hands the processor on while it waits. A write
// that took as long only because its thread was preempted (the cores
// shared with other processes) does not: it held the processor no longer
// than any other code so preempted. Locked.
func (j *Journal) writeFile(f *os.File, b []byte) (int, error) {
	if j.write != nil {
		return j.write(f, b)
	}
	start := time.Now()
	if len(b) > rawMax || start.Before(j.rawAfter) {
		return f.Write(b)
	}
	raw := j.rawWrite
	if raw == nil {
		raw = writeRaw
	}
	n, ok, slept, err := raw(f, b)
	if !ok {
		return f.Write(b)
	}
	if d := time.Since(start); d > j.rawSlow && slept {
		j.rawAfter = start.Add(d + rawBackoff)
		j.log.Debug("journal: a write was slow, writes wait in the scheduler for a while", "took", d, "for", rawBackoff)
	}
	return n, err
}

func (j *Journal) removeFile(name string) error {
	if j.remove != nil {
		return j.remove(name)
	}
	return os.Remove(name)
}

// create starts generation gen as the current one. Locked.
func (j *Journal) create(gen uint64) error {
	f, err := os.OpenFile(j.name(gen), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("journal: create generation %d: %w", gen, err)
	}
	if _, err := j.writeFile(f, []byte(magic)); err != nil {
		f.Close()
		os.Remove(j.name(gen))
		return fmt.Errorf("journal: create generation %d: %w", gen, err)
	}
	j.f, j.gen = f, gen
	j.sizes[gen] = int64(len(magic))
	j.size += int64(len(magic))
	return nil
}

// closeCurrent closes the current generation; the next Append starts a
// new one. Locked.
func (j *Journal) closeCurrent() {
	if j.f == nil {
		return
	}
	if err := j.f.Close(); err != nil {
		j.log.Warn("journal: close generation", "gen", j.gen, "err", err)
	}
	j.f = nil
}

// Append writes the payloads, one frame each, with one write to the
// current generation (started first when there is none). Nothing is
// written when one is over MaxFrame; a write that fails leaves no part of
// its frames behind (the generation is cut back, or closed when it cannot
// be, so no later frame follows a torn one).
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
	if j.f == nil {
		if err := j.create(j.gen + 1); err != nil {
			return err
		}
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
	w, err := j.writeFile(j.f, buf)
	if err != nil {
		if w > 0 {
			if terr := j.f.Truncate(j.sizes[j.gen]); terr != nil {
				// The torn frame stays at the end of a closed generation.
				j.sizes[j.gen] += int64(w)
				j.size += int64(w)
				j.closeCurrent()
			}
		}
		return fmt.Errorf("journal: append to generation %d: %w", j.gen, err)
	}
	j.sizes[j.gen] += int64(w)
	j.size += int64(w)
	return nil
}

// Rotate closes the current generation (the next Append starts the next
// one); it returns the number of the last generation closed: everything
// appended before it is in that generation or an earlier one. A current
// generation holding nothing is kept (no file per call when nothing is
// appended between calls). It needs no disk space.
func (j *Journal) Rotate() (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return 0, ErrClosed
	}
	if j.f != nil && j.sizes[j.gen] <= int64(len(magic)) {
		return j.gen - 1, nil
	}
	j.closeCurrent()
	return j.gen, nil
}

// Drop deletes the generations up to upTo, never the current one.
func (j *Journal) Drop(upTo uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	var errs []error
	for g, sz := range j.sizes {
		if g > upTo || (g == j.gen && j.f != nil) {
			continue
		}
		if err := j.removeFile(j.name(g)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("journal: drop generation %d: %w", g, err))
			continue
		}
		delete(j.sizes, g)
		j.size -= sz
	}
	return errors.Join(errs...)
}

// Reset deletes every generation, the current one included (the next
// Append starts a new one); it needs no disk space. A generation that
// cannot be deleted is truncated to nothing; one that cannot be either is
// left behind with a marker (PATH.stale) that makes the next Open refuse
// it (ErrStale), and the error says so.
func (j *Journal) Reset() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	j.closeCurrent()
	var errs []error
	for g, sz := range j.sizes {
		err := j.removeFile(j.name(g))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			truncate := func(name string) error { return os.Truncate(name, 0) }
			if j.truncate != nil {
				truncate = j.truncate
			}
			if terr := truncate(j.name(g)); terr != nil {
				errs = append(errs, fmt.Errorf("journal: reset generation %d: %w", g, errors.Join(err, terr)))
				continue
			}
		}
		delete(j.sizes, g)
		j.size -= sz
	}
	if len(errs) > 0 {
		if f, err := os.OpenFile(j.staleName(), os.O_WRONLY|os.O_CREATE, 0o600); err != nil {
			errs = append(errs, fmt.Errorf("journal: mark stale: %w", err))
		} else {
			f.Close()
		}
		return errors.Join(errs...)
	}
	return nil
}

// Size is the number of bytes of every generation on disk.
func (j *Journal) Size() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.size
}

// Generations is the number of generation files on disk.
func (j *Journal) Generations() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.sizes)
}

// Generation is the number of the current generation, or of the last one
// when the next Append starts one.
func (j *Journal) Generation() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.gen
}

// Close closes the current generation, deletes it when nothing was
// appended to it, and releases the lock (the lock file stays).
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	var err error
	if j.f != nil {
		err = j.f.Close()
		j.f = nil
		if j.sizes[j.gen] <= int64(len(magic)) {
			if rerr := j.removeFile(j.name(j.gen)); rerr != nil {
				err = errors.Join(err, rerr)
			} else {
				j.size -= j.sizes[j.gen]
				delete(j.sizes, j.gen)
			}
		}
	}
	j.unlock()
	if err != nil {
		return fmt.Errorf("journal: close: %w", err)
	}
	return nil
}

// Abandon leaves the journal as a killed process does: its files are
// closed, the lock released, nothing deleted. For crash tests.
func (j *Journal) Abandon() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return
	}
	j.closed = true
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
	j.unlock()
}

// AppendFrame appends the frame of payload p to buf.
func AppendFrame(buf, p []byte) []byte {
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(p)))
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(p, castagnoli))
	return append(buf, p...)
}

// Decode reads a generation file's contents: the magic, then frames. It
// returns the payloads of the good frames up to the first torn or corrupt
// one, and then the number of bytes left unread and what was wrong
// (ErrFormat for a file of another format version or not a journal). The
// payloads share data's memory.
func Decode(data []byte) (payloads [][]byte, skipped int, err error) {
	if len(data) < len(magic) {
		if strings.HasPrefix(magic, string(data)) {
			return nil, 0, nil // created, the magic not all written
		}
		return nil, len(data), fmt.Errorf("%w: not a journal generation", ErrFormat)
	}
	if string(data[:len(magic)]) != magic {
		if string(data[:len(magicName)]) == magicName {
			return nil, len(data), fmt.Errorf("%w: version %d, this build reads %d", ErrFormat, data[len(magicName)+1], version)
		}
		return nil, len(data), fmt.Errorf("%w: not a journal generation", ErrFormat)
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
