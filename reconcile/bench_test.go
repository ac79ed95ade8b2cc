package reconcile

import (
	"fmt"
	"testing"
	"time"

	"github.com/puaside/puaside/proxyrpc"
	"github.com/puaside/puaside/usrloc"
)

// BenchmarkPlanBindings10k compares a registrar of 10,000 AoRs with a
// tracker that knows the same bindings (the steady state of every pass).
func BenchmarkPlanBindings10k(b *testing.B) {
	const n = 10000
	snap := proxyrpc.Bindings{AoRs: make([]proxyrpc.AoR, n)}
	mine := make([]usrloc.AoRInfo, n)
	for i := range n {
		uri := fmt.Sprintf("sip:u%06d@10.0.%d.%d:5060", i, i>>8&255, i&255)
		snap.AoRs[i] = proxyrpc.AoR{Name: fmt.Sprintf("u%06d", i), Contacts: []proxyrpc.Contact{{URI: uri, Remaining: 1800, Q: -1}}}
		mine[i] = usrloc.AoRInfo{AoR: fmt.Sprintf("sip:u%06d@example.com", i),
			Contacts: []usrloc.Binding{{URI: uri, Expires: t0.Add(1800 * time.Second), Q: -1}}}
	}
	b.ReportAllocs()
	for b.Loop() {
		if p := planBindings(snap, mine, "example.com", t0, 3600); len(p.Fixes) != 0 || p.Partial {
			b.Fatalf("plan %d fixes", len(p.Fixes))
		}
	}
}
