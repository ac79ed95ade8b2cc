package bla

import (
	"context"
	"log/slog"
	"time"

	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/sched"
)

// subscriptionLookup reports the engine's state of a subscription;
// implemented by *pua.Engine. When the Subscriber has it, a phone whose
// subscription the engine refused or lost is subscribed again on the next
// reconcile of its line instead of being skipped as subscribed.
type subscriptionLookup interface {
	Subscription(pua.SubKey) (pua.SubscriptionInfo, bool)
}

// fullStateRequester sends an in-dialog refresh of a subscription, which
// the notifier answers with a full-state NOTIFY; implemented by
// *pua.Engine.
type fullStateRequester interface {
	Refresh(pua.SubKey) error
}

// subscriptionLost reports whether the engine has no live subscription for
// the phone: refused (failed) or gone. m.mu is held.
func (m *Manager) subscriptionLost(aor, id string) bool {
	sl, ok := m.sub.(subscriptionLookup)
	if !ok {
		return false
	}
	info, ok := sl.Subscription(m.subKey(aor, id))
	return !ok || info.State == pua.StateFailed
}

// retryAfter is how long to wait before subscribing again after a
// subscription ended with probation or giveup: the retry-after parameter of
// the Subscription-State, else resubscribe_delay, at most subscribe_expires.
func (m *Manager) retryAfter(n pua.Notify) time.Duration {
	d := m.cfg.ResubscribeDelay
	if ss, err := pua.ParseSubscriptionState(headerOf(n, "Subscription-State")); err == nil && ss.RetryAfter >= 0 {
		d = time.Duration(ss.RetryAfter) * time.Second
	}
	return min(d, m.cfg.SubscribeExpires)
}

// resubscribeLater arms the new subscription of a phone after d; until then
// reconcile leaves the phone alone. m.mu is held.
func (m *Manager) resubscribeLater(ln *line, p *phone, d time.Duration) {
	at := m.now().Add(d)
	p.resubscribeAt, p.line = at, ln.aor
	m.m.Tracker("bla", "resubscribe_delayed")
	m.log.Info("bla: subscribing again later", "aor", ln.aor, "contact", p.contact, "retry_in", d)
	m.retry.Schedule(p, at)
}

// resubscribeDue reconciles the lines of the phones whose wait ended. It
// runs on the retry scheduler's timer.
func (m *Manager) resubscribeDue(now time.Time, due []*phone) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range due {
		ln := m.lines[p.line]
		if ln == nil || ln.phones[p.id] != p || p.resubscribeAt.IsZero() || p.resubscribeAt.After(now) {
			continue // line or phone gone, or another wait armed since
		}
		p.resubscribeAt = time.Time{}
		m.reconcile(context.Background(), ln)
	}
}

// cancelResubscribe stops a pending resubscribe of p. m.mu is held.
func (m *Manager) cancelResubscribe(p *phone) {
	m.retry.Cancel(p)
	p.resubscribeAt = time.Time{}
}

// SchedEntry is the phone's place in the retry scheduler.
func (p *phone) SchedEntry() *sched.Entry { return &p.retry }

// Close stops the resubscribe timers. The Manager must not be used after.
func (m *Manager) Close() { m.retry.Stop() }

// askFullState asks the phone for its full state after a gap in the
// versions of its partial documents (RFC 4235 §4.1: a notification was
// missed). m.mu is held.
func (m *Manager) askFullState(ctx context.Context, ln *line, p *phone, version uint64) {
	m.m.Tracker("bla", "version_gap")
	fr, ok := m.sub.(fullStateRequester)
	if !ok {
		return
	}
	m.log.LogAttrs(ctx, slog.LevelInfo, "bla: dialog-info version gap, asking the phone for its full state",
		slog.String("aor", ln.aor), slog.String("contact", p.contact), slog.Uint64("version", version))
	if err := fr.Refresh(m.subKey(ln.aor, p.id)); err != nil {
		m.log.LogAttrs(ctx, slog.LevelWarn, "bla: refresh for full state failed", slog.String("aor", ln.aor),
			slog.String("contact", p.contact), slog.Any("err", err))
	}
}
