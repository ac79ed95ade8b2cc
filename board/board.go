package board

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
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
)

// Registration states of an AoR.
const (
	RegRegistered   = "registered"
	RegUnregistered = "unregistered" // removed by a REGISTER (or never seen registered)
	RegExpired      = "expired"      // its last binding lapsed
)

// regState is an AoR's registration state as the board holds it; String
// is its name on the page.
type regState uint8

const (
	regUnregistered regState = iota
	regRegistered
	regExpired
)

var regNames = [...]string{regUnregistered: RegUnregistered, regRegistered: RegRegistered, regExpired: RegExpired}

func (r regState) String() string { return regNames[r] }

// Dialog lamps of an AoR, brightest first.
const (
	LampTalking = "talking"
	LampHeld    = "held"
	LampRinging = "ringing" // an incoming call is ringing
	LampTrying  = "trying"  // an outgoing call is being set up
	LampIdle    = "idle"
)

// lamp is a dialog lamp as the board holds it, a brighter one greater;
// String is its name on the page.
type lamp uint8

const (
	lampIdle lamp = iota
	lampTrying
	lampRinging
	lampHeld
	lampTalking
)

var lampNames = [...]string{lampIdle: LampIdle, lampTrying: LampTrying, lampRinging: LampRinging, lampHeld: LampHeld, lampTalking: LampTalking}

func (l lamp) String() string { return lampNames[l] }

// Event kinds of an AoR's recent history.
const (
	EventRegister = "register"
	EventCall     = "call"
	EventPublish  = "publish"
	EventWatcher  = "watcher"
)

// Contact is one binding of an AoR as the board shows it.
type Contact struct {
	URI       string    `json:"uri"`
	UserAgent string    `json:"ua,omitempty"`
	Expires   time.Time `json:"expires,omitzero"`
}

// Watcher is one subscriber to an AoR's state at the embedded presence
// server.
type Watcher struct {
	URI    string `json:"uri"`
	Event  string `json:"event"`
	Status string `json:"status"`
}

// Line is a shared line (BLA) as the board shows it.
type Line struct {
	AoR        string       `json:"aor"`
	Phones     []LinePhone  `json:"phones"`
	Appearance []Appearance `json:"appearances"`
}

// LinePhone is one phone registered on a shared line.
type LinePhone struct {
	Contact    string `json:"contact"`
	Subscribed bool   `json:"subscribed"`
}

// Appearance is one seized line index and the phone holding it.
type Appearance struct {
	Index   string `json:"index"`
	Contact string `json:"contact"`
	State   string `json:"state"`
	Held    bool   `json:"held,omitempty"`
}

// Observer is the board's input, as the daemon wires it: the SIP messages
// ingest delivers (SIP), the contact sets usrloc settles on (Contacts),
// the publications the trackers ask the engine for and their removals
// (Published, Removed), the engine's PUBLISH outcomes (PublishResult,
// pua.Options.OnPublishResult) and the watchers of an embedded presence
// server (Watchers). *Board implements it; each method returns at once.
// Contacts keeps the slice it is given, not a copy: the caller hands over
// a new set for each change and does not change it afterwards.
type Observer interface {
	SIP(m event.SIP)
	Contacts(aor string, contacts []Contact)
	Published(req pua.PublishRequest)
	DialogPublished(key pua.Key, d dialogdoc.Dialog)
	Removed(key pua.Key)
	PublishResult(key pua.Key, op string, res pua.Result)
	Watchers(aor string, watchers []Watcher)
}

var _ Observer = (*Board)(nil)

// LineSource lists the shared lines; the bla manager's listing adapted by
// the daemon. It is called from the board's own goroutine.
type LineSource interface {
	// Line returns the line aor; false when it is not a shared line.
	Line(aor string) (Line, bool)
	// LineAoRs lists the shared lines.
	LineAoRs() []string
}

// ServerCheck reports the presence server's reachability: nil when it
// answers (pua.Engine.ServerReady).
type ServerCheck func(ctx context.Context) error

// Options are the board's collaborators and limits.
type Options struct {
	// Logger; nil discards.
	Logger *slog.Logger
	// Metrics counts dropped clients; nil counts nothing.
	Metrics *metrics.Metrics
	// Clock; nil is the system clock.
	Clock clock.Clock
	// Lines lists the shared lines; nil shows none.
	Lines LineSource
	// Server checks the presence server; nil shows it as not watched.
	Server ServerCheck
	// ServerName names the presence server on the page.
	ServerName string
	// Coalesce is how long a client's writer waits after a change for more
	// (per-AoR coalescing); 0 means 50 ms.
	Coalesce time.Duration
	// WriteTimeout drops a client whose write does not complete in time
	// (a slow client); 0 means 5 s.
	WriteTimeout time.Duration
	// MaxClients bounds the open event streams; 0 means 64.
	MaxClients int
	// History is the number of recent events kept, for all AoRs together
	// (memory stays bounded however many AoRs there are); 0 means 20,000.
	History int
	// DetailEvents is the number of an AoR's last events its detail
	// shows; 0 means 30.
	DetailEvents int
	// Poll is how often the presence server and the shared lines are
	// looked at again; 0 means 1 s.
	Poll time.Duration
}

// Board is the live state the page shows. Its methods are safe for
// concurrent use; the observer methods never block on clients.
type Board struct {
	opts  Options
	log   *slog.Logger
	clock clock.Clock
	hub   *hub
	epoch string

	mu   sync.Mutex
	aors map[string]*aorState
	// hist is the ring of recent events of every AoR; next is the slot
	// the next event takes.
	hist []histEvent
	next int
	// dirty lists the items changed since they were last rendered into the
	// hub, in the order of their last change (see flush); others holds the
	// items of the lines and the server by hub key.
	dirty  pendingList
	others map[string]*docItem
	// renders counts the documents rendered into the hub.
	renders uint64

	linesDirty chan string
	closed     chan struct{}
	closeOnce  sync.Once
	lineMu     sync.Mutex
	lineKeys   map[string]struct{}
}

// aorState is the board's view of one AoR. A large site holds one for
// each of 100,000 AoRs, most of them registered with one binding and
// idle: that binding is held here, anything else in more.
type aorState struct {
	pend    pending // its place among the dirty items
	aor     string
	contact Contact  // its binding, when it has exactly one (one)
	more    *aorMore // nil while it has nothing more (see tidy)
	reg     regState
	one     bool // contact is its one binding
}

// aorMore is what most AoRs lack at a given time: two or more bindings, a
// call, a refused publication, watchers.
type aorMore struct {
	contacts []Contact             // its bindings, when it has two or more
	dialogs  []dialogLamp          // its dialog publications' lamps; nil when none
	pubs     map[string]PubFailure // event → last refusal; nil when none
	watchers []Watcher
}

// extra returns s.more, creating it.
func (s *aorState) extra() *aorMore {
	if s.more == nil {
		s.more = &aorMore{}
	}
	return s.more
}

// tidy drops s.more once it holds nothing.
func (s *aorState) tidy() {
	if m := s.more; m != nil && m.contacts == nil && m.dialogs == nil && m.pubs == nil && m.watchers == nil {
		s.more = nil
	}
}

// contacts returns the AoR's bindings; a single one is appended to
// buf[:0] (nil: a new slice).
func (s *aorState) contacts(buf []Contact) []Contact {
	switch {
	case s.one:
		return append(buf[:0], s.contact)
	case s.more != nil:
		return s.more.contacts
	}
	return nil
}

// setContacts makes cs the AoR's bindings, keeping cs itself when it holds
// two or more (see Observer).
func (s *aorState) setContacts(cs []Contact) {
	s.one, s.contact = len(cs) == 1, Contact{}
	switch {
	case len(cs) == 1:
		s.contact = cs[0]
	case len(cs) > 1:
		s.extra().contacts = cs
		return
	}
	if s.more != nil {
		s.more.contacts = nil
		s.tidy()
	}
}

// shown is the lamp the AoR shows: the brightest of its dialogs', the
// earliest lit of those as bright; idle without any.
func (s *aorState) shown() lampState {
	top := lampState{lamp: lampIdle}
	if s.more == nil {
		return top
	}
	for _, d := range s.more.dialogs {
		if d.lamp > top.lamp || (d.lamp == top.lamp && d.since.Before(top.since)) {
			top = d.lampState
		}
	}
	return top
}

// PubFailure is a publication the presence server refuses or that cannot
// be sent.
type PubFailure struct {
	Event  string    `json:"event"`
	Status int       `json:"status,omitempty"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Event is one entry of an AoR's recent history.
type Event struct {
	At   time.Time `json:"at"`
	Kind string    `json:"kind"`
	Text string    `json:"text"`
}

// aorDoc is the JSON document of an AoR on the stream.
type aorDoc struct {
	Kind     string       `json:"kind"`
	AoR      string       `json:"aor"`
	Domain   string       `json:"domain"`
	Reg      string       `json:"reg"`
	Contacts []Contact    `json:"contacts"`
	Lamp     string       `json:"lamp"`
	Dir      string       `json:"dir,omitempty"`
	Remote   string       `json:"remote,omitempty"`
	Since    int64        `json:"since,omitempty"` // Unix ms of the lamp's last change
	Pubs     []PubFailure `json:"pubs,omitempty"`
	Watchers int          `json:"watchers,omitempty"`
}

// serverDoc is the presence server's reachability on the stream.
type serverDoc struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Watched bool   `json:"watched"`
	Up      bool   `json:"up"`
	Error   string `json:"error,omitempty"`
}

// lineDoc is a shared line on the stream.
type lineDoc struct {
	Kind string `json:"kind"`
	Line
}

// Key prefixes of the hub's items.
const (
	keyAoR    = "a:"
	keyLine   = "l:"
	keyServer = "s:"
)

// New builds a board.
func New(opts Options) *Board {
	if opts.Coalesce <= 0 {
		opts.Coalesce = 50 * time.Millisecond
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 5 * time.Second
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = 64
	}
	if opts.History <= 0 {
		opts.History = 20000
	}
	if opts.DetailEvents <= 0 {
		opts.DetailEvents = 30
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	b := &Board{
		opts:       opts,
		log:        opts.Logger,
		clock:      clock.OrReal(opts.Clock),
		hub:        newHub(),
		aors:       make(map[string]*aorState),
		others:     make(map[string]*docItem),
		linesDirty: make(chan string, 1),
		closed:     make(chan struct{}),
		lineKeys:   make(map[string]struct{}),
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	b.epoch = strconv.FormatInt(b.clock.Now().UnixNano(), 36)
	b.setServer(nil, opts.Server != nil)
	return b
}

// Run watches the presence server and refreshes the shared lines until ctx
// ends.
func (b *Board) Run(ctx context.Context) error {
	t := time.NewTicker(b.opts.Poll)
	defer t.Stop()
	b.poll(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			b.poll(ctx)
		case <-b.linesDirty:
			b.refreshLines()
		}
	}
}

// Close ends every open event stream (the pages reconnect), so that the
// management server can shut down without waiting for them.
func (b *Board) Close() {
	b.closeOnce.Do(func() { close(b.closed) })
}

// poll checks the presence server and lists every shared line.
func (b *Board) poll(ctx context.Context) {
	if b.opts.Server != nil {
		b.setServer(b.opts.Server(ctx), true)
	}
	if b.opts.Lines == nil {
		return
	}
	b.lineMu.Lock()
	for _, a := range b.opts.Lines.LineAoRs() {
		b.lineKeys[a] = struct{}{}
	}
	b.lineMu.Unlock()
	b.refreshLines()
}

// refreshLines reads every known line again from the source.
func (b *Board) refreshLines() {
	if b.opts.Lines == nil {
		return
	}
	b.lineMu.Lock()
	keys := make([]string, 0, len(b.lineKeys))
	for k := range b.lineKeys {
		keys = append(keys, k)
	}
	b.lineMu.Unlock()
	for _, a := range keys {
		ln, ok := b.opts.Lines.Line(a)
		if !ok {
			b.lineMu.Lock()
			delete(b.lineKeys, a)
			b.lineMu.Unlock()
			b.change(keyLine+a, nil)
			continue
		}
		if ln.Phones == nil {
			ln.Phones = []LinePhone{}
		}
		if ln.Appearance == nil {
			ln.Appearance = []Appearance{}
		}
		b.change(keyLine+a, lineDoc{Kind: "line", Line: ln})
	}
}

// lineChanged asks Run to read line aor again.
func (b *Board) lineChanged(aor string) {
	b.lineMu.Lock()
	b.lineKeys[aor] = struct{}{}
	b.lineMu.Unlock()
	select {
	case b.linesDirty <- aor:
	default:
	}
}

func (b *Board) setServer(err error, watched bool) {
	d := serverDoc{Kind: "server", Name: b.opts.ServerName, Watched: watched, Up: watched && err == nil}
	if err != nil {
		d.Error = err.Error()
	}
	b.change(keyServer, d)
}

// state returns the AoR's state, creating it. b.mu held.
func (b *Board) state(a string) *aorState {
	s, _ := b.stateNew(a)
	return s
}

// stateNew returns the AoR's state, creating it (created true). b.mu
// held.
func (b *Board) stateNew(a string) (s *aorState, created bool) {
	s = b.aors[a]
	if s == nil {
		s = &aorState{aor: a} // unregistered, idle
		s.pend.state = s
		b.aors[a] = s
		created = true
	}
	return s, created
}

// histEvent is one event of the shared history ring. Its text is kept
// in parts and built when a detail shows it (see event).
type histEvent struct {
	aor  string
	at   time.Time
	kind string
	form histForm
	// text is the line (histPlain), a PUBLISH's reason or error
	// (histPublish, histPublishErr) or a SIP response's reason; ev and op
	// are the PUBLISH's event and operation, or the response's Call-ID and
	// CSeq method; n is the status code, or the number of watchers
	// (histWatchers).
	text, ev, op string
	n            int
}

// histForm is how a history event's text is built from its parts.
type histForm uint8

const (
	histPlain        histForm = iota // text as it is
	histPublish                      // "PUBLISH ev (op) → n text"
	histPublishErr                   // "PUBLISH ev (op) → text"
	histWatchers                     // "n watcher(s)"
	histResponse                     // a SIP response: "n text (op)", clipped
	histResponseCall                 // a call's response: "n text (op) Call-ID ev", clipped
)

// event is the history event as a detail shows it.
func (e *histEvent) event() Event {
	text := e.text
	switch e.form {
	case histPublish:
		text = "PUBLISH " + e.ev + " (" + e.op + ") → " + strconv.Itoa(e.n) + " " + e.text
	case histPublishErr:
		text = "PUBLISH " + e.ev + " (" + e.op + ") → " + e.text
	case histWatchers:
		text = strconv.Itoa(e.n) + " watcher(s)"
	case histResponse:
		text = clip(strconv.Itoa(e.n) + " " + e.text + " (" + e.op + ")")
	case histResponseCall:
		text = clip(strconv.Itoa(e.n) + " " + e.text + " (" + e.op + ") Call-ID " + e.ev)
	}
	return Event{At: e.at, Kind: e.kind, Text: text}
}

// note adds an event of s to the history, overwriting the oldest once
// the ring is full. b.mu held.
func (b *Board) note(a, kind, text string) {
	b.noteEvent(histEvent{aor: a, kind: kind, text: text})
}

// noteEvent adds ev to the history at the current time. b.mu held.
func (b *Board) noteEvent(ev histEvent) {
	ev.at = b.clock.Now()
	if len(b.hist) < b.opts.History {
		b.hist = append(b.hist, ev)
		return
	}
	b.hist[b.next] = ev
	b.next = (b.next + 1) % len(b.hist)
}

// eventsOf returns the last DetailEvents events of aor, oldest first.
// b.mu held.
func (b *Board) eventsOf(a string) []Event {
	out := []Event{}
	n := len(b.hist)
	for i := 1; i <= n && len(out) < b.opts.DetailEvents; i++ {
		j := b.next - i
		if len(b.hist) < b.opts.History {
			j = n - i // not yet wrapped
		} else if j < 0 {
			j += n
		}
		if b.hist[j].aor == a {
			out = append(out, b.hist[j].event())
		}
	}
	slices.Reverse(out)
	return out
}

// pending is an item of the hub on the list of those changed since they
// were last rendered: an AoR (state, rendered from its state, under
// keyAoR and its name) or a line or the server (item).
type pending struct {
	prev, next *pending
	state      *aorState
	item       *docItem
}

// docItem is a line or the server: its hub key and the document to encode
// (nil removes the item).
type docItem struct {
	pend pending
	key  string
	doc  any
}

// pendingList is the dirty items in the order of their last change.
type pendingList struct{ head, tail *pending }

// has reports whether p is on the list.
func (l *pendingList) has(p *pending) bool { return p.prev != nil || l.head == p }

func (l *pendingList) remove(p *pending) {
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		l.head = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	} else {
		l.tail = p.prev
	}
	p.prev, p.next = nil, nil
}

func (l *pendingList) push(p *pending) {
	p.prev, p.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = p
	} else {
		l.head = p
	}
	l.tail = p
}

// mark queues p as changed (last, keeping the order of the changes) and,
// when it was not queued yet, wakes the watching clients, whose writers
// render it (flush). Nothing is rendered here: while nobody watches, a
// change costs a few pointers. b.mu held.
func (b *Board) mark(p *pending) {
	if b.dirty.has(p) {
		b.dirty.remove(p)
		b.dirty.push(p)
		return
	}
	b.dirty.push(p)
	b.hub.wake()
}

// publish marks s changed. b.mu held.
func (b *Board) publish(s *aorState) { b.mark(&s.pend) }

// change marks the line or server item key changed to doc (nil: removed).
func (b *Board) change(key string, doc any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	it := b.others[key]
	if it == nil {
		it = &docItem{key: key}
		it.pend.item = it
		b.others[key] = it
	}
	it.doc = doc
	b.mark(&it.pend)
}

// flushChunk is the number of items flush renders per hold of b.mu, so
// that rendering a long list (a client connecting after a busy hour
// nobody watched) lets the observers in between.
const flushChunk = 256

// flush renders every dirty item into the hub, oldest change first, so
// that the hub holds what it would hold had every change been rendered at
// once: the same documents in the same order, an unchanged one still no
// change. The clients' writers call it before they read the hub.
func (b *Board) flush() {
	for {
		b.mu.Lock()
		for n := 0; n < flushChunk && b.dirty.head != nil; n++ {
			p := b.dirty.head
			b.dirty.remove(p)
			b.render(p)
		}
		done := b.dirty.head == nil
		b.mu.Unlock()
		if done {
			return
		}
	}
}

// render sets p's document in the hub. b.mu held.
func (b *Board) render(p *pending) {
	switch it := p.item; {
	case p.state != nil:
		b.hub.setPrefixed(keyAoR, p.state.aor, mustJSON(b.doc(p.state)))
	case it.doc == nil:
		b.hub.set(it.key, nil)
		if strings.HasPrefix(it.key, keyLine) {
			delete(b.others, it.key) // a line gone; the server stays
		}
		return
	default:
		b.hub.set(it.key, mustJSON(it.doc))
	}
	b.renders++
}

func (b *Board) doc(s *aorState) aorDoc {
	l := s.shown()
	d := aorDoc{Kind: "aor", AoR: s.aor, Domain: aor.Domain(s.aor), Reg: s.reg.String(), Contacts: s.contacts(nil),
		Lamp: l.lamp.String(), Dir: l.dir, Remote: l.remote}
	if d.Contacts == nil {
		d.Contacts = []Contact{}
	}
	if !l.since.IsZero() {
		d.Since = l.since.UnixMilli()
	}
	if m := s.more; m != nil {
		d.Watchers = len(m.watchers)
		for _, p := range m.pubs {
			d.Pubs = append(d.Pubs, p)
		}
	}
	slices.SortFunc(d.Pubs, func(x, y PubFailure) int { return strings.Compare(x.Event, y.Event) })
	return d
}

// Contacts is the AoR's new set of bindings (empty when none is left), as
// the usrloc tracker settles on it. An empty set after bindings whose
// expiry has passed is "expired", otherwise "unregistered". The board
// keeps cs: the caller must not change it afterwards.
func (b *Board) Contacts(a string, cs []Contact) {
	now := b.clock.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.state(a)
	var buf [1]Contact
	switch old := s.contacts(buf[:0]); {
	case len(cs) > 0:
		s.reg = regRegistered
	case len(old) > 0:
		s.reg = regUnregistered
		lapsed := true
		for _, c := range old {
			if c.Expires.IsZero() || c.Expires.After(now.Add(time.Second)) {
				lapsed = false
			}
		}
		if lapsed {
			s.reg = regExpired
			b.note(s.aor, EventRegister, "bindings expired")
		}
	}
	s.setContacts(cs)
	b.publish(s)
}

// Message records a SIP message about the AoR (a REGISTER, a call request
// or response) in the recent history, without changing its lamp. It does
// not add the AoR to the board (a call's other party may be anyone): the
// history is shown once the AoR registers or publishes.
func (b *Board) Message(a, kind, text string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.note(a, kind, text)
}

// Published observes a publication a tracker asks the engine for: a
// dialog document sets the AoR's lamp, a dialog;sla one refreshes its
// shared line.
func (b *Board) Published(req pua.PublishRequest) {
	switch ev := strings.ToLower(req.Event); {
	case ev == "dialog":
		doc, err := dialogdoc.Parse(req.Body, 0)
		if err != nil {
			b.log.Debug("board: dialog document not shown", "aor", req.PresURI, "err", err)
			return
		}
		b.setLamp(req.PresURI, req.ID, doc.Dialogs)
	case strings.HasPrefix(ev, "dialog;"):
		b.lineChanged(req.PresURI)
	}
}

// DialogPublished observes a dialog publication from the tracker that
// holds its dialog: the lamp is set from it, without parsing the document
// (the publisher handing the board such publications leaves them out of
// Published).
func (b *Board) DialogPublished(key pua.Key, d dialogdoc.Dialog) {
	b.setLamp(key.PresURI, key.ID, []dialogdoc.Dialog{d})
}

// Removed observes the removal of a publication: a dialog lamp goes idle.
func (b *Board) Removed(key pua.Key) {
	switch ev := strings.ToLower(key.Event); {
	case ev == "dialog":
		b.setLamp(key.PresURI, key.ID, nil)
	case strings.HasPrefix(ev, "dialog;"):
		b.lineChanged(key.PresURI)
	}
}

// lampOf is the lamp of one dialog.
func lampOf(d dialogdoc.Dialog) lamp {
	switch d.State {
	case "confirmed":
		if d.OnHold() {
			return lampHeld
		}
		return lampTalking
	case "early", "proceeding":
		if d.Direction == "initiator" {
			return lampTrying
		}
		return lampRinging
	case "trying":
		if d.Direction == "recipient" {
			return lampRinging
		}
		return lampTrying
	}
	return lampIdle
}

// lampState is the lamp of one dialog publication of an AoR.
type lampState struct {
	lamp        lamp
	dir, remote string
	since       time.Time
}

// dialogLamp is the lamp of the dialog publication id. An AoR has few at
// a time (one a call), so they are a slice, nil when there is none.
type dialogLamp struct {
	id string
	lampState
}

// setLamp sets the lamp of one of the AoR's dialog publications (id is
// its publication id, dialogs its dialogs; none: removed); the AoR shows
// the brightest.
func (b *Board) setLamp(a, id string, dialogs []dialogdoc.Dialog) {
	ls := lampState{lamp: lampIdle}
	for _, d := range dialogs {
		l := lampOf(d)
		if l <= ls.lamp {
			continue
		}
		ls.lamp, ls.dir, ls.remote = l, d.Direction, ""
		if d.Remote != nil {
			ls.remote = d.Remote.Identity
			if d.Remote.Display != "" {
				ls.remote = d.Remote.Display + " <" + d.Remote.Identity + ">"
			}
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.state(a)
	var ds []dialogLamp
	if s.more != nil {
		ds = s.more.dialogs
	}
	was := s.shown()
	i := slices.IndexFunc(ds, func(d dialogLamp) bool { return d.id == id })
	switch {
	case ls.lamp == lampIdle:
		if i >= 0 {
			if ds = slices.Delete(ds, i, i+1); len(ds) == 0 {
				ds = nil
			}
			s.more.dialogs = ds
		}
	case i >= 0 && ds[i].lamp == ls.lamp:
		ds[i].dir, ds[i].remote = ls.dir, ls.remote
	case i >= 0:
		ls.since = b.clock.Now()
		ds[i].lampState = ls
	default:
		m := s.extra()
		ls.since = b.clock.Now()
		m.dialogs = append(m.dialogs, dialogLamp{id: id, lampState: ls})
	}
	s.tidy()
	if now := s.shown(); now.lamp == was.lamp && now.dir == was.dir && now.remote == was.remote && now.since.Equal(was.since) {
		return
	}
	b.publish(s)
}

// PublishResult observes the final outcome of one PUBLISH: a refusal or a
// transport failure is shown on the AoR with its SIP code and reason until
// a later PUBLISH of the event succeeds.
func (b *Board) PublishResult(key pua.Key, op string, res pua.Result) {
	ok := res.Err == nil && res.Status >= 200 && res.Status < 300
	ev := histEvent{kind: EventPublish, form: histPublish, text: res.Reason, ev: key.Event, op: op, n: res.Status}
	if res.Err != nil && res.Status == 0 {
		ev.form, ev.text = histPublishErr, res.Err.Error()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s, changed := b.stateNew(key.PresURI)
	ev.aor = s.aor
	b.noteEvent(ev)
	event := strings.ToLower(key.Event)
	if ok {
		if m := s.more; m != nil {
			if _, refused := m.pubs[event]; refused {
				delete(m.pubs, event)
				if len(m.pubs) == 0 {
					m.pubs = nil
					s.tidy()
				}
				changed = true
			}
		}
	} else {
		m := s.extra() // most AoRs never have a refusal
		if m.pubs == nil {
			m.pubs = make(map[string]PubFailure)
		}
		m.pubs[event] = PubFailure{Event: event, Status: res.Status, Reason: ev.text, At: b.clock.Now()}
		changed = true
	}
	if changed {
		b.publish(s)
	}
}

// Watchers is the hook of the embedded presence server (package pa, when
// it is on): its source calls it with the watchers of the AoR's state
// whenever they change (nil when none is left), and the board shows their
// number on the AoR's row and the list in its detail. Until a source is
// wired the board shows no watchers.
func (b *Board) Watchers(a string, ws []Watcher) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, created := b.stateNew(a)
	var had []Watcher
	if s.more != nil {
		had = s.more.watchers
	}
	changed := created || len(ws) != len(had) // the row shows their number
	if len(ws) != len(had) {
		b.noteEvent(histEvent{aor: s.aor, kind: EventWatcher, form: histWatchers, n: len(ws)})
	}
	if len(ws) > 0 {
		s.extra().watchers = slices.Clone(ws)
	} else if s.more != nil {
		s.more.watchers = nil
		s.tidy()
	}
	if changed {
		b.publish(s)
	}
}

// Detail is one AoR with its recent history, for the page's detail panel.
type Detail struct {
	aorDoc
	Watchers []Watcher `json:"watcher_list"`
	Events   []Event   `json:"events"`
}

// Detail returns one AoR; false when the board has never seen it.
func (b *Board) Detail(a string) (Detail, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.aors[a]
	if s == nil {
		return Detail{}, false
	}
	d := Detail{aorDoc: b.doc(s), Events: b.eventsOf(a)}
	if s.more != nil {
		d.Watchers = slices.Clone(s.more.watchers)
	}
	if d.Watchers == nil {
		d.Watchers = []Watcher{}
	}
	return d, true
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("board: encode %T: %v", v, err)) // only plain structs are encoded
	}
	return b
}
