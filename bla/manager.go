package bla

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	// contactsKnown: usrloc has reported the line's contacts, so a phone
	// reconcile did not keep is not subscribed (a NOTIFY of its ending
	// subscription does not bring it back).
	contactsKnown bool
	// inStore is set when the line has a row in the database, whose
	// members are stored. While the file configures the line the row is
	// hidden; it is back in effect when a reload drops the file's line.
	inStore bool
	stored  []string
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
				old.inStore, old.stored = true, slices.Clone(ln.members)
			}
			continue
		}
		ln.inStore, ln.stored = true, slices.Clone(ln.members)
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
	ln.contactsKnown = true
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
