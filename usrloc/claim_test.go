package usrloc

import (
	"context"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/puatest/recorder"
	"github.com/puaside/puaside/pua"
)

// claimerPub is a listerPub that records claims.
type claimerPub struct {
	listerPub
	claimed []string
	done    []int
}

func (p *claimerPub) Claim(k pua.Key) bool {
	p.claimed = append(p.claimed, k.PresURI)
	return true
}

func (p *claimerPub) ClaimsDone(flag int) { p.done = append(p.done, flag) }

// TestStartClaims: at start the tracker claims the publications of the
// AoRs it still knows (changed or not), not the others, and says it is done.
func TestStartClaims(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	r1 := newRig(t, DefaultConfig(), st, nil)
	r1.feed(t, "replicate_user0001", event.SourceReplicate)
	r1.feed(t, "replicate_user0002", event.SourceReplicate)
	if err := r1.t.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	const u1, u2 = "sip:user0001@harness.test", "sip:user0002@harness.test"
	cp := &claimerPub{listerPub: listerPub{Recorder: recorder.New()}}
	open2 := BuildPIDF(u2, []Binding{{URI: "sip:user0002@127.0.0.1:5112", Q: -1}})
	cp.pubs = []pua.PublicationInfo{
		{Key: pua.Key{PresURI: u2, Event: "presence", ID: "usrloc"}, Flag: pua.FlagUsrloc, Body: open2},
		// Published just before a crash, its contact never written.
		{Key: pua.Key{PresURI: "sip:lost@x", Event: "presence", ID: "usrloc"}, Flag: pua.FlagUsrloc, Body: []byte("<presence/>")},
	}
	st.contacts.Delete("sip:lost@x")
	tr, err := New(DefaultConfig(), Options{Publisher: cp, Store: st, Clock: r1.clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(ctx); err != nil {
		t.Fatal(err)
	}
	sort.Strings(cp.claimed)
	// user0001 is published anew (not listed), user0002 kept unchanged,
	// the lost one closed: the tracker still wants all three.
	if want := []string{"sip:lost@x", u1, u2}; !reflect.DeepEqual(cp.claimed, want) {
		t.Fatalf("claimed %q, want %q", cp.claimed, want)
	}
	if !reflect.DeepEqual(cp.done, []int{pua.FlagUsrloc}) {
		t.Fatalf("claims done %v", cp.done)
	}
}

// TestPublishExpiresFollowsContacts: the Expires asked is the remaining
// lifetime of the longest-lived contact + 1 s, capped by publish_expires;
// an unchanged document is published again once its lease is less than half
// of what the refreshed contacts allow.
func TestPublishExpiresFollowsContacts(t *testing.T) {
	cfg := DefaultConfig()
	tr, err := New(cfg, Options{Publisher: recorder.New()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	st := &aorState{contacts: []Binding{{Expires: now.Add(30 * time.Second)}, {Expires: now.Add(90*time.Second + 300*time.Millisecond)}}}
	if got := tr.publishExpires(st, now, false); got != 92*time.Second {
		t.Fatalf("expires %v, want 92s", got)
	}
	st.contacts = []Binding{{Expires: now.Add(5 * time.Hour)}}
	if got := tr.publishExpires(st, now, false); got != cfg.PublishExpires {
		t.Fatalf("expires %v, want publish_expires", got)
	}
	if got := tr.publishExpires(st, now, true); got != cfg.ClosedLinger+time.Second {
		t.Fatalf("closed expires %v", got)
	}
	if !leaseTooShort(11*time.Second, 3601*time.Second) || leaseTooShort(3000*time.Second, 3601*time.Second) {
		t.Fatal("leaseTooShort")
	}
}
