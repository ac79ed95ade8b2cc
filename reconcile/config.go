package reconcile

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Config is the reconcile section of the YAML configuration.
type Config struct {
	// Enabled turns reconciliation with the proxy on: at start and every
	// interval puaside asks the proxy's RPC for its bindings and dialogs and
	// corrects what it missed (see the operator guide). Off by default.
	Enabled bool `yaml:"enabled"`
	// Kind is the proxy's RPC dialect: kamailio (jsonrpcs over xhttp,
	// commands ul.dump and dlg.list). It is the only one implemented.
	Kind string `yaml:"kind"`
	// RPCURL is the proxy's JSON-RPC URL (deploy/kamailio/registrar.cfg
	// with WITH_RPC serves it on http://127.0.0.1:5071/RPC).
	RPCURL string `yaml:"rpc_url"`
	// Interval is the time between two reconciliations (the first runs at
	// start).
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one RPC call, response included.
	Timeout time.Duration `yaml:"timeout"`
	// Grace is the age a call or registration change must have before the
	// proxy's answer may overrule puaside: input that reached puaside less
	// than this before the proxy was asked (still in the ingest queue when
	// the proxy answered, or mirrored late) is trusted over the answer.
	Grace time.Duration `yaml:"grace"`
	// MaxResponseSize bounds one RPC response in bytes. Kamailio's ul.dump
	// takes about 550 bytes per contact: the default holds about 120,000
	// contacts. A larger response fails the pass (logged and counted).
	MaxResponseSize int64 `yaml:"max_response_size"`
	// ULTable is the registrar's usrloc table (save("location")).
	ULTable string `yaml:"ul_table"`
	// DefaultDomain is appended to the registrar's AoRs that have no domain
	// (Kamailio usrloc use_domain=0 keys bindings by user only). Empty: the
	// usrloc section's default_domain. With neither, such AoRs are skipped
	// and no AoR is taken as gone.
	DefaultDomain string `yaml:"default_domain"`
	// Registrations corrects the usrloc tracker from ul.dump.
	Registrations bool `yaml:"registrations"`
	// Dialogs corrects the dialoginfo tracker from dlg.list: calls the
	// proxy no longer has are ended.
	Dialogs bool `yaml:"dialogs"`
	// AdoptCalls also publishes answered calls the proxy has and puaside
	// never saw (started while it was down) as confirmed.
	AdoptCalls bool `yaml:"adopt_calls"`
}

// DefaultConfig returns the defaults (reconciliation off).
func DefaultConfig() Config {
	return Config{
		Kind:            "kamailio",
		RPCURL:          "http://127.0.0.1:5071/RPC",
		Interval:        30 * time.Second,
		Timeout:         10 * time.Second,
		Grace:           5 * time.Second,
		MaxResponseSize: 64 << 20,
		ULTable:         "location",
		Registrations:   true,
		Dialogs:         true,
		AdoptCalls:      true,
	}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("reconcile: invalid config")

// maxGrace is the longest grace the trackers can honour (they remember
// recent input for two minutes).
const maxGrace = time.Minute

// configError is a Validate error: its text is the problems found, and it
// matches ErrConfig.
type configError struct{ err error }

func (e configError) Error() string   { return e.err.Error() }
func (e configError) Unwrap() []error { return []error{ErrConfig, e.err} }

// Validate checks the configuration without changing it and reports every
// problem, each starting with its key ("interval: ..."). A disabled section
// is checked too, so that turning it on does not reveal old mistakes.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Kind != "kamailio" {
		bad("kind: %q is not kamailio (the only RPC dialect implemented; see the operator guide for OpenSIPS)", c.Kind)
	}
	if u, err := url.Parse(c.RPCURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("rpc_url: %q is not an http:// or https:// URL", c.RPCURL)
	}
	if c.Interval < time.Second {
		bad("interval: %s: must be at least 1s", c.Interval)
	}
	if c.Timeout <= 0 || c.Timeout > c.Interval {
		bad("timeout: %s: must be above 0 and at most interval (%s)", c.Timeout, c.Interval)
	}
	if c.Grace < 0 || c.Grace > maxGrace {
		bad("grace: %s: must be between 0 and %s", c.Grace, maxGrace)
	}
	if c.MaxResponseSize < 1024 {
		bad("max_response_size: %d: must be at least 1024 bytes", c.MaxResponseSize)
	}
	if c.ULTable == "" {
		bad("ul_table: must not be empty")
	}
	if len(errs) > 0 {
		return configError{errors.Join(errs...)}
	}
	return nil
}
