package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/daemon"
)

// reloadTarget is the running daemon, as the reloader uses it.
type reloadTarget interface {
	Reload(ctx context.Context, next config.Config) (daemon.ReloadResult, error)
}

// reloader answers SIGHUP. It re-reads the configuration file, applies
// what can change at run time without dropping state (log level, then the
// daemon's reloadable keys: publishing patterns, shared lines, trusted
// sources, the API token) and names the changed keys that wait for a
// restart; a file that does not load changes nothing. A hang-up never
// stops the daemon.
type reloader struct {
	path   string
	cur    config.Config
	level  *slog.LevelVar
	log    *slog.Logger
	target reloadTarget
	notify notifier
}

// run handles the signals of sig until ctx ends.
func (r *reloader) run(ctx context.Context, sig <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
			r.reload(ctx)
		}
	}
}

// reload re-reads the file once.
func (r *reloader) reload(ctx context.Context) {
	if err := r.notify.reloading(); err != nil {
		r.log.Warn("reload: cannot notify systemd", "err", err)
	}
	defer func() {
		if err := r.notify.ready(); err != nil {
			r.log.Warn("reload: cannot notify systemd", "err", err)
		}
	}()
	r.log.Info("SIGHUP: reloading the configuration", "file", r.path)
	next, err := checkFile(r.path)
	if err != nil {
		r.log.Error("reload refused, the running configuration is kept", "file", r.path, "err", err)
		return
	}
	if next.LogLevel != r.cur.LogLevel {
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(next.LogLevel)); err == nil {
			r.level.Set(lvl)
			r.log.Info("reload: log level changed", "from", r.cur.LogLevel, "to", next.LogLevel)
		}
	}
	r.cur = next
	if r.target == nil {
		r.log.Info("reload: done")
		return
	}
	res, err := r.target.Reload(ctx, next)
	if err != nil {
		r.log.Error("reload: not every change was applied", "err", err)
	}
	if len(res.Applied) > 0 {
		r.log.Info("reload: applied", "keys", res.Applied)
	}
	if len(res.Restart) > 0 {
		r.log.Warn("reload: these keys changed but need a restart of puaside", "keys", res.Restart)
	}
	r.log.Info("reload: done")
}
