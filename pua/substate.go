package pua

import (
	"fmt"
	"strconv"
	"strings"
)

// SubState is a parsed Subscription-State header (RFC 6665 §8.2.3).
type SubState struct {
	// State is active, pending or terminated (lower case).
	State string
	// Expires is the expires parameter in seconds, -1 if absent.
	Expires int
	// Reason is the reason parameter (lower case), "" if absent.
	Reason string
	// RetryAfter is the retry-after parameter in seconds, -1 if absent.
	RetryAfter int
}

// maxSubStateLen bounds the header we accept.
const maxSubStateLen = 1024

// ParseSubscriptionState parses a Subscription-State header value such as
// "active;expires=3600" or "terminated;reason=timeout". Unknown parameters
// are ignored; an unknown state, a missing state or a malformed expires or
// retry-after is an error.
func ParseSubscriptionState(v string) (SubState, error) {
	ss := SubState{Expires: -1, RetryAfter: -1}
	if len(v) > maxSubStateLen {
		return ss, fmt.Errorf("pua: subscription-state: longer than %d bytes", maxSubStateLen)
	}
	parts := strings.Split(v, ";")
	ss.State = strings.ToLower(strings.TrimSpace(parts[0]))
	switch ss.State {
	case "active", "pending", "terminated":
	case "":
		return ss, fmt.Errorf("pua: subscription-state: missing state")
	default:
		return ss, fmt.Errorf("pua: subscription-state: unknown state %q", ss.State)
	}
	for _, p := range parts[1:] {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		name, val, _ := strings.Cut(p, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		val = strings.Trim(strings.TrimSpace(val), `"`)
		switch name {
		case "expires", "retry-after":
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 || len(val) > 10 {
				return ss, fmt.Errorf("pua: subscription-state: bad %s %q", name, val)
			}
			if name == "expires" {
				ss.Expires = n
			} else {
				ss.RetryAfter = n
			}
		case "reason":
			if val == "" {
				return ss, fmt.Errorf("pua: subscription-state: empty reason")
			}
			ss.Reason = strings.ToLower(val)
		}
	}
	return ss, nil
}
