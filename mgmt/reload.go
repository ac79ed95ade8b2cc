package mgmt

import (
	"fmt"
	"net/netip"

	"github.com/puaside/puaside/internal/trusted"
)

// access is what a reload may replace in the request checks.
type access struct {
	token   string
	trusted []netip.Prefix
}

// SetAccess replaces the bearer token and http.trusted_sources at run time
// (a configuration reload); requests that arrive afterwards are checked
// against them. A bad list changes nothing. The token's loopback rule is
// Validate's job: the daemon validates the whole file before.
func (s *Server) SetAccess(token string, trustedSources []string) error {
	sources, err := trusted.Parse(trustedSources)
	if err != nil {
		return fmt.Errorf("mgmt: reload: %w", err)
	}
	s.access.Store(&access{token: token, trusted: sources})
	return nil
}
