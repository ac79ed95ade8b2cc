// Package config loads puaside's YAML configuration file. Decoding is
// strict: an unknown or mistyped key is an error naming the key and its
// line. Every key has a default, so an empty file (or none) is a working
// configuration: the embedded SQLite database and loopback listeners. Each
// component owns its section's type and defaults; this package composes
// them and is used only by cmd/puaside.
//
// Place in the flow: above the components; internal/daemon hands each
// section to its component (ingest, the trackers, the pua engine, mgmt,
// reconcile, the store).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/puaside/puaside/bla"
	"github.com/puaside/puaside/dialoginfo"
	"github.com/puaside/puaside/ingest"
	"github.com/puaside/puaside/mgmt"
	"github.com/puaside/puaside/pa"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/puaxmpp"
	"github.com/puaside/puaside/reconcile"
	"github.com/puaside/puaside/shard"
	"github.com/puaside/puaside/usrloc"
)

// Config is the whole configuration file.
type Config struct {
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// LogFormat is text or json.
	LogFormat string `yaml:"log_format"`
	// LogSyslog sends the log lines to syslog as well as to stderr (tag
	// puaside, facility daemon, the level as the priority): "local" for the
	// local syslog socket (/dev/log, which journald also reads), or
	// "udp://host:port" / "tcp://host:port" for a remote syslog server.
	// Empty: stderr only. Under systemd stderr already goes to the journal.
	LogSyslog string `yaml:"log_syslog"`
	// HeapFloorMiB keeps the garbage collector's heap goal at least this
	// many MiB: a small live heap is then collected less often (each
	// collection takes processor time from the SIP path while it runs),
	// a live heap above floor / (1 + GOGC/100), half the floor with the
	// default GOGC, is paced by GOGC as before. 0 leaves Go's own pacing
	// alone. GOGC and GOMEMLIMIT still apply: the memory limit caps the
	// heap whatever the floor. Read at start.
	HeapFloorMiB int `yaml:"heap_floor_mib"`
	// DBURL selects the database: sqlite://PATH (default) or
	// mysql://user:pass@host:port/db (Kamailio's form).
	DBURL string `yaml:"db_url"`
	// DBTable is the name of the pua table (Kamailio's db_table).
	DBTable string `yaml:"db_table"`
	// Features switches the trackers on and off.
	Features Features `yaml:"features"`
	// PUA is the engine: SIP listeners, presence server, expiries, retries.
	PUA pua.Config `yaml:"pua"`
	// Ingest is the mirrored-traffic inputs.
	Ingest ingest.Config `yaml:"ingest"`
	// Usrloc is registration presence (pua_usrloc).
	Usrloc usrloc.Config `yaml:"usrloc"`
	// Dialoginfo is BLF from calls (pua_dialoginfo).
	Dialoginfo dialoginfo.Config `yaml:"dialoginfo"`
	// BLA is Polycom bridged line appearance (pua_bla).
	BLA bla.Config `yaml:"bla"`
	// PA is the embedded presence server (the seed's pa module).
	PA pa.Config `yaml:"pa"`
	// HTTP is the management API, JSON events, metrics and health checks.
	HTTP mgmt.Config `yaml:"http"`
	// Reconcile asks the proxy for its bindings and dialogs (at start and
	// periodically) to correct what puaside missed while it was down.
	Reconcile reconcile.Config `yaml:"reconcile"`
	// Gateway is the SIP ↔ XMPP presence gateway (pua_xmpp with the xmpp
	// module): an XEP-0114 component of the site's XMPP server.
	Gateway puaxmpp.Config `yaml:"xmpp"`
	// Cluster shares the work with other instances on the same database
	// (shards under leases); off by default.
	Cluster shard.Config `yaml:"cluster"`
}

// Features switches the trackers on and off.
type Features struct {
	// Usrloc publishes presence from registrations.
	Usrloc bool `yaml:"usrloc"`
	// Dialoginfo publishes dialog-info from calls.
	Dialoginfo bool `yaml:"dialoginfo"`
	// BLA relays shared-line phones' state.
	BLA bool `yaml:"bla"`
}

// Default returns the configuration used when a key is not given.
func Default() Config {
	return Config{
		LogLevel:     "info",
		LogFormat:    "text",
		HeapFloorMiB: 128,
		DBURL:        "sqlite://puaside.db",
		DBTable:      "pua",
		Features:     Features{Usrloc: true, Dialoginfo: true, BLA: true},
		PUA:          pua.DefaultConfig(),
		Ingest:       ingest.DefaultConfig(),
		Usrloc:       usrloc.DefaultConfig(),
		Dialoginfo:   dialoginfo.DefaultConfig(),
		BLA:          bla.DefaultConfig(),
		PA:           pa.DefaultConfig(),
		HTTP:         mgmt.DefaultConfig(),
		Reconcile:    reconcile.DefaultConfig(),
		Gateway:      puaxmpp.DefaultConfig(),
		Cluster:      shard.DefaultConfig(),
	}
}

// WithDefaults returns c with the zero values that mean "the default"
// replaced by it (pua's hash_size: 0 is 9, ...) and the default domain
// shared (ShareDefaultDomain). It is the only step that fills values;
// Validate never does.
func (c Config) WithDefaults() Config {
	c.PUA = c.PUA.WithDefaults()
	c.Dialoginfo = c.Dialoginfo.WithDefaults()
	c.PA = c.PA.WithDefaults()
	if c.Cluster.Enabled {
		c.Cluster = c.Cluster.WithDefaults()
	}
	c.ShareDefaultDomain()
	return c
}

// Load reads and validates the file at path. An empty path returns the
// defaults. A configuration error is an Errors, every problem with its key
// path and line.
func Load(path string) (Config, error) {
	if path == "" {
		c := Default()
		return c, c.Validate()
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML over the defaults, strictly, applies the defaults of
// zero values and validates the result. Its error is an Errors.
func Parse(b []byte) (Config, error) {
	c, lines, err := decode(b)
	if err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, withLines(err, lines)
	}
	return c, nil
}

// decode decodes YAML over the defaults, strictly, and applies the
// defaults of zero values. It returns the line of every key path written.
func decode(b []byte) (Config, map[string]int, error) {
	c := Default()
	lines := map[string]int{}
	var root yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, nil, yamlErrors(err, nil)
	}
	if root.Kind == 0 {
		return c, lines, nil // empty file: the defaults
	}
	if errs := checkNode(&root, reflect.TypeOf(c), "", lines); len(errs) > 0 {
		return Config{}, nil, errs
	}
	if err := root.Decode(&c); err != nil {
		return Config{}, nil, yamlErrors(err, lines)
	}
	return c.WithDefaults(), lines, nil
}

// withLines gives the problems of an Errors their lines.
func withLines(err error, lines map[string]int) error {
	var errs Errors
	if errors.As(err, &errs) {
		return errs.withLines(lines)
	}
	return err
}

// sectionCheck is one section of the file and its check.
type sectionCheck struct {
	name     string
	validate func() error
}

// Validate checks values that decoding cannot, without changing c. It
// returns nil or an Errors naming every problem by its key path.
func (c Config) Validate() error {
	var errs Errors
	add := func(key, format string, args ...any) {
		errs = append(errs, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("log_level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		add("log_format", "%q is not one of text, json", c.LogFormat)
	}
	if err := checkSyslog(c.LogSyslog); err != nil {
		add("log_syslog", "%v", err)
	}
	if c.HeapFloorMiB < 0 || c.HeapFloorMiB > 1<<20 {
		add("heap_floor_mib", "%d is not between 0 and 1048576", c.HeapFloorMiB)
	}
	if !strings.HasPrefix(c.DBURL, "sqlite://") && !strings.HasPrefix(c.DBURL, "mysql://") {
		add("db_url", "%q: scheme must be sqlite:// or mysql://", redactURL(c.DBURL))
	}
	if j := c.PUA.ETagJournal; c.Cluster.Enabled && j != "" && j != "auto" && j != "off" {
		add("pua.etag_journal", "%q: a journal needs cluster.enabled off (the other instances read the ETags from the database)", j)
	}
	if c.DBTable == "" || strings.ContainsAny(c.DBTable, " `'\";") {
		add("db_table", "%q is not a valid table name", c.DBTable)
	}
	for _, s := range []sectionCheck{
		{"pua", c.PUA.Validate}, {"ingest", c.Ingest.Validate}, {"usrloc", c.Usrloc.Validate},
		{"dialoginfo", c.Dialoginfo.Validate}, {"bla", c.BLA.Validate}, {"pa", c.PA.Validate}, {"http", c.HTTP.Validate},
		{"reconcile", c.Reconcile.Validate}, {"xmpp", c.Gateway.Validate}, {"cluster", c.Cluster.Validate},
	} {
		if err := s.validate(); err != nil {
			errs = append(errs, sectionProblems(s.name, err)...)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// ETagJournalPath is the path of the engine's ETag journal
// (pua.etag_journal), or "" when prompt writes go to the database: off,
// sync_etags off, cluster.enabled, and for auto a database other than an
// SQLite file (auto: the database file's path and ".etags").
func (c Config) ETagJournalPath() string {
	j := c.PUA.ETagJournal
	if j == "off" || !c.PUA.SyncETags || c.Cluster.Enabled {
		return ""
	}
	if j != "" && j != "auto" {
		return j
	}
	return c.autoJournalPath()
}

// ETagJournalPaths are the paths where an ETag journal may have been left
// by an earlier run, whatever the settings now: the auto path beside an
// SQLite database and a path pua.etag_journal names. The daemon replays
// and deletes what it finds there at start, so a journal turned off, or
// back on later, never leaves older states to replay.
func (c Config) ETagJournalPaths() []string {
	var out []string
	if p := c.autoJournalPath(); p != "" {
		out = append(out, p)
	}
	if j := c.PUA.ETagJournal; j != "" && j != "auto" && j != "off" && !slices.Contains(out, j) {
		out = append(out, j)
	}
	return out
}

// autoJournalPath is the journal beside an SQLite database file, or "".
func (c Config) autoJournalPath() string {
	path, ok := strings.CutPrefix(c.DBURL, "sqlite://")
	path, _, _ = strings.Cut(path, "?")
	if !ok || path == "" || path == ":memory:" || strings.HasPrefix(path, "file::memory:") {
		return ""
	}
	return path + ".etags"
}
