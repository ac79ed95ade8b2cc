package bla

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/puaside/puaside/aor"
	"github.com/puaside/puaside/pua"
)

// Event packages a shared line can use.
const (
	EventSLA = "dialog;sla" // draft-anil-sipping-bla-02/-03 (Polycom, Kamailio pua_bla)
	EventMA  = "dialog;ma"  // draft-anil-sipping-bla-04
)

// DefaultMaxBodySize is the default cap on a phone's NOTIFY body.
const DefaultMaxBodySize = 64 << 10

// Config is the `bla` section of the YAML file: Polycom-style bridged line
// appearance, the work of Kamailio's pua_bla plus seize arbitration.
//
// Durations are plain time.Duration fields, as in package pua: "3600s" or
// "1h" (a bare integer is seconds).
type Config struct {
	// DefaultDomain is appended to a line AoR or member written without a
	// domain (with default_domain example.com, "100" is
	// sip:100@example.com). Empty: usrloc's default_domain, the daemon's
	// one default domain.
	DefaultDomain string `yaml:"default_domain"`
	// header_name, when set, is a header added to a line's composed PUBLISH
	// with the contact URI of the phone whose NOTIFY changed the line
	// (pua_bla's Sender). Empty (the default): no such header. A presence
	// server that leaves that phone out of the NOTIFYs (Kamailio:
	// handle_publish("$hdr(Sender)")) never tells it the line's state after
	// its own change, so after its own hang-up its last view shows its call
	// up; without the header every phone gets every document of the line,
	// its own calls included, and its view is the line as it is. A PUBLISH
	// no phone caused (a phone leaving the line) never carries the header.
	HeaderName string `yaml:"header_name"`
	// OutboundProxy is the next hop for the SUBSCRIBEs sent to the phones.
	// Empty: the contact's received address (NAT) if the registration has
	// one, else the engine's default next hop for the record.
	OutboundProxy string `yaml:"outbound_proxy"`
	// ServerAddress overrides the Contact URI of our SUBSCRIBEs to the
	// phones (pua_bla's server_address). Empty: the engine's own Contact.
	// The phones send their NOTIFYs there; the dialog, not the Contact user,
	// identifies the subscription, so the line user need not appear in it.
	// (The "Contact user = line user" rule of Kamailio's presence server
	// concerns the phones' own dialog;sla SUBSCRIBEs to the presence server.)
	// When set it is passed to the engine as an extra "Contact" header.
	ServerAddress string `yaml:"server_address"`
	// Lines are the statically configured shared lines. Lines can also be
	// added at run time through the management API (kept in the database).
	Lines []LineConfig `yaml:"lines"`
	// Arbitration answers 409 Conflict to a phone seizing (NOTIFY with a
	// `trying` dialog) a line index that another phone of the line holds.
	Arbitration bool `yaml:"arbitration"`
	// SeizeTimeout ends arbitration's respect for a seize: a line index held
	// only by a dialog that has stayed `trying` (seized, not dialled through)
	// longer than this no longer blocks another phone, so a phone that
	// crashed off-hook cannot lock a line forever. 0 means never.
	SeizeTimeout time.Duration `yaml:"seize_timeout"`
	// SubscribeExpires is the Expires of our SUBSCRIBEs to the phones, capped
	// by the contact's remaining registration lifetime; also the publication
	// expiry when a NOTIFY's Subscription-State has no expires parameter.
	SubscribeExpires time.Duration `yaml:"subscribe_expires"`
	// Event is the event package subscribed to and published: dialog;sla
	// (default) or dialog;ma.
	Event string `yaml:"event"`
	// MaxBodySize caps a phone's NOTIFY body in bytes (larger: 413).
	MaxBodySize int `yaml:"max_body_size"`
	// ResubscribeDelay is how long to wait before subscribing again to a
	// phone that ended its subscription with reason probation or giveup and
	// no retry-after parameter (RFC 6665 §4.2.2; a retry-after is honoured,
	// up to subscribe_expires), or that ended it, with any other reason
	// allowing a new one, less than this after the previous end. 0 means at
	// once.
	ResubscribeDelay time.Duration `yaml:"resubscribe_delay"`
}

// LineConfig is one shared line.
type LineConfig struct {
	// AoR is the shared line's address of record, e.g. sip:100@example.com.
	AoR string `yaml:"aor"`
	// Members optionally restricts the line to these phones (contact URIs,
	// matched on user, host and port when given). Empty: every registered
	// contact of the AoR is a member.
	Members []string `yaml:"members"`
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Arbitration:      true,
		SeizeTimeout:     2 * time.Minute,
		SubscribeExpires: 3600 * time.Second,
		Event:            EventSLA,
		MaxBodySize:      DefaultMaxBodySize,
		ResubscribeDelay: 30 * time.Second,
	}
}

// Validate checks the configuration without changing it and reports every
// problem, each starting with its key ("lines[0].aor: ...").
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.HeaderName == "" {
		// no header
	} else if strings.ContainsAny(c.HeaderName, ": \t\r\n") {
		bad("header_name: %q: must be a header name", c.HeaderName)
	} else if canon, reserved := pua.ReservedHeader(c.HeaderName); reserved {
		bad("header_name: %q: %s is set by the engine itself; use another header (Sender by default)", c.HeaderName, canon)
	}
	switch c.Event {
	case EventSLA, EventMA:
	default:
		bad("event: %q: must be %s or %s", c.Event, EventSLA, EventMA)
	}
	if c.SubscribeExpires < time.Second {
		bad("subscribe_expires: %s: must be at least 1s", c.SubscribeExpires)
	}
	if c.SeizeTimeout < 0 {
		bad("seize_timeout: %s: must not be negative", c.SeizeTimeout)
	}
	if c.ResubscribeDelay < 0 {
		bad("resubscribe_delay: %s: must not be negative", c.ResubscribeDelay)
	}
	if c.MaxBodySize < 512 {
		bad("max_body_size: %d: must be at least 512", c.MaxBodySize)
	}
	for _, u := range []struct{ name, val string }{{"outbound_proxy", c.OutboundProxy}, {"server_address", c.ServerAddress}} {
		if u.val != "" && !hasSIPScheme(u.val) {
			bad("%s: %q: must be a sip: or sips: URI", u.name, u.val)
		}
	}
	seen := make(map[string]bool, len(c.Lines))
	for i, l := range c.Lines {
		key, err := lineKey(l.AoR, c.DefaultDomain)
		if err != nil {
			bad("lines[%d].aor: %w", i, err)
		} else if seen[key] {
			bad("lines[%d].aor: %s configured twice", i, key)
		}
		seen[key] = true
		for j, m := range l.Members {
			if _, err := memberAddress(m, c.DefaultDomain); err != nil {
				bad("lines[%d].members[%d]: %w", i, j, err)
			}
		}
	}
	return errors.Join(errs...)
}

func hasSIPScheme(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "sip:") || strings.HasPrefix(l, "sips:")
}

// ErrBadAoR is returned (wrapped) for an AoR or member URI that is not a
// usable SIP URI.
var ErrBadAoR = errors.New("not a SIP address of record")

// lineKey is the AoR of a line by the daemon's one rule (package aor):
// "100", "100@Example.com", "sips:100@example.com:5061;transport=tls" all
// give "sip:100@example.com", the AoR usrloc reports.
func lineKey(s, defaultDomain string) (string, error) {
	a, err := aor.Normalize(s, defaultDomain)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %w", ErrBadAoR, s, err)
	}
	return a, nil
}

// memberAddress parses a line member. Unlike a line AoR it keeps its scheme
// and port: a member with a port matches the contacts at that port only.
func memberAddress(s, defaultDomain string) (aor.Address, error) {
	a, err := aor.Parse(s, defaultDomain)
	if err != nil {
		return aor.Address{}, fmt.Errorf("%w: %q: %w", ErrBadAoR, s, err)
	}
	return a, nil
}
