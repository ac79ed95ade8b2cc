package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/puaside/puaside/clock"
	"github.com/puaside/puaside/dialoginfo"
	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/metrics"
	"github.com/puaside/puaside/proxyrpc"
	"github.com/puaside/puaside/usrloc"
)

// Source is the proxy's state (proxyrpc.Kamailio).
type Source interface {
	Bindings(ctx context.Context) (proxyrpc.Bindings, error)
	Dialogs(ctx context.Context) (proxyrpc.Dialogs, error)
}

// Registrations is the part of the usrloc tracker the reconciler uses.
type Registrations interface {
	Registrations() []usrloc.AoRInfo
	CorrectBindings(aor string, contacts []event.Contact, asked time.Time, grace time.Duration) bool
}

// Calls is the part of the dialoginfo tracker the reconciler uses.
type Calls interface {
	Dialogs() []dialoginfo.DialogInfo
	EndCall(callID, fromTag string, asOf time.Time) bool
	ApplyDialogState(ctx context.Context, d event.DialogState) error
}

// Options are the reconciler's collaborators.
type Options struct {
	// Source is the proxy; required.
	Source Source
	// Registrations is the usrloc tracker; nil skips bindings.
	Registrations Registrations
	// Calls is the dialoginfo tracker; nil skips dialogs.
	Calls Calls
	// PermanentExpires is the lifetime in seconds given to a permanent
	// binding (refreshed every pass); 0 means 3600.
	PermanentExpires int
	// CallMaxAge is the age beyond which a call is not adopted (the
	// dialoginfo lifetime cap); 0 means 4h.
	CallMaxAge time.Duration
	// Logger; nil discards logs.
	Logger *slog.Logger
	// Metrics; nil counts nothing.
	Metrics *metrics.Metrics
	// Clock gives the time of a pass; nil is the wall clock.
	Clock clock.Clock
}

// Result is what one pass did.
type Result struct {
	// Added, Removed, Changed and Gone count the AoRs corrected by reason.
	Added, Removed, Changed, Gone int
	// Ended and Adopted count calls.
	Ended, Adopted int
	// Yielded counts corrections refused by a tracker that had newer input.
	Yielded int
	// Partial is true when a snapshot could not be read whole.
	Partial bool
	// Err joins the errors of the RPC calls.
	Err error
}

// Reconciler corrects the trackers from the proxy's state.
type Reconciler struct {
	cfg  Config
	src  Source
	regs Registrations
	cls  Calls
	perm int
	age  time.Duration
	log  *slog.Logger
	m    *metrics.Metrics
	now  func() time.Time

	mu    sync.Mutex // one pass at a time
	known map[callKey]bool
}

// New builds a reconciler; cfg is validated.
func New(cfg Config, o Options) (*Reconciler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	if o.Source == nil {
		return nil, errors.New("reconcile: new: a Source is required")
	}
	r := &Reconciler{cfg: cfg, src: o.Source, perm: o.PermanentExpires, age: o.CallMaxAge,
		log: o.Logger, m: o.Metrics, now: clock.OrReal(o.Clock).Now, known: map[callKey]bool{}}
	if cfg.Registrations && o.Registrations != nil {
		r.regs = o.Registrations
	}
	if cfg.Dialogs && o.Calls != nil {
		r.cls = o.Calls
	}
	if r.perm <= 0 {
		r.perm = 3600
	}
	if r.age <= 0 {
		r.age = 4 * time.Hour
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

// count increments a reconcile metric.
func (r *Reconciler) count(what string, n int) {
	for i := 0; i < n; i++ {
		r.m.Tracker("reconcile", what)
	}
}

// unansweredHint says what most often keeps a Kamailio registrar from
// answering ul.dump: it builds the whole answer (about 520 bytes a
// contact) in one process's private memory, and with too little (-M, 8 MiB
// by default, enough for about 6,000 contacts) it sends none, logging
// "could not allocate private memory"; and it writes the answer at once,
// cutting it when it outgrows the connection's write queue
// (tcp_conn_wq_max, 32 KiB by default); a large answer also takes seconds.
const unansweredHint = "a Kamailio registrar sends no ul.dump answer without the private memory for all of it " +
	"(-M; its log says \"could not allocate private memory\") and cuts one longer than its TCP write queue " +
	"(tcp_conn_wq_max), and a large one may take longer than reconcile.timeout: see the operator guide, reconciliation"

// unanswered reports an RPC error of a call that got no whole answer: a
// timeout, or a connection closed before or in the middle of the response.
func unanswered(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// Run reconciles at once, then every interval, until ctx ends.
func (r *Reconciler) Run(ctx context.Context) error {
	tick := time.NewTicker(r.cfg.Interval)
	defer tick.Stop()
	for {
		res := r.Pass(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if res.Err != nil {
			args := []any{"rpc_url", r.cfg.RPCURL, "err", res.Err}
			if unanswered(res.Err) {
				args = append(args, "hint", unansweredHint)
			}
			r.log.Warn("reconcile: proxy not read; retried next interval", args...)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Pass runs one reconciliation.
func (r *Reconciler) Pass(ctx context.Context) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	var res Result
	var errs []error
	if r.regs != nil {
		if err := r.bindings(ctx, &res); err != nil {
			errs = append(errs, err)
		}
	}
	if r.cls != nil {
		if err := r.calls(ctx, &res); err != nil {
			errs = append(errs, err)
		}
	}
	res.Err = errors.Join(errs...)
	r.count("pass", 1)
	if res.Err != nil {
		r.count("rpc_error", 1)
	}
	if res.Added+res.Removed+res.Changed+res.Gone+res.Ended+res.Adopted > 0 || res.Partial {
		r.log.Info("reconcile: corrected from the proxy", "aors_added", res.Added, "aors_removed", res.Removed,
			"aors_changed", res.Changed, "aors_gone", res.Gone, "calls_ended", res.Ended,
			"calls_adopted", res.Adopted, "yielded", res.Yielded, "partial", res.Partial)
	}
	return res
}

// bindings reconciles the usrloc tracker.
func (r *Reconciler) bindings(ctx context.Context, res *Result) error {
	asOf := r.now()
	snap, err := r.src.Bindings(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: bindings: %w", err)
	}
	plan := planBindings(snap, r.regs.Registrations(), r.cfg.DefaultDomain, r.now(), r.perm)
	if plan.Partial {
		res.Partial = true
		r.count("partial_bindings", 1)
		r.log.Warn("reconcile: ul.dump not read whole; no AoR is taken as gone this pass",
			"skipped_records", snap.Skipped, "aors_without_domain", plan.Unusable,
			"hint", "set reconcile.default_domain when the registrar keys AoRs by user only (use_domain=0)")
	}
	for _, f := range plan.Fixes {
		if !r.regs.CorrectBindings(f.AoR, f.Contacts, asOf, r.cfg.Grace) {
			res.Yielded++
			continue
		}
		r.log.Debug("reconcile: bindings corrected", "aor", f.AoR, "why", f.Why, "contacts", len(f.Contacts))
		switch f.Why {
		case "added":
			res.Added++
		case "removed":
			res.Removed++
		case "gone":
			res.Gone++
		default:
			res.Changed++
		}
		r.count("aor_"+f.Why, 1)
	}
	r.count("yielded", res.Yielded)
	return nil
}

// calls reconciles the dialoginfo tracker.
func (r *Reconciler) calls(ctx context.Context, res *Result) error {
	asOf := r.now()
	snap, err := r.src.Dialogs(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: dialogs: %w", err)
	}
	cutoff := asOf.Add(-r.cfg.Grace)
	plan := planCalls(snap, r.cls.Dialogs(), cutoff, r.now(), r.age, r.cfg.AdoptCalls, r.known)
	r.known = plan.Known
	if plan.Partial {
		res.Partial = true
		r.count("partial_dialogs", 1)
		r.log.Warn("reconcile: dlg.list not read whole; no call is ended this pass", "skipped_dialogs", snap.Skipped)
	}
	for _, k := range plan.End {
		if r.cls.EndCall(k.callID, k.fromTag, cutoff) {
			res.Ended++
			r.count("call_ended", 1)
		} else {
			res.Yielded++
		}
	}
	for _, d := range plan.Adopt {
		if err := r.cls.ApplyDialogState(ctx, d); err != nil {
			r.count("call_not_adopted", 1)
			r.log.Warn("reconcile: call not adopted", "call_id", d.CallID, "err", err)
			continue
		}
		res.Adopted++
		r.count("call_adopted", 1)
	}
	return nil
}
