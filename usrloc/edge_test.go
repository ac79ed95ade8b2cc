package usrloc

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/puatest"
)

// feedRaw passes a hand-written SIP message (LF line ends) to HandleSIP.
func (r *rig) feedRaw(t *testing.T, raw string, src event.Source) {
	t.Helper()
	m := puatest.ParseSIP(t, puatest.FixSIP([]byte(raw)))
	r.t.HandleSIP(context.Background(), event.SIP{Msg: m, Source: src})
}

// regReq is a REGISTER of alice's AoR (to) with the given Call-ID, CSeq
// and further header lines.
func regReq(to, callID string, cseq int, extra string) string {
	return fmt.Sprintf("REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK%s%d\nFrom: <sip:alice@example.com>;tag=f\nTo: %s\nCall-ID: %s\nCSeq: %d REGISTER\n%s\n", callID, cseq, to, callID, cseq, extra)
}

// regRes is the reply to regReq's REGISTER.
func regRes(status, to, callID string, cseq int, extra string) string {
	return fmt.Sprintf("SIP/2.0 %s\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK%s%d\nFrom: <sip:alice@example.com>;tag=f\nTo: %s;tag=t\nCall-ID: %s\nCSeq: %d REGISTER\n%s\n", status, callID, cseq, to, callID, cseq, extra)
}

const aliceTo = "<sip:alice@example.com>"

// TestStaleUnregisterKeepsNewerBinding: a late copy of an older
// unREGISTER (same Call-ID, lower CSeq) does not remove the binding a
// newer REGISTER refreshed (RFC 3261 §10.3 step 7).
func TestStaleUnregisterKeepsNewerBinding(t *testing.T) {
	r := newRig(t, DefaultConfig(), nil, nil)
	const aor = "sip:alice@example.com"
	r.feedRaw(t, regReq(aliceTo, "c1", 3, "Contact: <sip:alice@10.0.0.1>\nExpires: 600"), event.SourceReplicate)
	r.pub.Take()
	r.feedRaw(t, regReq(aliceTo, "c1", 2, "Contact: <sip:alice@10.0.0.1>;expires=0"), event.SourceReplicate)
	expectOps(t, "stale unREGISTER", r.pub.Take())
	expectContacts(t, "stale unREGISTER", r, aor, "sip:alice@10.0.0.1 10m0s q=-")
}

// TestReplyFallbackKeepsOtherDevices: a 2xx to one device's unREGISTER
// (Expires: 0 in the request) that lists another device's binding without
// an expires parameter keeps that binding: the request's Expires is not
// applied to contacts it did not name.
func TestReplyFallbackKeepsOtherDevices(t *testing.T) {
	r := newRig(t, DefaultConfig(), nil, nil)
	const aor = "sip:alice@example.com"
	r.feedRaw(t, regReq(aliceTo, "b", 1, "Contact: <sip:alice@10.0.0.2>\nExpires: 600"), event.SourceTrace)
	r.feedRaw(t, regRes("200 OK", aliceTo, "b", 1, "Contact: <sip:alice@10.0.0.2>\nExpires: 600"), event.SourceTrace)
	expectContacts(t, "B registered", r, aor, "sip:alice@10.0.0.2 10m0s q=-")
	r.pub.Take()
	r.feedRaw(t, regReq(aliceTo, "a", 7, "Contact: <sip:alice@10.0.0.1>\nExpires: 0"), event.SourceTrace)
	r.feedRaw(t, regRes("200 OK", aliceTo, "a", 7, "Contact: <sip:alice@10.0.0.2>\nExpires: 600"), event.SourceTrace)
	expectContacts(t, "A unregistered", r, aor, "sip:alice@10.0.0.2 10m0s q=-")
	expectOps(t, "A unregistered", r.pub.Take())
}

// TestReplyFallbackGrantedBeatsAsked: the expiry the 2xx grants in its
// Expires header wins over what the request asked.
func TestReplyFallbackGrantedBeatsAsked(t *testing.T) {
	r := newRig(t, DefaultConfig(), nil, nil)
	const aor = "sip:alice@example.com"
	r.feedRaw(t, regReq(aliceTo, "a", 1, "Contact: <sip:alice@10.0.0.1>\nExpires: 3600"), event.SourceTrace)
	r.feedRaw(t, regRes("200 OK", aliceTo, "a", 1, "Contact: <sip:alice@10.0.0.1>\nExpires: 600"), event.SourceTrace)
	expectContacts(t, "granted 600", r, aor, "sip:alice@10.0.0.1 10m0s q=-")
}

// TestReplyGrantNotClamped: an expiry the registrar's 2xx grants is kept
// as it is, not clamped again by max_expires (the registrar's reply is
// authoritative), so the user is not shown closed while registered.
func TestReplyGrantNotClamped(t *testing.T) {
	r := newRig(t, DefaultConfig(), nil, nil) // max_expires 2h
	const aor = "sip:alice@example.com"
	r.feedRaw(t, regReq(aliceTo, "c1", 1, "Contact: <sip:alice@10.0.0.1>\nExpires: 10800"), event.SourceTrace)
	r.feedRaw(t, regRes("200 OK", aliceTo, "c1", 1, "Contact: <sip:alice@10.0.0.1>;expires=10800"), event.SourceTrace)
	r.pub.Take()
	r.clock.Advance(2*time.Hour + time.Second)
	r.t.expireDue()
	expectOps(t, "2h into a 3h binding", r.pub.Take())
	expectContacts(t, "2h into a 3h binding", r, aor, "sip:alice@10.0.0.1 59m59s q=-")
}

// TestNoDirtySetWithoutStore: without a store the tracker keeps no set of
// AoRs to write (nothing would ever empty it).
func TestNoDirtySetWithoutStore(t *testing.T) {
	r := newRig(t, DefaultConfig(), nil, nil)
	tr, err := New(DefaultConfig(), Options{Publisher: r.pub, Clock: r.clock})
	if err != nil {
		t.Fatal(err)
	}
	r.t = tr
	for i := range 100 {
		r.feedRaw(t, regReq(fmt.Sprintf("<sip:u%d@example.com>", i), fmt.Sprint("c", i), 1,
			fmt.Sprintf("Contact: <sip:u%d@10.0.0.1>\nExpires: 60", i)), event.SourceReplicate)
	}
	r.clock.Advance(61 * time.Second)
	r.t.expireDue()
	r.clock.Advance(31 * time.Second)
	r.t.expireDue()
	r.t.mu.Lock()
	n, na := len(r.t.dirty), len(r.t.aors)
	r.t.mu.Unlock()
	if na != 0 || n != 0 {
		t.Fatalf("after every contact expired: %d AoRs, %d dirty entries kept", na, n)
	}
}

// TestNewFlowReplacesBinding: RFC 5626 §6: a REGISTER from the same
// device (+sip.instance) and flow (reg-id) with another contact (a reboot,
// a new port) replaces the old binding, so the user is closed once the
// device unregisters the new one.
func TestNewFlowReplacesBinding(t *testing.T) {
	r := newRig(t, DefaultConfig(), nil, nil)
	const aor = "sip:alice@example.com"
	inst := `;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1`
	r.feedRaw(t, regReq(aliceTo, "boot1", 1, "Contact: <sip:alice@10.0.0.1:5060;ob>"+inst+"\nExpires: 3600"), event.SourceReplicate)
	r.feedRaw(t, regReq(aliceTo, "boot2", 1, "Contact: <sip:alice@10.0.0.1:5070;ob>"+inst+"\nExpires: 3600"), event.SourceReplicate)
	expectContacts(t, "after the new flow", r, aor, "sip:alice@10.0.0.1:5070;ob 1h0m0s q=-")
	r.feedRaw(t, regReq(aliceTo, "boot2", 2, "Contact: <sip:alice@10.0.0.1:5070;ob>"+inst+"\nExpires: 0"), event.SourceReplicate)
	expectContacts(t, "after the unREGISTER", r, aor)
	ops := describe(r.pub.Take())
	if len(ops) == 0 || ops[len(ops)-1] != "publish "+aor+" closed" {
		t.Fatalf("presence after the device unregistered: %q", ops)
	}
}

// TestStaleWildcardKeepsNewerBinding: a late copy of an older
// "Contact: *" (same Call-ID as a binding, lower CSeq) removes every
// binding but that newer one (RFC 3261 §10.3 step 6, per binding); a newer
// one removes it too.
func TestStaleWildcardKeepsNewerBinding(t *testing.T) {
	r := newRig(t, DefaultConfig(), nil, nil)
	const aor = "sip:alice@example.com"
	r.feedRaw(t, regReq(aliceTo, "c1", 3, "Contact: <sip:alice@10.0.0.1>\nExpires: 600"), event.SourceReplicate)
	r.feedRaw(t, regReq(aliceTo, "c2", 1, "Contact: <sip:alice@10.0.0.2>\nExpires: 600"), event.SourceReplicate)
	r.pub.Take()
	r.feedRaw(t, regReq(aliceTo, "c1", 2, "Contact: *\nExpires: 0"), event.SourceReplicate)
	expectContacts(t, "stale Contact: *", r, aor, "sip:alice@10.0.0.1 10m0s q=-")
	expectOps(t, "stale Contact: *", r.pub.Take(), "publish "+aor+" open")
	r.feedRaw(t, regReq(aliceTo, "c1", 3, "Contact: *\nExpires: 0"), event.SourceReplicate)
	expectContacts(t, "Contact: * of the binding's own CSeq", r, aor, "sip:alice@10.0.0.1 10m0s q=-")
	r.feedRaw(t, regReq(aliceTo, "c1", 4, "Contact: *\nExpires: 0"), event.SourceReplicate)
	expectContacts(t, "newer Contact: *", r, aor)
	expectOps(t, "newer Contact: *", r.pub.Take(), "publish "+aor+" closed")
}

// TestLateReplyDoesNotReopen: a late copy of a 2xx the tracker already
// applied, or one older than a 2xx it applied of the same Call-ID (a
// mirrored copy delivered again after the user unregistered), changes
// nothing: it does not bring back the bindings removed since, even once
// the AoR is forgotten, nor remove bindings added since; the client's
// next REGISTER is applied.
func TestLateReplyDoesNotReopen(t *testing.T) {
	r := newRig(t, DefaultConfig(), nil, nil)
	const aor = "sip:alice@example.com"
	reply1 := regRes("200 OK", aliceTo, "c1", 1, "Contact: <sip:alice@10.0.0.1>;expires=600")
	r.feedRaw(t, regReq(aliceTo, "c1", 1, "Contact: <sip:alice@10.0.0.1>\nExpires: 600"), event.SourceTrace)
	r.feedRaw(t, reply1, event.SourceTrace)
	r.feedRaw(t, regReq(aliceTo, "c1", 2, "Contact: <sip:alice@10.0.0.1>\nExpires: 0"), event.SourceTrace)
	r.feedRaw(t, regRes("200 OK", aliceTo, "c1", 2, ""), event.SourceTrace)
	expectOps(t, "unregistered", r.pub.Take(), "publish "+aor+" open", "publish "+aor+" closed")
	r.clock.Advance(10 * time.Second)
	r.feedRaw(t, reply1, event.SourceHEP)
	expectContacts(t, "late 2xx", r, aor)
	expectOps(t, "late 2xx", r.pub.Take())
	r.clock.Advance(20 * time.Second)
	r.t.expireDue()
	expectOps(t, "linger over", r.pub.Take(), "remove "+aor)
	r.feedRaw(t, reply1, event.SourceHEP)
	expectContacts(t, "late 2xx of a forgotten AoR", r, aor)
	expectOps(t, "late 2xx of a forgotten AoR", r.pub.Take())

	reply3 := regRes("200 OK", aliceTo, "c1", 3, "Contact: <sip:alice@10.0.0.1>;expires=600")
	r.feedRaw(t, regReq(aliceTo, "c1", 3, "Contact: <sip:alice@10.0.0.1>\nExpires: 600"), event.SourceTrace)
	r.feedRaw(t, reply3, event.SourceTrace)
	expectContacts(t, "registered again", r, aor, "sip:alice@10.0.0.1 10m0s q=-")
	r.feedRaw(t, regReq(aliceTo, "b", 1, "Contact: <sip:alice@10.0.0.2>\nExpires: 600"), event.SourceTrace)
	r.feedRaw(t, regRes("200 OK", aliceTo, "b", 1, "Contact: <sip:alice@10.0.0.1>;expires=600\nContact: <sip:alice@10.0.0.2>;expires=600"), event.SourceTrace)
	r.clock.Advance(10 * time.Second)
	r.feedRaw(t, reply3, event.SourceHEP)
	expectContacts(t, "late 2xx after another device's", r, aor,
		"sip:alice@10.0.0.1 9m50s q=-", "sip:alice@10.0.0.2 9m50s q=-")

	// Once the bindings they granted have lapsed, the replies are
	// forgotten.
	r.clock.Advance(10 * time.Minute)
	r.t.expireDue()
	r.t.pruneInputs()
	r.t.mu.Lock()
	n := len(r.t.replied)
	r.t.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d replies still remembered", n)
	}
}

// TestLateRegisterAfterRemoval: on the t_replicate path, a late copy of
// an older REGISTER (same Call-ID, lower CSeq) arriving after the
// unREGISTER that removed its binding, or after a newer "Contact: *", does
// not bring the binding back, even once the AoR is forgotten; one arriving
// before the binding's removal was seen (the removal overtook it) is
// ignored too. Another Call-ID, or the client's next REGISTER, registers.
func TestLateRegisterAfterRemoval(t *testing.T) {
	const aor = "sip:alice@example.com"
	reg2 := regReq(aliceTo, "c1", 2, "Contact: <sip:alice@10.0.0.1>\nExpires: 600")
	for _, tc := range []struct{ name, removal string }{
		{"unREGISTER", regReq(aliceTo, "c1", 3, "Contact: <sip:alice@10.0.0.1>\nExpires: 0")},
		{"Contact: *", regReq(aliceTo, "c1", 3, "Contact: *\nExpires: 0")},
	} {
		r := newRig(t, DefaultConfig(), nil, nil)
		r.feedRaw(t, reg2, event.SourceReplicate)
		r.feedRaw(t, tc.removal, event.SourceReplicate)
		expectOps(t, tc.name, r.pub.Take(), "publish "+aor+" open", "publish "+aor+" closed")
		r.feedRaw(t, reg2, event.SourceReplicate)
		expectContacts(t, tc.name+", then the late REGISTER", r, aor)
		expectOps(t, tc.name+", then the late REGISTER", r.pub.Take())
		r.clock.Advance(DefaultConfig().ClosedLinger + time.Second)
		r.t.expireDue()
		expectOps(t, tc.name+", linger over", r.pub.Take(), "remove "+aor)
		r.feedRaw(t, regReq(aliceTo, "c1", 1, "Contact: <sip:alice@10.0.0.1>\nExpires: 600"), event.SourceReplicate)
		expectContacts(t, tc.name+", then a late REGISTER of a forgotten AoR", r, aor)
		r.feedRaw(t, regReq(aliceTo, "c9", 1, "Contact: <sip:alice@10.0.0.1>\nExpires: 600"), event.SourceReplicate)
		expectContacts(t, tc.name+", then another Call-ID", r, aor, "sip:alice@10.0.0.1 10m0s q=-")
		r.feedRaw(t, regReq(aliceTo, "c9", 2, "Contact: <sip:alice@10.0.0.1>\nExpires: 0"), event.SourceReplicate)
		r.feedRaw(t, regReq(aliceTo, "c9", 3, "Contact: <sip:alice@10.0.0.1>\nExpires: 600"), event.SourceReplicate)
		expectContacts(t, tc.name+", then the client's next REGISTER", r, aor, "sip:alice@10.0.0.1 10m0s q=-")
	}

	// The unREGISTER overtook the REGISTER it follows.
	r := newRig(t, DefaultConfig(), nil, nil)
	r.feedRaw(t, regReq(aliceTo, "c1", 3, "Contact: <sip:alice@10.0.0.1>\nExpires: 0"), event.SourceReplicate)
	r.feedRaw(t, reg2, event.SourceReplicate)
	expectContacts(t, "overtaken REGISTER", r, aor)
	expectOps(t, "overtaken REGISTER", r.pub.Take())
}

// TestRebootWithSameCallID: a phone that keeps its Call-ID over a reboot
// registers again with a lower CSeq after it unregistered. Once a
// transaction's lifetime (64·T1) has passed since the removal, that is no
// late copy: on the t_replicate path and the traced one the new
// registration is applied.
func TestRebootWithSameCallID(t *testing.T) {
	const aor = "sip:alice@example.com"
	for _, src := range []event.Source{event.SourceReplicate, event.SourceTrace} {
		r := newRig(t, DefaultConfig(), nil, nil)
		register := func(cseq int, expires string) {
			r.feedRaw(t, regReq(aliceTo, "c1", cseq, "Contact: <sip:alice@10.0.0.1>\nExpires: "+expires), src)
			if src == event.SourceTrace {
				granted := ""
				if expires != "0" {
					granted = "Contact: <sip:alice@10.0.0.1>;expires=" + expires
				}
				r.feedRaw(t, regRes("200 OK", aliceTo, "c1", cseq, granted), src)
			}
		}
		register(100, "600")
		register(101, "0")
		expectContacts(t, "unregistered", r, aor)
		r.clock.Advance(33 * time.Second)
		register(1, "600")
		expectContacts(t, fmt.Sprintf("%v: rebooted with the same Call-ID", src), r, aor, "sip:alice@10.0.0.1 10m0s q=-")
	}
}
