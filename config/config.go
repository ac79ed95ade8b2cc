// Package config loads puaside's YAML configuration file. Decoding is
// strict: an unknown or mistyped key is an error naming the key and its
// line. Every key has a default, so an empty file (or none) is a working
// configuration: the embedded SQLite database and loopback listeners. Each
// component owns its section's type and defaults; this package composes
// them and is used only by cmd/puaside.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/puaside/puaside/bla"
	"github.com/puaside/puaside/dialoginfo"
	"github.com/puaside/puaside/ingest"
	"github.com/puaside/puaside/mgmt"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/reconcile"
	"github.com/puaside/puaside/usrloc"
)

// Config is the whole configuration file.
type Config struct {
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// LogFormat is text or json.
	LogFormat string `yaml:"log_format"`
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
	// HTTP is the management API, JSON events, metrics and health checks.
	HTTP mgmt.Config `yaml:"http"`
	// Reconcile asks the proxy for its bindings and dialogs (at start and
	// periodically) to correct what puaside missed while it was down.
	Reconcile reconcile.Config `yaml:"reconcile"`
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
		LogLevel:   "info",
		LogFormat:  "text",
		DBURL:      "sqlite://puaside.db",
		DBTable:    "pua",
		Features:   Features{Usrloc: true, Dialoginfo: true, BLA: true},
		PUA:        pua.DefaultConfig(),
		Ingest:     ingest.DefaultConfig(),
		Usrloc:     usrloc.DefaultConfig(),
		Dialoginfo: dialoginfo.DefaultConfig(),
		BLA:        bla.DefaultConfig(),
		HTTP:       mgmt.DefaultConfig(),
		Reconcile:  reconcile.DefaultConfig(),
	}
}

// Load reads and validates the file at path. An empty path returns the defaults.
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
		return Config{}, fmt.Errorf("config: %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML over the defaults, strictly, and validates the result.
func Parse(b []byte) (Config, error) {
	c := Default()
	var root yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("invalid configuration: %s", cleanYAMLError(err))
	}
	if root.Kind == 0 {
		return c, c.Validate() // empty file: the defaults
	}
	if errs := checkNode(&root, reflect.TypeOf(c), ""); len(errs) > 0 {
		return Config{}, fmt.Errorf("invalid configuration: %s", strings.Join(errs, "; "))
	}
	if err := root.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("invalid configuration: %s", cleanYAMLError(err))
	}
	c.ShareDefaultDomain()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate checks values that decoding cannot.
func (c *Config) Validate() error {
	var errs []error
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level: %q is not one of debug, info, warn, error", c.LogLevel))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log_format: %q is not one of text, json", c.LogFormat))
	}
	if !strings.HasPrefix(c.DBURL, "sqlite://") && !strings.HasPrefix(c.DBURL, "mysql://") {
		errs = append(errs, fmt.Errorf("db_url: %q: scheme must be sqlite:// or mysql://", c.DBURL))
	}
	if c.DBTable == "" || strings.ContainsAny(c.DBTable, " `'\";") {
		errs = append(errs, fmt.Errorf("db_table: %q is not a valid table name", c.DBTable))
	}
	for _, v := range []struct {
		name string
		val  any
	}{{"pua", &c.PUA}, {"ingest", &c.Ingest}, {"usrloc", &c.Usrloc}, {"dialoginfo", &c.Dialoginfo}, {"bla", &c.BLA}, {"http", &c.HTTP}, {"reconcile", &c.Reconcile}} {
		if vv, ok := v.val.(interface{ Validate() error }); ok {
			if err := vv.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", v.name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// cleanYAMLError turns yaml.v3's "field x not found in type config.Config"
// into an operator-facing message naming the key and its line.
func cleanYAMLError(err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err.Error()
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		if i := strings.Index(m, " not found in type "); i >= 0 && strings.Contains(m, "field ") {
			m = strings.Replace(m[:i], "field ", "unknown key ", 1)
		}
		msgs = append(msgs, m)
	}
	return strings.Join(msgs, "; ")
}
