package dialoginfo

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config is the dialoginfo section of the YAML configuration. Durations are
// time.Duration fields written as "120s" or "4h" (a bare integer is
// seconds), like the pua section.
type Config struct {
	// IncludeCallID adds the call-id attribute to each <dialog> (pua_dialoginfo include_callid).
	IncludeCallID bool `yaml:"include_callid"`
	// IncludeTags adds local-tag and remote-tag (from the entity's own view) when known.
	IncludeTags bool `yaml:"include_tags"`
	// IncludeLocalRemote adds the <local> and <remote> participant elements.
	IncludeLocalRemote bool `yaml:"include_localremote"`
	// CallerConfirmed shows the caller as confirmed instead of early while the
	// callee rings (workaround for phones whose lamp blinks on early).
	CallerConfirmed bool `yaml:"caller_confirmed"`
	// CalleeTrying also publishes trying/proceeding for the callee (by default
	// the callee is first published on the first provisional with a to-tag).
	CalleeTrying bool `yaml:"callee_trying"`
	// OverrideLifetime is the Expires asked on every PUBLISH of this tracker;
	// 0 means publish_expires.
	OverrideLifetime time.Duration `yaml:"override_lifetime"`
	// DisableCallerPublish never publishes the caller (From) entity.
	DisableCallerPublish bool `yaml:"disable_caller_publish"`
	// DisableCalleePublish never publishes the callee (To or Request-URI) entity.
	DisableCalleePublish bool `yaml:"disable_callee_publish"`
	// IncludeReqURI takes the callee entity from the Request-URI of the first
	// INVITE seen (as received by the proxy) instead of the To header.
	IncludeReqURI bool `yaml:"include_req_uri"`
	// Domains lists the local domains: only entities whose AoR host is in the
	// list are published (case-insensitive); a call to or from a foreign
	// domain publishes only its local side. Empty means the domains of the
	// users registered through puaside: the domain of any AoR the usrloc
	// tracker knows (registered now or restored at start) and
	// usrloc.default_domain, so that a proxy also carrying calls to or from
	// foreign domains does not publish for foreign users. With the list
	// empty and features.usrloc off, every entity is published (a warning
	// says so at start).
	Domains []string `yaml:"domains"`
	// MaxBranches caps the dialogs (forked branches, one per To-tag) kept
	// for one call. A provisional response with a new To-tag past the cap
	// is ignored (counted as dialoginfo ignored_branch_cap, logged at most
	// once a minute); the first 2xx of an unanswered call is still taken.
	// 0 means the default, 16.
	MaxBranches int `yaml:"max_branches"`
	// MaxCalls caps the calls tracked at once. A new call past the cap is
	// not tracked (counted as dialoginfo ignored_call_cap, logged at most
	// once a minute). 0 means the default, 50000.
	MaxCalls int `yaml:"max_calls"`
	// LifetimeCap ends a dialog (terminated, event="timeout") when nothing
	// about it was seen for this long: no BYE, no re-INVITE/UPDATE. Default 4h.
	LifetimeCap time.Duration `yaml:"lifetime_cap"`
	// RingTimeout ends the dialogs of a call that got no final answer this long
	// after its INVITE (terminated, event="timeout"). Default 120s.
	RingTimeout time.Duration `yaml:"ring_timeout"`
	// TerminatedLinger is how long a terminated document stays published: it
	// is published with this Expires and left to lapse at the presence
	// server, without a removal. Default 10s (pua_dialoginfo's terminated Expires).
	TerminatedLinger time.Duration `yaml:"terminated_linger"`
	// PublishExpires is the Expires asked on PUBLISH. Default 3600s.
	PublishExpires time.Duration `yaml:"publish_expires"`
	// PresIDPrefix prefixes the dialog id to form the publication id (pres_id).
	// Default "DIALOG_PUBLISH." as in Kamailio.
	PresIDPrefix string `yaml:"pres_id_prefix"`
	// FlushInterval is the write-behind period of active dialogs and versions
	// to the store. Default 1s.
	FlushInterval time.Duration `yaml:"flush_interval"`
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		IncludeCallID:      true,
		IncludeTags:        true,
		IncludeLocalRemote: true,
		LifetimeCap:        4 * time.Hour,
		RingTimeout:        120 * time.Second,
		TerminatedLinger:   10 * time.Second,
		PublishExpires:     3600 * time.Second,
		PresIDPrefix:       "DIALOG_PUBLISH.",
		FlushInterval:      time.Second,
		MaxBranches:        16,
		MaxCalls:           50000,
	}
}

// WithDefaults returns c with zero durations and caps replaced by the
// defaults and the domains lower-cased. It is the only step that fills
// values; Validate never does.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	for _, f := range []struct{ v, def *time.Duration }{
		{&c.LifetimeCap, &d.LifetimeCap}, {&c.RingTimeout, &d.RingTimeout},
		{&c.TerminatedLinger, &d.TerminatedLinger}, {&c.PublishExpires, &d.PublishExpires},
		{&c.FlushInterval, &d.FlushInterval},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	if c.MaxBranches == 0 {
		c.MaxBranches = d.MaxBranches
	}
	if c.MaxCalls == 0 {
		c.MaxCalls = d.MaxCalls
	}
	if c.Domains != nil {
		doms := make([]string, len(c.Domains))
		for i, dom := range c.Domains {
			doms[i] = strings.ToLower(strings.TrimSpace(dom))
		}
		c.Domains = doms
	}
	return c
}

// Validate checks the configuration without changing it and reports every
// problem, each starting with its key ("ring_timeout: ...").
func (c Config) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"lifetime_cap", c.LifetimeCap}, {"ring_timeout", c.RingTimeout},
		{"terminated_linger", c.TerminatedLinger}, {"publish_expires", c.PublishExpires},
		{"flush_interval", c.FlushInterval}, {"override_lifetime", c.OverrideLifetime},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s: %s: must not be negative", f.name, f.v))
		}
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"max_branches", c.MaxBranches}, {"max_calls", c.MaxCalls}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s: %d: must not be negative", f.name, f.v))
		}
	}
	for i, dom := range c.Domains {
		if d := strings.TrimSpace(dom); d == "" || strings.ContainsAny(d, " @:;<>") {
			errs = append(errs, fmt.Errorf("domains[%d]: %q is not a domain", i, dom))
		}
	}
	return errors.Join(errs...)
}

// expires is the Expires asked on each PUBLISH.
func (c *Config) expires() time.Duration {
	if c.OverrideLifetime > 0 {
		return c.OverrideLifetime
	}
	return c.PublishExpires
}
