package daemon

import (
	"context"
	"strings"

	"github.com/puaside/puaside/bla"
	"github.com/puaside/puaside/board"
	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/pa"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/usrloc"
)

// observedEngine is the pua engine (or paEngine, with the presence server
// in process) as the trackers see it, telling the lamp board every
// publication they ask for. Every other method (Claim, Publications,
// Subscribe, ...) is the publisher's own.
type observedEngine struct {
	publisher
	b board.Observer
	// toldDialogs: the tracker publishing through it tells the board the
	// dialog of each of its dialog documents itself (DialogPublished), so
	// the documents are not handed to Published to be parsed.
	toldDialogs bool
}

// Publish queues the publication and shows it on the board.
func (o observedEngine) Publish(req pua.PublishRequest) error {
	if err := o.publisher.Publish(req); err != nil {
		return err
	}
	if !o.toldDialogs || !strings.EqualFold(req.Event, "dialog") {
		o.b.Published(req)
	}
	return nil
}

// Remove withdraws the publication and shows it on the board.
func (o observedEngine) Remove(key pua.Key) error {
	if err := o.publisher.Remove(key); err != nil {
		return err
	}
	o.b.Removed(key)
	return nil
}

// boardContacts converts a usrloc contact set for the board.
func boardContacts(bs []usrloc.Binding) []board.Contact {
	out := make([]board.Contact, 0, len(bs))
	for _, b := range bs {
		out = append(out, board.Contact{URI: b.URI, UserAgent: b.UserAgent, Expires: b.Expires})
	}
	return out
}

// observeSIP returns h that also shows each message on the board.
func observeSIP(b board.Observer, h func(context.Context, event.SIP)) func(context.Context, event.SIP) {
	return func(ctx context.Context, m event.SIP) {
		h(ctx, m)
		b.SIP(m)
	}
}

// boardLines is the bla manager as the board's line source. It reads the
// daemon's manager when asked (the board is built before the manager,
// which publishes through it).
type boardLines struct{ d *Daemon }

func (l boardLines) manager() *bla.Manager { return l.d.bl }

func (l boardLines) LineAoRs() []string {
	if l.manager() == nil {
		return nil
	}
	infos := l.manager().Lines()
	out := make([]string, 0, len(infos))
	for _, li := range infos {
		out = append(out, li.AoR)
	}
	return out
}

func (l boardLines) Line(aor string) (board.Line, bool) {
	if l.manager() == nil {
		return board.Line{}, false
	}
	for _, li := range l.manager().Lines() {
		if li.AoR != aor {
			continue
		}
		ln := board.Line{AoR: li.AoR}
		for _, p := range li.Phones {
			ln.Phones = append(ln.Phones, board.LinePhone{Contact: p.Contact, Subscribed: p.Subscribed})
		}
		for _, s := range li.Seized {
			ln.Appearance = append(ln.Appearance, board.Appearance{Index: s.Index, Contact: s.Contact, State: s.State, Held: s.Held})
		}
		return ln, true
	}
	return board.Line{}, false
}

// seedBoard shows what the engine holds after a restart: the dialog lamps
// of the calls it still publishes and the publications the presence
// server refuses. Later changes reach the board as they happen.
func (d *Daemon) seedBoard() {
	for _, p := range d.eng.Publications() {
		if p.Key.Event == "dialog" && p.State != pua.StateRemoving {
			d.board.Published(pua.PublishRequest{Key: p.Key, Body: p.Body})
		}
		if p.State == pua.StateFailed {
			d.board.PublishResult(p.Key, "restored", pua.Result{Status: p.LastStatus, Reason: p.LastReason})
		}
	}
}

// Board returns the daemon's lamp board (tests, embedding).
func (d *Daemon) Board() *board.Board { return d.board }

// boardWatchers converts the presence server's watchers for the board.
func boardWatchers(ws []pa.WatcherState) []board.Watcher {
	out := make([]board.Watcher, 0, len(ws))
	for _, w := range ws {
		out = append(out, board.Watcher{URI: w.URI, Event: w.Event, Status: w.Status})
	}
	return out
}
