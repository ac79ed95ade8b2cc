package usrloc

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Config is the usrloc section of the YAML configuration. Durations are
// plain time.Duration fields, as in package pua: the file writes them as
// "30s" or "1h", and package config reads a bare integer as seconds.
type Config struct {
	// DefaultDomain is appended as "@domain" to AoRs that have no domain
	// (JSON events naming a bare user, registrars with use_domain=0), as
	// pua_usrloc's default_domain does. It is the daemon's default domain:
	// the bla and reconcile sections use it unless they set their own.
	// Empty: such AoRs are rejected.
	DefaultDomain string `yaml:"default_domain"`
	// EntityPrefix builds the PIDF entity as "<prefix>:<user@domain>", as
	// pua_usrloc's entity_prefix does (e.g. "pres"). Empty: the entity is the
	// sip: AoR.
	EntityPrefix string `yaml:"entity_prefix"`
	// DefaultExpires is the lifetime of a contact whose REGISTER states no
	// expiry (no Contact expires parameter, no Expires header), in whole
	// seconds.
	DefaultExpires time.Duration `yaml:"default_expires"`
	// MinExpires raises shorter non-zero expiries asked for to it; 0 means
	// no floor. An expiry a registrar's 2xx grants is kept as it is.
	MinExpires time.Duration `yaml:"min_expires"`
	// MaxExpires lowers longer expiries asked for to it; 0 means no cap.
	MaxExpires time.Duration `yaml:"max_expires"`
	// PublishHeader is the request header that turns the per-user publishing
	// flag on (any value but "0", "no", "off", "false") or off ("0", "no",
	// "off", "false"). The flag is remembered (database) until changed.
	// Empty: no header is looked at.
	PublishHeader string `yaml:"publish_header"`
	// PublishPatterns are AoRs (written "user@domain", no scheme) that are
	// published unless their per-user flag (header, management API) is
	// explicitly off: an explicit flag always wins over a pattern. A pattern is a glob ("*" any run of characters, "?"
	// one character; e.g. "*@example.com", "10??@pbx.example.com"), or, with
	// the prefix "re:", a Go regular expression that must match the whole
	// "user@domain" (e.g. "re:^[0-9]{4}@example\\.com$").
	PublishPatterns []string `yaml:"publish_patterns"`
	// PublishDefault publishes every AoR for which neither a per-user flag
	// (header, management API) nor a pattern says otherwise. Default true:
	// beside a registrar every registered user is expected to show presence.
	PublishDefault bool `yaml:"publish_default"`
	// ClosedLinger is how long the "closed" document stays published after
	// the last contact of an AoR goes, before the publication is removed
	// (watchers see offline at once; the record does not live forever).
	ClosedLinger time.Duration `yaml:"closed_linger"`
	// PresID is the pres_id of the publications (one per AoR).
	PresID string `yaml:"pres_id"`
	// PublishExpires is the Expires asked for on each PUBLISH.
	PublishExpires time.Duration `yaml:"publish_expires"`
	// FlushInterval is how often changed contacts are written to the
	// database (write-behind; everything is flushed on stop).
	FlushInterval time.Duration `yaml:"flush_interval"`
	// PendingMax bounds how many traced REGISTER requests are remembered
	// while their reply is awaited (oldest dropped first).
	PendingMax int `yaml:"pending_max"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		DefaultExpires: time.Hour,
		MinExpires:     time.Minute,
		MaxExpires:     2 * time.Hour,
		PublishHeader:  "X-Puaside-Publish",
		PublishDefault: true,
		ClosedLinger:   30 * time.Second,
		PresID:         "usrloc",
		PublishExpires: 3600 * time.Second,
		FlushInterval:  time.Second,
		PendingMax:     10000,
	}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("usrloc: invalid config")

// configError is a Validate error: its text is the problems found, and it
// matches ErrConfig.
type configError struct{ err error }

func (e configError) Error() string   { return e.err.Error() }
func (e configError) Unwrap() []error { return []error{ErrConfig, e.err} }

// seconds returns d in whole seconds, the unit of SIP expiries.
func seconds(d time.Duration) int { return int(d / time.Second) }

// Validate checks the configuration without changing it and reports every
// problem, each starting with its key ("min_expires: ...").
func (c Config) Validate() error {
	var errs []error
	if c.DefaultExpires < time.Second {
		errs = append(errs, fmt.Errorf("default_expires: %s: must be at least 1s", c.DefaultExpires))
	}
	if c.MinExpires < 0 {
		errs = append(errs, fmt.Errorf("min_expires: %s: must not be negative", c.MinExpires))
	}
	if c.MaxExpires < 0 || (c.MaxExpires > 0 && c.MaxExpires < c.MinExpires) {
		errs = append(errs, fmt.Errorf("max_expires: %s: must be 0 (no cap) or at least min_expires (%s)", c.MaxExpires, c.MinExpires))
	}
	if c.PresID == "" {
		errs = append(errs, errors.New("pres_id: must not be empty"))
	}
	if c.ClosedLinger < 0 {
		errs = append(errs, fmt.Errorf("closed_linger: %s: must not be negative", c.ClosedLinger))
	}
	if c.PublishExpires < 0 {
		errs = append(errs, fmt.Errorf("publish_expires: %s: must not be negative", c.PublishExpires))
	}
	if c.FlushInterval <= 0 {
		errs = append(errs, fmt.Errorf("flush_interval: %s: must be positive", c.FlushInterval))
	}
	if c.PendingMax <= 0 {
		errs = append(errs, fmt.Errorf("pending_max: %d: must be positive", c.PendingMax))
	}
	if strings.ContainsAny(c.DefaultDomain, "@:;<> ") {
		errs = append(errs, fmt.Errorf("default_domain: %q: must be a bare domain", c.DefaultDomain))
	}
	for i, p := range c.PublishPatterns {
		if _, err := compilePatterns([]string{p}); err != nil {
			errs = append(errs, fmt.Errorf("publish_patterns[%d]: %w", i, err))
		}
	}
	if len(errs) > 0 {
		return configError{errors.Join(errs...)}
	}
	return nil
}

// compilePatterns turns publish_patterns into anchored regular expressions.
func compilePatterns(pats []string) ([]*regexp.Regexp, error) {
	out := make([]*regexp.Regexp, 0, len(pats))
	for _, p := range pats {
		var expr string
		if re, ok := strings.CutPrefix(p, "re:"); ok {
			expr = "^(?:" + re + ")$"
		} else {
			var b strings.Builder
			b.WriteString("^")
			for _, r := range p {
				switch r {
				case '*':
					b.WriteString(".*")
				case '?':
					b.WriteString(".")
				default:
					b.WriteString(regexp.QuoteMeta(string(r)))
				}
			}
			b.WriteString("$")
			expr = b.String()
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", p, err)
		}
		out = append(out, re)
	}
	return out, nil
}
