package dialoginfo

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/puaside/puaside/aor"
	"github.com/puaside/puaside/clock"
	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/event"
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
	Sent      [2]uint64 `json:"sent"` // content hash of the last document per side
}

// call is one INVITE transaction's dialogs, keyed by Call-ID and caller tag.
type call struct {
	CallID        string    `json:"call_id"`
	FromTag       string    `json:"from_tag"`
	Caller        string    `json:"caller"`
	CallerDisplay string    `json:"caller_display,omitempty"`
	CallerContact string    `json:"caller_contact,omitempty"`
	Callee        string    `json:"callee"`
	CalleeDisplay string    `json:"callee_display,omitempty"`
	CSeq          uint32    `json:"cseq"`
	Pub           [2]bool   `json:"pub"`
	Created       int64     `json:"created"`
	Active        int64     `json:"active"` // last sign of life, unix ns
	Answered      bool      `json:"answered,omitempty"`
	Branches      []*branch `json:"branches"`

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

// sync publishes what changed for a call, schedules its timers and marks it
// for the store.
func (t *Tracker) sync(c *call) {
	for _, b := range c.Branches {
		if b.Removed {
			continue
		}
		for s := sideCaller; s <= sideCallee; s++ {
			t.syncSide(c, b, s)
		}
	}
	t.markDirty(c)
	t.schedule(c)
}

// view returns the dialog as seen by one side, or false if that side shows nothing.
func (t *Tracker) view(c *call, b *branch, s int) (string, dialogdoc.Dialog, bool) {
	if !c.Pub[s] {
		return "", dialogdoc.Dialog{}, false
	}
	st := b.State
	if s == sideCallee && !b.Published[s] && (st == stTerminated || (st < stEarly && !t.cfg.CalleeTrying)) {
		return "", dialogdoc.Dialog{}, false
	}
	if s == sideCaller && !b.Published[s] && st == stTerminated {
		return "", dialogdoc.Dialog{}, false
	}
	if s == sideCaller && st == stEarly && t.cfg.CallerConfirmed {
		st = stConfirmed
	}
	d := dialogdoc.Dialog{ID: b.ID, State: st.String()}
	if st == stTerminated {
		d.Event, d.Code = b.Event[s], b.Code
	}
	if t.cfg.IncludeCallID {
		d.CallID = c.CallID
	}
	ps := new([2]dialogdoc.Participant) // one allocation for both
	callerP, calleeP := &ps[0], &ps[1]
	*callerP = dialogdoc.Participant{Identity: c.Caller, Display: c.CallerDisplay, Target: c.CallerContact}
	*calleeP = dialogdoc.Participant{Identity: c.Callee, Display: c.CalleeDisplay, Target: b.Contact}
	if callerP.Target == "" {
		callerP.Target = c.Caller
	}
	if calleeP.Target == "" {
		calleeP.Target = c.Callee
	}
	if b.Hold[sideCaller] {
		callerP.Rendering = "no"
	}
	if b.Hold[sideCallee] {
		calleeP.Rendering = "no"
	}
	entity := c.Caller
	if s == sideCaller {
		d.Direction = "initiator"
		if t.cfg.IncludeTags {
			d.LocalTag, d.RemoteTag = c.FromTag, b.ToTag
		}
		d.Local, d.Remote = callerP, calleeP
	} else {
		entity = c.Callee
		d.Direction = "recipient"
		if t.cfg.IncludeTags {
			d.LocalTag, d.RemoteTag = b.ToTag, c.FromTag
		}
		d.Local, d.Remote = calleeP, callerP
	}
	if !t.cfg.IncludeLocalRemote {
		d.Local, d.Remote = nil, nil
	}
	return entity, d, true
}

func (t *Tracker) presID(c *call, b *branch, s int) string {
	id := t.cfg.PresIDPrefix + b.ID
	if s == sideCallee && c.Caller == c.Callee {
		id += "-r" // a call to oneself: keep the two publications apart
	}
	return id
}

func (t *Tracker) syncSide(c *call, b *branch, s int) {
	entity, d, ok := t.view(c, b, s)
	if !ok {
		return
	}
	h := hashDialog(&d)
	if b.Published[s] && b.Sent[s] == h {
		return
	}
	v := t.versions[entity] + 1
	body := dialogdoc.Build(dialogdoc.Document{Version: v, Entity: entity, Dialogs: []dialogdoc.Dialog{d}})
	req := pua.PublishRequest{
		Key:         pua.Key{PresURI: entity, Event: "dialog", ID: t.presID(c, b, s)},
		Body:        body,
		ContentType: dialogdoc.ContentType,
		Expires:     t.cfg.expires(),
		Flag:        pua.FlagDialogPublish,
	}
	if b.State == stTerminated {
		// The terminated document lives for what is left of the linger
		// and then lapses at the server: the engine neither refreshes nor
		// removes it (pua_dialoginfo's short terminated Expires).
		req.Expires = t.lingerLeft(b)
		req.Lifetime = req.Expires
	}
	err := t.pub.Publish(req)
	if err != nil {
		t.count("publish_error")
		t.log.Warn("dialoginfo: publish refused", "aor", entity, "call_id", c.CallID, "event", "dialog", "err", err)
		return
	}
	t.versions[entity] = v
	if t.store != nil {
		t.dirtyVer[entity] = struct{}{}
	}
	b.Published[s] = true
	b.Sent[s] = h
	t.count("published_" + d.State)
}

// lingerLeft is what is left of a terminated branch's linger, at least a
// second.
func (t *Tracker) lingerLeft(b *branch) time.Duration {
	left := time.Duration(b.Ended+int64(t.cfg.TerminatedLinger)) - time.Duration(t.now().UnixNano())
	return max(left, time.Second)
}

// removeBranch withdraws a branch's publications at the end of its
// linger. A side whose terminated document was handed to the publisher
// needs nothing: that publication lapses by itself (see syncSide). Only a
// side whose last document is not the terminated one (its publish was
// refused) is removed.
func (t *Tracker) removeBranch(c *call, b *branch) {
	if b.Removed {
		return
	}
	b.Removed = true
	for s := sideCaller; s <= sideCallee; s++ {
		if !b.Published[s] {
			continue
		}
		entity := c.Caller
		if s == sideCallee {
			entity = c.Callee
		}
		if b.State == stTerminated {
			if _, d, ok := t.view(c, b, s); ok && hashDialog(&d) == b.Sent[s] {
				t.count("lapsed")
				continue
			}
		}
		if err := t.pub.Remove(pua.Key{PresURI: entity, Event: "dialog", ID: t.presID(c, b, s)}); err != nil {
			t.count("remove_error")
			t.log.Warn("dialoginfo: remove refused", "aor", entity, "call_id", c.CallID, "event", "dialog", "err", err)
			continue
		}
		t.count("removed")
	}
}

// dropCall forgets a call whose branches are all removed.
func (t *Tracker) dropCall(c *call) {
	delete(t.calls, c.key)
	t.sched.Cancel(c)
	if t.store != nil {
		t.dirty[c.key] = nil
	}
	t.count("call_ended")
}

func (t *Tracker) markDirty(c *call) {
	if t.store != nil && t.calls[c.key] == c {
		t.dirty[c.key] = c
	}
}

// hashDialog hashes the content of a dialog (everything but the version):
// FNV-1a 64 over the fields, each followed by a zero byte. The value is
// stored (branch.Sent), so it must not change between releases.
func hashDialog(d *dialogdoc.Dialog) uint64 {
	h := fnvHash(fnvOffset64)
	h.str(d.ID)
	h.str(d.CallID)
	h.str(d.LocalTag)
	h.str(d.RemoteTag)
	h.str(d.Direction)
	h.str(d.State)
	h.str(d.Event)
	var num [20]byte
	h.bytes(strconv.AppendInt(num[:0], int64(d.Code), 10))
	for _, p := range [2]*dialogdoc.Participant{d.Local, d.Remote} {
		if p == nil {
			h.str("-")
			continue
		}
		h.str(p.Identity)
		h.str(p.Display)
		h.str(p.Target)
		h.str(p.Rendering)
	}
	return uint64(h)
}

// FNV-1a 64 parameters (hash/fnv), inlined to hash without allocating.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// fnvHash is a running FNV-1a 64 hash.
type fnvHash uint64

// str hashes s and a zero byte.
func (h *fnvHash) str(s string) {
	v := *h
	for i := 0; i < len(s); i++ {
		v ^= fnvHash(s[i])
		v *= fnvPrime64
	}
	v *= fnvPrime64 // the zero byte: v ^= 0 changes nothing
	*h = v
}

// bytes hashes b and a zero byte.
func (h *fnvHash) bytes(b []byte) {
	v := *h
	for _, c := range b {
		v ^= fnvHash(c)
		v *= fnvPrime64
	}
	v *= fnvPrime64
	*h = v
}

// ---- listing --------------------------------------------------------------

// DialogInfo is one tracked dialog (branch) for the management API.
type DialogInfo struct {
	// ID is the dialog id used in documents and publication ids.
	ID      string `json:"id"`
	CallID  string `json:"call_id"`
	FromTag string `json:"from_tag"`
	ToTag   string `json:"to_tag"`
	// Caller and Callee are the entities' AoRs.
	Caller string `json:"caller"`
	Callee string `json:"callee"`
	// State is the RFC 4235 state; Event and Code qualify terminated.
	State string `json:"state"`
	Event string `json:"event,omitempty"`
	Code  int    `json:"code,omitempty"`
	// CallerHold and CalleeHold say which side put the call on hold.
	CallerHold bool `json:"caller_hold"`
	CalleeHold bool `json:"callee_hold"`
	// Created is when the INVITE was seen; LastActive the last sign of life;
	// Ended when the dialog terminated (zero while active).
	Created    time.Time `json:"created"`
	LastActive time.Time `json:"last_active"`
	Ended      time.Time `json:"ended,omitempty"`
}

// Dialogs lists the tracked dialogs (terminated ones until their
// publications are removed), oldest first.
func (t *Tracker) Dialogs() []DialogInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]DialogInfo, 0, len(t.calls))
	for _, c := range t.calls {
		for _, b := range c.Branches {
			if b.Removed {
				continue
			}
			di := DialogInfo{
				ID: b.ID, CallID: c.CallID, FromTag: c.FromTag, ToTag: b.ToTag,
				Caller: c.Caller, Callee: c.Callee, State: b.State.String(),
				Event: b.Event[sideCaller], Code: b.Code,
				CallerHold: b.Hold[sideCaller], CalleeHold: b.Hold[sideCallee],
				Created: time.Unix(0, c.Created), LastActive: time.Unix(0, c.Active),
			}
			if b.Ended != 0 {
				di.Ended = time.Unix(0, b.Ended)
			}
			out = append(out, di)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// ---- JSON events ------------------------------------------------------------

// ApplyDialogState applies a normalised call-state event (JSON input). The
// call is identified by CallID and FromTag, the branch by ToTag. States only
// move forward; an event that would move a dialog back is ignored. Hold has
// no side in the event: both targets then carry +sip.rendering="no".
func (t *Tracker) ApplyDialogState(ctx context.Context, d event.DialogState) error {
	st := parseState(d.State)
	if d.CallID == "" || d.FromTag == "" || st == 0 {
		t.ignore("bad_event", d.CallID, "json "+d.State)
		return fmt.Errorf("%w: call_id, from_tag and a known state are required (got state %q)", ErrBadEvent, d.State)
	}
	if d.Event != "" && !validEvent(d.Event) {
		t.ignore("bad_event", d.CallID, "json event "+d.Event)
		return fmt.Errorf("%w: unknown event %q", ErrBadEvent, d.Event)
	}
	now := t.now().UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.calls[callKey(d.CallID, d.FromTag)]
	if c == nil {
		if st == stTerminated {
			t.ignore("unknown_call", d.CallID, "json terminated")
			return nil
		}
		caller, _ := aor.Normalize(d.From, "")
		callee, _ := aor.Normalize(d.To, "")
		if t.cfg.IncludeReqURI && d.RequestURI != "" {
			if a, err := aor.Normalize(d.RequestURI, ""); err == nil {
				callee = a
			}
		}
		if caller == "" || callee == "" {
			t.ignore("bad_event", d.CallID, "json without from/to")
			return fmt.Errorf("%w: from and to URIs are required for a new call", ErrBadEvent)
		}
		if t.callCapped(d.CallID, "json "+d.State) {
			return nil
		}
		c = t.newCall(d.CallID, d.FromTag, caller, d.FromDisplay, "", callee, d.ToDisplay, 0, now)
		if c == nil {
			t.ignore("not_local", d.CallID, "json")
			return nil
		}
	}
	c.touched = now
	if c.over() {
		t.ignore("after_final", d.CallID, "json "+d.State)
		return nil
	}
	var b *branch
	switch {
	case d.ToTag != "":
		b = c.branchByTag(d.ToTag)
		if b == nil {
			if st < stEarly || c.Answered && st < stConfirmed {
				t.ignore("late_provisional", d.CallID, "json "+d.State)
				return nil
			}
			if (st != stConfirmed || c.Answered) && t.branchCapped(c, d.ToTag, "json "+d.State) {
				return nil
			}
			b = c.branchFor(d.ToTag)
		}
	default:
		b = c.pending()
	}
	c.Active = now
	switch {
	case st == stTerminated && b == nil:
		ev := d.Event
		for _, o := range c.Branches {
			t.terminate(c, o, ev, ev, d.Code, now)
		}
	case b == nil:
		t.ignore("state_regression", d.CallID, "json "+d.State)
		return nil
	case st == stTerminated:
		t.terminate(c, b, d.Event, d.Event, d.Code, now)
	case st < b.State || b.State == stTerminated:
		t.ignore("state_regression", d.CallID, "json "+d.State)
		return nil
	case st == stConfirmed:
		t.answer(c, b, "", now)
	default:
		b.State = st
	}
	if b != nil && b.State != stTerminated {
		b.Hold[sideCaller], b.Hold[sideCallee] = d.Hold, d.Hold
	}
	t.sync(c)
	return nil
}

// ---- timers -----------------------------------------------------------------

// SchedEntry is the call's place in the tracker's timer heap.
func (c *call) SchedEntry() *sched.Entry { return &c.timer }

// deadline is the next time something is due for a call (0 = nothing).
func (t *Tracker) deadline(c *call) int64 {
	var next int64
	min := func(v int64) {
		if next == 0 || v < next {
			next = v
		}
	}
	for _, b := range c.Branches {
		switch {
		case b.Removed:
		case b.State == stTerminated:
			min(b.Ended + int64(t.cfg.TerminatedLinger))
		case b.State < stConfirmed:
			min(c.Created + int64(t.cfg.RingTimeout))
			min(c.Active + int64(t.cfg.LifetimeCap))
		default:
			min(c.Active + int64(t.cfg.LifetimeCap))
		}
	}
	return next
}

// schedule arms the call's timer for its next deadline. Must hold mu.
func (t *Tracker) schedule(c *call) {
	if d := t.deadline(c); d != 0 {
		t.sched.Schedule(c, time.Unix(0, d))
	} else {
		t.sched.Cancel(c)
	}
}

// Expire runs every timer due at now: ring timeouts, lifetime caps and the
// removal of lingering terminated documents. The tracker's clock runs it
// when the earliest is due; tests may call it directly.
func (t *Tracker) Expire(now time.Time) {
	t.sched.RunDue(now)
}

// expireDue handles the calls whose timers fired at now.
func (t *Tracker) expireDue(now time.Time, due []*call) {
	n := now.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range due {
		if t.calls[c.key] != c {
			continue // call already gone
		}
		t.expireCall(c, n)
	}
}

func (t *Tracker) expireCall(c *call, n int64) {
	changed := false
	for _, b := range c.Branches {
		switch {
		case b.Removed:
		case b.State == stTerminated:
			if b.Ended+int64(t.cfg.TerminatedLinger) <= n {
				t.removeBranch(c, b)
				changed = true
			}
		case b.State < stConfirmed && c.Created+int64(t.cfg.RingTimeout) <= n:
			t.terminate(c, b, evTimeout, evTimeout, 0, n)
			t.count("ring_timeout")
			t.log.Info("dialoginfo: early dialog timed out", "call_id", c.CallID, "aor", c.Caller)
			changed = true
		case c.Active+int64(t.cfg.LifetimeCap) <= n:
			t.terminate(c, b, evTimeout, evTimeout, 0, n)
			t.count("lifetime_cap")
			t.log.Info("dialoginfo: dialog reached lifetime_cap without BYE", "call_id", c.CallID, "aor", c.Caller)
			changed = true
		}
	}
	allRemoved := true
	for _, b := range c.Branches {
		if !b.Removed {
			allRemoved = false
		}
	}
	if allRemoved {
		t.dropCall(c)
		return
	}
	if changed {
		t.sync(c)
		return
	}
	t.schedule(c)
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
