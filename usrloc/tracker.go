package usrloc

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

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
	// others; an error means the whole call must be retried.
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
	// (empty when the AoR has no binding left), sorted by URI. It must not
	// call HandleSIP or ApplyRegistration.
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

// aorState is the tracker's view of one AoR.
type aorState struct {
	aor      string
	contacts []Binding // sorted by URI
	// digest of the document last handed to the publisher; published says
	// whether a publication exists at all.
	digest    [32]byte
	published bool
	closed    bool          // the published document is the closed one
	asked     time.Duration // Expires asked for the published document (0 = unknown)
	linger    time.Time     // when a closed publication is removed
	timer     sched.Entry   // earliest contact expiry or linger end
}

// pendingReq is a traced REGISTER waiting for its reply.
type pendingReq struct {
	reg Register
	at  time.Time
	seq uint64
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
	inputs     map[string]time.Time // last input per AoR (CorrectBindings)
	ring       []string
	ringPos    int
	seq        uint64

	cbMu    sync.Mutex // serialises OnChange deliveries
	domains domainIndex
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
		dirtyFlags: map[string]*bool{}, pending: map[string]pendingReq{}, inputs: map[string]time.Time{},
		ring: make([]string, cfg.PendingMax),
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.clock = clock.OrReal(t.clock)
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

// HandleSIP takes a mirrored REGISTER request or reply. Anything else is
// ignored. A replicate copy is applied at once; a traced/HEP request is
// remembered until its reply; a 2xx reply replaces the AoR's bindings.
func (t *Tracker) HandleSIP(ctx context.Context, m event.SIP) {
	switch msg := m.Msg.(type) {
	case *sip.Request:
		if msg.Method != sip.REGISTER {
			return
		}
		t.handleRequest(msg, m.Source)
	case *sip.Response:
		if cs := msg.CSeq(); cs == nil || cs.MethodName != sip.REGISTER {
			return
		}
		t.handleResponse(msg, m.Source)
	}
}

func (t *Tracker) handleRequest(req *sip.Request, src event.Source) {
	reg, err := ParseRegister(req, t.cfg.PublishHeader)
	callID := ""
	if c := req.CallID(); c != nil {
		callID = c.Value()
	}
	if src == event.SourceReplicate || src == event.SourceJSON {
		if err != nil {
			t.reject(err, src, callID)
			return
		}
		t.update(func(now time.Time, ch *[]change) {
			t.applyStatement(now, reg.AoR, reg.Contacts, reg.Expires, reg.Wildcard, false, reg.Publish, ch)
		})
		return
	}
	// Traced or HEP: an observation. A binding query (no Contact) is
	// legitimate; its 2xx still lists the bindings.
	if err != nil && !errors.Is(err, ErrNoContact) {
		t.reject(err, src, callID)
		return
	}
	t.mu.Lock()
	t.remember(reg)
	t.mu.Unlock()
}

// remember stores a traced request, evicting the oldest beyond PendingMax.
func (t *Tracker) remember(reg Register) {
	key := pendingKey(reg.CallID, reg.CSeq)
	t.seq++
	if old := t.ring[t.ringPos]; old != "" {
		if p, ok := t.pending[old]; ok && p.seq == t.seq-uint64(len(t.ring)) {
			delete(t.pending, old)
		}
	}
	t.ring[t.ringPos] = key
	t.ringPos = (t.ringPos + 1) % len(t.ring)
	t.pending[key] = pendingReq{reg: reg, at: t.clock.Now(), seq: t.seq}
}

func pendingKey(callID string, cseq uint32) string {
	return fmt.Sprintf("%s\x00%d", callID, cseq)
}

func (t *Tracker) handleResponse(res *sip.Response, src event.Source) {
	if res.IsProvisional() {
		return
	}
	callID := ""
	var cseq uint32
	if c := res.CallID(); c != nil {
		callID = c.Value()
	}
	if c := res.CSeq(); c != nil {
		cseq = c.SeqNo
	}
	t.mu.Lock()
	key := pendingKey(callID, cseq)
	p, havePending := t.pending[key]
	delete(t.pending, key)
	if havePending && t.clock.Now().Sub(p.at) > pendingTTL {
		havePending = false
	}
	t.mu.Unlock()
	if !res.IsSuccess() {
		t.count("reply_not_2xx")
		t.log.Debug("usrloc: REGISTER reply changes nothing", "status", res.StatusCode, "call_id", callID)
		return
	}
	reg, err := ParseRegisterReply(res)
	if err != nil {
		t.reject(err, src, callID)
		return
	}
	var req *Register
	if havePending {
		req = &p.reg
	}
	contacts := make([]event.Contact, 0, len(reg.Contacts))
	for _, c := range reg.Contacts {
		if c.Expires < 0 {
			c.Expires = grantedFallback(c.URI, req, reg.Expires)
		}
		if c.Expires == 0 {
			continue
		}
		if req != nil {
			for _, rc := range req.Contacts {
				if rc.URI == c.URI {
					c.UserAgent = rc.UserAgent
					if c.Instance == "" {
						c.Instance = rc.Instance
					}
				}
			}
		}
		contacts = append(contacts, c)
	}
	var flag *bool
	if req != nil {
		flag = req.Publish
	}
	t.update(func(now time.Time, ch *[]change) {
		t.applyStatement(now, reg.AoR, contacts, -1, false, true, flag, ch)
	})
}

// grantedFallback finds the expiry of a reply contact without an expires
// parameter: the request's contact param, its Expires header, the reply's
// Expires header; -1 (default_expires) otherwise.
func grantedFallback(uri string, req *Register, replyExpires int) int {
	if req != nil {
		for _, rc := range req.Contacts {
			if rc.URI == uri && rc.Expires >= 0 {
				return rc.Expires
			}
		}
		if req.Expires >= 0 {
			return req.Expires
		}
	}
	return replyExpires
}

// ApplyRegistration applies a JSON registration event (a statement).
func (t *Tracker) ApplyRegistration(ctx context.Context, r event.Registration) error {
	aor, err := userAoR(r.AoR, t.cfg.DefaultDomain)
	if err != nil {
		t.reject(err, event.SourceJSON, "")
		return fmt.Errorf("usrloc: registration %q: %w", r.AoR, err)
	}
	for _, c := range r.Contacts {
		if c.URI == "" || strings.ContainsAny(c.URI, " \t\r\n<>") {
			t.reject(ErrBadContact, event.SourceJSON, c.CallID)
			return fmt.Errorf("usrloc: registration %q: contact %q: %w", r.AoR, c.URI, ErrBadContact)
		}
		if c.Q > 1 {
			t.reject(ErrBadContact, event.SourceJSON, c.CallID)
			return fmt.Errorf("usrloc: registration %q: contact %q q %v: %w", r.AoR, c.URI, c.Q, ErrBadContact)
		}
	}
	contacts := append([]event.Contact(nil), r.Contacts...)
	t.update(func(now time.Time, ch *[]change) {
		if r.Complete {
			kept := contacts[:0]
			for _, c := range contacts {
				if c.Expires != 0 {
					kept = append(kept, c)
				}
			}
			t.applyStatement(now, aor, kept, -1, false, true, r.Publish, ch)
			return
		}
		t.applyStatement(now, aor, contacts, -1, r.RemoveAll, false, r.Publish, ch)
	})
	return nil
}

// update runs fn under the lock and delivers the changes it collected.
func (t *Tracker) update(fn func(now time.Time, ch *[]change)) {
	var ch []change
	t.mu.Lock()
	fn(t.clock.Now(), &ch)
	if len(ch) == 0 || t.onChange == nil {
		t.mu.Unlock()
		return
	}
	t.cbMu.Lock()
	t.mu.Unlock()
	defer t.cbMu.Unlock()
	for _, c := range ch {
		t.onChange(c.aor, c.contacts)
	}
}

// expiresFor resolves and clamps an expiry in seconds (0 = remove).
func (t *Tracker) expiresFor(contact, header int) int {
	e := contact
	if e < 0 {
		e = header
	}
	if e < 0 {
		e = seconds(t.cfg.DefaultExpires)
	}
	if e == 0 {
		return 0
	}
	if e < seconds(t.cfg.MinExpires) {
		e = seconds(t.cfg.MinExpires)
	}
	if maxE := seconds(t.cfg.MaxExpires); maxE > 0 && e > maxE {
		e = maxE
	}
	return e
}

// applyStatement changes an AoR's bindings. complete replaces the whole
// set with contacts; otherwise contacts are added, refreshed or (expires 0)
// removed, and removeAll drops every binding. Must hold mu.
func (t *Tracker) applyStatement(now time.Time, aor string, contacts []event.Contact, hdrExpires int,
	removeAll, complete bool, flag *bool, ch *[]change) {
	t.noteInput(aor, now)
	st := t.aors[aor]
	if st == nil {
		st = &aorState{aor: aor}
		t.putAoR(st)
	}
	old := st.contacts
	var next []Binding
	if complete || removeAll {
		next = nil
	} else {
		next = append([]Binding(nil), old...)
	}
	for _, c := range contacts {
		exp := t.expiresFor(c.Expires, hdrExpires)
		i := findBinding(next, c.URI)
		if exp == 0 {
			if i >= 0 {
				next = append(next[:i], next[i+1:]...)
			}
			continue
		}
		if !complete && i >= 0 && next[i].CallID == c.CallID && c.CallID != "" && next[i].CSeq > c.CSeq {
			continue // an older, re-sent REGISTER of the same client
		}
		b := Binding{URI: c.URI, Expires: now.Add(time.Duration(exp) * time.Second), Q: c.Q,
			Received: c.Received, CallID: c.CallID, CSeq: c.CSeq, Instance: c.Instance, UserAgent: c.UserAgent}
		if i >= 0 {
			next[i] = b
		} else {
			next = append(next, b)
		}
	}
	slices.SortFunc(next, func(a, b Binding) int { return strings.Compare(a.URI, b.URI) })
	flagChanged := false
	if flag != nil {
		flagChanged = t.setFlagLocked(aor, *flag)
	}
	t.setContacts(st, next, now, "contact_removed", flagChanged, ch)
}

func findBinding(bs []Binding, uri string) int {
	for i := range bs {
		if bs[i].URI == uri {
			return i
		}
	}
	return -1
}

// setContacts installs a new binding set, counts, notifies, publishes and
// re-arms the AoR's timer. Must hold mu.
func (t *Tracker) setContacts(st *aorState, next []Binding, now time.Time, removedWhat string, force bool, ch *[]change) {
	old := st.contacts
	changed := false
	for _, b := range next {
		i := findBinding(old, b.URI)
		if i < 0 {
			t.count("contact_added")
			changed = true
			continue
		}
		o := old[i]
		if o.Q != b.Q || o.Received != b.Received || o.Instance != b.Instance {
			changed = true
		}
	}
	for _, o := range old {
		if findBinding(next, o.URI) < 0 {
			t.count(removedWhat)
			changed = true
		}
	}
	if !bindingsEqual(old, next) {
		t.dirty[st.aor] = struct{}{}
	}
	st.contacts = next
	if changed {
		t.log.Debug("usrloc: bindings changed", "aor", st.aor, "contacts", len(next))
		if t.onChange != nil {
			*ch = append(*ch, change{aor: st.aor, contacts: append([]Binding(nil), next...)})
		}
	}
	// The document depends only on the URIs and q values: a plain refresh
	// of a published AoR cannot change it, so skip building it.
	if changed || force || !st.published || st.closed || qChanged(old, next) {
		t.syncPublication(st, now)
	}
	t.schedule(st)
}

// qChanged reports whether any contact present in both sets changed its q.
func qChanged(old, next []Binding) bool {
	for _, b := range next {
		if i := findBinding(old, b.URI); i >= 0 && old[i].Q != b.Q {
			return true
		}
	}
	return false
}

func bindingsEqual(a, b []Binding) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// publishOn is the effective publishing decision for an AoR: an explicit
// per-user flag (header, management API) wins; else a matching pattern
// publishes; else publish_default decides.
func (t *Tracker) publishOn(aor string) bool {
	if on, ok := t.flags[aor]; ok {
		return on
	}
	bare := strings.TrimPrefix(aor, "sip:")
	for _, re := range t.patterns {
		if re.MatchString(bare) {
			return true
		}
	}
	return t.cfg.PublishDefault
}

func (t *Tracker) key(aor string) pua.Key {
	return pua.Key{PresURI: aor, Event: "presence", ID: t.cfg.PresID}
}

// syncPublication makes the publisher's desired state match st. Must hold mu.
func (t *Tracker) syncPublication(st *aorState, now time.Time) {
	on := t.publishOn(st.aor)
	switch {
	case on && len(st.contacts) > 0:
		st.linger = time.Time{}
		t.publishDoc(st, BuildPIDF(Entity(st.aor, t.cfg.EntityPrefix), st.contacts), false, now)
	case on && st.published && !st.closed:
		if t.cfg.ClosedLinger <= 0 {
			t.remove(st)
			return
		}
		t.publishDoc(st, BuildPIDF(Entity(st.aor, t.cfg.EntityPrefix), nil), true, now)
		st.linger = now.Add(t.cfg.ClosedLinger)
	case on && st.published && st.closed:
		if st.linger.IsZero() {
			st.linger = now.Add(t.cfg.ClosedLinger)
		}
		if !now.Before(st.linger) {
			t.remove(st)
		}
	case !on && st.published:
		t.remove(st)
	}
}

// publishDoc hands doc to the publisher unless it is the one already
// published with a lease that still fits its contacts (see publishExpires).
func (t *Tracker) publishDoc(st *aorState, doc []byte, closed bool, now time.Time) {
	d := sha256.Sum256(doc)
	exp := t.publishExpires(st, now, closed)
	if st.published && d == st.digest && !leaseTooShort(st.asked, exp) {
		return
	}
	err := t.pub.Publish(pua.PublishRequest{
		Key: t.key(st.aor), Body: doc, ContentType: ContentTypePIDF,
		Expires: exp, Flag: pua.FlagUsrloc,
	})
	if err != nil {
		t.count("publish_error")
		t.log.Error("usrloc: publish", "aor", st.aor, "err", err)
		return
	}
	st.digest, st.published, st.closed, st.asked = d, true, closed, exp
	if closed {
		t.count("closed")
	} else {
		t.count("published")
	}
}

// remove ends the AoR's publication.
func (t *Tracker) remove(st *aorState) {
	if err := t.pub.Remove(t.key(st.aor)); err != nil {
		t.count("remove_error")
		t.log.Error("usrloc: remove publication", "aor", st.aor, "err", err)
	}
	t.count("removed")
	st.published, st.closed, st.linger, st.digest = false, false, time.Time{}, [32]byte{}
}

// schedule re-arms the AoR's timer (earliest contact expiry or linger end)
// and forgets AoRs with nothing left. Must hold mu.
func (t *Tracker) schedule(st *aorState) {
	var due time.Time
	for _, b := range st.contacts {
		if due.IsZero() || b.Expires.Before(due) {
			due = b.Expires
		}
	}
	if !st.linger.IsZero() && (due.IsZero() || st.linger.Before(due)) {
		due = st.linger
	}
	if due.IsZero() {
		t.sched.Cancel(st)
		if len(st.contacts) == 0 && !st.published {
			t.dropAoR(st)
		}
		return
	}
	t.sched.Schedule(st, due)
}

// SchedEntry is the AoR's place in the tracker's timer heap.
func (st *aorState) SchedEntry() *sched.Entry { return &st.timer }

// expireDue handles the AoRs whose deadline has passed by now; the clock
// does the same when the earliest is due.
func (t *Tracker) expireDue() {
	t.sched.RunDue(t.clock.Now())
}

// expireAoRs handles AoRs whose timers fired at now, maxBatch at a time
// under the lock.
func (t *Tracker) expireAoRs(now time.Time, due []*aorState) {
	for len(due) > 0 {
		n := min(len(due), maxBatch)
		t.expireBatch(now, due[:n])
		due = due[n:]
	}
}

func (t *Tracker) expireBatch(now time.Time, due []*aorState) {
	var ch []change
	t.mu.Lock()
	for _, st := range due {
		if t.aors[st.aor] != st {
			continue // forgotten meanwhile
		}
		next := make([]Binding, 0, len(st.contacts))
		for _, b := range st.contacts {
			if b.Expires.After(now) {
				next = append(next, b)
			}
		}
		if len(next) != len(st.contacts) {
			t.log.Debug("usrloc: contacts expired", "aor", st.aor, "expired", len(st.contacts)-len(next))
			t.setContacts(st, next, now, "contact_expired", false, &ch)
			continue
		}
		t.syncPublication(st, now)
		t.schedule(st)
	}
	if len(ch) == 0 || t.onChange == nil {
		t.mu.Unlock()
		return
	}
	t.cbMu.Lock()
	t.mu.Unlock()
	defer t.cbMu.Unlock()
	for _, c := range ch {
		t.onChange(c.aor, c.contacts)
	}
}

// setFlagLocked records a per-user flag from a request header.
// It reports whether the flag changed.
func (t *Tracker) setFlagLocked(aor string, on bool) bool {
	if cur, ok := t.flags[aor]; ok && cur == on {
		return false
	}
	t.flags[aor] = on
	v := on
	t.dirtyFlags[aor] = &v
	return true
}

// Start loads the stored flags and contacts, drops the expired ones and
// re-arms the timers. Nothing is published for an AoR whose document did
// not change while puaside was down: the engine still holds and refreshes
// that publication. When the Publisher is a PublicationLister, its stored
// publications are compared with the loaded state (and orphans closed).
// When the Publisher is a Claimer, the publications of the loaded AoRs are
// claimed and the claims are done when Start returns, even on error.
func (t *Tracker) Start(ctx context.Context) error {
	if cl, ok := t.pub.(Claimer); ok {
		defer cl.ClaimsDone(pua.FlagUsrloc)
		defer func() {
			t.mu.Lock()
			t.claimLoaded(cl)
			t.mu.Unlock()
		}()
	}
	var stored map[string][]Binding
	flags := map[string]bool{}
	if t.store != nil {
		var err error
		if flags, err = t.store.LoadFlags(ctx); err != nil {
			return fmt.Errorf("usrloc: start: load flags: %w", err)
		}
		if stored, err = t.store.LoadContacts(ctx); err != nil {
			return fmt.Errorf("usrloc: start: load contacts: %w", err)
		}
	}
	pubs := map[string]pua.PublicationInfo{}
	lister, haveLister := t.pub.(PublicationLister)
	if haveLister {
		for _, p := range lister.Publications() {
			if p.Key.Event == "presence" && p.Key.ID == t.cfg.PresID && p.Flag&pua.FlagUsrloc != 0 {
				pubs[p.Key.PresURI] = p
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	for aor, on := range flags {
		t.flags[aor] = on
	}
	closedDigest := func(aor string) [32]byte {
		return sha256.Sum256(BuildPIDF(Entity(aor, t.cfg.EntityPrefix), nil))
	}
	for aor, bs := range stored {
		st := &aorState{aor: aor}
		t.putAoR(st)
		sort.Slice(bs, func(i, j int) bool { return bs[i].URI < bs[j].URI })
		var live []Binding
		for _, b := range bs {
			if b.Expires.After(now) {
				live = append(live, b)
			} else {
				t.count("contact_expired")
			}
		}
		if len(live) != len(bs) {
			t.dirty[aor] = struct{}{}
		}
		st.contacts = live
		if p, ok := pubs[aor]; ok {
			st.published, st.digest = true, sha256.Sum256(p.Body)
			st.closed = st.digest == closedDigest(aor)
			delete(pubs, aor)
		} else if !haveLister && len(bs) > 0 && t.publishOn(aor) {
			// Assume the engine holds the document of the stored set.
			st.published, st.digest = true, sha256.Sum256(BuildPIDF(Entity(aor, t.cfg.EntityPrefix), bs))
		}
		t.syncPublication(st, now)
		t.schedule(st)
	}
	for aor, p := range pubs {
		if len(p.Body) == 0 {
			// A publication puaside did not write (one adopted from
			// Kamailio's pua_usrloc, whose body Kamailio never keeps):
			// its registration is unknown here, not gone. The engine
			// keeps it until its lifetime ends; the next REGISTER of
			// the AoR (or reconciliation) publishes over it.
			continue
		}
		// A publication without stored contacts (e.g. a closed document
		// still lingering at shutdown): close it and let it go.
		st := &aorState{aor: aor, published: true, digest: sha256.Sum256(p.Body)}
		st.closed = st.digest == closedDigest(aor)
		t.putAoR(st)
		t.syncPublication(st, now)
		t.schedule(st)
	}
	t.log.Info("usrloc: loaded", "aors", len(t.aors), "flags", len(t.flags))
	return nil
}

// Run flushes changes to the store every flush_interval until ctx ends;
// then it flushes once more and stops the timers. Contacts expire on the
// tracker's clock.
func (t *Tracker) Run(ctx context.Context) error {
	defer t.sched.Stop()
	tick := make(chan struct{}, 1)
	for {
		tm := t.clock.AfterFunc(t.cfg.FlushInterval, func() {
			select {
			case tick <- struct{}{}:
			default:
			}
		})
		select {
		case <-ctx.Done():
			tm.Stop()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err := t.Flush(fctx)
			cancel()
			return err
		case <-tick:
			if err := t.Flush(ctx); err != nil {
				t.log.Error("usrloc: flush", "err", err)
			}
			t.pruneInputs()
		}
	}
}

// Flush writes the changed contacts and flags to the store.
func (t *Tracker) Flush(ctx context.Context) error {
	if t.store == nil {
		return nil
	}
	t.mu.Lock()
	if len(t.dirty) == 0 && len(t.dirtyFlags) == 0 {
		t.mu.Unlock()
		return nil
	}
	save := make(map[string][]Binding, len(t.dirty))
	for aor := range t.dirty {
		var bs []Binding
		if st := t.aors[aor]; st != nil {
			bs = append(bs, st.contacts...)
		}
		save[aor] = bs
	}
	flags := t.dirtyFlags
	t.dirty, t.dirtyFlags = map[string]struct{}{}, map[string]*bool{}
	t.mu.Unlock()

	start := time.Now()
	var errs []error
	if len(save) > 0 {
		if err := t.store.SaveContacts(ctx, save); err != nil {
			errs = append(errs, err)
			t.mu.Lock()
			for aor := range save {
				t.dirty[aor] = struct{}{}
			}
			t.mu.Unlock()
		}
	}
	for aor, v := range flags {
		var err error
		if v == nil {
			err = t.store.DeleteFlag(ctx, aor)
		} else {
			err = t.store.SetFlag(ctx, aor, *v)
		}
		if err != nil {
			errs = append(errs, err)
			t.mu.Lock()
			if _, newer := t.dirtyFlags[aor]; !newer {
				t.dirtyFlags[aor] = v
			}
			t.mu.Unlock()
		}
	}
	err := errors.Join(errs...)
	t.m.StoreFlush(time.Since(start), err)
	if err != nil {
		return fmt.Errorf("usrloc: flush: %w", err)
	}
	return nil
}

// Registrations lists every known AoR, sorted.
func (t *Tracker) Registrations() []AoRInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]AoRInfo, 0, len(t.aors))
	for _, st := range t.aors {
		out = append(out, t.info(st))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AoR < out[j].AoR })
	return out
}

// Registration returns one AoR ("sip:user@domain", "user@domain" or a bare
// user with default_domain).
func (t *Tracker) Registration(aor string) (AoRInfo, bool) {
	a, err := userAoR(aor, t.cfg.DefaultDomain)
	if err != nil {
		return AoRInfo{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.aors[a]
	if !ok {
		return AoRInfo{}, false
	}
	return t.info(st), true
}

func (t *Tracker) info(st *aorState) AoRInfo {
	in := AoRInfo{AoR: st.aor, Entity: Entity(st.aor, t.cfg.EntityPrefix),
		Contacts: append([]Binding{}, st.contacts...), Publish: t.publishOn(st.aor)}
	if v, ok := t.flags[st.aor]; ok {
		in.Flag = &v
	}
	switch {
	case st.published && st.closed:
		in.State = "closed"
	case st.published:
		in.State = "open"
	}
	return in
}

// SetFlag stores the per-user publishing flag of an AoR (written to the
// store at once) and publishes or removes its presence accordingly.
func (t *Tracker) SetFlag(ctx context.Context, aor string, on bool) error {
	a, err := userAoR(aor, t.cfg.DefaultDomain)
	if err != nil {
		return fmt.Errorf("usrloc: set flag %q: %w", aor, err)
	}
	if t.store != nil {
		if err := t.store.SetFlag(ctx, a, on); err != nil {
			return fmt.Errorf("usrloc: set flag %q: %w", a, err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flags[a] = on
	delete(t.dirtyFlags, a)
	t.resync(a)
	return nil
}

// ClearFlag forgets the per-user flag of an AoR: patterns and
// publish_default decide again.
func (t *Tracker) ClearFlag(ctx context.Context, aor string) error {
	a, err := userAoR(aor, t.cfg.DefaultDomain)
	if err != nil {
		return fmt.Errorf("usrloc: clear flag %q: %w", aor, err)
	}
	if t.store != nil {
		if err := t.store.DeleteFlag(ctx, a); err != nil {
			return fmt.Errorf("usrloc: clear flag %q: %w", a, err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.flags, a)
	delete(t.dirtyFlags, a)
	t.resync(a)
	return nil
}

// resync re-evaluates an AoR's publication after a flag change. Must hold mu.
func (t *Tracker) resync(aor string) {
	if st := t.aors[aor]; st != nil {
		t.syncPublication(st, t.clock.Now())
		t.schedule(st)
	}
}

// Flags returns the stored per-user publishing flags.
func (t *Tracker) Flags() map[string]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]bool, len(t.flags))
	for k, v := range t.flags {
		out[k] = v
	}
	return out
}
