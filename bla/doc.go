// Package bla is the shared-line (Polycom-style bridged line appearance)
// manager: Kamailio pua_bla's job, plus seize arbitration.
//
// Place in the flow: ingest → trackers (usrloc, dialoginfo, bla) → pua
// engine → SIP and store. The usrloc tracker's change feed tells the
// Manager which contacts are registered for each AoR (ContactsChanged). For
// every registered contact of a configured shared line the Manager asks the
// engine to hold a `dialog;sla` subscription to the phone (Request-URI = the
// contact, To/From = the line AoR). The phones' NOTIFYs come back through the
// engine to HandleNotify, which validates the dialog-info body, arbitrates
// line seizes (a phone seizing a line index held by another phone of the
// same line gets 409 Conflict), and relays the phone's state as a PUBLISH
// `dialog;sla` for the line AoR with a Sender header naming the phone, one
// publication per phone so phones never overwrite each other.
//
// Ordering (RFC 4235 §4.1): the engine hands a dialog's NOTIFYs over one at
// a time in CSeq order; a document whose version is not newer than the last
// one of the subscription is answered 200 and ignored. A full document is
// relayed byte for byte. A partial one carries only the dialogs that
// changed, while a publication is the whole state: it is merged into the
// phone's known state and relayed as a full document (its root element,
// with state="full", and every dialog as the phone wrote it); after a gap in
// the versions the phone is asked for its full state by an in-dialog
// refresh.
//
// Ended subscriptions (RFC 6665 §4.2.2): after rejected, noresource or
// invariant the phone is not subscribed again while its contact stays; after
// probation or giveup it is, after retry-after (resubscribe_delay without
// one); after any other reason at once, unless its last subscription ended
// less than resubscribe_delay before. A subscription the engine reports
// refused (failed) or lost is asked for again on the next reconcile of the
// line. A phone restored at start may have a publication from before the
// restart: it is removed with the phone.
//
// Differences from pua_bla: one publication per phone instead of one per
// line; a missing Subscription-State expires is tolerated; every bad NOTIFY
// gets a precise 4xx reply (never silence); seize arbitration; a full
// document is relayed byte for byte and a partial one as the merged full
// state (pua_bla re-serialises each with its own version counter). Version numbers are the phone's: each publication carries one
// phone's document stream, whose versions the phone keeps monotonic within
// a subscription; the presence server builds and numbers the documents its
// watchers see.
//
// Shared lines come from the YAML file (Config.Lines) and from the database
// (table puaside_shared_lines, managed with AddLine and RemoveLine).
package bla
