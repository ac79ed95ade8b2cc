package dialoginfo

import (
	"sort"
	"time"
)

// DialogInfo is one tracked dialog (branch) for the management API.
type DialogInfo struct {
	// ID is the dialog id used in documents and publication ids.
	ID      string `json:"id"`
	CallID  string `json:"call_id"`
	FromTag string `json:"from_tag"`
	ToTag   string `json:"to_tag"`
	// Caller and Callee are the entities' AoRs.
	Caller string `json:"caller"`
	Callee string `json:"callee"`
	// State is the RFC 4235 state; Event and Code qualify terminated.
	State string `json:"state"`
	Event string `json:"event,omitempty"`
	Code  int    `json:"code,omitempty"`
	// CallerHold and CalleeHold say which side put the call on hold.
	CallerHold bool `json:"caller_hold"`
	CalleeHold bool `json:"callee_hold"`
	// Created is when the INVITE was seen; LastActive the last sign of life;
	// Ended when the dialog terminated (zero while active).
	Created    time.Time `json:"created"`
	LastActive time.Time `json:"last_active"`
	Ended      time.Time `json:"ended,omitempty"`
}

// Dialogs lists the tracked dialogs (terminated ones until their
// publications are removed), oldest first.
func (t *Tracker) Dialogs() []DialogInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]DialogInfo, 0, len(t.calls))
	for _, c := range t.calls {
		for _, b := range c.Branches {
			if b.Removed {
				continue
			}
			di := DialogInfo{
				ID: b.ID, CallID: c.CallID, FromTag: c.FromTag, ToTag: b.ToTag,
				Caller: c.Caller, Callee: c.Callee, State: b.State.String(),
				Event: b.Event[sideCaller], Code: b.Code,
				CallerHold: b.Hold[sideCaller], CalleeHold: b.Hold[sideCallee],
				Created: time.Unix(0, c.Created), LastActive: time.Unix(0, c.Active),
			}
			if b.Ended != 0 {
				di.Ended = time.Unix(0, b.Ended)
			}
			out = append(out, di)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}
