package dialoginfo

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/puaside/puaside/aor"
	"github.com/puaside/puaside/clock"
	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/metrics"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/sched"
)

// Publisher receives the tracker's desired publications (the pua engine in
// production). Both methods must return quickly: they are called with the
// tracker's lock held, so that publications of one record are handed over in
// order.
type Publisher interface {
	Publish(req pua.PublishRequest) error
	Remove(key pua.Key) error
}

// Options are the tracker's collaborators.
type Options struct {
	// Publisher receives publications; required.
	Publisher Publisher
	// Store persists active dialogs and versions; nil keeps them in memory only.
	Store Store
	// Metrics counts tracker events; may be nil.
	Metrics *metrics.Metrics
	// Logger receives logs; nil means slog.Default().
	Logger *slog.Logger
	// Clock drives ring timeouts, lifetime caps and lingers; nil is the
	// wall clock. Tests inject clocktest.Fake.
	Clock clock.Clock
	// LocalDomains tells the local domains when Config.Domains is empty
	// (the usrloc tracker in production); nil then publishes every entity.
	LocalDomains DomainSet
	// Observer, when set, is told the dialog of every document the
	// Publisher accepted (the lamp board shows it without parsing the
	// document again).
	Observer Observer
}

// Observer is told the dialog of each publication the tracker makes. It
// is called with the tracker's lock held and must not call back into the
// tracker.
type Observer interface {
	DialogPublished(key pua.Key, d dialogdoc.Dialog)
}

// DomainSet reports whether a domain (a lower-case host, no port) is local.
// Implemented by *usrloc.Tracker. It is called with the tracker's lock held
// and must not call back into the tracker.
type DomainSet interface {
	HasDomain(host string) bool
}

// ErrBadEvent is returned by ApplyDialogState for an event that cannot be applied.
var ErrBadEvent = errors.New("dialoginfo: bad dialog state event")

// dstate is a dialog state; the order is RFC 4235's progression.
type dstate uint8

const (
	stTrying dstate = iota + 1
	stProceeding
	stEarly
	stConfirmed
	stTerminated
)

func (s dstate) String() string {
	switch s {
	case stTrying:
		return "trying"
	case stProceeding:
		return "proceeding"
	case stEarly:
		return "early"
	case stConfirmed:
		return "confirmed"
	case stTerminated:
		return "terminated"
	}
	return ""
}

func parseState(s string) dstate {
	switch strings.ToLower(s) {
	case "trying":
		return stTrying
	case "proceeding":
		return stProceeding
	case "early":
		return stEarly
	case "confirmed":
		return stConfirmed
	case "terminated":
		return stTerminated
	}
	return 0
}

// RFC 4235 state events.
const (
	evCancelled = "cancelled"
	evRejected  = "rejected"
	evReplaced  = "replaced"
	evLocalBye  = "local-bye"
	evRemoteBye = "remote-bye"
	evError     = "error"
	evTimeout   = "timeout"
)

func validEvent(e string) bool {
	switch e {
	case evCancelled, evRejected, evReplaced, evLocalBye, evRemoteBye, evError, evTimeout:
		return true
	}
	return false
}

// Sides of a call: the caller (From) and the callee (To or Request-URI).
const (
	sideCaller = 0
	sideCallee = 1
)

// branch is one dialog of a call: the trying dialog, then each to-tag.
type branch struct {
	ID        string    `json:"id"`
	ToTag     string    `json:"to_tag,omitempty"`
	State     dstate    `json:"state"`
	Event     [2]string `json:"event,omitempty"` // per side, for terminated
	Code      int       `json:"code,omitempty"`
	Contact   string    `json:"contact,omitempty"` // callee target
	Hold      [2]bool   `json:"hold"`              // side put the call on hold
	Ended     int64     `json:"ended,omitempty"`   // unix ns of termination
	Removed   bool      `json:"removed,omitempty"`
	Published [2]bool   `json:"published"`
	Sent      [2]uint64 `json:"sent"`                // content hash of the last document per side
	OfferSeq  [2]uint32 `json:"offer_seq,omitempty"` // CSeq of the side's pending re-INVITE/UPDATE offer
	PrevHold  [2]bool   `json:"prev_hold,omitempty"` // hold before that offer
}

// call is one INVITE transaction's dialogs, keyed by Call-ID and caller tag.
type call struct {
	CallID        string  `json:"call_id"`
	FromTag       string  `json:"from_tag"`
	Caller        string  `json:"caller"`
	CallerDisplay string  `json:"caller_display,omitempty"`
	CallerContact string  `json:"caller_contact,omitempty"`
	Callee        string  `json:"callee"`
	CalleeDisplay string  `json:"callee_display,omitempty"`
	CSeq          uint32  `json:"cseq"`
	Pub           [2]bool `json:"pub"`
	Created       int64   `json:"created"`
	Active        int64   `json:"active"` // last sign of life, unix ns
	Answered      bool    `json:"answered,omitempty"`
	// InviteVias is the number of Via entries of the initial INVITE as
	// the tracer saw it first (as the proxy received it; 0: unknown). A
	// final response with more is a branch's own answer as the proxy
	// received it, not the call's final answer (see inviteResponse).
	InviteVias int       `json:"invite_vias,omitempty"`
	Branches   []*branch `json:"branches"`

	key     string
	timer   sched.Entry // next ring timeout, lifetime cap or linger end
	touched int64       // last input about the call in this process, unix ns (not stored)
}

func callKey(callID, fromTag string) string { return callID + "\x00" + fromTag }

// dialogID is the stable dialog id of a branch.
func dialogID(callID, fromTag, toTag string) string {
	h := fnv.New64a()
	h.Write([]byte(callID))
	h.Write([]byte{0})
	h.Write([]byte(fromTag))
	h.Write([]byte{0})
	h.Write([]byte(toTag))
	return strconv.FormatUint(h.Sum64(), 16)
}

func (c *call) branchByTag(tag string) *branch {
	for _, b := range c.Branches {
		if b.ToTag == tag {
			return b
		}
	}
	return nil
}

// pending returns the trying branch that has no to-tag yet, if any.
func (c *call) pending() *branch {
	for _, b := range c.Branches {
		if b.ToTag == "" && b.State != stTerminated {
			return b
		}
	}
	return nil
}

// liveBesides reports whether a branch other than b is not terminated.
func (c *call) liveBesides(b *branch) bool {
	for _, o := range c.Branches {
		if o != b && o.State != stTerminated {
			return true
		}
	}
	return false
}

// over reports whether every branch is terminated.
func (c *call) over() bool {
	for _, b := range c.Branches {
		if b.State != stTerminated {
			return false
		}
	}
	return true
}

// Tracker follows dialogs and publishes dialog-info. It is safe for
// concurrent use.
type Tracker struct {
	cfg   Config
	pub   Publisher
	obs   Observer
	store Store
	m     *metrics.Metrics
	log   *slog.Logger
	now   func() time.Time
	doms  DomainSet
	sched *sched.Scheduler[*call]

	mu       sync.Mutex
	capLog   map[string]int64 // reason → unix ns of the last cap log line
	calls    map[string]*call
	versions map[string]uint64
	dirty    map[string]*call // key → call (nil = deleted)
	dirtyVer map[string]struct{}
}

// New builds a tracker. Zero durations and caps of cfg get the defaults,
// then cfg is validated.
func New(cfg Config, opts Options) (*Tracker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dialoginfo: %w", err)
	}
	if opts.Publisher == nil {
		return nil, fmt.Errorf("dialoginfo: new: a publisher is required")
	}
	t := &Tracker{
		cfg:      cfg,
		pub:      opts.Publisher,
		obs:      opts.Observer,
		store:    opts.Store,
		m:        opts.Metrics,
		log:      opts.Logger,
		now:      clock.OrReal(opts.Clock).Now,
		doms:     opts.LocalDomains,
		capLog:   make(map[string]int64),
		calls:    make(map[string]*call),
		versions: make(map[string]uint64),
		dirty:    make(map[string]*call),
		dirtyVer: make(map[string]struct{}),
	}
	if t.log == nil {
		t.log = slog.Default()
	}
	t.sched = sched.New(opts.Clock, t.expireDue)
	if len(cfg.Domains) == 0 && t.doms == nil {
		t.log.Warn("dialoginfo: domains is empty and no registrations are followed: every entity of every call is published, foreign ones included")
	}
	return t, nil
}

// count adds one tracker event to the metrics.
func (t *Tracker) count(what string) { t.m.Tracker("dialoginfo", what) }

// ignore counts and logs a message that changes nothing.
func (t *Tracker) ignore(reason, callID, what string) {
	t.count("ignored_" + reason)
	t.log.Debug("dialoginfo: message ignored", "reason", reason, "call_id", callID, "message", what)
}

// capLogInterval is the least time between two log lines about one cap.
const capLogInterval = time.Minute

// capped counts a message refused by max_calls or max_branches and logs it
// at most once a minute per cap. Must hold mu.
func (t *Tracker) capped(reason, callID, what string, limit int) {
	t.count("ignored_" + reason)
	now := t.now().UnixNano()
	if last, ok := t.capLog[reason]; ok && now-last < int64(capLogInterval) {
		return
	}
	t.capLog[reason] = now
	t.log.Warn("dialoginfo: cap reached, message ignored", "cap", reason, "limit", limit, "call_id", callID, "message", what,
		"calls", len(t.calls))
}

// callCapped reports (and counts) that max_calls leaves no room for a new
// call. Must hold mu.
func (t *Tracker) callCapped(callID, what string) bool {
	if len(t.calls) < t.cfg.MaxCalls {
		return false
	}
	t.capped("call_cap", callID, what, t.cfg.MaxCalls)
	return true
}

// branchCapped reports (and counts) that the to-tag would need a new branch
// past max_branches. Must hold mu.
func (t *Tracker) branchCapped(c *call, tag, what string) bool {
	if c.branchByTag(tag) != nil || c.pending() != nil || len(c.Branches) < t.cfg.MaxBranches {
		return false
	}
	t.capped("branch_cap", c.CallID, what, t.cfg.MaxBranches)
	return true
}

// ---- state changes -------------------------------------------------------

// newCall creates a call in trying state; nil when no side publishes.
func (t *Tracker) newCall(callID, fromTag, caller, callerDisplay, callerContact, callee, calleeDisplay string, cseq uint32, now int64) *call {
	c := &call{
		CallID:        strings.Clone(callID),
		FromTag:       strings.Clone(fromTag),
		Caller:        caller,
		CallerDisplay: strings.Clone(callerDisplay),
		CallerContact: callerContact,
		Callee:        callee,
		CalleeDisplay: strings.Clone(calleeDisplay),
		CSeq:          cseq,
		Created:       now,
		Active:        now,
		touched:       now,
	}
	c.Pub[sideCaller] = !t.cfg.DisableCallerPublish && t.local(caller)
	c.Pub[sideCallee] = !t.cfg.DisableCalleePublish && t.local(callee)
	if !c.Pub[sideCaller] && !c.Pub[sideCallee] {
		return nil
	}
	c.key = callKey(c.CallID, c.FromTag)
	c.Branches = []*branch{{ID: dialogID(c.CallID, c.FromTag, ""), State: stTrying}}
	t.calls[c.key] = c
	t.count("call_created")
	return c
}

// local reports whether an AoR belongs to a configured domain.
func (t *Tracker) local(a string) bool {
	if a == "" {
		return false
	}
	if len(t.cfg.Domains) == 0 && t.doms == nil {
		return true
	}
	host := aor.Domain(a)
	if len(t.cfg.Domains) == 0 {
		return t.doms.HasDomain(host)
	}
	for _, d := range t.cfg.Domains {
		if d == host {
			return true
		}
	}
	return false
}

// branchFor returns the branch of a to-tag, taking over the pending trying
// branch for the first tag and creating a new one (forking) otherwise.
func (c *call) branchFor(tag string) *branch {
	if b := c.branchByTag(tag); b != nil {
		return b
	}
	if p := c.pending(); p != nil {
		p.ToTag = strings.Clone(tag)
		return p
	}
	b := &branch{ID: dialogID(c.CallID, c.FromTag, tag), ToTag: strings.Clone(tag), State: stTrying}
	c.Branches = append(c.Branches, b)
	return b
}

// terminate ends a branch with per-side events.
func (t *Tracker) terminate(c *call, b *branch, callerEv, calleeEv string, code int, now int64) {
	if b.State == stTerminated {
		return
	}
	b.State = stTerminated
	b.Event = [2]string{callerEv, calleeEv}
	b.Code = code
	b.Ended = now
	if callerEv == "" {
		t.count("terminated_without_event")
	} else {
		t.count("terminated_" + callerEv)
	}
}

// answer confirms a branch and ends the other early branches.
func (t *Tracker) answer(c *call, b *branch, contact string, now int64) {
	if contact != "" {
		b.Contact = contact
	}
	b.State = stConfirmed
	c.Answered = true
	c.Active = now
	for _, o := range c.Branches {
		if o != b && o.State < stConfirmed {
			t.terminate(c, o, evCancelled, evCancelled, 0, now)
		}
	}
}

// Run flushes the store every flush_interval until ctx ends, then flushes
// once more and stops the timers. Timers fire on the tracker's clock.
func (t *Tracker) Run(ctx context.Context) error {
	defer t.sched.Stop()
	flush := time.NewTicker(t.cfg.FlushInterval)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err := t.Flush(fctx)
			cancel()
			return err
		case <-flush.C:
			if err := t.Flush(ctx); err != nil {
				t.log.Warn("dialoginfo: store flush failed (retried)", "err", err)
			}
		}
	}
}
