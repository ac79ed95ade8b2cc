package dialoginfo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/internal/puatest/recorder"
	"github.com/puaside/puaside/pua"
)

// toldDialogs records what the tracker tells its observer.
type toldDialogs struct {
	keys    []pua.Key
	dialogs []dialogdoc.Dialog
}

func (o *toldDialogs) DialogPublished(k pua.Key, d dialogdoc.Dialog) {
	o.keys = append(o.keys, k)
	o.dialogs = append(o.dialogs, d)
}

// refusingPublisher refuses every publication.
type refusingPublisher struct{ recorder.Nop }

func (refusingPublisher) Publish(pua.PublishRequest) error { return errors.New("refused") }

// TestObserverToldEachDocumentsDialog: for every document the publisher
// accepts, the observer is told the key and the dialog the document holds
// (what a reader of the document sees: state, direction, remote party,
// hold), in order; a refused publication is not told.
func TestObserverToldEachDocumentsDialog(t *testing.T) {
	for _, dir := range []string{"basic", "forking", "hold", "cancel"} {
		t.Run(dir, func(t *testing.T) {
			pub := recorder.New()
			obs := &toldDialogs{}
			tr, err := New(DefaultConfig(), Options{Publisher: pub, Observer: obs, Clock: newFakeClock(), Logger: quietLog()})
			if err != nil {
				t.Fatal(err)
			}
			feed(t, tr, dir, sipFiles(t, dir)...)
			var pubs []pua.PublishRequest
			for _, op := range pub.Ops() {
				if op.Kind == recorder.Publish {
					pubs = append(pubs, op.Req)
				}
			}
			if len(pubs) == 0 || len(obs.keys) != len(pubs) {
				t.Fatalf("%d publications, observer told %d", len(pubs), len(obs.keys))
			}
			held := false
			for i, req := range pubs {
				doc, err := dialogdoc.Parse(req.Body, 0)
				if err != nil || len(doc.Dialogs) != 1 {
					t.Fatalf("publication %d: %v %+v", i, err, doc)
				}
				if obs.keys[i] != req.Key {
					t.Errorf("publication %d: told key %+v, published %+v", i, obs.keys[i], req.Key)
				}
				if got, want := seen(obs.dialogs[i]), seen(doc.Dialogs[0]); got != want {
					t.Errorf("publication %d: told %s, the document says %s", i, got, want)
				}
				held = held || obs.dialogs[i].OnHold()
			}
			if dir == "hold" && !held {
				t.Error("the hold scenario told no dialog on hold")
			}
		})
	}
	obs := &toldDialogs{}
	tr, err := New(DefaultConfig(), Options{Publisher: refusingPublisher{}, Observer: obs, Clock: newFakeClock(), Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	feed(t, tr, "basic", sipFiles(t, "basic")...)
	if len(obs.keys) != 0 {
		t.Fatalf("refused publications told: %+v", obs.keys)
	}
}

// seen is what a reader of a dialog element sees of it.
func seen(d dialogdoc.Dialog) string {
	remote := ""
	if d.Remote != nil {
		remote = d.Remote.Display + "<" + d.Remote.Identity + ">"
	}
	return fmt.Sprintf("id=%s state=%s dir=%s remote=%s held=%v", d.ID, d.State, d.Direction, remote, d.OnHold())
}

// sipFiles lists a scenario's messages in order.
func sipFiles(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(filepath.Join("testdata", dir))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if filepath.Ext(e.Name()) == ".sip" {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}
