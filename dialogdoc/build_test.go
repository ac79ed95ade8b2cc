package dialogdoc

import (
	"reflect"
	"strings"
	"testing"
)

// TestBuildParses: a built document reads back with its ids, direction,
// state and hold, and AllTerminated agrees with its states.
func TestBuildParses(t *testing.T) {
	in := Document{Version: 7, Entity: "sip:alice@example.com", Dialogs: []Dialog{{
		ID: "d1", CallID: "c1", LocalTag: "l", RemoteTag: "r", Direction: "initiator", State: "confirmed",
		Local:  &Participant{Identity: "sip:alice@example.com", Target: "sip:alice@10.0.0.1", Rendering: "no"},
		Remote: &Participant{Identity: "sip:bob@example.com", Display: `Bob "B" <&>`, Target: "sip:bob@example.com"},
	}}}
	body := Build(in)
	got, err := Parse(body, 0)
	if err != nil {
		t.Fatalf("Parse(Build()) = %v\n%s", err, body)
	}
	want := Dialog{ID: "d1", CallID: "c1", LocalTag: "l", RemoteTag: "r", Direction: "initiator", State: "confirmed", Held: true,
		Remote: &Participant{Identity: "sip:bob@example.com", Display: `Bob "B" <&>`}}
	if len(got.Dialogs) != 1 {
		t.Fatalf("dialogs %+v", got.Dialogs)
	}
	got.Dialogs[0].Raw = nil
	if got.Version != 7 || got.Partial() || got.Entity != in.Entity || !reflect.DeepEqual(got.Dialogs[0], want) {
		t.Errorf("read back %+v, want %+v", got, want)
	}
	if AllTerminated(body) {
		t.Error("a confirmed dialog counted as terminated")
	}
	in.Dialogs[0].State = "terminated"
	if !AllTerminated(Build(in)) {
		t.Error("a terminated dialog not counted")
	}
	if !strings.HasPrefix(string(body), `<?xml version="1.0"?>`+"\n"+`<dialog-info xmlns="`+Namespace+`" version="7" state="full"`) {
		t.Errorf("root: %s", body)
	}
}

func TestMerge(t *testing.T) {
	known := map[string]Dialog{"b": {ID: "b", State: "confirmed"}, "a": {ID: "a", State: "early"}}
	got := Merge(known, []Dialog{{ID: "a", State: "terminated"}, {ID: "c", State: "trying"}})
	var ids []string
	for _, d := range got {
		ids = append(ids, d.ID+":"+d.State)
	}
	if strings.Join(ids, ",") != "a:terminated,b:confirmed,c:trying" {
		t.Errorf("Merge = %v", ids)
	}
}
