// Package daemon wires puaside's components together: the store, the pua
// engine, the trackers (usrloc, dialoginfo, bla), ingest and the management
// server. It owns their start order and their graceful stop:
//
//	ingest → trackers (usrloc, dialoginfo, bla) → pua engine → SIP and store
//
// cmd/puaside runs one Daemon; end-to-end tests run one in-process.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/puaside/puaside/bla"
	"github.com/puaside/puaside/board"
	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/dialoginfo"
	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/ingest"
	"github.com/puaside/puaside/journal"
	"github.com/puaside/puaside/metrics"
	"github.com/puaside/puaside/mgmt"
	"github.com/puaside/puaside/pa"
	"github.com/puaside/puaside/proxyrpc"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/puaxmpp"
	"github.com/puaside/puaside/reconcile"
	"github.com/puaside/puaside/shard"
	"github.com/puaside/puaside/store"
	"github.com/puaside/puaside/usrloc"
)

// Daemon is one running puaside.
type Daemon struct {
	cfg config.Config
	log *slog.Logger
	m   *metrics.Metrics

	db *store.DB
	// journal takes the engine's prompt ETag writes (pua.etag_journal);
	// nil when they go to the database.
	journal *journal.Journal
	eng     *pua.Engine
	pa      *pa.Server // nil unless pa.mode makes it run
	// pub is what the trackers and the API publish through: the engine, or
	// paEngine when the presence server runs.
	pub publisher
	ul  *usrloc.Tracker
	di  *dialoginfo.Tracker
	// contactWrites and dialogWrites follow the trackers' store writes
	// for /readyz; nil when the tracker is off.
	contactWrites, dialogWrites *pua.WriteHealth

	bl  *bla.Manager
	in  *ingest.Ingest
	api *mgmt.Server
	// board is the live lamp board, fed by the trackers and the engine.
	board *board.Board
	rec   *reconcile.Reconciler // nil unless reconcile.enabled
	gw    *puaxmpp.Gateway      // nil unless xmpp.enabled
	// shards holds this instance's shard leases; nil unless cluster.enabled.
	shards     *shard.Manager
	stopShards context.CancelFunc
	shardsDone chan struct{}

	reloadMu       sync.Mutex // one Reload at a time; guards cfg's reloadable keys
	cancelTrackers context.CancelFunc
	trackers       sync.WaitGroup
	stopOnce       sync.Once
	stopErr        error
}

// New opens the database, applies the schema and builds every component.
// Nothing listens until Start.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Daemon, error) {
	if log == nil {
		log = slog.Default()
	}
	cfg.ShareDefaultDomain()
	d := &Daemon{cfg: cfg, log: log, m: metrics.New()}
	db, err := store.Open(ctx, cfg.DBURL, cfg.DBTable)
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	db.Log, db.Metrics = log, d.m
	closeStores := func() {
		db.Close()
		if d.journal != nil {
			d.journal.Close()
		}
	}
	if _, err := db.Migrate(ctx); err != nil {
		closeStores()
		return nil, fmt.Errorf("daemon: %w", err)
	}
	if err := replayLeftJournals(ctx, cfg.ETagJournalPaths(), cfg.ETagJournalPath(), db, log); err != nil {
		closeStores()
		return nil, fmt.Errorf("daemon: %w", err)
	}
	if path := cfg.ETagJournalPath(); path != "" {
		// Before anything reads the pua table: the rows of the journal
		// left by a crash are newer than the database's.
		if d.journal, err = openJournal(ctx, path, db, log); err != nil {
			closeStores()
			return nil, fmt.Errorf("daemon: %w", err)
		}
	}
	if _, err := Adopt(ctx, db, cfg, log); err != nil {
		closeStores()
		return nil, fmt.Errorf("daemon: %w", err)
	}
	d.db = db

	// Every tracker flag is an owner: the enabled trackers claim their
	// records at start, a disabled one claims nothing (Start says it is
	// done at once), so the publications of a feature turned off are
	// removed rather than refreshed forever. Records of the management API
	// have no owner and are kept.
	bopts := board.Options{Logger: log, Metrics: d.m, ServerName: cfg.PUA.ServerAddress,
		Server: func(ctx context.Context) error { return d.eng.ServerReady(ctx) }}
	if cfg.Features.BLA {
		bopts.Lines = boardLines{d}
	}
	d.board = board.New(bopts)
	popts := pua.Options{Logger: log, Store: db, Metrics: d.m, Owners: ownerFlags(),
		OnPublishResult: d.board.PublishResult}
	if d.journal != nil {
		popts.Journal = d.journal
	}
	if cfg.Cluster.Enabled {
		// Several instances on one database: this one sends only for the
		// shards it holds (package shard).
		d.shards, err = shard.New(cfg.Cluster, db, shard.Options{Log: log, Observer: d.m})
		if err != nil {
			closeStores()
			return nil, fmt.Errorf("daemon: %w", err)
		}
		popts.Ownership = d.shards
		// Every instance writes the contacts and calls it receives; one
		// whose heartbeat lapsed writes none (store.FenceTrackerWrites).
		db.FenceTrackerWrites(cfg.Cluster.InstanceID)
	}
	d.eng, err = pua.New(cfg.PUA, popts)
	if err != nil {
		closeStores()
		return nil, fmt.Errorf("daemon: %w", err)
	}
	if d.shards != nil {
		d.shards.SetListener(d.eng)
	}
	d.pub = d.eng
	// paGW is the XMPP gateway as pa sees it, bound once the gateway is
	// built (it publishes through pa).
	var paGW *paGateway
	if cfg.PA.Active(cfg.PUA.ServerAddress) {
		local := func(host string) bool { return d.ul != nil && d.ul.HasDomain(host) }
		popts := pa.Options{
			Store: db, Rules: db, Logger: log, Registerer: d.m.Registry(), OwnDialog: bla.OwnDialog,
			LocalDomain: local,
			OnWatchers:  func(uri string, ws []pa.WatcherState) { d.board.Watchers(uri, boardWatchers(ws)) },
		}
		if cfg.Gateway.Enabled {
			paGW = &paGateway{local: local}
			popts.Gateway = paGW
		}
		if d.shards != nil {
			// Several instances: watchers and presentities in the shared
			// database, NOTIFYs from the owner of the presentity's shard.
			popts.Cluster = &pa.Cluster{Ownership: d.shards, Changes: db, Instance: cfg.Cluster.InstanceID}
		}
		d.pa, err = pa.New(cfg.PA, popts)
		if err != nil {
			closeStores()
			return nil, fmt.Errorf("daemon: %w", err)
		}
		d.pub = paEngine{Engine: d.eng, pa: d.pa, upstream: cfg.PUA.ServerAddress != "", onResult: d.board.PublishResult}
		if d.shards != nil {
			d.shards.SetListener(shardListeners{d.eng, d.pa})
		}
	}
	observed := observedEngine{publisher: d.pub, b: d.board}
	if cfg.Features.BLA {
		d.bl, err = bla.New(cfg.BLA, bla.Options{Subscriber: d.eng, Publisher: observed, Store: db, Logger: log, Metrics: d.m})
		if err != nil {
			closeStores()
			return nil, fmt.Errorf("daemon: %w", err)
		}
		d.eng.HandleNotify(pua.FlagBLASubscribe, d.bl.HandleNotify)
	}
	if cfg.Features.Usrloc {
		d.contactWrites = pua.NewWriteHealth(nil)
		opts := usrloc.Options{Publisher: observed, Store: contactStore{db, d.contactWrites}, Logger: log, Metrics: d.m}
		bl, bd := d.bl, d.board
		opts.OnChange = func(aor string, bs []usrloc.Binding) {
			if bl != nil {
				bl.ContactsChanged(context.Background(), aor, blaContacts(bs))
			}
			bd.Contacts(aor, boardContacts(bs))
		}
		d.ul, err = usrloc.New(cfg.Usrloc, opts)
		if err != nil {
			closeStores()
			return nil, fmt.Errorf("daemon: %w", err)
		}
	}
	if cfg.Features.Dialoginfo {
		// The tracker tells the board the dialog of each of its documents
		// (the board need not parse them again).
		dpub := observed
		dpub.toldDialogs = true
		d.dialogWrites = pua.NewWriteHealth(nil)
		dopts := dialoginfo.Options{Publisher: dpub, Observer: d.board, Store: dialogStore{db, d.dialogWrites}, Logger: log, Metrics: d.m}
		if d.ul != nil {
			dopts.LocalDomains = d.ul // domains: [] means the registered users' domains
		}
		d.di, err = dialoginfo.New(cfg.Dialoginfo, dopts)
		if err != nil {
			closeStores()
			return nil, fmt.Errorf("daemon: %w", err)
		}
	}

	if cfg.Gateway.Enabled {
		// The gateway subscribes through the engine and publishes as the
		// trackers do: into pa in process when it runs, whose pending
		// watchers the XMPP users' answers decide. With pa, SIP watchers
		// of XMPP users are told by pa (WatcherAdded), not learnt from
		// presence.winfo at the upstream server: watch_winfo is off.
		// Without server_address its subscriptions to SIP users go to pa.
		gopts := puaxmpp.Options{Publisher: observed, Subscriber: d.eng, Store: db, Logger: log, Metrics: d.m}
		gcfg := cfg.Gateway
		if d.pa != nil {
			gopts.Authorizer = paAuthorizer{d.pa}
			gcfg.WatchWinfo = false
			if cfg.PUA.ServerAddress == "" {
				gopts.Subscriber = paSubscriber{Engine: d.eng, pa: d.pa}
			}
		}
		d.gw, err = puaxmpp.New(gcfg, gopts)
		if err != nil {
			closeStores()
			return nil, fmt.Errorf("daemon: %w", err)
		}
		if err := d.gw.RegisterMetrics(); err != nil {
			closeStores()
			return nil, fmt.Errorf("daemon: %w", err)
		}
		if paGW != nil {
			paGW.gw = d.gw
		}
		d.eng.HandleNotify(pua.FlagXMPPSubscribe, d.gw.HandleNotify)
		d.eng.HandleNotify(pua.FlagXMPPWinfo, d.gw.HandleWinfoNotify)
	}

	h := ingest.Handlers{}
	if d.ul != nil {
		ul := d.ul
		h.Register = observeSIP(d.board, ul.HandleSIP)
		h.Registration = func(ctx context.Context, r event.Registration) {
			if err := ul.ApplyRegistration(ctx, r); err != nil {
				log.Warn("usrloc: registration event refused", "aor", r.AoR, "err", err)
			}
		}
	}
	if d.di != nil {
		di := d.di
		h.Call = observeSIP(d.board, di.HandleSIP)
		h.Dialog = func(ctx context.Context, s event.DialogState) {
			if err := di.ApplyDialogState(ctx, s); err != nil {
				log.Warn("dialoginfo: dialog event refused", "call_id", s.CallID, "err", err)
			}
		}
	}
	d.in, err = ingest.New(cfg.Ingest, h, ingest.Options{Logger: log, Metrics: d.m})
	if err != nil {
		closeStores()
		return nil, fmt.Errorf("daemon: %w", err)
	}

	if cfg.Reconcile.Enabled {
		if d.rec, err = newReconciler(cfg, d.ul, d.di, log, d.m); err != nil {
			closeStores()
			return nil, fmt.Errorf("daemon: %w", err)
		}
	}

	deps := mgmt.Deps{
		Engine: d.pub,
		Board:  d.board,
		Events: d.in.EventsHandler(),
		Ready: []mgmt.ReadyCheck{
			{Name: "database", Check: db.Ping},
			{Name: "listeners", Check: d.listening},
			{Name: "presence server", Check: d.eng.ServerReady},
			{Name: "store writes", Check: d.storeReady},
		},
	}
	if d.gw != nil {
		deps.Ready = append(deps.Ready, mgmt.ReadyCheck{Name: "xmpp server", Check: d.gw.Ready})
	}
	if d.ul != nil {
		deps.Registrations = registrations{d.ul}
	}
	if d.di != nil {
		deps.Dialogs = dialogs{d.di}
	}
	if d.bl != nil {
		deps.Lines = lines{d.bl}
	}
	if d.shards != nil {
		deps.Shards = shards{db: db, m: d.shards}
		deps.Ready = append(deps.Ready, mgmt.ReadyCheck{Name: "shard leases",
			Check: func(context.Context) error { return d.shards.Healthy() }})
	}
	if d.pa != nil {
		deps.Presence = presence{d.pa}
		deps.Policy = policy{d.pa}
	}
	d.api, err = mgmt.New(cfg.HTTP, deps, mgmt.Options{Logger: log, Metrics: d.m})
	if err != nil {
		closeStores()
		return nil, fmt.Errorf("daemon: %w", err)
	}
	if err := d.registerGauges(); err != nil {
		closeStores()
		return nil, fmt.Errorf("daemon: %w", err)
	}
	d.m.KnownTable(cfg.DBTable)
	return d, nil
}

// ownerFlags are the flags of the records owned by a tracker.
func ownerFlags() []int {
	return []int{pua.FlagUsrloc, pua.FlagDialogPublish, pua.FlagBLAPublish, pua.FlagBLASubscribe,
		pua.FlagXMPPPublish, pua.FlagXMPPSubscribe, pua.FlagXMPPWinfo}
}

// listening is the /readyz check that every configured ingest listener is
// bound. With no SIP or HEP input configured (JSON events only) there is
// nothing to wait for.
func (d *Daemon) listening(context.Context) error {
	want := len(d.cfg.Ingest.ReplicateListen) + len(d.cfg.Ingest.TraceListen) + len(d.cfg.Ingest.HEPListen)
	if want == 0 {
		return nil
	}
	got := 0
	if d.in != nil {
		for _, a := range d.in.Addrs() {
			got += len(a)
		}
	}
	if got < want {
		return fmt.Errorf("ingest listeners not bound (%d of %d)", got, want)
	}
	return nil
}

// Start binds every listener and loads the stored state, in dependency
// order: the shared lines of the database (a NOTIFY can reach the engine as
// soon as it listens), engine, trackers, ingest, management.
func (d *Daemon) Start(ctx context.Context) error {
	if d.bl != nil {
		if err := d.bl.Load(ctx); err != nil {
			return d.abort(ctx, fmt.Errorf("daemon: start bla: %w", err))
		}
	}
	if err := d.eng.Start(ctx); err != nil {
		return d.abort(ctx, fmt.Errorf("daemon: start engine: %w", err))
	}
	if d.pa != nil {
		if err := d.pa.Start(ctx); err != nil {
			return d.abort(ctx, fmt.Errorf("daemon: start presence server: %w", err))
		}
	}
	// The owners that are not enabled claim nothing.
	if d.ul == nil {
		d.pub.ClaimsDone(pua.FlagUsrloc)
	}
	if d.di == nil {
		d.pub.ClaimsDone(pua.FlagDialogPublish)
	}
	if d.bl == nil {
		d.pub.ClaimsDone(pua.FlagBLAPublish)
		d.pub.ClaimsDone(pua.FlagBLASubscribe)
	}
	if d.gw == nil {
		d.eng.ClaimsDone(pua.FlagXMPPPublish)
		d.eng.ClaimsDone(pua.FlagXMPPSubscribe)
		d.eng.ClaimsDone(pua.FlagXMPPWinfo)
	}
	tctx, cancel := context.WithCancel(context.Background())
	d.cancelTrackers = cancel
	if d.bl != nil {
		d.bl.RestoreSubscriptions(d.eng.Subscriptions())
	}
	if d.ul != nil {
		if err := d.ul.Start(ctx); err != nil {
			return d.abort(ctx, fmt.Errorf("daemon: start usrloc: %w", err))
		}
		for _, r := range d.ul.Registrations() {
			if d.bl != nil {
				d.bl.ContactsChanged(ctx, r.AoR, blaContacts(r.Contacts))
			}
			d.board.Contacts(r.AoR, boardContacts(r.Contacts))
		}
		d.run("usrloc", func() error { return d.ul.Run(tctx) })
	}
	if d.bl != nil {
		d.bl.ClaimRestored(d.pub)
	}
	if d.di != nil {
		if err := d.di.Start(ctx); err != nil {
			return d.abort(ctx, fmt.Errorf("daemon: start dialoginfo: %w", err))
		}
		d.run("dialoginfo", func() error { return d.di.Run(tctx) })
	}
	joining := false
	if d.shards != nil {
		d.shards.SetCatchUp(d.catchUpWait(), d.catchUp)
		if err := d.shards.Prepare(ctx); err != nil {
			return d.abort(ctx, fmt.Errorf("daemon: start cluster: %w", err))
		}
		others, err := d.shards.Others(ctx)
		if err != nil {
			d.log.Warn("cluster: live instances not read: starting as the first", "err", err)
		}
		joining = others > 0
		if !joining {
			// After the trackers: every presentity they restored is in
			// the engine when the first shards are taken over.
			if err := d.shards.Start(ctx); err != nil {
				return d.abort(ctx, fmt.Errorf("daemon: start cluster: %w", err))
			}
			sctx, cancel := context.WithCancel(context.Background())
			d.stopShards, d.shardsDone = cancel, make(chan struct{})
			go func() { defer close(d.shardsDone); d.shards.Run(sctx) }()
		}
	}
	if err := d.in.Start(ctx); err != nil {
		return d.abort(ctx, fmt.Errorf("daemon: start ingest: %w", err))
	}
	if joining {
		d.join(time.Now())
	}
	if err := d.api.Start(ctx); err != nil {
		return d.abort(ctx, fmt.Errorf("daemon: start management server: %w", err))
	}
	if d.rec != nil {
		d.run("reconcile", func() error { return d.rec.Run(tctx) })
	}
	if d.gw != nil {
		if err := d.gw.Start(ctx, d.pub); err != nil {
			return d.abort(ctx, fmt.Errorf("daemon: start xmpp gateway: %w", err))
		}
		d.run("xmpp", func() error { return d.gw.Run(tctx) })
	}
	d.seedBoard()
	d.run("board", func() error { return d.board.Run(tctx) })
	if d.pa != nil {
		d.log.Info("puaside started", "sip", d.eng.ContactURI(), "pa", d.pa.Addrs(), "http", d.api.Addr(), "db", d.db.Dialect)
	} else {
		d.log.Info("puaside started", "sip", d.eng.ContactURI(), "http", d.api.Addr(), "db", d.db.Dialect)
	}
	return nil
}

// join takes this instance into a running cluster once its trackers have
// caught up: the REGISTERs and call messages the other instances received
// between their last flush before this Start and bound, when the inputs
// were bound, reach this instance only through the store. It waits until
// the others have written everything up to bound (their flush_interval,
// the same as this instance's, and a second), corrects the trackers with
// the store (what they received since bound they keep), and only then
// heartbeats and takes its shards: until then the others keep them and
// /readyz fails.
func (d *Daemon) join(bound time.Time) {
	wait := d.catchUpWait()
	d.log.Info("cluster: joining running instances: catching up with the store before taking shards", "wait", wait)
	sctx, cancel := context.WithCancel(context.Background())
	d.stopShards, d.shardsDone = cancel, make(chan struct{})
	go func() {
		defer close(d.shardsDone)
		t := time.NewTimer(time.Until(bound.Add(wait)))
		select {
		case <-sctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		d.catchUp(sctx, bound)
		if err := d.shards.Start(sctx); err != nil {
			d.log.Error("cluster: not started", "err", err)
			return
		}
		d.shards.Run(sctx)
	}()
}

// catchUpWait is how long after a time the other instances have written
// what they received up to it: their flush_interval (the same as this
// instance's) and a second.
func (d *Daemon) catchUpWait() time.Duration {
	wait := time.Second
	if d.ul != nil {
		wait += d.cfg.Usrloc.FlushInterval
	}
	if d.di != nil {
		wait = max(wait, time.Second+d.cfg.Dialoginfo.FlushInterval)
	}
	return wait
}

// catchUp corrects the trackers with the contacts and calls the other
// instances stored, keeping what they received after asOf.
func (d *Daemon) catchUp(ctx context.Context, asOf time.Time) {
	if d.ul != nil {
		n, err := d.ul.CatchUp(ctx, asOf)
		if err != nil {
			d.log.Warn("cluster: contacts not caught up", "err", err)
		}
		d.log.Info("cluster: contacts caught up with the store", "aors_changed", n)
	}
	if d.di != nil {
		n, err := d.di.CatchUp(ctx, asOf)
		if err != nil {
			d.log.Warn("cluster: calls not caught up", "err", err)
		}
		d.log.Info("cluster: calls caught up with the store", "calls_changed", n)
	}
}

// newReconciler builds the reconciliation with the proxy, feeding the
// trackers that are on.
func newReconciler(cfg config.Config, ul *usrloc.Tracker, di *dialoginfo.Tracker, log *slog.Logger, m *metrics.Metrics) (*reconcile.Reconciler, error) {
	rc := cfg.Reconcile
	client := proxyrpc.NewClient(rc.RPCURL, proxyrpc.Options{Timeout: rc.Timeout, MaxResponse: rc.MaxResponseSize})
	o := reconcile.Options{
		Source:           proxyrpc.Kamailio{Client: client, Table: rc.ULTable},
		PermanentExpires: int(cfg.Usrloc.DefaultExpires / time.Second),
		CallMaxAge:       cfg.Dialoginfo.LifetimeCap,
		Logger:           log,
		Metrics:          m,
	}
	if ul != nil {
		o.Registrations = ul
	}
	if di != nil {
		o.Calls = di
	}
	return reconcile.New(rc, o)
}

// run starts a tracker loop.
func (d *Daemon) run(name string, fn func() error) {
	d.trackers.Add(1)
	go func() {
		defer d.trackers.Done()
		if err := fn(); err != nil && !errors.Is(err, context.Canceled) {
			d.log.Error("tracker stopped", "tracker", name, "err", err)
		}
	}()
}

// abort stops what was started and returns err.
func (d *Daemon) abort(ctx context.Context, err error) error {
	_ = d.Stop(ctx)
	return err
}

// Stop stops in reverse order: management, ingest (its queue drains into the
// trackers), the trackers (they flush their tables), the engine (it flushes
// the pua table), then closes the database. It is safe to call twice.
func (d *Daemon) Stop(ctx context.Context) error {
	d.stopOnce.Do(func() {
		var errs []error
		d.board.Close() // its event streams would hold the server's shutdown
		if err := d.api.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
		d.in.Stop()
		if d.cancelTrackers != nil {
			d.cancelTrackers()
		}
		d.trackers.Wait()
		if d.stopShards != nil {
			// Every lease released, each shard's rows written first: a
			// successor takes over at once.
			d.stopShards()
			<-d.shardsDone
		}
		if d.bl != nil {
			d.bl.Close()
		}
		if d.pa != nil {
			if err := d.pa.Stop(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if err := d.eng.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
		if d.journal != nil {
			if err := d.journal.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := d.db.Close(); err != nil {
			errs = append(errs, err)
		}
		d.stopErr = errors.Join(errs...)
		d.log.Info("puaside stopped")
	})
	return d.stopErr
}

// Run starts the daemon, waits for ctx to end, then stops it gracefully
// within timeout.
func (d *Daemon) Run(ctx context.Context, timeout time.Duration) error {
	if err := d.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.Stop(sctx)
}

// publisher is the pua engine as the trackers (usrloc, dialoginfo, bla,
// the XMPP gateway: Publisher, PublicationLister, Claimer) and the
// management API use it.
type publisher interface {
	mgmt.Engine
	Claim(pua.Key) bool
	ClaimSubscription(pua.SubKey) bool
	ClaimsDone(flag int)
}

// PA returns the presence server, nil when it does not run.
func (d *Daemon) PA() *pa.Server { return d.pa }

// Gateway returns the XMPP gateway, nil when xmpp.enabled is off (for
// tests and diagnostics).
func (d *Daemon) Gateway() *puaxmpp.Gateway { return d.gw }

// Engine returns the pua engine (for tests and diagnostics).
func (d *Daemon) Engine() *pua.Engine { return d.eng }

// Addrs returns the bound addresses: "sip" (our Contact), "pa" (the
// presence server's listeners, "udp:host:port", when it runs), "http",
// "metrics" (when metrics_listen is set), and the ingest inputs
// ("replicate", "trace", "hep").
func (d *Daemon) Addrs() map[string][]string {
	out := map[string][]string{"sip": {d.eng.ContactURI()}, "http": {d.api.Addr()}}
	if a := d.api.MetricsAddr(); a != "" {
		out["metrics"] = []string{a}
	}
	if d.pa != nil {
		out["pa"] = d.pa.Addrs()
	}
	for k, v := range d.in.Addrs() {
		out[k] = v
	}
	return out
}

// blaContacts adapts usrloc's bindings to the BLA manager's contacts.
func blaContacts(bs []usrloc.Binding) []bla.Contact {
	out := make([]bla.Contact, 0, len(bs))
	for _, b := range bs {
		out = append(out, bla.Contact{URI: b.URI, Expires: b.Expires, Received: b.Received})
	}
	return out
}

// registrations adapts the usrloc tracker to the management API.
type registrations struct{ t *usrloc.Tracker }

func (r registrations) Registrations() any { return r.t.Registrations() }
func (r registrations) Registration(aor string) (any, bool) {
	return r.t.Registration(aor)
}
func (r registrations) SetFlag(ctx context.Context, aor string, on bool) error {
	return aorError(r.t.SetFlag(ctx, aor, on))
}
func (r registrations) ClearFlag(ctx context.Context, aor string) error {
	return aorError(r.t.ClearFlag(ctx, aor))
}

// aorError marks usrloc's refusals of an address of record as invalid
// requests (HTTP 400) for the API; other errors (the database) pass as
// they are.
func aorError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, usrloc.ErrNoDomain):
		return fmt.Errorf("%w: %w (the AoR has no domain and usrloc.default_domain is not set)", mgmt.ErrInvalid, err)
	case errors.Is(err, usrloc.ErrToNotSIP), errors.Is(err, usrloc.ErrToNoUser):
		return fmt.Errorf("%w: %w", mgmt.ErrInvalid, err)
	}
	return err
}
func (r registrations) Flags() any {
	m := r.t.Flags()
	out := make([]flagItem, 0, len(m))
	for aor, on := range m {
		out = append(out, flagItem{AoR: aor, Publish: on})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AoR < out[j].AoR })
	return out
}

// flagItem is one stored per-user publishing flag, as the API lists it.
type flagItem struct {
	AoR     string `json:"aor"`
	Publish bool   `json:"publish"`
}

// dialogs adapts the dialoginfo tracker to the management API.
type dialogs struct{ t *dialoginfo.Tracker }

func (d dialogs) Dialogs() any { return d.t.Dialogs() }

// shards adapts the lease table to the management API.
type shards struct {
	db *store.DB
	m  *shard.Manager
}

// shardItem is one shard lease as the API lists it.
type shardItem struct {
	Shard  int    `json:"shard"`
	Owner  string `json:"owner"`
	Epoch  int64  `json:"epoch"`
	LeftMS int64  `json:"left_ms"`
	Mine   bool   `json:"mine"`
}

func (s shards) Shards(ctx context.Context) (any, error) {
	ls, err := s.db.Leases(ctx)
	if err != nil {
		return nil, err
	}
	mine := map[int]int64{}
	for _, h := range s.m.Owned() {
		mine[h.Shard] = h.Epoch
	}
	out := make([]shardItem, 0, len(ls))
	for _, l := range ls {
		ep, ok := mine[l.Shard]
		out = append(out, shardItem{Shard: l.Shard, Owner: l.Owner, Epoch: l.Epoch,
			LeftMS: max(l.Left.Milliseconds(), 0), Mine: ok && ep == l.Epoch})
	}
	return out, nil
}

// lines adapts the BLA manager to the management API.
type lines struct{ m *bla.Manager }

func (l lines) Lines() any { return l.m.Lines() }
func (l lines) AddLine(ctx context.Context, aor string, members []string) error {
	return lineError(l.m.AddLine(ctx, aor, members))
}
func (l lines) RemoveLine(ctx context.Context, aor string) error {
	return lineError(l.m.RemoveLine(ctx, aor))
}

// lineError maps the BLA manager's refusals to the API's statuses: unknown
// line 404, bad AoR 400, a line of the YAML file 409.
func lineError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bla.ErrUnknownLine):
		return fmt.Errorf("%w: %w", mgmt.ErrNotFound, err)
	case errors.Is(err, bla.ErrBadAoR):
		return fmt.Errorf("%w: %w", mgmt.ErrInvalid, err)
	case errors.Is(err, bla.ErrStaticLine):
		return fmt.Errorf("%w: %w", mgmt.ErrConflict, err)
	}
	return err
}
