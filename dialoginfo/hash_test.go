package dialoginfo

import (
	"hash/fnv"
	"strconv"
	"testing"

	"github.com/puaside/puaside/dialogdoc"
)

// hashDialogRef is hashDialog written with hash/fnv, as the stored hashes
// of earlier releases were made.
func hashDialogRef(d *dialogdoc.Dialog) uint64 {
	h := fnv.New64a()
	w := func(s string) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	w(d.ID)
	w(d.CallID)
	w(d.LocalTag)
	w(d.RemoteTag)
	w(d.Direction)
	w(d.State)
	w(d.Event)
	w(strconv.Itoa(d.Code))
	for _, p := range []*dialogdoc.Participant{d.Local, d.Remote} {
		if p == nil {
			w("-")
			continue
		}
		w(p.Identity)
		w(p.Display)
		w(p.Target)
		w(p.Rendering)
	}
	return h.Sum64()
}

// TestHashDialogStable: the content hash is the one stored by earlier
// releases, so a restart after an upgrade does not republish every call.
func TestHashDialogStable(t *testing.T) {
	for _, d := range []dialogdoc.Dialog{
		{},
		{ID: "d1", State: "confirmed", Code: 486, Event: "rejected", Direction: "initiator"},
		{ID: "d2", CallID: "c", LocalTag: "l", RemoteTag: "r", State: "early",
			Local:  &dialogdoc.Participant{Identity: "sip:a@x", Display: "A é", Target: "sip:a@1.2.3.4", Rendering: "no"},
			Remote: &dialogdoc.Participant{Identity: "sip:b@x"}},
		{ID: "d3", Code: -1, Remote: &dialogdoc.Participant{Target: "-"}},
	} {
		if got, want := hashDialog(&d), hashDialogRef(&d); got != want {
			t.Errorf("%+v: hash %x, want %x", d, got, want)
		}
	}
}
