package reconcile

import (
	"testing"
	"time"

	"github.com/puaside/puaside/dialoginfo"
	"github.com/puaside/puaside/proxyrpc"
	"github.com/puaside/puaside/usrloc"
)

var t0 = time.Unix(1800000000, 0)

func binding(uri string, left time.Duration, q float64) usrloc.Binding {
	return usrloc.Binding{URI: uri, Expires: t0.Add(left), Q: q, Received: "sip:192.0.2.1:5060", CallID: "reg-1", CSeq: 3}
}

func fixesByAoR(p BindingPlan) map[string]BindingFix {
	out := map[string]BindingFix{}
	for _, f := range p.Fixes {
		out[f.AoR] = f
	}
	return out
}

func TestPlanBindings(t *testing.T) {
	snap := proxyrpc.Bindings{AoRs: []proxyrpc.AoR{
		{Name: "alice", Contacts: []proxyrpc.Contact{{URI: "sip:alice@10.0.0.1", Remaining: 300, Q: -1}}},  // unknown to puaside
		{Name: "bob", Contacts: []proxyrpc.Contact{{URI: "sip:bob@10.0.0.2", Remaining: 600, Q: -1}}},      // same as puaside
		{Name: "carol", Contacts: []proxyrpc.Contact{{URI: "sip:carol@10.0.0.3", Remaining: 1200, Q: -1}}}, // refreshed while down
		{Name: "dave", Contacts: nil}, // all lapsed
		{Name: "erin", Contacts: []proxyrpc.Contact{{URI: "sip:erin@new", Remaining: 60, Q: 0.5}}},  // moved phone
		{Name: "frank", Contacts: []proxyrpc.Contact{{URI: "sip:frank@h", Permanent: true, Q: -1}}}, // static
		{Name: "kim", Contacts: []proxyrpc.Contact{{URI: "sip:kim@h", Permanent: true, Q: -1}}},     // static, fresh here
		{Name: "lou", Contacts: []proxyrpc.Contact{{URI: "sip:lou@h", Permanent: true, Q: -1}}},     // static, half gone here
		{Name: "gina", Contacts: []proxyrpc.Contact{{URI: "sip:gina@h", Remaining: 60, Q: -1}}, Incomplete: true},
	}}
	mine := []usrloc.AoRInfo{
		{AoR: "sip:bob@example.com", Contacts: []usrloc.Binding{binding("sip:bob@10.0.0.2", 602*time.Second, -1)}},
		{AoR: "sip:carol@example.com", Contacts: []usrloc.Binding{binding("sip:carol@10.0.0.3", 30*time.Second, -1)}},
		{AoR: "sip:dave@example.com", Contacts: []usrloc.Binding{binding("sip:dave@h", time.Hour, -1)}},
		{AoR: "sip:erin@example.com", Contacts: []usrloc.Binding{binding("sip:erin@old", time.Hour, -1)}},
		{AoR: "sip:gina@example.com", Contacts: []usrloc.Binding{binding("sip:gina@other", time.Hour, -1)}},
		{AoR: "sip:kim@example.com", Contacts: []usrloc.Binding{binding("sip:kim@h", 50*time.Minute, -1)}},
		{AoR: "sip:lou@example.com", Contacts: []usrloc.Binding{binding("sip:lou@h", 20*time.Minute, -1)}},
		{AoR: "sip:hank@example.com", Contacts: []usrloc.Binding{binding("sip:hank@h", time.Hour, -1)}},  // unregistered while down
		{AoR: "sip:ivy@example.com", Contacts: []usrloc.Binding{binding("sip:ivy@h", -time.Second, -1)}}, // already expired here
		{AoR: "sip:jack@example.com", State: "closed"},                                                   // lingering closed
	}
	plan := planBindings(snap, mine, "example.com", t0, 3600)
	if plan.Partial {
		t.Fatal("a whole snapshot was taken as partial")
	}
	got := fixesByAoR(plan)
	want := map[string]string{
		"sip:alice@example.com": "added",
		"sip:carol@example.com": "changed",
		"sip:dave@example.com":  "removed",
		"sip:erin@example.com":  "removed",
		"sip:frank@example.com": "added",
		"sip:hank@example.com":  "gone",
		"sip:lou@example.com":   "changed",
	}
	if len(got) != len(want) {
		t.Errorf("fixes %+v", plan.Fixes)
	}
	for aor, why := range want {
		if got[aor].Why != why {
			t.Errorf("%s: why %q, want %q", aor, got[aor].Why, why)
		}
	}
	if c := got["sip:carol@example.com"].Contacts; len(c) != 1 || c[0].Expires != 1200 ||
		c[0].Received != "sip:192.0.2.1:5060" || c[0].CallID != "reg-1" {
		t.Errorf("carol's correction %+v: the registrar's expiry, puaside's other fields", c)
	}
	if c := got["sip:frank@example.com"].Contacts; len(c) != 1 || c[0].Expires != 3600 {
		t.Errorf("frank's permanent binding %+v", c)
	}
	if c := got["sip:erin@example.com"].Contacts; len(c) != 1 || c[0].URI != "sip:erin@new" || c[0].Q != 0.5 {
		t.Errorf("erin's correction %+v", c)
	}
	if len(got["sip:hank@example.com"].Contacts) != 0 || len(got["sip:dave@example.com"].Contacts) != 0 {
		t.Error("a gone AoR keeps contacts")
	}
}

func TestPlanBindingsPartialRemovesNothing(t *testing.T) {
	mine := []usrloc.AoRInfo{{AoR: "sip:hank@example.com", Contacts: []usrloc.Binding{binding("sip:hank@h", time.Hour, -1)}}}
	for name, tc := range map[string]struct {
		snap   proxyrpc.Bindings
		domain string
	}{
		"skipped records": {proxyrpc.Bindings{Skipped: 1, AoRs: []proxyrpc.AoR{{Name: "alice@example.com"}}}, ""},
		"no domain":       {proxyrpc.Bindings{AoRs: []proxyrpc.AoR{{Name: "alice"}}}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			plan := planBindings(tc.snap, mine, tc.domain, t0, 3600)
			if !plan.Partial {
				t.Fatal("not partial")
			}
			for _, f := range plan.Fixes {
				if f.AoR == "sip:hank@example.com" {
					t.Fatalf("hank removed from a partial snapshot: %+v", f)
				}
			}
		})
	}
	// With use_domain=1 the AoRs carry their domain: no default is needed.
	plan := planBindings(proxyrpc.Bindings{AoRs: []proxyrpc.AoR{{Name: "hank@example.com",
		Contacts: []proxyrpc.Contact{{URI: "sip:hank@h", Remaining: 3600, Q: -1}}}}}, mine, "", t0, 3600)
	if plan.Partial || len(plan.Fixes) != 0 {
		t.Fatalf("use_domain=1 table: %+v", plan)
	}
}

func call(id, from, to, state string, created time.Time) dialoginfo.DialogInfo {
	return dialoginfo.DialogInfo{CallID: id, FromTag: from, ToTag: to, State: state, Created: created, LastActive: created}
}

func dlg(id, from, to string, st proxyrpc.DialogState, answered time.Time) proxyrpc.Dialog {
	return proxyrpc.Dialog{CallID: id, FromTag: from, ToTag: to, FromURI: "sip:a@example.com", ToURI: "sip:b@example.com",
		State: st, Created: answered.Add(-5 * time.Second), Answered: answered}
}

func TestPlanCalls(t *testing.T) {
	old := t0.Add(-time.Hour)
	cutoff := t0.Add(-5 * time.Second)
	snap := proxyrpc.Dialogs{Dialogs: []proxyrpc.Dialog{
		dlg("kept", "f", "t", proxyrpc.DialogConfirmed, old),
		dlg("deleted", "f", "t", proxyrpc.DialogDeleted, old),                    // BYE seen by the proxy, not freed
		dlg("adopt", "f", "t", proxyrpc.DialogConfirmed, old),                    // answered while puaside was down
		dlg("young", "f", "t", proxyrpc.DialogConfirmed, t0.Add(-5*time.Second)), // maybe still in the ingest queue
		dlg("ancient", "f", "t", proxyrpc.DialogConfirmed, t0.Add(-5*time.Hour)), // beyond the lifetime cap
		dlg("ringing", "f", "", proxyrpc.DialogEarly, time.Time{}),               // not answered: nothing to adopt
		dlg("ended-here", "f", "t", proxyrpc.DialogConfirmed, old),               // puaside ended it earlier
	}}
	mine := []dialoginfo.DialogInfo{
		call("kept", "f", "t", "confirmed", old),
		call("deleted", "f", "t", "confirmed", old),
		call("bye-missed", "f", "t", "confirmed", old),
		call("bye-missed", "f", "t2", "terminated", old), // a forked branch, cancelled
		call("over", "f", "t", "terminated", old),        // over here too: nothing to do
		call("early-gone", "f", "", "early", old),        // CANCEL missed
	}
	known := map[callKey]bool{{"ended-here", "f"}: true}
	plan := planCalls(snap, mine, cutoff, t0, 4*time.Hour, true, known)
	ends := map[string]bool{}
	for _, k := range plan.End {
		ends[k.callID] = true
	}
	if len(ends) != 3 || !ends["deleted"] || !ends["bye-missed"] || !ends["early-gone"] {
		t.Errorf("ends %v, want deleted, bye-missed, early-gone", plan.End)
	}
	if len(plan.Adopt) != 1 || plan.Adopt[0].CallID != "adopt" || plan.Adopt[0].State != "confirmed" ||
		plan.Adopt[0].ToTag != "t" || plan.Adopt[0].From != "sip:a@example.com" {
		t.Errorf("adopt %+v, want only the call answered while down", plan.Adopt)
	}
	for _, k := range []string{"kept", "adopt", "ended-here"} {
		if !plan.Known[callKey{k, "f"}] {
			t.Errorf("%s not known for the next pass", k)
		}
	}
	if plan.Known[callKey{"bye-missed", "f"}] {
		t.Error("a call gone at the proxy stays known")
	}

	// Without adoption, and with a partial list: nothing adopted, nothing ended.
	snap.Skipped = 1
	plan = planCalls(snap, mine, cutoff, t0, 4*time.Hour, false, nil)
	if len(plan.End) != 0 || len(plan.Adopt) != 0 || !plan.Partial {
		t.Errorf("partial, no adoption: %+v", plan)
	}
}
