// Package dialoginfo is the BLF tracker: it follows INVITE dialogs seen in
// mirrored SIP (siptrace/HEP copies of requests and responses) or in JSON
// call-state events, and publishes one RFC 4235 dialog-info document per
// entity (caller and callee AoR) and per dialog branch.
//
// Place in the flow:
//
//	ingest → trackers (usrloc, dialoginfo, bla) → pua engine → SIP and store
//
// ingest hands normalised events to Tracker.HandleSIP and
// Tracker.ApplyDialogState; the tracker renders documents with Build and
// hands them to a Publisher (the pua engine in production) under
// pua.FlagDialogPublish, keyed (entity AoR, "dialog", pres_id_prefix+dialog
// id). Active dialogs and per-entity document versions are kept in a Store
// (package store, table puaside_dialogs), so a restart in the middle of a
// call still ends the lamp at BYE.
//
// Semantics (pua_dialoginfo parity and beyond):
//   - states trying, proceeding, early, confirmed, terminated (lowercase);
//     terminated carries event cancelled, rejected (with code), local-bye,
//     remote-bye or timeout, seen from each entity's own side;
//   - each early to-tag is its own dialog (forking): the first one keeps the
//     id of the trying dialog, later ones get their own; when one branch is
//     answered the other early branches end with event="cancelled" and the
//     answered one is not touched;
//   - duplicates and retransmissions change nothing: a document is only
//     published when its content changes; messages that do not fit the state
//     (a 180 after the 200, a 200 or BYE for an unknown call, missing tags)
//     are ignored, counted and logged;
//   - hold: a re-INVITE or UPDATE whose SDP offer is sendonly or inactive
//     (session or media level, or connection address 0.0.0.0) means the
//     party that sent it put the call on hold and no longer renders the
//     peer's media: its <target> carries
//     <param pname="+sip.rendering" pval="no"/>, in its own document (under
//     <local>) and in the peer's (under <remote>). An offer that is sendrecv
//     or recvonly resumes and removes the parameter;
//   - a lamp can never stay lit: an early dialog with no final answer ends
//     after ring_timeout, a dialog with no sign of life (INVITE, 2xx,
//     re-INVITE, UPDATE) ends after lifetime_cap, both with
//     event="timeout"; a terminated document is published with an Expires
//     of terminated_linger and lapses at the presence server (no removal,
//     so a plain call costs seven PUBLISHes for caller and callee).
package dialoginfo
