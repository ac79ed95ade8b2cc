// Command puaside is a presence sidecar for SIP platforms: beside a Kamailio
// or OpenSIPS registrar/proxy it turns mirrored registrations and calls, and
// shared-line phones' NOTIFYs, into PUBLISHes to a presence server.
//
//	puaside [run] [-config FILE]   run the daemon (the default subcommand)
//	puaside migrate [-config FILE] apply the database schema, adopt Kamailio's pua rows, and exit
//	puaside check [-config FILE]   validate a configuration file (exit 0 good, 2 bad)
//	puaside config [-config FILE]  print the effective configuration, secrets masked
//	puaside version                print the version
//	puaside publish|subscribe|ls|flag|line ...   talk to a running daemon
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/buildinfo"
	"github.com/puaside/puaside/internal/daemon"
	"github.com/puaside/puaside/internal/heapfloor"
	"github.com/puaside/puaside/store"
)

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

// runMain dispatches the subcommand and returns the exit status.
func runMain(args []string, stdout, stderr io.Writer) int {
	name := "run"
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		usage(stdout)
		return exitOK
	}
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version" || args[0] == "-V") {
		args = append([]string{"version"}, args[1:]...)
	}
	if len(args) > 0 && (len(args[0]) == 0 || args[0][0] != '-') {
		name, args = args[0], args[1:]
	}
	if _, ok := cliCommands()[name]; ok {
		return runCLI(name, args, stdout, stderr)
	}
	switch name {
	case "run":
		return runDaemon(args, stderr)
	case "migrate":
		return runMigrate(args, stdout, stderr)
	case "check":
		return runCheck(args, stdout, stderr)
	case "config":
		return runConfig(args, stdout, stderr)
	case "version":
		if len(args) > 0 {
			fmt.Fprintf(stderr, "puaside version: unexpected argument %q\n", args[0])
			return exitUsage
		}
		fmt.Fprintln(stdout, "puaside", buildinfo.Get())
		return exitOK
	case "help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "puaside: unknown subcommand %q\n\n", name)
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: puaside [subcommand] [flags]

  run       run the daemon (default); -config FILE (env PUASIDE_CONFIG)
  migrate   apply the database schema (adopting Kamailio's pua table and
            publications) and exit; -config FILE
  check     validate a configuration file and exit (0 good, 2 bad); -config FILE
  config    print the effective configuration, secrets masked; -config FILE
  version   print the version (also --version)
`)
	cmds := cliCommands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, cmds[n])
	}
	fmt.Fprint(w, "\nRun 'puaside SUBCOMMAND -h' for the flags of a subcommand.\n")
}

// loadConfig parses -config from args.
func loadConfig(name string, args []string, stderr io.Writer) (config.Config, int) {
	cfg, _, code := loadConfigPath(name, args, stderr)
	return cfg, code
}

// loadConfigPath is loadConfig that also returns the file's path ("" for
// the built-in defaults). The file is validated as `puaside check` does
// (files readable, db_url's form): a configuration that check refuses
// exits 2 here too, the status systemd's RestartPreventExitStatus stops on.
func loadConfigPath(name string, args []string, stderr io.Writer) (config.Config, string, int) {
	fs := flag.NewFlagSet("puaside "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("PUASIDE_CONFIG"), "YAML configuration `file` (empty: built-in defaults)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config.Config{}, "", exitOK
		}
		return config.Config{}, "", exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "puaside %s: unexpected argument %q\n", name, fs.Arg(0))
		return config.Config{}, "", exitUsage
	}
	cfg, err := checkFile(*path)
	if err != nil {
		printProblems(stderr, *path, err)
		return config.Config{}, "", exitUsage
	}
	return cfg, *path, -1
}

// newLogger builds the process logger from the configuration; its level
// is lvl, set from the configuration, so that a reload can change it.
// With log_syslog the lines go to syslog as well; a syslog that cannot be
// reached leaves stderr alone, and says so there.
func newLogger(cfg config.Config, w io.Writer, lvl *slog.LevelVar) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(cfg.LogLevel))
	lvl.Set(l)
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	if cfg.LogSyslog == "" {
		return slog.New(h)
	}
	sw, err := dialSyslog(cfg.LogSyslog)
	if err != nil {
		log := slog.New(h)
		log.Warn("logging to stderr only", "err", err)
		return log
	}
	return slog.New(teeHandler{h, newSyslogHandler(sw, lvl)})
}

func runDaemon(args []string, stderr io.Writer) int {
	// SIGHUP is caught from the start: its default action would kill the
	// daemon without a flush.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, path, code := loadConfigPath("run", args, stderr)
	if code >= 0 {
		return code
	}
	lvl := new(slog.LevelVar)
	log := newLogger(cfg, stderr, lvl)
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// The runtime's setting: for the process, so here rather than in the
	// daemon, of which tests run several in one process.
	heapfloor.Start(ctx, uint64(cfg.HeapFloorMiB)<<20)
	sd := newNotifier()
	d, err := daemon.New(ctx, cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return exitRemote
	}
	if err := d.Start(ctx); err != nil {
		log.Error("cannot start", "err", err)
		return exitRemote
	}
	if err := sd.ready(); err != nil {
		log.Warn("cannot notify systemd", "err", err)
	}
	r := &reloader{path: path, cur: cfg, level: lvl, log: log, target: d, notify: sd}
	go r.run(ctx, hup)
	<-ctx.Done()
	log.Info("stopping: draining and flushing", "timeout", stopTimeout)
	if err := sd.stopping(); err != nil {
		log.Warn("cannot notify systemd", "err", err)
	}
	return stopWithin(d, log, stopTimeout, drainBudget(stopTimeout, cfg.PUA.StopFlushTimeout))
}

// stopTimeout bounds the graceful stop after SIGTERM: the unit's
// TimeoutStopSec leaves room beyond it.
const stopTimeout = 15 * time.Second

// drainBudget is the part of the stop bound given to draining (the
// transactions in flight): the rest is kept for the final writes, which
// the engine bounds by pua.stop_flush_timeout. At least a third of the
// bound drains.
func drainBudget(bound, flush time.Duration) time.Duration {
	if d := bound - flush; d >= bound/3 {
		return d
	}
	return bound / 3
}

// stopper is the daemon as stopWithin stops it.
type stopper interface {
	Stop(ctx context.Context) error
}

// stopWithin stops d, draining for at most drain, and returns the exit
// status by bound at the latest: a part that does not return by then (a
// database that stopped answering mid-write) is left behind, and the
// process exits with what could not be written logged by that part.
func stopWithin(d stopper, log *slog.Logger, bound, drain time.Duration) int {
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Stop(sctx) }()
	hard := time.NewTimer(bound)
	defer hard.Stop()
	select {
	case err := <-done:
		if err != nil {
			log.Error("stopped with an error", "err", err)
			return exitRemote
		}
		return exitOK
	case <-hard.C:
		log.Error("stop bound reached: exiting before every write finished", "bound", bound)
		return exitRemote
	}
}

func runMigrate(args []string, stdout, stderr io.Writer) int {
	cfg, code := loadConfig("migrate", args, stderr)
	if code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := store.Open(ctx, cfg.DBURL, cfg.DBTable)
	if err != nil {
		fmt.Fprintf(stderr, "puaside migrate: %v\n", err)
		return exitRemote
	}
	defer db.Close()
	applied, err := db.Migrate(ctx)
	for _, n := range applied {
		fmt.Fprintln(stdout, "applied", n)
	}
	if err != nil {
		fmt.Fprintf(stderr, "puaside migrate: %v\n", err)
		return exitRemote
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "schema up to date")
	}
	res, err := daemon.Adopt(ctx, db, cfg, nil)
	if err != nil {
		fmt.Fprintf(stderr, "puaside migrate: %v\n", err)
		return exitRemote
	}
	if res != (store.AdoptResult{}) {
		fmt.Fprintf(stdout, "adopted %d publications of Kamailio's pua (%d duplicates to remove at start, %d expired deleted, %d with an unknown event)\n",
			res.Adopted, res.Removing, res.Expired, res.Skipped)
	}
	return exitOK
}
