package e2e

import (
	"context"
	"encoding/xml"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/sipphone"
)

// dlgInfoDoc is the part of an RFC 4235 dialog-info document these tests
// read from a watcher's NOTIFY.
type dlgInfoDoc struct {
	XMLName xml.Name      `xml:"dialog-info"`
	Version string        `xml:"version,attr"`
	State   string        `xml:"state,attr"`
	Entity  string        `xml:"entity,attr"`
	Dialogs []dlgInfoItem `xml:"dialog"`
}

// dlgInfoItem is one <dialog> of a dialog-info document.
type dlgInfoItem struct {
	ID        string `xml:"id,attr"`
	CallID    string `xml:"call-id,attr"`
	Direction string `xml:"direction,attr"`
	State     struct {
		Value string `xml:",chardata"`
		Event string `xml:"event,attr"`
		Code  string `xml:"code,attr"`
	} `xml:"state"`
}

// dlgStateRank orders RFC 4235 states; 0 for anything else.
func dlgStateRank(s string) int {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trying":
		return 1
	case "proceeding":
		return 2
	case "early":
		return 3
	case "confirmed":
		return 4
	case "terminated":
		return 5
	}
	return 0
}

// dlgParseInfo decodes a NOTIFY body; an empty body is an empty document.
func dlgParseInfo(body string) (dlgInfoDoc, error) {
	var d dlgInfoDoc
	if strings.TrimSpace(body) == "" {
		return d, nil
	}
	if err := xml.Unmarshal([]byte(body), &d); err != nil {
		return d, fmt.Errorf("dialog-info body: %w\n%s", err, body)
	}
	return d, nil
}

// dlgStatesOf returns, per NOTIFY of w, the states of the dialogs of
// callID in that document (nil where the call is absent).
func dlgStatesOf(t *testing.T, w *sipphone.Watcher, callID string) [][]dlgInfoItem {
	t.Helper()
	var out [][]dlgInfoItem
	for _, n := range w.Notifications() {
		d, err := dlgParseInfo(n.Body)
		if err != nil {
			t.Fatalf("watcher NOTIFY: %v", err)
		}
		var items []dlgInfoItem
		for _, it := range d.Dialogs {
			if it.CallID == callID {
				items = append(items, it)
			}
		}
		out = append(out, items)
	}
	return out
}

// dlgWaitState waits for the next NOTIFY of w showing a dialog of callID
// in state, and returns that dialog.
func dlgWaitState(ctx context.Context, t *testing.T, w *sipphone.Watcher, who, callID, state string) dlgInfoItem {
	t.Helper()
	var found dlgInfoItem
	wctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	_, err := w.WaitFor(wctx, func(body string) bool {
		d, err := dlgParseInfo(body)
		if err != nil {
			return false
		}
		for _, it := range d.Dialogs {
			if it.CallID == callID && strings.EqualFold(strings.TrimSpace(it.State.Value), state) {
				found = it
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("%s's watcher never saw call %s %s: %v\nNOTIFY bodies:\n%s", who, callID, state, err, notifyBodies(w))
	}
	return found
}

// dlgCheckProgress checks that across w's NOTIFYs the dialogs of callID
// only move forward (RFC 4235 order), show every state in want, and end in
// the last of want; direction is checked on every document.
func dlgCheckProgress(t *testing.T, w *sipphone.Watcher, who, callID, direction string, want ...string) {
	t.Helper()
	best, seen := 0, map[string]bool{}
	for i, items := range dlgStatesOf(t, w, callID) {
		for _, it := range items {
			r := dlgStateRank(it.State.Value)
			if r == 0 {
				t.Errorf("%s NOTIFY #%d: unknown state %q", who, i, it.State.Value)
			}
			if r < best {
				t.Errorf("%s NOTIFY #%d: state %q after a later state\n%s", who, i, it.State.Value, notifyBodies(w))
			}
			if r > best {
				best = r
			}
			if it.Direction != direction {
				t.Errorf("%s NOTIFY #%d: direction %q, want %q", who, i, it.Direction, direction)
			}
			seen[strings.ToLower(strings.TrimSpace(it.State.Value))] = true
		}
	}
	for _, s := range want {
		if !seen[s] {
			t.Errorf("%s's watcher never saw %s for call %s\n%s", who, s, callID, notifyBodies(w))
		}
	}
	if last := want[len(want)-1]; best != dlgStateRank(last) {
		t.Errorf("%s's watcher: last state rank %d, want %s", who, best, last)
	}
}

// dlgCheckEnd checks the RFC 4235 event and code of a terminated dialog.
func dlgCheckEnd(t *testing.T, it dlgInfoItem, who, event, code string) {
	t.Helper()
	if it.State.Event != event || it.State.Code != code {
		t.Errorf("%s's terminated dialog %s: event %q code %q, want %q %q", who, it.ID, it.State.Event, it.State.Code, event, code)
	}
}

// dlgCheckNoLitLamp checks the last NOTIFY of w: no dialog in it is in a
// state other than terminated.
func dlgCheckNoLitLamp(t *testing.T, w *sipphone.Watcher, who string) {
	t.Helper()
	ns := w.Notifications()
	if len(ns) == 0 {
		t.Fatalf("%s's watcher got no NOTIFY", who)
	}
	d, err := dlgParseInfo(ns[len(ns)-1].Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range d.Dialogs {
		if dlgStateRank(it.State.Value) != dlgStateRank("terminated") {
			t.Errorf("%s's lamp still lit: dialog %s (call %s) %s\n%s", who, it.ID, it.CallID, it.State.Value, notifyBodies(w))
		}
	}
}

// dlgPublications counts the engine's dialog publications.
func dlgPublications(ps *puaside) int {
	n := 0
	for _, p := range ps.d.Engine().Publications() {
		if p.Key.Event == "dialog" {
			n++
		}
	}
	return n
}

// dlgRig is Kamailio presence + puaside + Kamailio registrar mirroring in
// one variant, with alice and bob registered and a dialog watcher on each.
type dlgRig struct {
	presence, reg *kamailiotest.Instance
	cfg           config.Config
	ps            *puaside
	alice, bob    *sipphone.Phone
	wAlice, wBob  *sipphone.Watcher
}

func newDlgRig(ctx context.Context, t *testing.T, variant string) *dlgRig {
	t.Helper()
	r := &dlgRig{}
	r.presence = presenceServer(t)
	r.cfg = baseConfig(t, r.presence)
	r.cfg.Dialoginfo.TerminatedLinger = time.Second
	r.cfg.Dialoginfo.FlushInterval = 200 * time.Millisecond
	r.ps = startPuaside(t, r.cfg)
	r.reg = registrar(t, variant, r.cfg)

	r.alice = sipphone.NewPhone(t, "alice", "example.com")
	r.bob = sipphone.NewPhone(t, "bob", "example.com")
	for _, ph := range []*sipphone.Phone{r.alice, r.bob} {
		res, err := ph.Register(ctx, r.reg.Addr(), 300)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("register %s: %v %v", ph.User, res, err)
		}
	}
	watcher := sipphone.NewPhone(t, "watcher", "example.com")
	var err error
	opts := sipphone.WatchOptions{Expires: 600, Accept: "application/dialog-info+xml"}
	if r.wAlice, err = watcher.Watch(ctx, r.presence.Addr(), r.alice.AoR(), "dialog", opts); err != nil {
		t.Fatalf("watch alice: %v", err)
	}
	if r.wBob, err = watcher.Watch(ctx, r.presence.Addr(), r.bob.AoR(), "dialog", opts); err != nil {
		t.Fatalf("watch bob: %v", err)
	}
	return r
}

// ring places alice → bob with bob ringing and returns both ends once bob's
// watcher shows the call early.
func (r *dlgRig) ring(ctx context.Context, t *testing.T) (*sipphone.Call, *sipphone.IncomingCall) {
	t.Helper()
	r.bob.SetPolicy(sipphone.KeepRinging)
	call, err := r.alice.Invite(ctx, r.reg.Addr(), r.bob.AoR())
	if err != nil {
		t.Fatal(err)
	}
	var in *sipphone.IncomingCall
	for in == nil {
		select {
		case ic := <-r.bob.Incoming():
			if ic.Request.CallID().Value() == call.CallID() {
				in = ic
			}
		case <-ctx.Done():
			t.Fatal("bob did not ring")
		}
	}
	dlgWaitState(ctx, t, r.wBob, "bob", call.CallID(), "early")
	return call, in
}

// settle waits until the engine holds no dialog publication (the linger
// passed and the removals were answered), then checks both lamps are out.
func (r *dlgRig) settle(t *testing.T) {
	t.Helper()
	eventually(t, "no dialog publication left", func() bool { return dlgPublications(r.ps) == 0 })
	// Kamailio notifies the removal; give the NOTIFYs time to arrive.
	eventually(t, "dialog presentities gone at the presence server", func() bool {
		n, err := r.presence.Count(context.Background(), "presentity", "event = ?", "dialog")
		return err == nil && n == 0
	})
	time.Sleep(500 * time.Millisecond)
	dlgCheckNoLitLamp(t, r.wBob, "bob")
	dlgCheckNoLitLamp(t, r.wAlice, "alice")
}

// TestDialogBLF: calls between two phones through a real Kamailio proxy,
// mirrored to puaside (siptrace copies or HEPv3), light and clear the lamps
// of watchers subscribed to the dialog event at a real Kamailio presence
// server: answered, cancelled and rejected calls; no lamp stays lit.
func TestDialogBLF(t *testing.T) {
	for _, tc := range []struct {
		name, variant string
		full          bool // also the cancelled and rejected calls
	}{
		{"siptrace", "WITH_SIPTRACE", true},
		{"hep", "WITH_HEP", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			r := newDlgRig(ctx, t, tc.variant)

			// Answered call.
			call, in := r.ring(ctx, t)
			dlgWaitState(ctx, t, r.wAlice, "alice", call.CallID(), "early")
			in.Answer()
			if err := call.WaitAnswer(ctx); err != nil {
				t.Fatalf("answer: %v", err)
			}
			dlgWaitState(ctx, t, r.wBob, "bob", call.CallID(), "confirmed")
			dlgWaitState(ctx, t, r.wAlice, "alice", call.CallID(), "confirmed")
			if err := call.Bye(ctx); err != nil {
				t.Fatal(err)
			}
			// Alice hung up: remote-bye for bob, local-bye for alice.
			dlgCheckEnd(t, dlgWaitState(ctx, t, r.wBob, "bob", call.CallID(), "terminated"), "bob", "remote-bye", "")
			dlgCheckEnd(t, dlgWaitState(ctx, t, r.wAlice, "alice", call.CallID(), "terminated"), "alice", "local-bye", "")
			dlgCheckProgress(t, r.wBob, "bob", call.CallID(), "recipient", "early", "confirmed", "terminated")
			dlgCheckProgress(t, r.wAlice, "alice", call.CallID(), "initiator", "early", "confirmed", "terminated")
			if !tc.full {
				r.settle(t)
				return
			}

			// Cancelled call: bob keeps ringing, alice cancels.
			call, in = r.ring(ctx, t)
			if err := call.Cancel(ctx); err != nil {
				t.Fatalf("cancel: %v", err)
			}
			<-in.Done()
			dlgCheckEnd(t, dlgWaitState(ctx, t, r.wBob, "bob", call.CallID(), "terminated"), "bob", "cancelled", "")
			dlgCheckEnd(t, dlgWaitState(ctx, t, r.wAlice, "alice", call.CallID(), "terminated"), "alice", "cancelled", "")
			dlgCheckProgress(t, r.wBob, "bob", call.CallID(), "recipient", "early", "terminated")

			// Rejected call: bob answers 486.
			call, in = r.ring(ctx, t)
			in.Reject(486)
			if err := call.WaitAnswer(ctx); err == nil || call.Code() != 486 {
				t.Fatalf("rejected call: err %v code %d, want 486", err, call.Code())
			}
			dlgCheckEnd(t, dlgWaitState(ctx, t, r.wBob, "bob", call.CallID(), "terminated"), "bob", "rejected", "486")
			dlgCheckEnd(t, dlgWaitState(ctx, t, r.wAlice, "alice", call.CallID(), "terminated"), "alice", "rejected", "486")
			dlgCheckProgress(t, r.wBob, "bob", call.CallID(), "recipient", "early", "terminated")

			r.settle(t)
		})
	}
}

// TestDialogBLFRestartMidCall: puaside is stopped while a call is
// confirmed and started again with the same configuration; the BYE seen
// after the restart still ends the dialog at the watcher.
func TestDialogBLFRestartMidCall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := newDlgRig(ctx, t, "WITH_SIPTRACE")

	call, in := r.ring(ctx, t)
	in.Answer()
	if err := call.WaitAnswer(ctx); err != nil {
		t.Fatalf("answer: %v", err)
	}
	dlgWaitState(ctx, t, r.wBob, "bob", call.CallID(), "confirmed")

	r.ps.stop()
	r.ps = startPuaside(t, r.cfg)
	if n := dlgPublications(r.ps); n == 0 {
		t.Fatalf("no dialog publication restored after restart")
	}

	if err := call.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	dlgWaitState(ctx, t, r.wBob, "bob", call.CallID(), "terminated")
	dlgWaitState(ctx, t, r.wAlice, "alice", call.CallID(), "terminated")
	dlgCheckProgress(t, r.wBob, "bob", call.CallID(), "recipient", "early", "confirmed", "terminated")
	r.settle(t)
}
