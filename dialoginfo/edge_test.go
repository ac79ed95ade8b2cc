package dialoginfo

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/puatest/recorder"
	"github.com/puaside/puaside/pua"
)

// edgeMsg builds a message of call "h" between alice (tag fa) and bob.
// vias: 1 = as the proxy received/sent to the caller, 2 = fork's own.
func edgeMsg(t *testing.T, first string, vias int, fromTag, toTag string, fromCaller bool, cseq, extra, body string) string {
	from := "<sip:alice@example.com>;tag=" + fromTag
	to := "<sip:bob@example.com>"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	if !fromCaller {
		from = "<sip:bob@example.com>;tag=" + fromTag
		to = "<sip:alice@example.com>;tag=" + toTag
	}
	v := "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa\n"
	if vias == 2 {
		v = "Via: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKprx\n" + v
	}
	s := first + "\n" + v + "From: " + from + "\nTo: " + to + "\nCall-ID: h\nCSeq: " + cseq + "\n" + extra
	if body != "" {
		s += "Content-Type: application/sdp\nContent-Length: " + fmt.Sprint(len(strings.ReplaceAll(body, "\n", "\r\n"))) + "\n\n" + body
	} else {
		s += "Content-Length: 0\n\n"
	}
	return s
}

// edgeTracker is a tracker without a store, publishing to a recorder.
func edgeTracker(t *testing.T) (*Tracker, *recorder.Recorder, *fakeClock) {
	pub := recorder.New()
	clk := newFakeClock()
	tr, err := New(DefaultConfig(), Options{Publisher: pub, Clock: clk, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	return tr, pub, clk
}

// feedCall hands the tracker one message (edgeMsg's text).
func feedCall(t *testing.T, tr *Tracker, s string) {
	t.Helper()
	tr.HandleSIP(context.Background(), msg(t, s))
}

// litLamps lists the publications held that are not left to lapse (a
// terminated document has a lifetime), with their first state.
func litLamps(pub *recorder.Recorder) []string {
	var out []string
	for k, req := range pub.Live() {
		if req.Lifetime <= 0 {
			st := string(req.Body)
			i := strings.Index(st, "<state")
			j := strings.Index(st, "</state>")
			out = append(out, k.PresURI+" "+st[i:j])
		}
	}
	return out
}

const inv = "INVITE sip:bob@example.com SIP/2.0"

// Two forks ring; desk declines 603, mobile is busy 486; the proxy
// forwards the 603 (6xx wins) with desk's tag.
func TestForkedCallRejectedEndsEveryFork(t *testing.T) {
	tr, pub, clk := edgeTracker(t)
	feedCall(t, tr, edgeMsg(t, inv, 1, "fa", "", true, "1 INVITE", "Contact: <sip:alice@10.0.0.1>\n", ""))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 180 Ringing", 2, "fa", "desk", true, "1 INVITE", "Contact: <sip:bob@10.0.0.2>\n", ""))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 180 Ringing", 2, "fa", "mobile", true, "1 INVITE", "Contact: <sip:bob@10.0.0.3>\n", ""))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 603 Decline", 2, "fa", "desk", true, "1 INVITE", "", ""))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 486 Busy", 2, "fa", "mobile", true, "1 INVITE", "", ""))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 603 Decline", 1, "fa", "desk", true, "1 INVITE", "", ""))
	feedCall(t, tr, edgeMsg(t, "ACK sip:bob@example.com SIP/2.0", 1, "fa", "desk", true, "1 ACK", "", ""))
	clk.Advance(time.Second)
	tr.Expire(clk.Now())
	if l := litLamps(pub); len(l) != 0 {
		t.Fatalf("call rejected, lamps still lit: %v %+v", l, tr.Dialogs())
	}
}

// Callee answers at once (no 180) and hangs up quickly; the BYE copy
// reaches the tracer before the 200's copy.
func TestByeCopyBeforeTheAnswer(t *testing.T) {
	tr, pub, clk := edgeTracker(t)
	feedCall(t, tr, edgeMsg(t, inv, 1, "fa", "", true, "1 INVITE", "Contact: <sip:alice@10.0.0.1>\n", ""))
	feedCall(t, tr, edgeMsg(t, "BYE sip:alice@10.0.0.1 SIP/2.0", 1, "bt", "fa", false, "1 BYE", "", ""))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 200 OK", 1, "bt", "fa", false, "1 BYE", "", ""))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 200 OK", 1, "fa", "bt", true, "1 INVITE", "Contact: <sip:bob@10.0.0.2>\n", ""))
	feedCall(t, tr, edgeMsg(t, "ACK sip:bob@10.0.0.2 SIP/2.0", 1, "fa", "bt", true, "1 ACK", "", ""))
	clk.Advance(time.Hour)
	tr.Expire(clk.Now())
	if l := litLamps(pub); len(l) != 0 {
		t.Fatalf("call over, lamps still lit an hour later: %v", l)
	}
}

// A hold re-INVITE (sendonly) is refused with 488: the call is not on hold.
func TestRefusedHoldReinviteKeepsState(t *testing.T) {
	tr, pub, _ := edgeTracker(t)
	feedCall(t, tr, edgeMsg(t, inv, 1, "fa", "", true, "1 INVITE", "Contact: <sip:alice@10.0.0.1>\n", ""))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 200 OK", 1, "fa", "bt", true, "1 INVITE", "Contact: <sip:bob@10.0.0.2>\n", ""))
	feedCall(t, tr, edgeMsg(t, "ACK sip:bob@10.0.0.2 SIP/2.0", 1, "fa", "bt", true, "1 ACK", "", ""))
	sdp := "v=0\no=- 1 2 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0\na=sendonly\n"
	feedCall(t, tr, edgeMsg(t, "INVITE sip:bob@10.0.0.2 SIP/2.0", 1, "fa", "bt", true, "2 INVITE", "Contact: <sip:alice@10.0.0.1>\n", sdp))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 488 Not Acceptable Here", 1, "fa", "bt", true, "2 INVITE", "", ""))
	feedCall(t, tr, edgeMsg(t, "ACK sip:bob@10.0.0.2 SIP/2.0", 1, "fa", "bt", true, "2 ACK", "", ""))
	for k, req := range pub.Live() {
		if strings.Contains(string(req.Body), `pname="+sip.rendering" pval="no"`) {
			t.Errorf("%s shows hold after the hold re-INVITE was refused:\n%s", k.PresURI, req.Body)
		}
	}
}

// A re-INVITE answered 481: the dialog no longer exists (RFC 5057).
func TestReinvite481EndsTheDialog(t *testing.T) {
	tr, pub, clk := edgeTracker(t)
	feedCall(t, tr, edgeMsg(t, inv, 1, "fa", "", true, "1 INVITE", "Contact: <sip:alice@10.0.0.1>\n", ""))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 200 OK", 1, "fa", "bt", true, "1 INVITE", "Contact: <sip:bob@10.0.0.2>\n", ""))
	feedCall(t, tr, edgeMsg(t, "ACK sip:bob@10.0.0.2 SIP/2.0", 1, "fa", "bt", true, "1 ACK", "", ""))
	feedCall(t, tr, edgeMsg(t, "INVITE sip:bob@10.0.0.2 SIP/2.0", 1, "fa", "bt", true, "2 INVITE", "Contact: <sip:alice@10.0.0.1>\n", ""))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 481 Call/Transaction Does Not Exist", 1, "fa", "bt", true, "2 INVITE", "", ""))
	clk.Advance(time.Hour)
	tr.Expire(clk.Now())
	if l := litLamps(pub); len(l) != 0 {
		t.Fatalf("dialog gone (481 to re-INVITE), lamps lit an hour later: %v", l)
	}
}

// The INVITE forks to desk (rings) and to a trunk that challenges with its
// own 407 (as the proxy received it: two Vias). Desk answers.
func TestForkChallengeKeepsTheCall(t *testing.T) {
	tr, pub, _ := edgeTracker(t)
	feedCall(t, tr, edgeMsg(t, inv, 1, "fa", "", true, "1 INVITE", "Contact: <sip:alice@10.0.0.1>\n", ""))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 180 Ringing", 2, "fa", "desk", true, "1 INVITE", "Contact: <sip:bob@10.0.0.2>\n", ""))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 407 Proxy Authentication Required", 2, "fa", "trunk", true, "1 INVITE", "", ""))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 200 OK", 2, "fa", "desk", true, "1 INVITE", "Contact: <sip:bob@10.0.0.2>\n", ""))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 200 OK", 1, "fa", "desk", true, "1 INVITE", "Contact: <sip:bob@10.0.0.2>\n", ""))
	feedCall(t, tr, edgeMsg(t, "ACK sip:bob@10.0.0.2 SIP/2.0", 1, "fa", "desk", true, "1 ACK", "", ""))
	l := litLamps(pub)
	if len(l) != 2 || !strings.Contains(strings.Join(l, ","), "confirmed") {
		t.Fatalf("desk answered, live lamps: %v, tracked: %+v", l, tr.Dialogs())
	}
}

// A crash less than flush_interval after the 200: the engine holds the
// confirmed documents, the store the early call and older versions.
func TestRestartKeepsVersionsRising(t *testing.T) {
	st := newMemStore()
	clk := newFakeClock()
	pub1 := recorder.New()
	tr1, _ := New(DefaultConfig(), Options{Publisher: pub1, Store: st, Clock: clk, Logger: quietLog()})
	feedCall(t, tr1, edgeMsg(t, inv, 1, "fa", "", true, "1 INVITE", "Contact: <sip:alice@10.0.0.1>\n", ""))
	feedCall(t, tr1, edgeMsg(t, "SIP/2.0 180 Ringing", 1, "fa", "bt", true, "1 INVITE", "Contact: <sip:bob@10.0.0.2>\n", ""))
	if err := tr1.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	feedCall(t, tr1, edgeMsg(t, "SIP/2.0 200 OK", 1, "fa", "bt", true, "1 INVITE", "Contact: <sip:bob@10.0.0.2>\n", ""))
	// crash: no flush
	val := newValidator()
	for _, op := range pub1.Take() {
		if err := val.check(op.Key.PresURI, op.Req.Body); err != nil {
			t.Fatal(err)
		}
	}
	lp := listingPub{Recorder: recorder.New()}
	for k, req := range pub1.Live() {
		lp.held = append(lp.held, pua.PublicationInfo{Key: k, Flag: pua.FlagDialogPublish, Body: req.Body})
	}
	tr2, _ := New(DefaultConfig(), Options{Publisher: lp, Store: st, Clock: clk, Logger: quietLog()})
	if err := tr2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	feedCall(t, tr2, edgeMsg(t, "BYE sip:bob@10.0.0.2 SIP/2.0", 1, "fa", "bt", true, "2 BYE", "", ""))
	for _, op := range lp.Take() {
		if err := val.check(op.Key.PresURI, op.Req.Body); err != nil {
			t.Errorf("after restart: %v\n%s", err, op.Req.Body)
		}
	}
}

// The forwarded INVITE copy (two Vias) reaches the tracer before the
// received one; a fork that never rang answers 486 on its own.
func TestForwardedInviteCopyFirst(t *testing.T) {
	tr, pub, _ := edgeTracker(t)
	feedCall(t, tr, edgeMsg(t, inv, 2, "fa", "", true, "1 INVITE", "Contact: <sip:alice@10.0.0.1>\n", ""))
	feedCall(t, tr, edgeMsg(t, inv, 1, "fa", "", true, "1 INVITE", "Contact: <sip:alice@10.0.0.1>\n", ""))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 180 Ringing", 2, "fa", "desk", true, "1 INVITE", "Contact: <sip:bob@10.0.0.2>\n", ""))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 486 Busy", 2, "fa", "mobile", true, "1 INVITE", "", ""))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 200 OK", 2, "fa", "desk", true, "1 INVITE", "Contact: <sip:bob@10.0.0.2>\n", ""))
	feedCall(t, tr, edgeMsg(t, "SIP/2.0 200 OK", 1, "fa", "desk", true, "1 INVITE", "Contact: <sip:bob@10.0.0.2>\n", ""))
	l := litLamps(pub)
	if len(l) != 2 || !strings.Contains(strings.Join(l, ","), "confirmed") {
		t.Fatalf("desk answered, live lamps: %v, tracked: %+v", l, tr.Dialogs())
	}
}
