package bla

import (
	"strings"
	"testing"
)

// TestHeaderNameNotReserved: header_name cannot be a header the engine
// builds itself (every PUBLISH would be refused).
func TestHeaderNameNotReserved(t *testing.T) {
	for _, name := range []string{"From", "via", "Call-ID", "i", "Contact", "Event", "Expires"} {
		c := DefaultConfig()
		c.HeaderName = name
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "header_name") {
			t.Errorf("header_name %q: %v, want refused", name, err)
		}
	}
	c := DefaultConfig()
	c.HeaderName = "X-BLA-Sender"
	if err := c.Validate(); err != nil {
		t.Errorf("header_name X-BLA-Sender: %v", err)
	}
}
