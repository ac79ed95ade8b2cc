package usrloc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/puaside/puaside/clock"
	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/metrics"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/sched"
)

// Binding is one bound contact of an AoR.
type Binding struct {
	// URI is the contact URI.
	URI string
	// Expires is when the binding lapses unless refreshed.
	Expires time.Time
	// Q is the q value in [0,1]; -1 when not stated.
	Q float64
	// Received is the source address the registrar saw, when known.
	Received string
	// CallID and CSeq are those of the REGISTER that last refreshed it.
	CallID string
	CSeq   uint32
	// Instance is the +sip.instance value, when present.
	Instance string
	// RegID is the reg-id value (RFC 5626), when present; in memory
	// only (a binding loaded from the store has none).
	RegID string
	// UserAgent is the registering device's User-Agent, when known.
	UserAgent string
}

// Publisher is the part of the pua engine the tracker uses.
type Publisher interface {
	Publish(pua.PublishRequest) error
	Remove(pua.Key) error
}

// PublicationLister is optionally implemented by the Publisher (the pua
// engine does): at Start the tracker compares the engine's stored
// publications with its own state, so a restart publishes only what changed.
type PublicationLister interface {
	Publications() []pua.PublicationInfo
}

// Store persists contacts and per-user publishing flags. Implemented by
// package store (*store.DB).
type Store interface {
	// LoadContacts returns every stored binding by AoR.
	LoadContacts(ctx context.Context) (map[string][]Binding, error)
	// SaveContacts replaces, in one transaction, the stored bindings of
	// each AoR in aors (an empty slice deletes them). An AoR the database
	// cannot hold is set aside by the store and the call succeeds for the
	// others; an error means the whole call must be retried. The slices
	// are the tracker's own and must not be modified.
	SaveContacts(ctx context.Context, aors map[string][]Binding) error
	// LoadFlags returns the per-user publishing flags.
	LoadFlags(ctx context.Context) (map[string]bool, error)
	// SetFlag stores the per-user publishing flag of an AoR.
	SetFlag(ctx context.Context, aor string, on bool) error
	// DeleteFlag forgets the per-user publishing flag of an AoR.
	DeleteFlag(ctx context.Context, aor string) error
}

// Clock gives the time and timers (clock.Clock); tests inject
// clocktest.Fake.
type Clock = clock.Clock

// Options are the tracker's collaborators.
type Options struct {
	// Publisher receives the PUBLISH requests (the pua engine). Required.
	Publisher Publisher
	// Store persists contacts and flags; nil keeps them in memory only.
	Store Store
	// Logger; nil discards logs.
	Logger *slog.Logger
	// Metrics; nil counts nothing.
	Metrics *metrics.Metrics
	// Clock; nil is the system clock.
	Clock Clock
	// OnChange is called, after the state is updated and in the order of
	// the changes, whenever the set of contacts of an AoR changes (a
	// contact added, removed or expired, or its q, received or instance
	// changed; a plain refresh is not a change). contacts is the new set
	// (empty when the AoR has no binding left), sorted by URI; it is the
	// tracker's own and must not be modified. It must not call HandleSIP
	// or ApplyRegistration.
	OnChange func(aor string, contacts []Binding)
}

// AoRInfo describes one AoR for the management API.
type AoRInfo struct {
	AoR      string    `json:"aor"`
	Entity   string    `json:"entity"`
	Contacts []Binding `json:"contacts"`
	// Publish is the effective publishing decision (pattern, flag, default).
	Publish bool `json:"publish"`
	// Flag is the stored per-user flag, nil when none is stored.
	Flag *bool `json:"flag,omitempty"`
	// State is "open", "closed" (lingering) or "" (not published).
	State string `json:"state"`
}

// maxBatch bounds the work of one timer pass.
const maxBatch = 1000 // AoRs handled per timer pass before the lock is released

// pendingTTL is how long a traced REGISTER waits for its reply (64·T1).
const pendingTTL = 32 * time.Second

// lateHorizon is how long the tracker recognises a late copy: the newest
// 2xx applied of an AoR and Call-ID (see replied) and the removal of a
// binding (see gone) are remembered this long. It is a transaction's
// lifetime (64·T1): a late copy is a retransmission (a t_replicate copy
// whose 200 was lost, a 2xx answering a retransmitted REGISTER) or a
// reordered one, never older than that; a REGISTER of the same Call-ID
// with a lower CSeq after it is new (a phone that keeps its Call-ID over
// a reboot) and is applied.
const lateHorizon = 64 * 500 * time.Millisecond

// aorState is the tracker's view of one AoR. One is held per known AoR
// (100,000 and more on a large registrar), so its fields are packed: 96
// bytes, an allocation size class of its own (see TestAoRStateSize).
type aorState struct {
	aor string
	// contacts are sorted by URI. A set is never changed in place: a new
	// slice replaces it, so it is shared (with OnChange, the store's
	// flush) without a copy.
	contacts []Binding
	// digest of the document last handed to the publisher; published says
	// whether a publication exists at all.
	digest    docDigest
	published bool
	closed    bool          // the published document is the closed one
	linger    int64         // when a closed publication is removed, Unix ns as in timer (0 = none)
	input     clock.Stamp   // last input (see Tracker.lastInput; 0 = none)
	asked     time.Duration // Expires asked for the published document (0 = unknown)
	timer     sched.Entry   // earliest contact expiry or linger end
}

// pendingReq is a traced REGISTER waiting for its reply.
type pendingReq struct {
	reg Register
	at  time.Time
	seq uint64
}

// replied is the newest 2xx to REGISTER applied of one AoR and Call-ID. A
// copy of it, or of an older 2xx of that Call-ID (CSeq not higher), is a
// late copy of an answer the tracker has gone past: applying it would
// bring back the bindings removed since (the user unregistered) or drop
// those added since. It is kept for lateHorizon, even once the AoR is
// forgotten.
type replied struct {
	cseq  uint32
	until time.Time
}

// lateKey names an AoR and one of its Call-IDs (replied) or contacts
// (gone).
type lateKey struct{ aor, id string }

// removal is the REGISTER request that removed a binding (expires 0 or
// "Contact: *"), kept for lateHorizon even once the AoR is forgotten. A
// late copy of an older REGISTER of that Call-ID, one that added the
// contact, must not bring the binding back: the binding it would refresh
// is gone, so the per-binding order of RFC 3261 §10.3 has nothing to
// compare it with.
type removal struct {
	callID string
	cseq   uint32
	until  time.Time
}

// change is one OnChange notification to deliver.
type change struct {
	aor      string
	contacts []Binding
}

// Tracker keeps the registrations and publishes them.
type Tracker struct {
	cfg      Config
	patterns []*regexp.Regexp
	pub      Publisher
	store    Store
	log      *slog.Logger
	m        *metrics.Metrics
	clock    Clock
	onChange func(string, []Binding)

	mu         sync.Mutex
	aors       map[string]*aorState
	flags      map[string]bool
	sched      *sched.Scheduler[*aorState]
	dirty      map[string]struct{}
	dirtyFlags map[string]*bool // nil value = delete
	pending    map[string]pendingReq
	inputs     map[string]clock.Stamp // last input of AoRs forgotten since (see lastInput)
	inputsCut  time.Time              // inputs before it are forgotten (see pruneInputs)
	replied    map[lateKey]replied    // newest 2xx applied, by AoR and Call-ID
	gone       map[lateKey]removal    // bindings removed by a request, by AoR and contact
	latePruned time.Time              // when replied and gone were last pruned
	ring       []string
	ringPos    int
	seq        uint64
	epoch      clock.Epoch // of the input stamps: the clock's time at New

	cbMu    sync.Mutex // serialises OnChange deliveries
	domains domainIndex

	// flagWrites (one slot) is held while per-user flags are written to
	// the store, by SetFlag and ClearFlag from their write to their update
	// of flags and by Flush from taking dirtyFlags to its last write: the
	// flag the latest of them set is the one stored. Taken before mu.
	flagWrites chan struct{}
}

// New builds a tracker. Call Start to load the stored state, then Run.
func New(cfg Config, opts Options) (*Tracker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("usrloc: %w", err)
	}
	if opts.Publisher == nil {
		return nil, errors.New("usrloc: new: a Publisher is required")
	}
	pats, err := compilePatterns(cfg.PublishPatterns)
	if err != nil {
		return nil, fmt.Errorf("usrloc: new: %w", err)
	}
	t := &Tracker{
		cfg: cfg, patterns: pats, pub: opts.Publisher, store: opts.Store, log: opts.Logger,
		m: opts.Metrics, clock: opts.Clock, onChange: opts.OnChange,
		aors: map[string]*aorState{}, flags: map[string]bool{}, dirty: map[string]struct{}{},
		dirtyFlags: map[string]*bool{}, pending: map[string]pendingReq{}, inputs: map[string]clock.Stamp{},
		replied: map[lateKey]replied{}, gone: map[lateKey]removal{},
		ring: make([]string, cfg.PendingMax), flagWrites: make(chan struct{}, 1),
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.clock = clock.OrReal(t.clock)
	t.epoch.Stamp(t.clock.Now()) // the epoch
	t.sched = sched.New(t.clock, t.expireAoRs)
	return t, nil
}

// count increments the usrloc tracker metric.
func (t *Tracker) count(what string) { t.m.Tracker("usrloc", what) }

// reject counts and logs input that changes nothing.
func (t *Tracker) reject(err error, src event.Source, callID string) {
	r := reason(err)
	t.count("rejected_" + r)
	t.log.Warn("usrloc: REGISTER rejected", "reason", r, "source", src.String(), "call_id", callID)
}
