package ingest

import (
	"fmt"
	"strings"

	"github.com/puaside/puaside/internal/trusted"
)

// SetTrustedSources replaces trusted_sources at run time (a configuration
// reload): the next message of every input is checked against the new
// list. A bad entry changes nothing.
func (in *Ingest) SetTrustedSources(list []string) error {
	prefixes, err := trusted.Parse(list)
	if err != nil {
		return fmt.Errorf("ingest: reload: trusted_sources: %w", err)
	}
	in.trust.prefixes.Store(&prefixes)
	in.log.Info("ingest: trusted sources replaced", "trusted_sources", strings.Join(list, ","))
	return nil
}
