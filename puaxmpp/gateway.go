package puaxmpp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/puaside/puaside/clock"
	"github.com/puaside/puaside/metrics"
	"github.com/puaside/puaside/pidf"
	"github.com/puaside/puaside/pua"

	"mellium.im/xmpp/jid"
)

// PresID is the pres_id of every record the gateway keeps in the engine.
const PresID = "xmpp"

// Event packages the gateway uses.
const (
	eventPresence = "presence"
	eventWinfo    = "presence.winfo"
)

// Publisher publishes the XMPP users' presence; implemented by
// *pua.Engine, or by the presence server in process.
type Publisher interface {
	Publish(pua.PublishRequest) error
	Remove(pua.Key) error
}

// Subscriber holds SIP subscriptions on the XMPP users' behalf;
// implemented by *pua.Engine.
type Subscriber interface {
	Subscribe(pua.SubscribeRequest) error
	Unsubscribe(pua.SubKey) error
	// Refresh asks the notifier for its full state again.
	Refresh(pua.SubKey) error
	// Subscription and Subscriptions give the engine's records (the last
	// NOTIFY is what a probe is answered with).
	Subscription(pua.SubKey) (pua.SubscriptionInfo, bool)
	Subscriptions() []pua.SubscriptionInfo
}

// Claimer keeps the gateway's records loaded by the engine at start;
// implemented by *pua.Engine.
type Claimer interface {
	Claim(pua.Key) bool
	ClaimSubscription(pua.SubKey) bool
	ClaimsDone(flag int)
	Publications() []pua.PublicationInfo
}

// Authorizer is given by a presence server in process (pa): the XMPP
// user's answer to a subscription request ("subscribed" or
// "unsubscribed") authorises or refuses the SIP watcher there. Without
// one, authorisation is the external presence server's business.
type Authorizer interface {
	Authorize(ctx context.Context, presentity, watcher string, allow bool) error
}

// Request is a subscription request the gateway sent to an XMPP user for
// a SIP watcher.
type Request struct {
	// XMPPUser is the bare JID asked.
	XMPPUser string
	// Watcher is the SIP watcher's URI.
	Watcher string
}

// RequestStore keeps the subscription requests sent, so that a restart
// does not ask the XMPP users again; implemented by *store.DB.
type RequestStore interface {
	LoadXMPPRequests(ctx context.Context) ([]Request, error)
	SaveXMPPRequest(ctx context.Context, r Request) error
	DeleteXMPPRequest(ctx context.Context, r Request) error
}

// Options are the gateway's collaborators.
type Options struct {
	Publisher  Publisher
	Subscriber Subscriber
	// Authorizer is optional (see Authorizer).
	Authorizer Authorizer
	// Store keeps the subscription requests sent; nil keeps them in
	// memory only.
	Store RequestStore
	// Dial opens the TCP connection to the XMPP server; nil is net.Dialer.
	Dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	Logger  *slog.Logger
	Metrics *metrics.Metrics
	Clock   clock.Clock
}

// ResyncGrace is how long after a (re)connection an XMPP user whose
// presence was known has to answer the gateway's probe before it is
// published offline.
const ResyncGrace = 5 * time.Second

// Gateway is the SIP ↔ XMPP presence gateway.
type Gateway struct {
	cfg   Config
	mp    *Mapper
	opts  Options
	log   *slog.Logger
	m     *metrics.Metrics
	clock clock.Clock

	mu sync.Mutex
	// out sends a stanza on the current session; nil while disconnected.
	out      func(context.Context, outPresence) error
	users    map[string]*user    // by bare JID
	asked    map[askKey]bool     // subscription requests sent for SIP watchers
	approved map[pua.SubKey]bool // "subscribed" sent to the XMPP watcher
	wanted   map[pua.SubKey]bool // SIP subscriptions whose XMPP subscription lasts
	winfo    map[string]bool     // XMPP users' SIP URIs with a winfo subscription
	// dialogs are the call state subscriptions (by their key) and the
	// dialogs they report, id → state (at most MaxCallDialogs each).
	dialogs  map[pua.SubKey]map[string]string
	connects int                  // successful connections so far
	status   func(connected bool) // connection gauge
	lastLog  map[string]time.Time // rate limit of refusal log lines
}

// user is an XMPP user the gateway publishes for.
type user struct {
	sip       string
	resources map[string]Resource
	// contacts are JIDs at the component the user sent presence to (they
	// may probe it).
	contacts map[string]bool
	// stale marks a user whose resources are from before a reconnection
	// and not yet confirmed by a probe answer.
	stale bool
}

type askKey struct{ xmppUser, watcher string }

// New builds a gateway from a validated configuration.
func New(cfg Config, opts Options) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Publisher == nil || opts.Subscriber == nil {
		return nil, fmt.Errorf("%w: a publisher and a subscriber are required", ErrConfig)
	}
	mp, err := NewMapper(cfg)
	if err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, mp: mp, opts: opts, log: opts.Logger, m: opts.Metrics, clock: clock.OrReal(opts.Clock),
		users: map[string]*user{}, asked: map[askKey]bool{}, approved: map[pua.SubKey]bool{}, wanted: map[pua.SubKey]bool{}, winfo: map[string]bool{},
		dialogs: map[pua.SubKey]map[string]string{}, lastLog: map[string]time.Time{}}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.log = g.log.With("component", "xmpp")
	g.status = func(bool) {}
	return g, nil
}

// Mapper returns the gateway's address mapping.
func (g *Gateway) Mapper() *Mapper { return g.mp }

// count counts a gateway event (puaside_tracker_events_total{tracker="xmpp"}).
func (g *Gateway) count(what string) { g.m.Tracker("xmpp", what) }

// refuse counts a refused input and logs it, at most once a second per kind.
func (g *Gateway) refuse(what string, err error, args ...any) {
	g.count(what)
	now := g.clock.Now()
	g.mu.Lock()
	due := now.Sub(g.lastLog[what]) >= time.Second
	if due {
		g.lastLog[what] = now
	}
	g.mu.Unlock()
	if due {
		g.log.Warn("xmpp: input refused", append([]any{"what", what, "err", err}, args...)...)
	}
}

func pubKey(sipURI string) pua.Key { return pua.Key{PresURI: sipURI, Event: eventPresence, ID: PresID} }

func subKey(sipUser, xmppSIP string) pua.SubKey {
	return pua.SubKey{PresURI: sipUser, WatcherURI: xmppSIP, Event: eventPresence, ID: PresID}
}

func winfoKey(xmppSIP string) pua.SubKey {
	return pua.SubKey{PresURI: xmppSIP, WatcherURI: xmppSIP, Event: eventWinfo, ID: PresID}
}

// Start claims the records the engine loaded for the gateway: the SIP
// subscriptions of XMPP users (XMPP subscriptions are permanent), the
// winfo subscriptions and the publications (kept until the XMPP users'
// presence is known again), and loads the subscription requests already
// sent. cl may be nil (nothing stored).
func (g *Gateway) Start(ctx context.Context, cl Claimer) error {
	if st := g.opts.Store; st != nil {
		rs, err := st.LoadXMPPRequests(ctx)
		if err != nil {
			return fmt.Errorf("puaxmpp: load subscription requests: %w", err)
		}
		g.mu.Lock()
		for _, r := range rs {
			g.asked[askKey{r.XMPPUser, r.Watcher}] = true
		}
		g.mu.Unlock()
	}
	if cl == nil {
		return nil
	}
	var held []pua.SubKey
	for _, s := range g.opts.Subscriber.Subscriptions() {
		switch s.Flag {
		case pua.FlagXMPPSubscribe:
			if s.Key.Event == eventDialog {
				if cl.ClaimSubscription(s.Key) {
					g.restoreDialog(s)
				}
				continue
			}
			if cl.ClaimSubscription(s.Key) {
				held = append(held, s.Key)
				g.mu.Lock()
				g.wanted[s.Key] = true
				if s.State == pua.StateActive {
					g.approved[s.Key] = true
				}
				g.mu.Unlock()
			}
		case pua.FlagXMPPWinfo:
			// Without watch_winfo (pa tells the watchers) a winfo
			// subscription of an earlier run is left to the engine's sweep.
			if g.cfg.WatchWinfo && cl.ClaimSubscription(s.Key) {
				g.mu.Lock()
				g.winfo[s.Key.PresURI] = true
				g.mu.Unlock()
			}
		}
	}
	for _, p := range cl.Publications() {
		if p.Flag == pua.FlagXMPPPublish {
			cl.Claim(p.Key)
		}
	}
	for _, f := range []int{pua.FlagXMPPPublish, pua.FlagXMPPSubscribe, pua.FlagXMPPWinfo} {
		cl.ClaimsDone(f)
	}
	// Presence subscriptions of an earlier run without a call state one
	// get it now.
	for _, k := range held {
		g.ensureDialog(k)
	}
	g.log.Info("xmpp: gateway started", "domain", g.cfg.XMPPDomain, "server", g.addr())
	return nil
}

// Connected reports whether the gateway has a session with the XMPP server.
func (g *Gateway) Connected() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.out != nil
}

// Ready is the /readyz check: connected to the XMPP server.
func (g *Gateway) Ready(context.Context) error {
	if !g.Connected() {
		return errors.New("not connected to the XMPP server")
	}
	return nil
}

// Connects is the number of sessions established so far.
func (g *Gateway) Connects() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.connects
}

// errNotConnected is returned by sends while there is no session.
var errNotConnected = errors.New("puaxmpp: not connected to the XMPP server")

// send sends one presence stanza on the current session.
func (g *Gateway) send(ctx context.Context, o outPresence) error {
	g.mu.Lock()
	out := g.out
	g.mu.Unlock()
	if out == nil {
		g.count("send_disconnected")
		return errNotConnected
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := out(ctx, o); err != nil {
		g.count("send_failed")
		return fmt.Errorf("puaxmpp: send presence to %s: %w", o.To, err)
	}
	g.count("sent_" + typeName(o.Type))
	return nil
}

func typeName(t string) string {
	if t == "" {
		return "available"
	}
	return t
}

// handlePresence applies one presence stanza from an XMPP user.
func (g *Gateway) handlePresence(ctx context.Context, p inPresence) {
	g.count("received_" + typeName(p.Type))
	if !strings.EqualFold(p.To.Domainpart(), g.mp.comp) {
		g.refuse("wrong_domain", fmt.Errorf("%w: to %s", ErrUnmapped, p.To))
		return
	}
	xmppSIP, err := g.mp.SIPOfXMPPUser(p.From)
	if err != nil {
		g.refuse("bad_from", err, "from", p.From.String())
		return
	}
	var sipUser string
	if p.To.Localpart() != "" {
		if sipUser, err = g.mp.SIPUserOfJID(p.To); err != nil {
			g.refuse("bad_to", err, "to", p.To.String())
			if p.Type != "error" && p.Type != "unavailable" {
				g.sendError(ctx, p, "item-not-found", err.Error())
			}
			return
		}
	}
	switch p.Type {
	case "", "unavailable":
		g.userPresence(ctx, p, xmppSIP)
	case "subscribe":
		if sipUser == "" {
			g.sendError(ctx, p, "item-not-found", "subscribe to the gateway itself")
			return
		}
		key := subKey(sipUser, xmppSIP)
		g.mu.Lock()
		g.wanted[key] = true
		g.mu.Unlock()
		err := g.opts.Subscriber.Subscribe(pua.SubscribeRequest{SubKey: key, Expires: g.cfg.DefaultExpires, Flag: pua.FlagXMPPSubscribe})
		if err != nil {
			g.mu.Lock()
			delete(g.wanted, key)
			g.mu.Unlock()
			g.refuse("subscribe_failed", err, "sip", sipUser, "xmpp", xmppSIP)
			g.sendError(ctx, p, "service-unavailable", "the SIP subscription was refused")
			return
		}
		g.count("subscribe")
		g.ensureDialog(key)
		g.ensureWinfo(xmppSIP)
	case "unsubscribe":
		if sipUser == "" {
			return
		}
		key := subKey(sipUser, xmppSIP)
		g.mu.Lock()
		delete(g.approved, key)
		delete(g.wanted, key)
		g.mu.Unlock()
		if err := g.opts.Subscriber.Unsubscribe(key); err != nil {
			g.refuse("unsubscribe_failed", err)
		}
		g.dropDialog(key)
		_ = g.send(ctx, outPresence{From: p.To.Bare().String(), To: p.From.Bare().String(), Type: "unavailable"})
	case "subscribed", "unsubscribed":
		if sipUser == "" {
			return
		}
		allow := p.Type == "subscribed"
		g.mu.Lock()
		k := askKey{p.From.Bare().String(), sipUser}
		if allow {
			g.contactLocked(p.From.Bare().String(), xmppSIP, p.To.Bare().String())
		}
		g.mu.Unlock()
		g.remember(ctx, k, allow)
		if a := g.opts.Authorizer; a != nil {
			if err := a.Authorize(ctx, xmppSIP, sipUser, allow); err != nil {
				g.refuse("authorize_failed", err, "presentity", xmppSIP, "watcher", sipUser)
			}
		}
		if allow {
			// The XMPP server sends the user's presence after an approval
			// by the user, not after its own answer for a user who approved
			// before (a restart): the probe asks for it in both cases.
			_ = g.send(ctx, outPresence{From: p.To.Bare().String(), To: p.From.Bare().String(), Type: "probe"})
		}
	case "probe":
		if sipUser == "" {
			return
		}
		g.answerProbe(ctx, p, sipUser, xmppSIP)
	case "error":
		g.log.Debug("xmpp: presence error from the XMPP side", "from", p.From.String(), "to", p.To.String())
	}
}

// answerProbe answers a probe for a SIP user with its current state from
// the last NOTIFY (and asks the notifier for a fresh one). An XMPP server
// probes only contacts its user is subscribed to: without a SIP
// subscription (lost, or never made) the gateway subscribes on the user's
// behalf, and the first NOTIFY is the answer.
func (g *Gateway) answerProbe(ctx context.Context, p inPresence, sipUser, xmppSIP string) {
	key := subKey(sipUser, xmppSIP)
	info, ok := g.opts.Subscriber.Subscription(key)
	from, to := p.To.Bare().String(), p.From.Bare().String()
	if !ok {
		g.mu.Lock()
		g.wanted[key] = true
		g.mu.Unlock()
		if err := g.opts.Subscriber.Subscribe(pua.SubscribeRequest{SubKey: key, Expires: g.cfg.DefaultExpires, Flag: pua.FlagXMPPSubscribe}); err != nil {
			g.refuse("subscribe_failed", err, "sip", sipUser, "xmpp", xmppSIP)
			return
		}
		g.ensureDialog(key)
		return
	}
	if info.LastNotify.IsZero() {
		return // not notified yet: the first NOTIFY answers
	}
	pr, err := PresenceOfPIDF(info.LastNotifyDoc)
	if err != nil {
		g.refuse("bad_pidf", err, "sip", sipUser)
		return
	}
	_ = g.send(ctx, stanzaOf(from, to, g.withCalls(key, pr)))
	_ = g.opts.Subscriber.Refresh(key)
}

// sendError answers a stanza with a presence error (RFC 6120 §8.3).
func (g *Gateway) sendError(ctx context.Context, p inPresence, cond, text string) {
	o := outPresence{From: p.To.String(), To: p.From.String(), Type: "error", ID: p.ID, Error: newError("cancel", cond, text)}
	if cond == "service-unavailable" {
		o.Error.Type = "wait"
	}
	_ = g.send(ctx, o)
}

// contactLocked records that the XMPP user bare may be probed from
// contact (a JID at the component). Must hold mu.
func (g *Gateway) contactLocked(bare, xmppSIP, contact string) {
	u := g.users[bare]
	if u == nil {
		if len(g.users) >= g.cfg.MaxUsers {
			return
		}
		u = &user{sip: xmppSIP, resources: map[string]Resource{}, contacts: map[string]bool{}}
		g.users[bare] = u
	}
	if len(u.contacts) < 64 {
		u.contacts[contact] = true
	}
}

// userPresence applies an available or unavailable presence of one
// resource and publishes the user's composed document.
func (g *Gateway) userPresence(ctx context.Context, p inPresence, xmppSIP string) {
	bare := p.From.Bare().String()
	res := p.From.Resourcepart()
	g.mu.Lock()
	u := g.users[bare]
	if u == nil {
		if p.Type == "unavailable" {
			g.mu.Unlock()
			g.publishClosed(xmppSIP, bare)
			return
		}
		if len(g.users) >= g.cfg.MaxUsers {
			g.mu.Unlock()
			g.refuse("too_many_users", fmt.Errorf("more than max_users %d", g.cfg.MaxUsers), "from", bare)
			return
		}
		u = &user{sip: xmppSIP, resources: map[string]Resource{}, contacts: map[string]bool{}}
		g.users[bare] = u
	}
	if u.stale {
		clear(u.resources)
		u.stale = false
	}
	if len(u.contacts) < 64 {
		u.contacts[p.To.Bare().String()] = true
	}
	if p.Type == "" {
		if _, ok := u.resources[res]; !ok && len(u.resources) >= g.cfg.MaxResources {
			g.mu.Unlock()
			g.refuse("too_many_resources", fmt.Errorf("more than max_resources %d", g.cfg.MaxResources), "from", bare)
			return
		}
		u.resources[res] = Resource{Name: res, Show: p.Show, Status: p.Status, Priority: p.Priority}
	} else {
		delete(u.resources, res)
	}
	rs := make([]Resource, 0, len(u.resources))
	for _, r := range u.resources {
		rs = append(rs, r)
	}
	g.mu.Unlock()
	if len(rs) == 0 {
		g.publishClosed(xmppSIP, bare)
	} else {
		g.publish(xmppSIP, bare, rs)
	}
	g.ensureWinfo(xmppSIP)
}

// publish publishes an XMPP user's available resources.
func (g *Gateway) publish(xmppSIP, bare string, rs []Resource) {
	err := g.opts.Publisher.Publish(pua.PublishRequest{Key: pubKey(xmppSIP), Body: ComposePIDF(xmppSIP, bare, rs),
		ContentType: pidf.ContentType, Expires: g.cfg.DefaultExpires, Flag: pua.FlagXMPPPublish})
	if err != nil {
		g.refuse("publish_failed", err, "aor", xmppSIP)
		return
	}
	g.count("published_open")
}

// publishClosed publishes the user offline for closed_linger (then the
// publication is left to expire), or removes it at once with 0.
func (g *Gateway) publishClosed(xmppSIP, bare string) {
	var err error
	if g.cfg.ClosedLinger <= 0 {
		err = g.opts.Publisher.Remove(pubKey(xmppSIP))
	} else {
		err = g.opts.Publisher.Publish(pua.PublishRequest{Key: pubKey(xmppSIP), Body: ComposePIDF(xmppSIP, bare, nil),
			ContentType: pidf.ContentType, Expires: g.cfg.ClosedLinger, Lifetime: g.cfg.ClosedLinger, Flag: pua.FlagXMPPPublish})
	}
	if err != nil {
		g.refuse("publish_failed", err, "aor", xmppSIP)
		return
	}
	g.count("published_closed")
	g.mu.Lock()
	if u := g.users[bare]; u != nil && len(u.resources) == 0 && len(u.contacts) == 0 {
		delete(g.users, bare)
	}
	g.mu.Unlock()
}

// ensureWinfo subscribes to the presence.winfo of an XMPP user at the
// presence server (watch_winfo), once.
func (g *Gateway) ensureWinfo(xmppSIP string) {
	if !g.cfg.WatchWinfo {
		return
	}
	g.mu.Lock()
	if g.winfo[xmppSIP] {
		g.mu.Unlock()
		return
	}
	g.winfo[xmppSIP] = true
	g.mu.Unlock()
	err := g.opts.Subscriber.Subscribe(pua.SubscribeRequest{SubKey: winfoKey(xmppSIP), Expires: g.cfg.DefaultExpires, Flag: pua.FlagXMPPWinfo})
	if err != nil {
		g.mu.Lock()
		delete(g.winfo, xmppSIP)
		g.mu.Unlock()
		g.refuse("winfo_subscribe_failed", err, "aor", xmppSIP)
	}
}

// HandleNotify takes the NOTIFYs of the gateway's SIP subscriptions
// (register it for pua.FlagXMPPSubscribe): the SIP user's state goes to
// the XMPP user as <presence/>; "subscribed" is sent when the
// Subscription-State first says active; a terminated subscription is
// "unavailable", and "unsubscribed" when the notifier refused it for
// good (RFC 8048 §6), or subscribed again when it merely ended.
func (g *Gateway) HandleNotify(ctx context.Context, n pua.Notify) (int, string) {
	from, err := g.mp.JIDOfSIPUser(n.Key.PresURI)
	if err != nil {
		g.refuse("notify_unmapped", err, "aor", n.Key.PresURI)
		return 200, "OK"
	}
	to, err := g.mp.XMPPUserOfSIP(n.Key.WatcherURI)
	if err != nil {
		g.refuse("notify_unmapped", err, "watcher", n.Key.WatcherURI)
		return 200, "OK"
	}
	fs, ts := from.String(), to.String()
	if n.Key.Event == eventDialog {
		g.handleDialogNotify(ctx, n, fs, ts)
		return 200, "OK"
	}
	switch n.State {
	case "active", "pending", "terminated":
		g.count("notify_" + n.State)
	default:
		g.count("notify_other")
	}
	switch n.State {
	case "active":
		g.mu.Lock()
		first := !g.approved[n.Key]
		g.approved[n.Key] = true
		g.mu.Unlock()
		if first {
			if err := g.send(ctx, outPresence{From: fs, To: ts, Type: "subscribed"}); err != nil {
				g.mu.Lock()
				delete(g.approved, n.Key) // told at the next NOTIFY
				g.mu.Unlock()
			}
		}
		p, err := PresenceOfPIDF(n.Body)
		if err != nil {
			g.refuse("bad_pidf", err, "aor", n.Key.PresURI)
			return 200, "OK"
		}
		_ = g.send(ctx, stanzaOf(fs, ts, g.withCalls(n.Key, p)))
	case "terminated":
		_ = g.send(ctx, outPresence{From: fs, To: ts, Type: "unavailable"})
		g.mu.Lock()
		wanted := g.wanted[n.Key]
		g.mu.Unlock()
		switch n.Reason {
		case "rejected", "noresource", "giveup", "invariant":
			g.mu.Lock()
			delete(g.approved, n.Key)
			delete(g.wanted, n.Key)
			g.mu.Unlock()
			g.dropDialog(n.Key)
			_ = g.send(ctx, outPresence{From: fs, To: ts, Type: "unsubscribed"})
		default:
			if !wanted {
				break // the XMPP user unsubscribed: the end of our own SUBSCRIBE Expires: 0
			}
			// The XMPP subscription lasts: subscribe again.
			if err := g.opts.Subscriber.Subscribe(pua.SubscribeRequest{SubKey: n.Key, Expires: g.cfg.DefaultExpires, Flag: pua.FlagXMPPSubscribe}); err != nil {
				g.refuse("subscribe_failed", err, "aor", n.Key.PresURI)
			}
		}
	}
	return 200, "OK"
}

// HandleWinfoNotify takes the presence.winfo NOTIFYs of the gateway's
// subscriptions to XMPP users' watcher lists (register it for
// pua.FlagXMPPWinfo): every new SIP watcher becomes one XMPP subscription
// request, a terminated one an unsubscribe.
func (g *Gateway) HandleWinfoNotify(ctx context.Context, n pua.Notify) (int, string) {
	g.count("winfo_notify")
	if n.State == "terminated" {
		g.mu.Lock()
		delete(g.winfo, n.Key.PresURI)
		g.mu.Unlock()
		if n.Reason != "rejected" && n.Reason != "noresource" && n.Reason != "giveup" {
			g.ensureWinfo(n.Key.PresURI)
		}
	}
	if len(n.Body) == 0 {
		return 200, "OK"
	}
	ws, _, err := ParseWatcherinfo(n.Body)
	if err != nil {
		g.refuse("bad_winfo", err, "aor", n.Key.PresURI)
		return 200, "OK"
	}
	for _, w := range ws {
		if w.URI == n.Key.PresURI {
			continue
		}
		var err error
		switch w.Status {
		case "terminated":
			err = g.WatcherRemoved(ctx, n.Key.PresURI, w.URI)
		default:
			err = g.WatcherAdded(ctx, n.Key.PresURI, w.URI)
		}
		if err != nil && !errors.Is(err, errNotConnected) {
			g.refuse("winfo_watcher", err, "aor", n.Key.PresURI, "watcher", w.URI)
		}
	}
	return 200, "OK"
}

// WatcherAdded tells the gateway that the SIP user watcher subscribed to
// the presence of presentity, the SIP URI of an XMPP user. It sends the
// XMPP user one subscription request from the watcher (once per pair;
// again only after WatcherRemoved or a refusal). A presence server in
// process (pa) calls it through an interface of its own instead of the
// winfo subscription. An address the gateway does not serve is refused
// with an error wrapping ErrUnmapped, ErrNoUser or ErrBadAddress (pa
// answers a SUBSCRIBE to an address of the gateway's that names no XMPP
// user 404 before it gets here, and counts and logs the other refusals).
func (g *Gateway) WatcherAdded(ctx context.Context, presentity, watcher string) error {
	to, from, k, err := g.askOf(presentity, watcher)
	if err != nil {
		return err
	}
	g.mu.Lock()
	if g.asked[k] {
		g.mu.Unlock()
		return nil
	}
	g.asked[k] = true
	g.mu.Unlock()
	if err := g.send(ctx, outPresence{From: from.String(), To: to.String(), Type: "subscribe"}); err != nil {
		g.mu.Lock()
		delete(g.asked, k)
		g.mu.Unlock()
		return err
	}
	g.remember(ctx, k, true)
	// No probe here: a probe before the approval makes the XMPP server
	// answer "unsubscribed", which cancels the pending request. The probe
	// follows the approval (handlePresence, "subscribed").
	g.count("subscription_requested")
	return nil
}

// askOf maps a SIP watcher of presentity (an XMPP user's SIP URI) to the
// XMPP user asked (to), the watcher's JID (from) and the request's key.
func (g *Gateway) askOf(presentity, watcher string) (to, from jid.JID, k askKey, err error) {
	if to, err = g.mp.XMPPUserOfSIP(presentity); err != nil {
		return to, from, k, err
	}
	if from, err = g.mp.JIDOfSIPUser(watcher); err != nil {
		return to, from, k, err
	}
	return to, from, askKey{to.String(), watcher}, nil
}

// WatcherRemoved tells the gateway that the SIP user watcher no longer
// watches presentity: the XMPP user is sent an unsubscribe.
func (g *Gateway) WatcherRemoved(ctx context.Context, presentity, watcher string) error {
	to, from, k, err := g.askOf(presentity, watcher)
	if err != nil {
		return err
	}
	g.mu.Lock()
	was := g.asked[k]
	g.mu.Unlock()
	if !was {
		return nil
	}
	g.remember(ctx, k, false)
	return g.send(ctx, outPresence{From: from.String(), To: to.String(), Type: "unsubscribe"})
}

// remember records (on) or forgets a subscription request, in memory and
// in the store.
func (g *Gateway) remember(ctx context.Context, k askKey, on bool) {
	g.mu.Lock()
	if on {
		g.asked[k] = true
	} else {
		delete(g.asked, k)
	}
	g.mu.Unlock()
	st := g.opts.Store
	if st == nil {
		return
	}
	r := Request{XMPPUser: k.xmppUser, Watcher: k.watcher}
	var err error
	if on {
		err = st.SaveXMPPRequest(ctx, r)
	} else {
		err = st.DeleteXMPPRequest(ctx, r)
	}
	if err != nil {
		g.refuse("store_failed", err, "xmpp", r.XMPPUser, "watcher", r.Watcher)
	}
}

// resync runs after each (re)connection: every known XMPP user is probed
// from the contacts it sent presence to, and those that do not answer
// within ResyncGrace are published offline; every XMPP watcher of a SIP
// user is sent the SIP user's last known state; the watcher lists of the
// XMPP users are asked for again.
func (g *Gateway) resync(ctx context.Context) {
	type probe struct{ from, to string }
	var probes []probe
	g.mu.Lock()
	for bare, u := range g.users {
		u.stale = len(u.resources) > 0
		for c := range u.contacts {
			probes = append(probes, probe{c, bare})
		}
	}
	g.mu.Unlock()
	for _, s := range g.opts.Subscriber.Subscriptions() {
		if s.Flag == pua.FlagXMPPWinfo {
			// A full watcher list again: watchers asked while the session
			// was down are asked now (those approved before are answered
			// by the XMPP server itself, without asking the user).
			_ = g.opts.Subscriber.Refresh(s.Key)
			continue
		}
		if s.Flag != pua.FlagXMPPSubscribe || s.Key.Event != eventPresence {
			continue
		}
		from, err1 := g.mp.JIDOfSIPUser(s.Key.PresURI)
		to, err2 := g.mp.XMPPUserOfSIP(s.Key.WatcherURI)
		if err1 != nil || err2 != nil {
			continue
		}
		probes = append(probes, probe{from.String(), to.String()})
		if s.State == pua.StateActive && !s.LastNotify.IsZero() {
			if p, err := PresenceOfPIDF(s.LastNotifyDoc); err == nil {
				_ = g.send(ctx, stanzaOf(from.String(), to.String(), g.withCalls(s.Key, p)))
			}
		}
	}
	seen := map[probe]bool{}
	for _, p := range probes {
		if seen[p] {
			continue
		}
		seen[p] = true
		_ = g.send(ctx, outPresence{From: p.from, To: p.to, Type: "probe"})
	}
	g.clock.AfterFunc(ResyncGrace, func() {
		if ctx.Err() == nil {
			g.closeStale()
		}
	})
}

// closeStale publishes offline the users whose presence no probe answer
// confirmed since the last reconnection.
func (g *Gateway) closeStale() {
	type gone struct{ sip, bare string }
	var gs []gone
	g.mu.Lock()
	for bare, u := range g.users {
		if u.stale {
			u.stale = false
			clear(u.resources)
			gs = append(gs, gone{u.sip, bare})
		}
	}
	g.mu.Unlock()
	for _, x := range gs {
		g.publishClosed(x.sip, x.bare)
	}
}

// Users is the number of XMPP users whose presence the gateway holds.
func (g *Gateway) Users() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.users)
}
