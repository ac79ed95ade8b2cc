package dialoginfo

import (
	"strconv"
	"time"

	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/pua"
)

// sync publishes what changed for a call, schedules its timers and marks it
// for the store.
func (t *Tracker) sync(c *call) {
	for _, b := range c.Branches {
		if b.Removed {
			continue
		}
		for s := sideCaller; s <= sideCallee; s++ {
			t.syncSide(c, b, s)
		}
	}
	t.markDirty(c)
	t.schedule(c)
}

// view returns the dialog as seen by one side, or false if that side shows nothing.
func (t *Tracker) view(c *call, b *branch, s int) (string, dialogdoc.Dialog, bool) {
	if !c.Pub[s] {
		return "", dialogdoc.Dialog{}, false
	}
	st := b.State
	if s == sideCallee && !b.Published[s] && (st == stTerminated || (st < stEarly && !t.cfg.CalleeTrying)) {
		return "", dialogdoc.Dialog{}, false
	}
	if s == sideCaller && !b.Published[s] && st == stTerminated {
		return "", dialogdoc.Dialog{}, false
	}
	if s == sideCaller && st == stEarly && t.cfg.CallerConfirmed {
		st = stConfirmed
	}
	d := dialogdoc.Dialog{ID: b.ID, State: st.String()}
	if st == stTerminated {
		d.Event, d.Code = b.Event[s], b.Code
	}
	if t.cfg.IncludeCallID {
		d.CallID = c.CallID
	}
	ps := new([2]dialogdoc.Participant) // one allocation for both
	callerP, calleeP := &ps[0], &ps[1]
	*callerP = dialogdoc.Participant{Identity: c.Caller, Display: c.CallerDisplay, Target: c.CallerContact}
	*calleeP = dialogdoc.Participant{Identity: c.Callee, Display: c.CalleeDisplay, Target: b.Contact}
	if callerP.Target == "" {
		callerP.Target = c.Caller
	}
	if calleeP.Target == "" {
		calleeP.Target = c.Callee
	}
	if b.Hold[sideCaller] {
		callerP.Rendering = "no"
	}
	if b.Hold[sideCallee] {
		calleeP.Rendering = "no"
	}
	entity := c.Caller
	if s == sideCaller {
		d.Direction = "initiator"
		if t.cfg.IncludeTags {
			d.LocalTag, d.RemoteTag = c.FromTag, b.ToTag
		}
		d.Local, d.Remote = callerP, calleeP
	} else {
		entity = c.Callee
		d.Direction = "recipient"
		if t.cfg.IncludeTags {
			d.LocalTag, d.RemoteTag = b.ToTag, c.FromTag
		}
		d.Local, d.Remote = calleeP, callerP
	}
	if !t.cfg.IncludeLocalRemote {
		d.Local, d.Remote = nil, nil
	}
	return entity, d, true
}

func (t *Tracker) presID(c *call, b *branch, s int) string {
	id := t.cfg.PresIDPrefix + b.ID
	if s == sideCallee && c.Caller == c.Callee {
		id += "-r" // a call to oneself: keep the two publications apart
	}
	return id
}

func (t *Tracker) syncSide(c *call, b *branch, s int) {
	entity, d, ok := t.view(c, b, s)
	if !ok {
		return
	}
	h := hashDialog(&d)
	if b.Published[s] && b.Sent[s] == h {
		return
	}
	v := t.versions[entity] + 1
	body := dialogdoc.Build(dialogdoc.Document{Version: v, Entity: entity, Dialogs: []dialogdoc.Dialog{d}})
	req := pua.PublishRequest{
		Key:         pua.Key{PresURI: entity, Event: "dialog", ID: t.presID(c, b, s)},
		Body:        body,
		ContentType: dialogdoc.ContentType,
		Expires:     t.cfg.expires(),
		Flag:        pua.FlagDialogPublish,
	}
	if b.State == stTerminated {
		// The terminated document lives for what is left of the linger
		// and then lapses at the server: the engine neither refreshes nor
		// removes it (pua_dialoginfo's short terminated Expires).
		req.Expires = t.lingerLeft(b)
		req.Lifetime = req.Expires
	}
	err := t.pub.Publish(req)
	if err != nil {
		t.count("publish_error")
		t.log.Warn("dialoginfo: publish refused", "aor", entity, "call_id", c.CallID, "event", "dialog", "err", err)
		return
	}
	if t.obs != nil {
		t.obs.DialogPublished(req.Key, d)
	}
	t.versions[entity] = v
	if t.store != nil {
		t.dirtyVer[entity] = struct{}{}
	}
	b.Published[s] = true
	b.Sent[s] = h
	t.count("published_" + d.State)
}

// lingerLeft is what is left of a terminated branch's linger, at least a
// second.
func (t *Tracker) lingerLeft(b *branch) time.Duration {
	left := time.Duration(b.Ended+int64(t.cfg.TerminatedLinger)) - time.Duration(t.now().UnixNano())
	return max(left, time.Second)
}

// removeBranch withdraws a branch's publications at the end of its
// linger. A side whose terminated document was handed to the publisher
// needs nothing: that publication lapses by itself (see syncSide). Only a
// side whose last document is not the terminated one (its publish was
// refused) is removed.
func (t *Tracker) removeBranch(c *call, b *branch) {
	if b.Removed {
		return
	}
	b.Removed = true
	for s := sideCaller; s <= sideCallee; s++ {
		if !b.Published[s] {
			continue
		}
		entity := c.entity(s)
		if b.State == stTerminated {
			if _, d, ok := t.view(c, b, s); ok && hashDialog(&d) == b.Sent[s] {
				t.count("lapsed")
				continue
			}
		}
		if err := t.pub.Remove(pua.Key{PresURI: entity, Event: "dialog", ID: t.presID(c, b, s)}); err != nil {
			t.count("remove_error")
			t.log.Warn("dialoginfo: remove refused", "aor", entity, "call_id", c.CallID, "event", "dialog", "err", err)
			continue
		}
		t.count("removed")
	}
}

// dropCall forgets a call whose branches are all removed.
func (t *Tracker) dropCall(c *call) {
	delete(t.calls, c.key)
	t.sched.Cancel(c)
	if t.store != nil {
		t.dirty[c.key] = nil
	}
	t.count("call_ended")
}

func (t *Tracker) markDirty(c *call) {
	if t.store != nil && t.calls[c.key] == c {
		t.dirty[c.key] = c
	}
}

// hashDialog hashes the content of a dialog (everything but the version):
// FNV-1a 64 over the fields, each followed by a zero byte. The value is
// stored (branch.Sent), so it must not change between releases.
func hashDialog(d *dialogdoc.Dialog) uint64 {
	h := fnvHash(fnvOffset64)
	h.str(d.ID)
	h.str(d.CallID)
	h.str(d.LocalTag)
	h.str(d.RemoteTag)
	h.str(d.Direction)
	h.str(d.State)
	h.str(d.Event)
	var num [20]byte
	h.bytes(strconv.AppendInt(num[:0], int64(d.Code), 10))
	for _, p := range [2]*dialogdoc.Participant{d.Local, d.Remote} {
		if p == nil {
			h.str("-")
			continue
		}
		h.str(p.Identity)
		h.str(p.Display)
		h.str(p.Target)
		h.str(p.Rendering)
	}
	return uint64(h)
}

// FNV-1a 64 parameters (hash/fnv), inlined to hash without allocating.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// fnvHash is a running FNV-1a 64 hash.
type fnvHash uint64

// str hashes s and a zero byte.
func (h *fnvHash) str(s string) {
	v := *h
	for i := 0; i < len(s); i++ {
		v ^= fnvHash(s[i])
		v *= fnvPrime64
	}
	v *= fnvPrime64 // the zero byte: v ^= 0 changes nothing
	*h = v
}

// bytes hashes b and a zero byte.
func (h *fnvHash) bytes(b []byte) {
	v := *h
	for _, c := range b {
		v ^= fnvHash(c)
		v *= fnvPrime64
	}
	v *= fnvPrime64
	*h = v
}
