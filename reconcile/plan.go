package reconcile

import (
	"math"
	"sort"
	"time"

	"github.com/puaside/puaside/aor"
	"github.com/puaside/puaside/dialoginfo"
	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/proxyrpc"
	"github.com/puaside/puaside/usrloc"
)

// expiryTolerance is how far puaside's expiry of a binding may be from the
// registrar's before it is corrected (ul.dump counts whole seconds, and a
// t_replicate copy states the asked expiry, not the granted one).
const expiryTolerance = 5 * time.Second

// BindingFix is one correction for the usrloc tracker: the complete
// binding set of an AoR (empty: the AoR has no binding left).
type BindingFix struct {
	AoR      string
	Contacts []event.Contact
	// Why is "added", "removed", "changed" or "gone" (for the log and metrics).
	Why string
}

// BindingPlan is what a ul.dump snapshot says must change.
type BindingPlan struct {
	Fixes []BindingFix
	// Partial is true when the snapshot could not be read whole (skipped
	// records, AoRs without a domain): nothing was concluded from the
	// absence of an AoR.
	Partial bool
	// Unusable counts registrar AoRs that could not be mapped to an AoR.
	Unusable int
}

// planBindings compares the registrar's table with the tracker's.
// permanent is the lifetime given to a permanent binding (refreshed every
// pass).
func planBindings(snap proxyrpc.Bindings, mine []usrloc.AoRInfo, domain string, now time.Time, permanent int) BindingPlan {
	plan := BindingPlan{Partial: snap.Skipped > 0}
	theirs := map[string][]proxyrpc.Contact{}
	incomplete := map[string]bool{}
	for _, a := range snap.AoRs {
		key, err := aor.Normalize(a.Name, domain)
		if err != nil {
			plan.Unusable++
			plan.Partial = true
			continue
		}
		theirs[key] = append(theirs[key], a.Contacts...)
		if a.Incomplete {
			incomplete[key] = true
		}
	}
	known := make(map[string]usrloc.AoRInfo, len(mine))
	for _, m := range mine {
		known[m.AoR] = m
	}
	aors := make([]string, 0, len(theirs))
	for aor := range theirs {
		aors = append(aors, aor)
	}
	sort.Strings(aors)
	for _, aor := range aors {
		if incomplete[aor] {
			continue
		}
		live := liveBindings(known[aor].Contacts, now)
		want, why := wanted(theirs[aor], live, now, permanent)
		if why != "" {
			plan.Fixes = append(plan.Fixes, BindingFix{AoR: aor, Contacts: want, Why: why})
		}
	}
	if plan.Partial {
		return plan
	}
	for _, m := range mine {
		if _, ok := theirs[m.AoR]; ok || len(liveBindings(m.Contacts, now)) == 0 {
			continue
		}
		plan.Fixes = append(plan.Fixes, BindingFix{AoR: m.AoR, Why: "gone"})
	}
	return plan
}

// liveBindings keeps the bindings that have not expired at now.
func liveBindings(bs []usrloc.Binding, now time.Time) []usrloc.Binding {
	var out []usrloc.Binding
	for _, b := range bs {
		if b.Expires.After(now) {
			out = append(out, b)
		}
	}
	return out
}

// wanted builds the contacts the tracker should hold for one AoR and says
// why they differ from live ("" when they do not). What the registrar does
// not report the same way puaside records it (received, instance, user
// agent, Call-ID/CSeq) is kept from puaside's binding when it has one.
func wanted(theirs []proxyrpc.Contact, live []usrloc.Binding, now time.Time, permanent int) ([]event.Contact, string) {
	byURI := make(map[string]usrloc.Binding, len(live))
	for _, b := range live {
		byURI[b.URI] = b
	}
	why := ""
	seen := map[string]bool{}
	out := make([]event.Contact, 0, len(theirs))
	for _, c := range theirs {
		if seen[c.URI] {
			continue
		}
		seen[c.URI] = true
		rem := c.Remaining
		if c.Permanent {
			rem = permanent
		}
		ec := event.Contact{URI: c.URI, Expires: rem, Q: c.Q, CallID: c.CallID, CSeq: c.CSeq,
			Received: c.Received, Instance: c.Instance, UserAgent: c.UserAgent}
		b, ok := byURI[c.URI]
		switch {
		case !ok:
			why = worse(why, "added")
		default:
			ec.Received, ec.Instance, ec.UserAgent = b.Received, b.Instance, b.UserAgent
			if b.CallID != "" {
				ec.CallID, ec.CSeq = b.CallID, b.CSeq
			}
			if math.Abs(b.Q-c.Q) > 0.001 {
				why = worse(why, "changed")
			}
			if c.Permanent {
				// Refreshed before half of its lifetime is gone, so that
				// the tracker never lets it lapse between two passes.
				if b.Expires.Sub(now) < time.Duration(permanent)*time.Second/2 {
					why = worse(why, "changed")
				}
			} else {
				d := b.Expires.Sub(now.Add(time.Duration(rem) * time.Second))
				if d > expiryTolerance || d < -expiryTolerance {
					why = worse(why, "changed")
				}
			}
		}
		out = append(out, ec)
	}
	for _, b := range live {
		if !seen[b.URI] {
			why = worse(why, "removed")
		}
	}
	return out, why
}

// worse keeps the most telling reason: removed > added > changed.
func worse(cur, next string) string {
	rank := map[string]int{"": 0, "changed": 1, "added": 2, "removed": 3}
	if rank[next] > rank[cur] {
		return next
	}
	return cur
}

// callKey identifies a call as the proxy and the tracker both do.
type callKey struct{ callID, fromTag string }

// CallPlan is what a dlg.list snapshot says must change.
type CallPlan struct {
	// End are puaside's live calls the proxy no longer has.
	End []callKey
	// Adopt are answered calls of the proxy that puaside never saw.
	Adopt []event.DialogState
	// Known is the set to pass to the next plan: calls puaside tracked,
	// or that were adopted, and that the proxy still has.
	Known map[callKey]bool
	// Partial is true when some dialogs could not be read: nothing was
	// ended.
	Partial bool
}

// planCalls compares the proxy's dialogs with the tracker's. Calls created
// or answered after cutoff (the time the proxy was asked, minus the grace)
// are left alone; answered calls older than maxAge are not adopted (the
// tracker's lifetime cap would end them at once). known holds the calls of
// the previous plan: a call puaside tracked and then ended itself is never
// adopted back.
func planCalls(snap proxyrpc.Dialogs, mine []dialoginfo.DialogInfo, cutoff, now time.Time, maxAge time.Duration,
	adopt bool, known map[callKey]bool) CallPlan {
	plan := CallPlan{Partial: snap.Skipped > 0, Known: map[callKey]bool{}}
	theirs := map[callKey]proxyrpc.Dialog{}
	for _, d := range snap.Dialogs {
		if d.State == proxyrpc.DialogDeleted {
			continue
		}
		k := callKey{d.CallID, d.FromTag}
		if prev, ok := theirs[k]; !ok || d.State.Answered() && !prev.State.Answered() {
			theirs[k] = d
		}
	}
	ours := map[callKey]bool{}
	live := map[callKey]bool{}
	for _, d := range mine {
		k := callKey{d.CallID, d.FromTag}
		ours[k] = true
		if d.State != "terminated" {
			live[k] = true
		}
	}
	for k := range ours {
		if _, ok := theirs[k]; ok {
			plan.Known[k] = true
		}
	}
	if !plan.Partial {
		ends := make([]callKey, 0)
		for k := range live {
			if _, ok := theirs[k]; !ok {
				ends = append(ends, k)
			}
		}
		sort.Slice(ends, func(i, j int) bool { return ends[i].callID+ends[i].fromTag < ends[j].callID+ends[j].fromTag })
		plan.End = ends
	}
	keys := make([]callKey, 0, len(theirs))
	for k := range theirs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].callID+keys[i].fromTag < keys[j].callID+keys[j].fromTag })
	for _, k := range keys {
		d := theirs[k]
		if ours[k] {
			continue
		}
		if known[k] {
			plan.Known[k] = true
			continue
		}
		if !adopt || !d.State.Answered() || d.ToTag == "" {
			continue
		}
		at := d.Answered
		if at.IsZero() {
			at = d.Created
		}
		// Kamailio's times are whole seconds: a call answered in the same
		// second as the cutoff may be newer than it.
		if at.IsZero() || !at.Add(time.Second).Before(cutoff) || now.Sub(at) >= maxAge {
			continue
		}
		plan.Adopt = append(plan.Adopt, event.DialogState{CallID: d.CallID, FromTag: d.FromTag, ToTag: d.ToTag,
			From: d.FromURI, To: d.ToURI, State: "confirmed", Time: now})
		plan.Known[k] = true
	}
	return plan
}
