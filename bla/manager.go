package bla

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"sort"
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

// ContentType is the content type of dialog;sla bodies.
const ContentType = dialogdoc.ContentType

// Errors of the management API.
var (
	// ErrStaticLine is returned when the management API tries to change a
	// line that is configured in the YAML file.
	ErrStaticLine = errors.New("line is configured in the YAML file")
	// ErrUnknownLine is returned for an AoR that is not a shared line.
	ErrUnknownLine = errors.New("unknown shared line")
	// ErrNoStore is returned by AddLine and RemoveLine without a LineStore.
	ErrNoStore = errors.New("no database for shared lines")
)

// Sources of a line (LineInfo.Source).
const (
	SourceConfig = "config"
	SourceDB     = "db"
)

// Contact is one registered contact of an AoR, as reported by the usrloc
// change feed.
type Contact struct {
	// URI is the contact URI (angle brackets and header parameters allowed).
	URI string
	// Expires is when the binding expires; zero means no known expiry.
	Expires time.Time
	// Received is the source address the REGISTER came from when it differs
	// from the contact (NAT), as a SIP URI or host:port; empty if none.
	Received string
}

// Subscriber holds subscriptions open; implemented by *pua.Engine.
type Subscriber interface {
	Subscribe(pua.SubscribeRequest) error
	Unsubscribe(pua.SubKey) error
}

// Publisher publishes event state; implemented by *pua.Engine.
type Publisher interface {
	Publish(pua.PublishRequest) error
	Remove(pua.Key) error
}

// LineStore keeps the shared lines added through the management API;
// implemented by *store.DB (table puaside_shared_lines).
type LineStore interface {
	// LoadSharedLines returns line AoR → member URIs.
	LoadSharedLines(ctx context.Context) (map[string][]string, error)
	// SaveSharedLine creates or replaces a line.
	SaveSharedLine(ctx context.Context, aor string, members []string) error
	// DeleteSharedLine removes a line and reports whether it existed.
	DeleteSharedLine(ctx context.Context, aor string) (bool, error)
}

// Options are the Manager's collaborators.
type Options struct {
	// Subscriber and Publisher are the PUA engine (required).
	Subscriber Subscriber
	Publisher  Publisher
	// Store keeps lines added at run time; nil disables AddLine/RemoveLine.
	Store LineStore
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *metrics.Metrics
	// Clock reads the time (seize timeouts, entity versions) and arms the
	// resubscribe waits; nil is the wall clock. Tests inject
	// clocktest.Fake.
	Clock clock.Clock
}

// LineInfo is a snapshot of one shared line for the management API.
type LineInfo struct {
	// AoR is the line's address of record.
	AoR string `json:"aor"`
	// Source is SourceConfig or SourceDB.
	Source string `json:"source"`
	// Members are the configured member URIs (empty: every contact).
	Members []string `json:"members"`
	// Phones are the contacts subscribed to, in contact order.
	Phones []PhoneInfo `json:"phones"`
	// Seized are the line indexes held by a phone, by index.
	Seized []SeizedIndex `json:"seized"`
}

// PhoneInfo is one subscribed contact of a line.
type PhoneInfo struct {
	// ID is the stable id of the contact (subscription and publication id).
	ID string `json:"id"`
	// Contact is the registered contact URI.
	Contact string `json:"contact"`
	// Expires is the registration's expiry (zero if unknown).
	Expires time.Time `json:"expires,omitzero"`
	// Subscribed is true when a subscription was requested from the engine.
	Subscribed bool `json:"subscribed"`
	// Published is true when the phone's state is published.
	Published bool `json:"published"`
	// LastNotify is when the last accepted NOTIFY arrived.
	LastNotify time.Time `json:"last_notify,omitzero"`
	// Dialogs is the number of live dialogs the phone reports.
	Dialogs int `json:"dialogs"`
	// SubscriptionState is the engine's state of the phone's subscription
	// (pending, active, retrying, failed), empty when there is none.
	SubscriptionState string `json:"subscription_state,omitempty"`
}

// SeizedIndex is a line index held by a phone.
type SeizedIndex struct {
	// Index is the line index (x-line-id or appearance).
	Index string `json:"index"`
	// PhoneID and Contact name the phone holding it.
	PhoneID string `json:"phone_id"`
	Contact string `json:"contact"`
	// DialogID and State are the phone's dialog on the index.
	DialogID string `json:"dialog_id"`
	State    string `json:"state"`
	// Held is true when the phone reports the call on hold.
	Held bool `json:"held"`
}

// Manager is the BLA manager. Its methods are safe for concurrent use.
type Manager struct {
	cfg   Config
	sub   Subscriber
	pub   Publisher
	store LineStore
	log   *slog.Logger
	m     *metrics.Metrics
	now   func() time.Time
	// retry holds the phones waiting to be subscribed again after a
	// subscription ended with probation or giveup.
	retry *sched.Scheduler[*phone]

	// loaded is closed when the lines of the database are in lines (at
	// once without a LineStore): a NOTIFY for a line not known yet waits
	// for it rather than being refused.
	loaded   chan struct{}
	loadOnce sync.Once

	mu    sync.Mutex
	lines map[string]*line
}

type line struct {
	aor      string
	source   string
	members  []string
	match    []aor.Address
	contacts []Contact
	phones   map[string]*phone

	// version is the version of the line's last composed document.
	version uint64
	// published is set while the line's composed document is published;
	// mayBePublished for a line restored at start, whose publication from
	// before the restart may still be refreshed by the engine.
	published, mayBePublished bool
}

type phone struct {
	id         string
	contact    string
	proxy      string
	expires    time.Time
	subscribed bool
	published  bool
	lastNotify time.Time
	dialogs    map[string]dialogdoc.Dialog // by the phone's own dialog id
	namespaces map[string]string           // of the phone's documents' roots
	seizedAt   map[string]time.Time        // dialog id → when it was first seen trying

	// The subscription's dialog-info sequence: the Call-ID of the dialog
	// the last document came in, its version (valid when haveVersion).
	subCallID   string
	version     uint64
	haveVersion bool
	// haveBase is set once a document of the dialog was applied: dialogs
	// is then the state a partial document updates.
	haveBase bool

	// noResubscribe is set when the phone ended its subscription with a
	// reason that forbids subscribing again (rejected, noresource,
	// invariant); it holds while the contact stays registered.
	noResubscribe bool
	// resubscribeAt is when a subscription ended with probation or giveup
	// is tried again (zero: not waiting); retry is its place in the
	// Manager's timer heap.
	resubscribeAt time.Time
	retry         sched.Entry
	// line is the AoR of the phone's line (the resubscribe wait finds the
	// line by it).
	line string
	// lastTerminated is when the phone last ended its subscription with a
	// reason that allows subscribing again at once.
	lastTerminated time.Time
}

// New returns a Manager for the configured lines. Call Load to add the
// lines kept in the database.
func New(cfg Config, opts Options) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bla: %w", err)
	}
	if opts.Subscriber == nil || opts.Publisher == nil {
		return nil, fmt.Errorf("bla: new: Subscriber and Publisher are required")
	}
	m := &Manager{
		cfg:    cfg,
		sub:    opts.Subscriber,
		pub:    opts.Publisher,
		store:  opts.Store,
		log:    opts.Logger,
		m:      opts.Metrics,
		now:    clock.OrReal(opts.Clock).Now,
		lines:  make(map[string]*line),
		loaded: make(chan struct{}),
	}
	if m.store == nil {
		m.markLoaded()
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.retry = sched.New(opts.Clock, m.resubscribeDue)
	for _, lc := range cfg.Lines {
		ln, err := m.newLine(lc.AoR, lc.Members, SourceConfig)
		if err != nil {
			return nil, fmt.Errorf("bla: new: %w", err)
		}
		m.lines[ln.aor] = ln
	}
	return m, nil
}

func (m *Manager) newLine(aor string, members []string, source string) (*line, error) {
	naor, err := lineKey(aor, m.cfg.DefaultDomain)
	if err != nil {
		return nil, fmt.Errorf("line %q: %w", aor, err)
	}
	ln := &line{aor: naor, source: source, phones: make(map[string]*phone)}
	if err := ln.setMembers(members, m.cfg.DefaultDomain); err != nil {
		return nil, fmt.Errorf("line %s: %w", naor, err)
	}
	return ln, nil
}

func (ln *line) setMembers(members []string, defaultDomain string) error {
	ln.members = ln.members[:0]
	ln.match = ln.match[:0]
	seen := make(map[string]bool)
	for _, mem := range members {
		a, err := memberAddress(mem, defaultDomain)
		if err != nil {
			return fmt.Errorf("member %q: %w", mem, err)
		}
		n := a.String()
		if seen[n] {
			continue
		}
		seen[n] = true
		ln.members = append(ln.members, n)
		ln.match = append(ln.match, a)
	}
	return nil
}

// Load adds the lines kept in the database. A database line with the AoR of
// a configured line is ignored (the YAML file wins) with a warning. Until
// Load returns, a NOTIFY for a line that is not configured in the YAML file
// waits (see HandleNotify).
func (m *Manager) Load(ctx context.Context) error {
	if m.store == nil {
		return nil
	}
	defer m.markLoaded()
	stored, err := m.store.LoadSharedLines(ctx)
	if err != nil {
		return fmt.Errorf("bla: load lines: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for aor, members := range stored {
		ln, err := m.newLine(aor, members, SourceDB)
		if err != nil {
			m.log.Warn("bla: stored shared line ignored", "aor", aor, "err", err)
			m.m.Tracker("bla", "rejected_stored_line")
			continue
		}
		if old, ok := m.lines[ln.aor]; ok {
			if old.source == SourceConfig {
				m.log.Warn("bla: stored shared line shadowed by the configuration", "aor", ln.aor)
			}
			continue
		}
		m.lines[ln.aor] = ln
	}
	return nil
}

// RestoreSubscriptions takes over the engine's stored dialog;sla
// subscriptions after a restart (Engine.Subscriptions()), so that contacts
// that are gone are unsubscribed on the next change of their line.
// Subscriptions of lines that no longer exist are ended at once.
func (m *Manager) RestoreSubscriptions(subs []pua.SubscriptionInfo) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range subs {
		if s.Flag != pua.FlagBLASubscribe || s.Key.Event != m.cfg.Event {
			continue
		}
		ln := m.lines[s.Key.PresURI]
		if ln == nil {
			m.log.Info("bla: ending subscription of a removed line", "aor", s.Key.PresURI, "event", s.Key.Event)
			if err := m.sub.Unsubscribe(s.Key); err != nil {
				m.log.Warn("bla: unsubscribe", "aor", s.Key.PresURI, "err", err)
			}
			_ = m.pub.Remove(m.legacyPubKey(s.Key.PresURI, s.Key.ID)) // may not exist
			_ = m.pub.Remove(m.linePubKey(s.Key.PresURI))
			continue
		}
		// A phone's own publication, as made before the line's state was
		// composed, is claimed by nobody: the engine's sweep at start
		// removes it at the presence server.
		ln.mayBePublished = true
		if _, ok := ln.phones[s.Key.ID]; ok {
			continue
		}
		// With a server_address Contact override, let the next reconcile
		// hand the engine the full request again (the override is not
		// stored): the engine refreshes the dialog in place with it.
		ln.phones[s.Key.ID] = &phone{id: s.Key.ID, contact: s.Target, subscribed: m.cfg.ServerAddress == "",
			dialogs: map[string]dialogdoc.Dialog{}}
	}
}

// ContactID is the stable id of a phone contact: the pres_id of its
// subscription and publication.
func ContactID(contactURI string) string {
	sum := sha256.Sum256([]byte(aor.AddrSpec(contactURI)))
	return "bla-" + hex.EncodeToString(sum[:8])
}

// ContactsChanged is the usrloc change feed: contacts is the complete set
// of registered contacts of aor. For a shared line, every (member) contact
// gets a subscription, and contacts that are gone lose theirs and their
// publication. Contacts that stay are left alone.
func (m *Manager) ContactsChanged(ctx context.Context, aor string, contacts []Contact) {
	naor, err := lineKey(aor, m.cfg.DefaultDomain)
	if err != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ln := m.lines[naor]
	if ln == nil {
		return
	}
	ln.contacts = append(ln.contacts[:0:0], contacts...)
	m.reconcile(ctx, ln)
}

// reconcile makes the line's subscriptions match its contacts. m.mu is held.
func (m *Manager) reconcile(ctx context.Context, ln *line) {
	now := m.now()
	want := make(map[string]Contact)
	for _, c := range ln.contacts {
		uri := aor.AddrSpec(c.URI)
		// Expiry is usrloc's job (it reports expired contacts as gone); the
		// Expires seen here is not updated by plain re-registrations.
		if uri == "" || !ln.isMember(uri) {
			continue
		}
		c.URI = uri
		want[ContactID(uri)] = c
	}
	for _, id := range sortedKeys(ln.phones) {
		if _, ok := want[id]; !ok {
			m.dropPhone(ln, ln.phones[id], "contact gone")
		}
	}
	for _, id := range sortedKeys(want) {
		c := want[id]
		proxy := m.proxyFor(c)
		p := ln.phones[id]
		if p != nil && (p.noResubscribe || !p.resubscribeAt.IsZero()) {
			// Ended by the phone: not again (rejected), or not yet (probation).
			p.expires = c.Expires
			continue
		}
		if p != nil && p.subscribed && p.proxy == proxy {
			if !m.subscriptionLost(ln.aor, id) {
				p.expires = c.Expires
				continue
			}
			m.m.Tracker("bla", "resubscribe_failed")
			m.log.LogAttrs(ctx, slog.LevelInfo, "bla: subscription refused or lost, subscribing again",
				slog.String("aor", ln.aor), slog.String("contact", c.URI))
		}
		req := pua.SubscribeRequest{
			SubKey:        m.subKey(ln.aor, id),
			Target:        c.URI,
			Expires:       m.subscribeExpires(c.Expires, now),
			OutboundProxy: proxy,
			Flag:          pua.FlagBLASubscribe,
		}
		req.Contact = m.cfg.ServerAddress
		if p == nil {
			p = &phone{id: id, dialogs: map[string]dialogdoc.Dialog{}}
			ln.phones[id] = p
		}
		p.contact, p.proxy, p.expires = c.URI, proxy, c.Expires
		if err := m.sub.Subscribe(req); err != nil {
			m.log.LogAttrs(ctx, slog.LevelWarn, "bla: subscribe failed", slog.String("aor", ln.aor),
				slog.String("contact", c.URI), slog.String("event", m.cfg.Event), slog.Any("err", err))
			m.m.Tracker("bla", "subscribe_error")
			p.subscribed = false
			continue
		}
		p.subscribed = true
		m.m.Tracker("bla", "subscribe")
		m.log.LogAttrs(ctx, slog.LevelDebug, "bla: subscribe", slog.String("aor", ln.aor),
			slog.String("contact", c.URI), slog.Duration("expires", req.Expires))
	}
}

// dropPhone ends a phone's subscription and publication. m.mu is held.
func (m *Manager) dropPhone(ln *line, p *phone, why string) {
	m.cancelResubscribe(p)
	if p.subscribed {
		if err := m.sub.Unsubscribe(m.subKey(ln.aor, p.id)); err != nil {
			m.log.Warn("bla: unsubscribe failed", "aor", ln.aor, "contact", p.contact, "err", err)
		}
		m.m.Tracker("bla", "unsubscribe")
	}
	m.log.Debug("bla: phone dropped", "aor", ln.aor, "contact", p.contact, "reason", why)
	delete(ln.phones, p.id)
	if p.haveBase || len(p.dialogs) > 0 || len(ln.phones) == 0 {
		// Its dialogs leave the line's document. (A line restored at start
		// keeps its publication until a remaining phone reports.)
		m.lineChanged(context.Background(), ln, why)
	}
}

func (m *Manager) subKey(aor, id string) pua.SubKey {
	return pua.SubKey{PresURI: aor, WatcherURI: aor, Event: m.cfg.Event, ID: id}
}

// proxyFor is the next hop for the SUBSCRIBEs to a contact.
func (m *Manager) proxyFor(c Contact) string {
	if m.cfg.OutboundProxy != "" {
		return m.cfg.OutboundProxy
	}
	r := strings.TrimSpace(c.Received)
	if r == "" {
		return ""
	}
	if !hasSIPScheme(r) {
		// A sips: contact is reached over TLS only, at its received address too.
		if strings.HasPrefix(strings.ToLower(strings.TrimLeft(c.URI, "<")), "sips:") {
			return "sips:" + r
		}
		r = "sip:" + r
	}
	return r
}

// subscribeExpires is min(subscribe_expires, the contact's remaining
// lifetime), rounded up to a second.
func (m *Manager) subscribeExpires(exp, now time.Time) time.Duration {
	d := m.cfg.SubscribeExpires
	if exp.IsZero() {
		return d
	}
	rem := exp.Sub(now)
	rem = (rem + time.Second - 1).Truncate(time.Second)
	if rem > 0 && rem < d {
		return rem
	}
	return d
}

// HandleNotify is the pua.NotifyHandler for pua.FlagBLASubscribe: it relays
// a phone's NOTIFY as a PUBLISH of the line's state, or refuses it with a
// precise code (400 malformed, 413 too large, 415 wrong content type, 409
// seize conflict, 481 unknown line).
func (m *Manager) HandleNotify(ctx context.Context, n pua.Notify) (code int, reason string) {
	lineURI, id := n.Key.PresURI, n.Key.ID
	st := strings.ToLower(strings.TrimSpace(n.State))
	switch st {
	case "terminated":
		return m.terminated(ctx, n)
	case "active", "pending":
	default:
		return m.reject(ctx, n, 400, "Bad Subscription-State", "bad_state", fmt.Errorf("subscription state %q", n.State))
	}
	if len(bytes.TrimSpace(n.Body)) == 0 {
		if st == "pending" {
			return 200, "OK" // no state to show yet
		}
		return m.reject(ctx, n, 400, "Empty dialog-info body", "empty_body", dialogdoc.ErrEmptyBody)
	}
	if len(n.Body) > m.cfg.MaxBodySize {
		return m.reject(ctx, n, 413, "Request Entity Too Large", "too_large",
			fmt.Errorf("%w: %d bytes, limit %d", dialogdoc.ErrTooLarge, len(n.Body), m.cfg.MaxBodySize))
	}
	if mt, _, err := mime.ParseMediaType(n.ContentType); err != nil || mt != ContentType {
		return m.reject(ctx, n, 415, "Unsupported Media Type", "content_type",
			fmt.Errorf("content type %q, want %s", n.ContentType, ContentType))
	}
	doc, err := dialogdoc.Parse(n.Body, m.cfg.MaxBodySize)
	if err != nil {
		what := "malformed"
		if errors.Is(err, dialogdoc.ErrDoctype) {
			what = "doctype"
		}
		return m.reject(ctx, n, 400, "Malformed dialog-info body", what, err)
	}
	for i, d := range doc.Dialogs {
		// An id the phone took from a composed document is its own again.
		if own := unqualifyID(id, d.ID); own != d.ID {
			doc.Dialogs[i] = d.WithID(own)
		}
	}
	expires := time.Duration(n.Expires) * time.Second
	if n.Expires <= 0 {
		expires = m.cfg.SubscribeExpires
		m.m.Tracker("bla", "missing_expires")
		m.log.LogAttrs(ctx, slog.LevelInfo, "bla: NOTIFY without Subscription-State expires, using subscribe_expires",
			slog.String("aor", lineURI), slog.String("call_id", headerOf(n, "Call-ID")), slog.Duration("expires", expires))
	}

	ln, err := m.lockLine(ctx, lineURI)
	defer m.mu.Unlock()
	if err != nil {
		return m.reject(ctx, n, 500, "Server Internal Error", "lines_not_loaded", err)
	}
	if ln == nil {
		return m.reject(ctx, n, 481, "Subscription Does Not Exist", "unknown_line", ErrUnknownLine)
	}
	p := ln.phones[id]
	sender := aor.AddrSpec(n.Contact)
	if sender == "" && p != nil {
		sender = p.contact
	}
	if sender == "" {
		return m.reject(ctx, n, 400, "Missing Contact", "no_contact", errors.New("NOTIFY without Contact"))
	}
	callID := headerOf(n, "Call-ID")
	if p != nil && p.subCallID != callID {
		p.subCallID = callID // a new subscription dialog: a new sequence
		p.haveVersion, p.haveBase = false, false
	}
	if p != nil && p.haveVersion && doc.HasVersion && doc.Version <= p.version {
		m.m.Tracker("bla", "ignored_old_version")
		m.log.LogAttrs(ctx, slog.LevelInfo, "bla: NOTIFY ignored, dialog-info version not newer",
			slog.String("aor", lineURI), slog.String("call_id", callID), slog.String("contact", sender),
			slog.Uint64("version", doc.Version), slog.Uint64("last_version", p.version))
		return 200, "OK"
	}
	if m.cfg.Arbitration {
		if d, holder, ok := ln.conflict(id, doc, m.now(), m.cfg.SeizeTimeout); ok {
			m.m.Tracker("bla", "seize_conflict")
			m.log.LogAttrs(ctx, slog.LevelInfo, "bla: seize refused, line index in use",
				slog.String("aor", lineURI), slog.String("call_id", headerOf(n, "Call-ID")),
				slog.String("contact", sender), slog.String("line_id", d.LineID),
				slog.String("dialog", d.ID), slog.String("holder", holder))
			if p != nil && doc.HasVersion {
				// Refused, but received: not a gap before the next one.
				p.version, p.haveVersion = doc.Version, true
			}
			return 409, "Conflict"
		}
	}
	gap := false
	var known map[string]dialogdoc.Dialog
	if p != nil && p.haveBase {
		known = p.dialogs
		gap = doc.State == dialogdoc.DocPartial && p.haveVersion && doc.HasVersion && doc.Version > p.version+1
	}
	if doc.State == dialogdoc.DocPartial {
		m.m.Tracker("bla", "merged_partial")
	}
	// The line's document is composed from every phone's latest state,
	// this phone's after this document (RFC 4235 §4.1: a partial document
	// updates the state it follows).
	ns := doc.Namespaces()
	if known != nil && doc.State == dialogdoc.DocPartial {
		ns = mergeNS(p.namespaces, ns)
	}
	ch := &change{phoneID: id, dialogs: nextDialogs(known, doc), namespaces: ns}
	shown := map[string]bool{}
	for _, d := range doc.Dialogs {
		if _, live := ch.dialogs[d.ID]; d.State == "terminated" && !live && !shown[d.ID] {
			shown[d.ID] = true
			ch.ended = append(ch.ended, d) // shown once, terminated
		}
	}
	if err := m.publishLine(ctx, ln, ch, sender, expires); err != nil {
		if errors.Is(err, dialogdoc.ErrTooLarge) {
			return m.reject(ctx, n, 413, "Request Entity Too Large", "composed_too_large", err)
		}
		m.m.Tracker("bla", "publish_error")
		m.log.LogAttrs(ctx, slog.LevelError, "bla: publish refused by the engine",
			slog.String("aor", lineURI), slog.String("event", m.cfg.Event), slog.Any("err", err))
		return 500, "Server Internal Error"
	}
	if p == nil { // subscription restored by the engine, contact not reported yet
		p = &phone{id: id, contact: sender, subscribed: true, dialogs: map[string]dialogdoc.Dialog{}, subCallID: callID}
		ln.phones[id] = p
	}
	if !p.haveBase {
		p.dialogs = map[string]dialogdoc.Dialog{} // what an earlier dialog said is not the base
	}
	p.apply(doc, m.now())
	p.namespaces = ch.namespaces
	p.haveBase = true
	p.published = true
	p.lastNotify = m.now()
	if doc.HasVersion {
		p.version, p.haveVersion = doc.Version, true
	}
	m.m.Tracker("bla", "relayed")
	if gap {
		m.askFullState(ctx, ln, p, doc.Version)
	}
	return 200, "OK"
}

// headerOf is n.Headers(name), or "" when n.Headers is nil.
func headerOf(n pua.Notify, name string) string {
	if n.Headers == nil {
		return ""
	}
	return n.Headers(name)
}

// terminated handles a NOTIFY ending the phone's subscription: its
// publication is removed and its line indexes are freed.
func (m *Manager) terminated(ctx context.Context, n pua.Notify) (int, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ln := m.lines[n.Key.PresURI]
	if ln == nil {
		return 200, "OK"
	}
	p := ln.phones[n.Key.ID]
	if p == nil {
		return 200, "OK"
	}
	hadState := p.haveBase || len(p.dialogs) > 0
	p.dialogs = map[string]dialogdoc.Dialog{}
	p.subscribed, p.published = false, false // the engine dropped the subscription
	p.haveVersion, p.haveBase = false, false
	if hadState {
		m.lineChanged(ctx, ln, "subscription ended") // its dialogs leave the line's document
	}
	m.m.Tracker("bla", "terminated")
	m.log.LogAttrs(ctx, slog.LevelInfo, "bla: phone ended its subscription", slog.String("aor", ln.aor),
		slog.String("contact", p.contact), slog.String("reason", n.Reason))
	switch n.Reason {
	case "rejected", "noresource", "invariant":
		// RFC 6665 §4.2.2: do not subscribe again (while the contact stays).
		p.noResubscribe = true
	case "probation", "giveup":
		// RFC 6665 §4.2.2: subscribe again later, after retry-after.
		m.resubscribeLater(ln, p, m.retryAfter(n))
	default:
		// deactivated, timeout or none: while the phone stays registered,
		// subscribe again (a rebooted phone re-registers with the same
		// contact, which usrloc does not report as a change) – at once,
		// unless its previous subscription ended moments ago too: a phone
		// that ends every subscription is not subscribed in a loop.
		if now := m.now(); !p.lastTerminated.IsZero() && now.Sub(p.lastTerminated) < m.cfg.ResubscribeDelay {
			p.lastTerminated = now
			m.resubscribeLater(ln, p, m.cfg.ResubscribeDelay)
			return 200, "OK"
		}
		p.lastTerminated = m.now()
		m.reconcile(ctx, ln)
	}
	return 200, "OK"
}

// reject logs and counts a refused NOTIFY.
func (m *Manager) reject(ctx context.Context, n pua.Notify, code int, reason, what string, err error) (int, string) {
	m.m.Tracker("bla", "rejected_"+what)
	m.log.LogAttrs(ctx, slog.LevelWarn, "bla: NOTIFY refused", slog.String("aor", n.Key.PresURI),
		slog.String("call_id", headerOf(n, "Call-ID")), slog.String("contact", n.Contact),
		slog.Int("code", code), slog.String("reason", what), slog.Any("err", err))
	return code, reason
}

// conflict finds a trying dialog of the document that seizes a line index
// held by another phone of the line. m.mu is held.
func (ln *line) conflict(id string, doc *dialogdoc.Document, now time.Time, seizeTimeout time.Duration) (dialogdoc.Dialog, string, bool) {
	for _, d := range doc.Dialogs {
		if d.State != "trying" || d.LineID == "" {
			continue
		}
		for pid, p := range ln.phones {
			if pid == id {
				continue
			}
			for _, h := range p.dialogs {
				if h.LineID != d.LineID || !h.Holds() {
					continue
				}
				if h.State == "trying" && seizeTimeout > 0 && now.Sub(p.seizedAt[h.ID]) > seizeTimeout {
					continue // a stale seize (the phone never dialled through)
				}
				return d, p.contact, true
			}
		}
	}
	return dialogdoc.Dialog{}, "", false
}

// apply merges a document into the phone's dialogs: a full document
// replaces them, a partial one updates the dialogs it names. Terminated
// dialogs are dropped.
func (p *phone) apply(doc *dialogdoc.Document, now time.Time) {
	if doc.State == dialogdoc.DocFull {
		p.dialogs = make(map[string]dialogdoc.Dialog, len(doc.Dialogs))
	}
	if p.seizedAt == nil {
		p.seizedAt = map[string]time.Time{}
	}
	for id := range p.seizedAt {
		if d, ok := p.dialogs[id]; !ok || d.State != "trying" {
			delete(p.seizedAt, id)
		}
	}
	for _, d := range doc.Dialogs {
		if d.State != "trying" {
			delete(p.seizedAt, d.ID)
		} else if _, ok := p.seizedAt[d.ID]; !ok {
			p.seizedAt[d.ID] = now
		}
		if d.State == "terminated" {
			delete(p.dialogs, d.ID)
			continue
		}
		d.Raw = bytes.Clone(d.Raw)
		p.dialogs[d.ID] = d
	}
}

// isMember reports whether a contact URI belongs to the line.
func (ln *line) isMember(contact string) bool {
	if len(ln.match) == 0 {
		return true
	}
	c, err := aor.Parse(contact, "")
	if err != nil {
		return false
	}
	for _, mm := range ln.match {
		if mm.Matches(c) {
			return true
		}
	}
	return false
}

// Lines returns a snapshot of the shared lines, by AoR.
func (m *Manager) Lines() []LineInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]LineInfo, 0, len(m.lines))
	for _, aor := range sortedKeys(m.lines) {
		ln := m.lines[aor]
		li := LineInfo{AoR: aor, Source: ln.source, Members: append([]string{}, ln.members...),
			Phones: []PhoneInfo{}, Seized: []SeizedIndex{}}
		for _, id := range sortedKeys(ln.phones) {
			p := ln.phones[id]
			pi := PhoneInfo{ID: id, Contact: p.contact, Expires: p.expires,
				Subscribed: p.subscribed, Published: p.published, LastNotify: p.lastNotify, Dialogs: len(p.dialogs)}
			if sl, ok := m.sub.(subscriptionLookup); ok {
				if info, ok := sl.Subscription(m.subKey(aor, id)); ok {
					pi.SubscriptionState = info.State
				}
			}
			li.Phones = append(li.Phones, pi)
			for _, did := range sortedKeys(p.dialogs) {
				d := p.dialogs[did]
				if d.LineID != "" && d.Holds() {
					li.Seized = append(li.Seized, SeizedIndex{Index: d.LineID, PhoneID: id, Contact: p.contact,
						DialogID: d.ID, State: d.State, Held: d.Held})
				}
			}
		}
		sort.SliceStable(li.Seized, func(i, j int) bool { return li.Seized[i].Index < li.Seized[j].Index })
		out = append(out, li)
	}
	return out
}

// AddLine creates or replaces (members) a shared line kept in the database.
// Contacts already registered are picked up at their next registration
// change (or at once for a line that existed with other members).
func (m *Manager) AddLine(ctx context.Context, aor string, members []string) error {
	if m.store == nil {
		return fmt.Errorf("bla: add line %s: %w", aor, ErrNoStore)
	}
	ln, err := m.newLine(aor, members, SourceDB)
	if err != nil {
		return fmt.Errorf("bla: add line: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.lines[ln.aor]
	if old != nil && old.source == SourceConfig {
		return fmt.Errorf("bla: add line %s: %w", ln.aor, ErrStaticLine)
	}
	if err := m.store.SaveSharedLine(ctx, ln.aor, ln.members); err != nil {
		return fmt.Errorf("bla: add line %s: %w", ln.aor, err)
	}
	if old == nil {
		m.lines[ln.aor] = ln
		m.log.Info("bla: shared line added", "aor", ln.aor, "members", len(ln.members))
		return nil
	}
	old.members, old.match = ln.members, ln.match
	m.reconcile(ctx, old)
	m.log.Info("bla: shared line updated", "aor", ln.aor, "members", len(ln.members))
	return nil
}

// RemoveLine deletes a shared line kept in the database, ending its
// subscriptions and publications.
func (m *Manager) RemoveLine(ctx context.Context, aor string) error {
	if m.store == nil {
		return fmt.Errorf("bla: remove line %s: %w", aor, ErrNoStore)
	}
	naor, err := lineKey(aor, m.cfg.DefaultDomain)
	if err != nil {
		return fmt.Errorf("bla: remove line: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ln := m.lines[naor]
	if ln == nil {
		return fmt.Errorf("bla: remove line %s: %w", naor, ErrUnknownLine)
	}
	if ln.source == SourceConfig {
		return fmt.Errorf("bla: remove line %s: %w", naor, ErrStaticLine)
	}
	if _, err := m.store.DeleteSharedLine(ctx, naor); err != nil {
		return fmt.Errorf("bla: remove line %s: %w", naor, err)
	}
	for _, id := range sortedKeys(ln.phones) {
		m.dropPhone(ln, ln.phones[id], "line removed")
	}
	delete(m.lines, naor)
	m.log.Info("bla: shared line removed", "aor", naor)
	return nil
}

func sortedKeys[V any](mp map[string]V) []string {
	keys := make([]string, 0, len(mp))
	for k := range mp {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
