package main

import (
	"context"
	"log/slog"
	"os"
	"reflect"

	"github.com/puaside/puaside/config"
)

// reloader answers SIGHUP. It re-reads the configuration file and applies
// what can change at run time without a restart — today the log level —
// and says which changes wait for a restart; a file that does not load
// changes nothing. A hang-up never stops the daemon.
type reloader struct {
	path  string
	cur   config.Config
	level *slog.LevelVar
	log   *slog.Logger
}

// run handles the signals of sig until ctx ends.
func (r *reloader) run(ctx context.Context, sig <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
			r.reload()
		}
	}
}

// reload re-reads the file once.
func (r *reloader) reload() {
	r.log.Info("SIGHUP: reloading the configuration", "file", r.path)
	next, err := config.Load(r.path)
	if err != nil {
		r.log.Error("reload refused, the running configuration is kept", "file", r.path, "err", err)
		return
	}
	if next.LogLevel != r.cur.LogLevel {
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(next.LogLevel)); err == nil {
			r.level.Set(lvl)
			r.log.Info("reload: log level changed", "from", r.cur.LogLevel, "to", next.LogLevel)
			r.cur.LogLevel = next.LogLevel
		}
	}
	rest := next
	rest.LogLevel = r.cur.LogLevel
	if !reflect.DeepEqual(rest, r.cur) {
		r.log.Warn("reload: only log_level changes at run time; restart puaside to apply the other changes of the file")
		return
	}
	r.log.Info("reload: done")
}
