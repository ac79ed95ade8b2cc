package dialoginfo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/pua"
)

// Record is the tracker's snapshot of one active call (all its dialogs),
// as it hands it to the Store (which keeps it in puaside_dialogs).
type Record struct {
	// ID is the call's stable id (dialog id of its trying dialog).
	ID string
	// CallID and FromTag identify the call.
	CallID  string
	FromTag string
	// Caller and Callee are the entities (for operators reading the table).
	Caller string
	Callee string
	// State is the most advanced state of the call's dialogs.
	State string
	// Data is the tracker's JSON encoding of the call.
	Data []byte
	// Updated is the Unix time of the last change.
	Updated int64
}

// Store persists active calls and per-entity document versions.
// Implemented by *store.DB.
type Store interface {
	// LoadDialogs returns every stored call.
	LoadDialogs(ctx context.Context) ([]Record, error)
	// SaveDialogs upserts and deletes (by ID) calls in one transaction. A
	// call the database cannot hold is set aside by the store and the call
	// succeeds for the others; an error means it must be retried whole.
	SaveDialogs(ctx context.Context, upsert []Record, remove []string) error
	// LoadDialogVersions returns the last document version of each entity.
	LoadDialogVersions(ctx context.Context) (map[string]uint64, error)
	// SaveDialogVersions upserts entity versions.
	SaveDialogVersions(ctx context.Context, versions map[string]uint64) error
}

func (c *call) record() (Record, error) {
	data, err := json.Marshal(c)
	if err != nil {
		return Record{}, fmt.Errorf("dialoginfo: encode call %s: %w", c.CallID, err)
	}
	var top dstate
	for _, b := range c.Branches {
		if b.State != stTerminated && b.State > top || top == 0 {
			top = b.State
		}
	}
	return Record{
		ID: dialogID(c.CallID, c.FromTag, ""), CallID: c.CallID, FromTag: c.FromTag,
		Caller: c.Caller, Callee: c.Callee, State: top.String(), Data: data, Updated: c.Active / 1e9,
	}, nil
}

// PublicationLister is optionally implemented by the Publisher (the pua
// engine does). At Start the tracker compares the engine's publications with
// the calls it loaded: a publication of a live dialog that the engine no
// longer holds (it expired while puaside was down, or the engine's table
// lagged behind at a crash) is published again.
type PublicationLister interface {
	Publications() []pua.PublicationInfo
}

// Start loads stored calls and versions and re-arms their timers. A dialog
// whose publication the engine still holds is not re-published (the engine
// keeps refreshing it); one it lost is published again when the Publisher
// can list its publications. When the Publisher is a Claimer, the
// publications of the loaded calls are claimed and the claims are done when
// Start returns, even on error.
func (t *Tracker) Start(ctx context.Context) error {
	if cl, ok := t.pub.(Claimer); ok {
		defer cl.ClaimsDone(pua.FlagDialogPublish)
		defer func() {
			t.mu.Lock()
			t.claimLoaded(cl)
			t.mu.Unlock()
		}()
	}
	if t.store == nil {
		return nil
	}
	var held map[pua.Key][]byte
	// The versions the engine's documents carry: a change made after the
	// last flush published a version the store does not have yet.
	heldVers := map[string]uint64{}
	if l, ok := t.pub.(PublicationLister); ok {
		held = map[pua.Key][]byte{}
		for _, p := range l.Publications() {
			if p.Key.Event == "dialog" && p.Flag&pua.FlagDialogPublish != 0 {
				held[p.Key] = p.Body
				if doc, err := dialogdoc.Parse(p.Body, len(p.Body)+1); err == nil && doc.Version > heldVers[p.Key.PresURI] {
					heldVers[p.Key.PresURI] = doc.Version
				}
			}
		}
	}
	vers, err := t.store.LoadDialogVersions(ctx)
	if err != nil {
		return fmt.Errorf("dialoginfo: load versions: %w", err)
	}
	recs, err := t.store.LoadDialogs(ctx)
	if err != nil {
		return fmt.Errorf("dialoginfo: load dialogs: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, vs := range []map[string]uint64{vers, heldVers} {
		for e, v := range vs {
			if v > t.versions[e] {
				t.versions[e] = v
			}
		}
	}
	for _, r := range recs {
		c, err := decodeCall(r)
		if err != nil {
			t.count("load_bad_record")
			t.log.Warn("dialoginfo: stored dialog skipped", "call_id", r.CallID, "err", err)
			if !errors.Is(err, errBadBranch) {
				t.dirty[callKey(r.CallID, r.FromTag)] = nil
			}
			continue
		}
		t.calls[c.key] = c
		if held != nil && t.forgetLost(c, held) {
			t.count("republished_after_restart")
			t.sync(c)
		}
		t.schedule(c)
		t.count("loaded")
	}
	return nil
}

// errBadBranch is decodeCall's error for a stored call with a branch
// that cannot be (its row is kept).
var errBadBranch = errors.New("bad branch")

// decodeCall decodes and checks a stored call.
func decodeCall(r Record) (*call, error) {
	var c call
	if err := json.Unmarshal(r.Data, &c); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if c.CallID == "" || c.FromTag == "" || len(c.Branches) == 0 {
		return nil, errors.New("no call id, from tag or branch")
	}
	for _, b := range c.Branches {
		if b == nil || b.ID == "" || b.State < stTrying || b.State > stTerminated {
			return nil, errBadBranch
		}
	}
	c.key = callKey(c.CallID, c.FromTag)
	return &c, nil
}

// Flush writes changed calls and versions to the store.
func (t *Tracker) Flush(ctx context.Context) error {
	if t.store == nil {
		return nil
	}
	t.mu.Lock()
	var upsert []Record
	var remove []string
	var encErr error
	for k, c := range t.dirty {
		if c == nil {
			callID, fromTag := splitKey(k)
			remove = append(remove, dialogID(callID, fromTag, ""))
			continue
		}
		r, err := c.record()
		if err != nil {
			encErr = err
			continue
		}
		upsert = append(upsert, r)
	}
	vers := make(map[string]uint64, len(t.dirtyVer))
	for e := range t.dirtyVer {
		vers[e] = t.versions[e]
	}
	dirty, dirtyVer := t.dirty, t.dirtyVer
	t.dirty, t.dirtyVer = make(map[string]*call), make(map[string]struct{})
	t.mu.Unlock()
	sort.Slice(upsert, func(i, j int) bool { return upsert[i].ID < upsert[j].ID })
	sort.Strings(remove)
	err := t.store.SaveDialogs(ctx, upsert, remove)
	if err == nil && len(vers) > 0 {
		err = t.store.SaveDialogVersions(ctx, vers)
	}
	if err != nil {
		// Put the changes back (newer ones, made meanwhile, win).
		t.mu.Lock()
		for k, c := range dirty {
			if _, ok := t.dirty[k]; !ok {
				if c != nil && t.calls[k] != c {
					c = nil
				}
				t.dirty[k] = c
			}
		}
		for e := range dirtyVer {
			t.dirtyVer[e] = struct{}{}
		}
		t.mu.Unlock()
		t.count("store_error")
		return fmt.Errorf("dialoginfo: flush: %w", err)
	}
	return encErr
}

func splitKey(k string) (string, string) {
	for i := 0; i < len(k); i++ {
		if k[i] == 0 {
			return k[:i], k[i+1:]
		}
	}
	return k, ""
}

// forgetLost clears the sent-document marks of live dialogs whose
// publication the engine does not hold, or holds with another document
// than the dialog's, so that sync publishes them again. It reports whether
// there was any.
//
// A held document that shows the dialog terminated is newer than the
// tracker's table: the engine stored the BYE's (or CANCEL's) document
// within milliseconds, the table lagged behind by its flush_interval at a
// crash. The branch is ended then, not lit again: publishing the table's
// confirmed view would light a lamp for a call that is over, until the
// call's lifetime cap. The side whose terminated document the engine holds
// is left to lapse; the other side, if it still shows the call, is sent
// the terminated document.
func (t *Tracker) forgetLost(c *call, held map[pua.Key][]byte) bool {
	lost := false
	for _, b := range c.Branches {
		if b.Removed || b.State == stTerminated {
			continue
		}
		var bodies [2][]byte
		var have [2]bool
		var ended [2]bool
		for s := sideCaller; s <= sideCallee; s++ {
			if !b.Published[s] {
				continue
			}
			bodies[s], have[s] = held[pua.Key{PresURI: c.entity(s), Event: "dialog", ID: t.presID(c, b, s)}]
			ended[s] = have[s] && heldTerminated(b, bodies[s])
		}
		if ended[sideCaller] || ended[sideCallee] {
			b.State = stTerminated
			b.Ended = t.now().UnixNano()
			t.count("terminated_at_restart")
		}
		for s := sideCaller; s <= sideCallee; s++ {
			if !b.Published[s] {
				continue
			}
			if ended[s] {
				if _, d, ok := t.view(c, b, s); ok {
					b.Sent[s] = hashDialog(&d)
				}
				continue
			}
			if !have[s] || !t.heldMatches(c, b, s, bodies[s]) {
				b.Sent[s] = 0
				lost = true
			}
		}
	}
	return lost
}

// entity is the AoR of a call's side.
func (c *call) entity(s int) string {
	if s == sideCallee {
		return c.Callee
	}
	return c.Caller
}

// heldTerminated reports whether a document the engine holds shows
// branch b terminated.
func heldTerminated(b *branch, body []byte) bool {
	doc, err := dialogdoc.Parse(body, len(body)+1)
	if err != nil {
		return false
	}
	for _, d := range doc.Dialogs {
		if d.ID == b.ID && d.State == stTerminated.String() {
			return true
		}
	}
	return false
}

// heldMatches reports whether body, the document the engine holds for one
// side of a dialog, shows the dialog as the tracker would publish it now
// (whatever its version). An empty body (not kept, e.g. adopted from
// Kamailio) is taken as matching.
func (t *Tracker) heldMatches(c *call, b *branch, s int, body []byte) bool {
	if len(body) == 0 {
		return true
	}
	entity, d, ok := t.view(c, b, s)
	if !ok {
		return true
	}
	doc, err := dialogdoc.Parse(body, len(body)+1)
	if err != nil {
		return false
	}
	want := dialogdoc.Build(dialogdoc.Document{Version: doc.Version, Entity: entity, Dialogs: []dialogdoc.Dialog{d}})
	return bytes.Equal(want, body)
}
