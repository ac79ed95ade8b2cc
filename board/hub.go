package board

import (
	"encoding/json"
	"sync"
)

// maxTombstones bounds the removed items remembered for resuming clients;
// beyond it they are forgotten and a client resuming from before them gets
// a fresh snapshot.
const maxTombstones = 1024

// entry is one item of the hub: its key, the version of its last change
// and its JSON document (nil once removed). Entries form a list in version
// order, so the changes after a version are a walk from the tail.
type entry struct {
	key        string
	ver        uint64
	doc        json.RawMessage
	prev, next *entry
}

// hub is the versioned set of items the board streams: every change gets
// the next version and moves its item to the tail of the list.
type hub struct {
	mu      sync.Mutex
	ver     uint64
	floor   uint64 // versions at or below it may have lost tombstones
	items   map[string]*entry
	head    *entry
	tail    *entry
	tombs   int
	waiters map[chan struct{}]struct{}
}

func newHub() *hub {
	return &hub{items: make(map[string]*entry), waiters: make(map[chan struct{}]struct{})}
}

// set stores doc under key (nil removes the item) and wakes the clients.
// An unchanged document is not a change.
func (h *hub) set(key string, doc json.RawMessage) { h.setPrefixed("", key, doc) }

// setPrefixed is set of the key prefix+name, whose string is built only
// for a new item: an AoR's key is not kept anywhere else.
func (h *hub) setPrefixed(prefix, name string, doc json.RawMessage) {
	var buf [128]byte
	k := append(append(buf[:0], prefix...), name...)
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.items[string(k)]
	if e == nil {
		if doc == nil {
			return
		}
		key := name
		if prefix != "" {
			key = string(k)
		}
		e = &entry{key: key}
		h.items[key] = e
	} else {
		if string(e.doc) == string(doc) && (e.doc == nil) == (doc == nil) {
			return
		}
		if e.doc == nil {
			h.tombs--
		}
		h.unlink(e)
	}
	h.ver++
	e.ver, e.doc = h.ver, doc
	h.append(e)
	if doc == nil {
		h.tombs++
		if h.tombs > maxTombstones {
			h.prune()
		}
	}
	h.wakeLocked()
}

// wake tells the watching clients that something changed.
func (h *hub) wake() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.wakeLocked()
}

// wakeLocked is wake with h.mu held.
func (h *hub) wakeLocked() {
	for w := range h.waiters {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// get returns the document of key, nil when absent.
func (h *hub) get(key string) json.RawMessage {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.items[key]; e != nil {
		return e.doc
	}
	return nil
}

func (h *hub) unlink(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		h.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		h.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (h *hub) append(e *entry) {
	e.prev = h.tail
	if h.tail != nil {
		h.tail.next = e
	} else {
		h.head = e
	}
	h.tail = e
}

// prune forgets every tombstone; clients behind the current version will
// resume with a snapshot.
func (h *hub) prune() {
	for e := h.head; e != nil; {
		next := e.next
		if e.doc == nil {
			h.unlink(e)
			delete(h.items, e.key)
		}
		e = next
	}
	h.tombs = 0
	h.floor = h.ver
}

// change is one item in a batch: a document, or a removal (doc nil).
type change struct {
	key string
	doc json.RawMessage
}

// since returns the changes after version v, oldest first, and the version
// they bring the client to. When v is 0, ahead of the hub or behind the
// forgotten tombstones, it returns every live item and reset true.
func (h *hub) since(v uint64) (out []change, ver uint64, reset bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v == 0 || v > h.ver || v < h.floor {
		out = make([]change, 0, len(h.items))
		for e := h.head; e != nil; e = e.next {
			if e.doc != nil {
				out = append(out, change{e.key, e.doc})
			}
		}
		return out, h.ver, true
	}
	n := 0
	e := h.tail
	for ; e != nil && e.ver > v; e = e.prev {
		n++
	}
	if e == nil {
		e = h.head
	} else {
		e = e.next
	}
	out = make([]change, 0, n)
	for ; e != nil; e = e.next {
		out = append(out, change{e.key, e.doc})
	}
	return out, h.ver, false
}

// watch registers a wake-up channel (capacity 1): it receives after each
// change; cancel unregisters it.
func (h *hub) watch() (c chan struct{}, cancel func()) {
	c = make(chan struct{}, 1)
	h.mu.Lock()
	h.waiters[c] = struct{}{}
	h.mu.Unlock()
	return c, func() {
		h.mu.Lock()
		delete(h.waiters, c)
		h.mu.Unlock()
	}
}

// clients is the number of watching clients.
func (h *hub) clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.waiters)
}
