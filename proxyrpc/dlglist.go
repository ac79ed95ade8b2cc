package proxyrpc

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// DialogState is the dialog module's state of a call.
type DialogState int

// Kamailio's dialog states (dlg.list "state").
const (
	// DialogUnconfirmed: INVITE seen, no reply with a to-tag yet.
	DialogUnconfirmed DialogState = 1
	// DialogEarly: a provisional reply with a to-tag.
	DialogEarly DialogState = 2
	// DialogConfirmedNA: 2xx seen, its ACK not yet.
	DialogConfirmedNA DialogState = 3
	// DialogConfirmed: answered and ACKed.
	DialogConfirmed DialogState = 4
	// DialogDeleted: ended (BYE, failure), not yet freed.
	DialogDeleted DialogState = 5
)

// Answered reports whether the call was answered and has not ended.
func (s DialogState) Answered() bool { return s == DialogConfirmedNA || s == DialogConfirmed }

// Dialogs is a snapshot of the dialog module's calls.
type Dialogs struct {
	// Dialogs are the calls, in the order the proxy listed them.
	Dialogs []Dialog
	// Skipped counts entries that could not be read. When it is not zero
	// the snapshot does not list every call.
	Skipped int
}

// Dialog is one call at the proxy.
type Dialog struct {
	// CallID, FromTag (the caller's tag) and ToTag (the callee's, "" before
	// a reply with a tag) identify the dialog.
	CallID, FromTag, ToTag string
	// FromURI and ToURI are the From and To URIs of the INVITE.
	FromURI, ToURI string
	// CallerContact and CalleeContact are the parties' Contact URIs ("" when unknown).
	CallerContact, CalleeContact string
	// State is the dialog state.
	State DialogState
	// Created is when the INVITE was seen (init_ts); Answered when it was
	// answered (start_ts, zero before).
	Created, Answered time.Time
}

// dlgEntry is the shape of one Kamailio 5.6 dlg.list entry.
type dlgEntry struct {
	CallID  string `json:"call-id"`
	FromURI string `json:"from_uri"`
	ToURI   string `json:"to_uri"`
	State   int    `json:"state"`
	StartTS int64  `json:"start_ts"`
	InitTS  int64  `json:"init_ts"`
	Caller  *struct {
		Tag     *string `json:"tag"`
		Contact *string `json:"contact"`
	} `json:"caller"`
	Callee *struct {
		Tag     *string `json:"tag"`
		Contact *string `json:"contact"`
	} `json:"callee"`
}

// ParseDlgList reads the result of Kamailio's dlg.list. A result that is
// not a list is an error; an entry that cannot be read is skipped and
// counted.
func ParseDlgList(result []byte) (Dialogs, error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(result, &raws); err != nil || raws == nil {
		return Dialogs{}, fmt.Errorf("%w: dlg.list: result is not a list", ErrProtocol)
	}
	var out Dialogs
	for _, raw := range raws {
		d, ok := parseDialog(raw)
		if !ok {
			out.Skipped++
			continue
		}
		out.Dialogs = append(out.Dialogs, d)
	}
	return out, nil
}

func parseDialog(raw json.RawMessage) (Dialog, bool) {
	var e dlgEntry
	if err := json.Unmarshal(raw, &e); err != nil || e.Caller == nil || e.Caller.Tag == nil {
		return Dialog{}, false
	}
	if !tokenOK(e.CallID) || !tokenOK(*e.Caller.Tag) || !uriOK(e.FromURI) || !uriOK(e.ToURI) {
		return Dialog{}, false
	}
	if e.State < int(DialogUnconfirmed) || e.State > int(DialogDeleted) {
		return Dialog{}, false
	}
	d := Dialog{CallID: e.CallID, FromTag: *e.Caller.Tag, FromURI: e.FromURI, ToURI: e.ToURI,
		State: DialogState(e.State), Created: unix(e.InitTS), Answered: unix(e.StartTS)}
	if e.Caller.Contact != nil && uriOK(*e.Caller.Contact) {
		d.CallerContact = *e.Caller.Contact
	}
	if e.Callee != nil {
		if e.Callee.Tag != nil {
			if *e.Callee.Tag != "" && !tokenOK(*e.Callee.Tag) {
				return Dialog{}, false
			}
			d.ToTag = *e.Callee.Tag
		}
		if e.Callee.Contact != nil && uriOK(*e.Callee.Contact) {
			d.CalleeContact = *e.Callee.Contact
		}
	}
	return d, true
}

// unix converts a Unix time in seconds; 0 and absurd values are the zero time.
func unix(s int64) time.Time {
	if s <= 0 || s > math.MaxInt32*4 {
		return time.Time{}
	}
	return time.Unix(s, 0)
}
