package ingest

import (
	"hash/maphash"
	"strconv"
	"sync"
	"time"

	"github.com/puaside/puaside/clock"
)

// dedupMaxEntries caps the keys remembered by the deduplicator; when full
// the oldest key is forgotten early, so memory stays bounded under a flood.
// It is about what arrives in the default 32 s window at 4,000 copies/s.
const dedupMaxEntries = 1 << 17

// dedupFirstEntries is the ring's first size: it doubles when full, up to
// the cap, so that the deduplicator holds about what its window needed at
// the highest rate seen so far (it does not shrink again; 2 MiB at the
// cap) rather than the cap's worth from the start.
const dedupFirstEntries = 1 << 10

// dedup remembers message keys for a window. A key is a 64-bit hash of
// (input, Call-ID, CSeq number and method, request method or status,
// From-tag, To-tag, and the Via count of a final non-2xx response); keys are kept in a map and a FIFO ring in arrival
// order, which is also expiry order because the window is fixed. A key is
// in the ring at most once: seen holds exactly the keys of the ring.
type dedup struct {
	mu       sync.Mutex
	seed     maphash.Seed
	window   time.Duration
	capacity int // the ring's largest size
	seen     map[uint64]struct{}
	ring     []dedupEntry
	head     int         // oldest entry
	n        int         // entries in ring
	epoch    clock.Epoch // of the arrivals: the first key's
}

type dedupEntry struct {
	key uint64
	at  clock.Stamp // its arrival
}

func newDedup(window time.Duration, capacity int) *dedup {
	if capacity < 1 {
		capacity = 1
	}
	return &dedup{
		seed:     maphash.MakeSeed(),
		window:   window,
		capacity: capacity,
		seen:     make(map[uint64]struct{}),
	}
}

// keyFields are the fields of a copy's identity: Call-ID, CSeq number and
// method, the request method (empty for a response) or the status, and
// the dialog tags; for a final non-2xx response also the number of Via
// entries.
type keyFields struct {
	callID     string
	cseq       uint32
	cseqMethod string
	reqMethod  string // "" for a response
	status     int    // 0 for a request
	fromTag    string
	toTag      string
	// vias is set for a final non-2xx response only (see finalVias): a
	// fork's answer as the proxy received it and the call's final answer
	// the proxy forwards carry the same tags, and the proxy's own Via tells
	// them apart.
	vias int
}

// keyVias reports whether a copy's Via entries are part of its identity: a
// final non-2xx response's are.
func keyVias(status int) bool { return status >= 300 }

// keyFields returns the identity fields of a parsed copy.
func (m *mirrored) keyFields() keyFields {
	f := keyFields{callID: m.callID, cseq: m.cseq, cseqMethod: string(m.method), status: m.status,
		fromTag: m.fromTag, toTag: m.toTag}
	if m.req != nil {
		f.reqMethod = string(m.req.Method)
	}
	if keyVias(m.status) {
		f.vias = len(m.msg.GetHeaders("Via"))
	}
	return f
}

// key hashes the identity of a mirrored message within an input.
func (d *dedup) key(input string, f *keyFields) uint64 {
	var h maphash.Hash
	h.SetSeed(d.seed)
	h.WriteString(input)
	h.WriteByte(0)
	h.WriteString(f.callID)
	h.WriteByte(0)
	var buf [24]byte
	h.Write(strconv.AppendUint(buf[:0], uint64(f.cseq), 10))
	h.WriteByte(' ')
	h.WriteString(f.cseqMethod)
	h.WriteByte(0)
	if f.status != 0 {
		h.Write(strconv.AppendInt(buf[:0], int64(f.status), 10))
	} else {
		h.WriteString(f.reqMethod)
	}
	h.WriteByte(0)
	h.WriteString(f.fromTag)
	h.WriteByte(0)
	h.WriteString(f.toTag)
	if f.vias > 0 {
		h.WriteByte(0)
		h.Write(strconv.AppendInt(buf[:0], int64(f.vias), 10))
	}
	return h.Sum64()
}

// recorded reports whether key was recorded within the window, without
// recording it. A zero window disables deduplication.
func (d *dedup) recorded(key uint64, now time.Time) bool {
	if d.window <= 0 {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expire(now)
	_, ok := d.seen[key]
	return ok
}

// seenBefore records key at now and reports whether it was already
// recorded within the window. A zero window disables deduplication.
func (d *dedup) seenBefore(key uint64, now time.Time) bool {
	if d.window <= 0 {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expire(now)
	if _, ok := d.seen[key]; ok {
		return true
	}
	if d.n == len(d.ring) {
		if len(d.ring) < d.capacity {
			d.grow()
		} else {
			d.pop()
		}
	}
	d.ring[(d.head+d.n)%len(d.ring)] = dedupEntry{key: key, at: d.epoch.Stamp(now)}
	d.n++
	d.seen[key] = struct{}{}
	return false
}

func (d *dedup) expire(now time.Time) {
	for d.n > 0 && now.Sub(d.epoch.Time(d.ring[d.head].at)) >= d.window {
		d.pop()
	}
}

func (d *dedup) pop() {
	delete(d.seen, d.ring[d.head].key)
	d.ring[d.head] = dedupEntry{}
	d.head = (d.head + 1) % len(d.ring)
	d.n--
}

// grow doubles the full ring, up to the capacity, keeping its order.
func (d *dedup) grow() {
	ring := make([]dedupEntry, min(max(2*len(d.ring), dedupFirstEntries), d.capacity))
	k := copy(ring, d.ring[d.head:])
	copy(ring[k:], d.ring[:d.head])
	d.ring, d.head = ring, 0
}

// len reports the number of remembered keys.
func (d *dedup) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.seen)
}
