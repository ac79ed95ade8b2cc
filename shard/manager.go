package shard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/puaside/puaside/clock"
	"github.com/puaside/puaside/store"
)

// Leases is the lease table the Manager works on; *store.DB implements it.
type Leases interface {
	EnsureShards(ctx context.Context, n int) error
	TakeLease(ctx context.Context, shard int, owner string, ttl time.Duration) (int64, bool, error)
	RenewLeases(ctx context.Context, owner string, ttl time.Duration) ([]store.Lease, error)
	ReleaseLease(ctx context.Context, shard int, owner string, epoch int64) error
	Leases(ctx context.Context) ([]store.Lease, error)
	Heartbeat(ctx context.Context, instance string, ttl time.Duration) error
	Instances(ctx context.Context) ([]store.Instance, error)
	Leave(ctx context.Context, instance string) error
}

// Listener hears of shards gained and lost. Calls come from the Manager's
// round, one at a time, never under its lock.
type Listener interface {
	// ShardsGained is called once this instance holds the shards (shard →
	// epoch) taken in one round: the successor loads their stored records
	// and continues them.
	ShardsGained(ctx context.Context, gained map[int]int64)
	// ShardLost is called when this instance no longer sends for shard:
	// before a clean release (the listener may still write the shard's
	// pending records under the old epoch) or after the lease was lost.
	ShardLost(ctx context.Context, shard int)
}

// Observer counts what a Manager does (metrics); may be nil.
type Observer interface {
	LeaseRenewal(ok bool)
	LeaseTakeover()
	LeaseRelease()
	OwnedShards(n int)
}

// held is a shard this instance holds.
type held struct {
	epoch int64
	until time.Time // local deadline: the lease certainly runs until then
}

// Manager takes, renews and releases this instance's shard leases.
type Manager struct {
	cfg      Config
	db       Leases
	clock    clock.Clock
	log      *slog.Logger
	obs      Observer
	listener Listener
	rnd      *rand.Rand

	mu      sync.Mutex
	held    map[int]held
	lastOK  time.Time // last successful renewal round
	lastErr error

	catchWait time.Duration
	catchUp   func(ctx context.Context, asOf time.Time)
}

// Options are a Manager's collaborators; every field may be nil.
type Options struct {
	Clock    clock.Clock
	Log      *slog.Logger
	Observer Observer
	Listener Listener
	// Seed seeds the jitter and the order of takeovers (0: random).
	Seed uint64
}

// New checks cfg and returns a Manager over db.
func New(cfg Config, db Leases, o Options) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.InstanceID == "" {
		return nil, configError{errors.New("instance_id: must not be empty")}
	}
	seed := o.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	return &Manager{cfg: cfg, db: db, clock: clock.OrReal(o.Clock), log: log.With("instance", cfg.InstanceID),
		obs: o.Observer, listener: o.Listener, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		held: make(map[int]held)}, nil
}

// SetListener sets the listener (before Run).
func (m *Manager) SetListener(l Listener) { m.listener = l }

// lapseDrain is how long after resuming from a lapse the input received
// meanwhile (queued in the sockets) is taken to be applied.
const lapseDrain = 500 * time.Millisecond

// SetCatchUp sets what corrects this instance's trackers with the store
// after its rounds lapsed for longer than lease_ttl (the process paused,
// the database out of reach): every lease has then expired and its
// heartbeat too, the others hold its shards, and what it received
// meanwhile may be incomplete (input dropped from full socket buffers). The
// next round drops every shard held, waits wait with no heartbeat (the
// others write what they received up to the resumption; this instance's
// tracker writes are refused, see store.FenceTrackerWrites), runs fn with
// asOf half a second after the resumption (input after it is this
// instance's own and kept), and only then beats and takes shards again.
// Before Run.
func (m *Manager) SetCatchUp(wait time.Duration, fn func(ctx context.Context, asOf time.Time)) {
	m.catchWait, m.catchUp = wait, fn
}

// guard is how long before its lease ends an owner stops sending.
func (m *Manager) guard() time.Duration { return m.cfg.TTL / 4 }

// period is the time between rounds, before jitter.
func (m *Manager) period() time.Duration { return m.cfg.TTL / 4 }

// Shard returns presURI's shard.
func (m *Manager) Shard(presURI string) int { return Of(presURI, m.cfg.Shards) }

// Owns reports whether this instance may send for presURI now: it holds
// the shard's lease and the lease runs for longer than the guard.
func (m *Manager) Owns(presURI string) bool {
	_, ok := m.OwnsShard(m.Shard(presURI))
	return ok
}

// OwnsShard reports the epoch of shard when this instance may send for it.
func (m *Manager) OwnsShard(shard int) (int64, bool) {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.held[shard]
	if !ok || !now.Before(h.until.Add(-m.guard())) {
		return 0, false
	}
	return h.epoch, true
}

// Fence returns presURI's shard and the epoch of this instance's lease of
// it, the fencing token of its store writes; ok is false when it does not
// hold the lease (the record is not written). It stays true past Owns's
// guard, and during ShardLost at a clean release, so that pending rows are
// written; the store refuses them once a successor holds the shard.
func (m *Manager) Fence(presURI string) (shard int, epoch int64, ok bool) {
	shard = m.Shard(presURI)
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.held[shard]
	return shard, h.epoch, ok
}

// Held is one shard held, for listings.
type Held struct {
	Shard int
	Epoch int64
	// Left is how long this instance still sends for it.
	Left time.Duration
}

// Owned returns the shards this instance holds, in order.
func (m *Manager) Owned() []Held {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Held, 0, len(m.held))
	for s, h := range m.held {
		out = append(out, Held{Shard: s, Epoch: h.epoch, Left: max(h.until.Add(-m.guard()).Sub(now), 0)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Shard < out[j].Shard })
	return out
}

// Healthy is nil while the last successful round is recent enough that the
// leases it renewed still run (for /readyz).
func (m *Manager) Healthy() error {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lastOK.IsZero() {
		return fmt.Errorf("shard: no lease round has succeeded yet: %v", m.lastErr)
	}
	if age := now.Sub(m.lastOK); age >= m.cfg.TTL-m.guard() {
		return fmt.Errorf("shard: leases not renewed for %s (lease_ttl %s): %v", age.Round(time.Millisecond), m.cfg.TTL, m.lastErr)
	}
	return nil
}

// Prepare creates the lease rows that do not exist yet and checks
// shard_count against the lease table; Start does it too.
func (m *Manager) Prepare(ctx context.Context) error {
	if err := m.db.EnsureShards(ctx, m.cfg.Shards); err != nil {
		return fmt.Errorf("shard: %w", err)
	}
	return nil
}

// Others returns how many other instances are live (their heartbeats run):
// an instance starting while others run joins them, and its trackers
// catch up with what the others received before its inputs were bound
// before it takes any shard.
func (m *Manager) Others(ctx context.Context) (int, error) {
	is, err := m.db.Instances(ctx)
	if err != nil {
		return 0, fmt.Errorf("shard: %w", err)
	}
	n := 0
	for _, i := range is {
		if i.ID != m.cfg.InstanceID {
			n++
		}
	}
	return n, nil
}

// Start creates the lease rows (checking shard_count) and runs the first
// round.
func (m *Manager) Start(ctx context.Context) error {
	if err := m.Prepare(ctx); err != nil {
		return err
	}
	if err := m.round(ctx); err != nil {
		m.log.Warn("first lease round failed", "err", err)
	}
	return nil
}

// Run runs rounds until ctx ends, then releases every lease and leaves.
func (m *Manager) Run(ctx context.Context) {
	for {
		d := m.period()
		d += time.Duration(m.rnd.Int64N(int64(d/5)+1)) - d/10 // ±10%
		wake := make(chan struct{})
		t := m.clock.AfterFunc(d, func() { close(wake) })
		select {
		case <-ctx.Done():
			t.Stop()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			m.stop(sctx)
			cancel()
			return
		case <-wake:
		}
		if err := m.round(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("lease round failed", "err", err)
		}
	}
}

// stop releases every lease (the listener hears of each first) and
// deletes the heartbeat.
func (m *Manager) stop(ctx context.Context) {
	for _, h := range m.Owned() {
		m.release(ctx, h.Shard)
	}
	if err := m.db.Leave(ctx, m.cfg.InstanceID); err != nil {
		m.log.Warn("leave failed", "err", err)
	}
	m.log.Info("shard leases released")
}

// release hands shard over: the listener stops the shard's work and
// writes its pending records, then the lease is released.
func (m *Manager) release(ctx context.Context, shard int) {
	m.mu.Lock()
	h, ok := m.held[shard]
	m.mu.Unlock()
	if !ok {
		return
	}
	m.mu.Lock()
	h.until = time.Time{} // stop sending at once
	m.held[shard] = h
	m.mu.Unlock()
	if m.listener != nil {
		m.listener.ShardLost(ctx, shard)
	}
	m.mu.Lock()
	delete(m.held, shard)
	n := len(m.held)
	m.mu.Unlock()
	if err := m.db.ReleaseLease(ctx, shard, m.cfg.InstanceID, h.epoch); err != nil {
		m.log.Warn("release failed: the lease expires instead", "shard", shard, "err", err)
	}
	m.log.Info("shard released", "shard", shard, "epoch", h.epoch)
	if m.obs != nil {
		m.obs.LeaseRelease()
		m.obs.OwnedShards(n)
	}
}

// round is one heartbeat + renewal + rebalance, after a catch-up when the
// rounds lapsed.
func (m *Manager) round(ctx context.Context) error {
	if m.catchUp != nil {
		now := m.clock.Now()
		m.mu.Lock()
		lapse := now.Sub(m.lastOK)
		lapsed := !m.lastOK.IsZero() && lapse >= m.cfg.TTL
		m.mu.Unlock()
		if lapsed {
			m.recoverLapse(ctx, now, lapse)
			if ctx.Err() != nil {
				return fmt.Errorf("shard: %w", ctx.Err())
			}
		}
	}
	err := m.renew(ctx)
	if err == nil {
		err = m.rebalance(ctx)
	}
	m.mu.Lock()
	m.lastErr = err
	m.mu.Unlock()
	return err
}

// recoverLapse drops every shard held (their leases have expired), waits
// for the others' writes and corrects the trackers (SetCatchUp).
func (m *Manager) recoverLapse(ctx context.Context, resumed time.Time, lapse time.Duration) {
	m.log.Warn("lease rounds lapsed for longer than lease_ttl: catching up with the store before taking shards again",
		"lapse", lapse.Round(time.Millisecond), "wait", m.catchWait)
	m.mu.Lock()
	var lost []int
	for s := range m.held {
		lost = append(lost, s)
	}
	clear(m.held)
	m.mu.Unlock()
	m.tellLost(ctx, lost)
	if m.obs != nil {
		m.obs.OwnedShards(0)
	}
	wake := make(chan struct{})
	t := m.clock.AfterFunc(m.catchWait, func() { close(wake) })
	select {
	case <-ctx.Done():
		t.Stop()
		return
	case <-wake:
	}
	m.catchUp(ctx, resumed.Add(lapseDrain))
}

// renew beats the heartbeat and renews the held leases; shards missing
// from the renewed set are lost.
func (m *Manager) renew(ctx context.Context) error {
	t0 := m.clock.Now()
	if err := m.db.Heartbeat(ctx, m.cfg.InstanceID, m.cfg.TTL); err != nil {
		m.noteRenewal(false)
		return fmt.Errorf("shard: %w", err)
	}
	ls, err := m.db.RenewLeases(ctx, m.cfg.InstanceID, m.cfg.TTL)
	if err != nil {
		m.noteRenewal(false)
		return fmt.Errorf("shard: %w", err)
	}
	m.noteRenewal(true)
	now := map[int]store.Lease{}
	for _, l := range ls {
		now[l.Shard] = l
	}
	var lost []int
	var resumed []held
	var resumedShards []int
	m.mu.Lock()
	for s, h := range m.held {
		l, ok := now[s]
		if !ok || l.Epoch != h.epoch {
			lost = append(lost, s)
			delete(m.held, s)
			continue
		}
		if !t0.Before(h.until.Add(-m.guard())) {
			// Sending had stopped (renewals late) but the lease held:
			// the listener continues the shard as after a takeover.
			resumed = append(resumed, h)
			resumedShards = append(resumedShards, s)
		}
		m.held[s] = held{epoch: h.epoch, until: t0.Add(min(l.Left, m.cfg.TTL))}
	}
	var stray []store.Lease
	for s, l := range now {
		if _, ok := m.held[s]; !ok && !slices.Contains(lost, s) {
			stray = append(stray, l)
		}
	}
	m.lastOK = t0
	n := len(m.held)
	m.mu.Unlock()
	for _, l := range stray {
		// Held in the table under this id but not by this run (a restart
		// within the lease): released, and taken again with a new epoch
		// so that the earlier run's writes are fenced off.
		m.log.Info("lease of an earlier run released", "shard", l.Shard, "epoch", l.Epoch)
		if err := m.db.ReleaseLease(ctx, l.Shard, m.cfg.InstanceID, l.Epoch); err != nil {
			return fmt.Errorf("shard: %w", err)
		}
	}
	m.tellLost(ctx, lost)
	if m.obs != nil {
		m.obs.OwnedShards(n)
	}
	if len(resumed) > 0 {
		again := make(map[int]int64, len(resumed))
		for i, s := range resumedShards {
			m.log.Info("shard lease renewed after a lapse: sending again", "shard", s)
			again[s] = resumed[i].epoch
		}
		if m.listener != nil {
			m.listener.ShardsGained(ctx, again)
		}
	}
	return nil
}

func (m *Manager) noteRenewal(ok bool) {
	if m.obs != nil {
		m.obs.LeaseRenewal(ok)
	}
}

// fairShare is ceil(shards / live instances).
func fairShare(shards, live int) int {
	live = max(live, 1)
	return (shards + live - 1) / live
}

// rebalance takes free or expired shards up to the fair share, in random
// order, and releases shards above it, half the excess per round.
func (m *Manager) rebalance(ctx context.Context) error {
	is, err := m.db.Instances(ctx)
	if err != nil {
		return fmt.Errorf("shard: %w", err)
	}
	fair := fairShare(m.cfg.Shards, len(is))
	m.mu.Lock()
	owned := len(m.held)
	m.mu.Unlock()
	if owned > fair {
		excess := (owned - fair + 1) / 2
		mine := m.Owned()
		m.rnd.Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
		for _, h := range mine[:excess] {
			m.release(ctx, h.Shard)
		}
		return nil
	}
	if owned == fair {
		return nil
	}
	ls, err := m.db.Leases(ctx)
	if err != nil {
		return fmt.Errorf("shard: %w", err)
	}
	var free []int
	for _, l := range ls {
		if l.Left <= 0 && l.Shard < m.cfg.Shards {
			free = append(free, l.Shard)
		}
	}
	m.rnd.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	gained := make(map[int]int64)
	for _, s := range free {
		if owned >= fair {
			break
		}
		t0 := m.clock.Now()
		ep, ok, err := m.db.TakeLease(ctx, s, m.cfg.InstanceID, m.cfg.TTL)
		if err != nil {
			if len(gained) > 0 && m.listener != nil {
				m.listener.ShardsGained(ctx, gained)
			}
			return fmt.Errorf("shard: %w", err)
		}
		if !ok {
			continue // another instance was quicker
		}
		owned++
		m.mu.Lock()
		m.held[s] = held{epoch: ep, until: t0.Add(m.cfg.TTL)}
		n := len(m.held)
		m.mu.Unlock()
		m.log.Info("shard taken", "shard", s, "epoch", ep)
		if m.obs != nil {
			m.obs.LeaseTakeover()
			m.obs.OwnedShards(n)
		}
		gained[s] = ep
	}
	if len(gained) > 0 && m.listener != nil {
		m.listener.ShardsGained(ctx, gained)
	}
	return nil
}

// tellLost logs the shards whose leases were lost and tells the listener,
// in shard order.
func (m *Manager) tellLost(ctx context.Context, lost []int) {
	sort.Ints(lost)
	for _, s := range lost {
		m.log.Warn("shard lease lost", "shard", s)
		if m.listener != nil {
			m.listener.ShardLost(ctx, s)
		}
	}
}
