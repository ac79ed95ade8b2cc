package usrloc

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Config is the usrloc section of the YAML configuration. Durations are
// plain time.Duration fields, as in package pua: gopkg.in/yaml.v3 decodes a
// duration string such as "30s" natively.
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
	// DefaultExpires (seconds) is used for a contact whose REGISTER states no
	// expiry (no Contact expires param, no Expires header).
	DefaultExpires int `yaml:"default_expires"`
	// MinExpires (seconds): shorter non-zero expiries are raised to it.
	MinExpires int `yaml:"min_expires"`
	// MaxExpires (seconds): longer expiries are lowered to it; 0 = no cap.
	MaxExpires int `yaml:"max_expires"`
	// PublishHeader is the request header that turns the per-user publishing
	// flag on (any value but "0", "no", "off", "false") or off ("0", "no",
	// "off", "false"). The flag is remembered (database) until changed.
	// Empty: no header is looked at.
	PublishHeader string `yaml:"publish_header"`
	// PublishPatterns are AoRs (written "user@domain", no scheme) that are
	// always published. A pattern is a glob ("*" any run of characters, "?"
	// one character; e.g. "*@example.com", "10??@pbx.example.com"), or, with
	// the prefix "re:", a Go regular expression that must match the whole
	// "user@domain" (e.g. "re:^[0-9]{4}@example\\.com$").
	PublishPatterns []string `yaml:"publish_patterns"`
	// PublishDefault publishes every AoR for which neither a pattern nor a
	// per-user flag (header, management API) says otherwise. Default true:
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
		DefaultExpires: 3600,
		MinExpires:     60,
		MaxExpires:     7200,
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

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.DefaultExpires <= 0 {
		errs = append(errs, fmt.Errorf("default_expires %d: must be > 0", c.DefaultExpires))
	}
	if c.MinExpires < 0 {
		errs = append(errs, fmt.Errorf("min_expires %d: must be >= 0", c.MinExpires))
	}
	if c.MaxExpires < 0 || (c.MaxExpires > 0 && c.MaxExpires < c.MinExpires) {
		errs = append(errs, fmt.Errorf("max_expires %d: must be 0 or >= min_expires", c.MaxExpires))
	}
	if c.PresID == "" {
		errs = append(errs, errors.New("pres_id: must not be empty"))
	}
	if c.ClosedLinger < 0 {
		errs = append(errs, errors.New("closed_linger: must be >= 0"))
	}
	if c.PublishExpires < 0 {
		errs = append(errs, errors.New("publish_expires: must be >= 0"))
	}
	if c.FlushInterval <= 0 {
		errs = append(errs, errors.New("flush_interval: must be > 0"))
	}
	if c.PendingMax <= 0 {
		errs = append(errs, errors.New("pending_max: must be > 0"))
	}
	if strings.ContainsAny(c.DefaultDomain, "@:;<> ") {
		errs = append(errs, fmt.Errorf("default_domain %q: must be a bare domain", c.DefaultDomain))
	}
	if _, err := compilePatterns(c.PublishPatterns); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
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
			return nil, fmt.Errorf("publish_patterns %q: %w", p, err)
		}
		out = append(out, re)
	}
	return out, nil
}
