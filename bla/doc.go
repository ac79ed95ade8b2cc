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
// same line gets 409 Conflict; only that seize is refused, the document's
// other dialogs still apply), and publishes the line's state.
//
// One document per line: Kamailio's presence server does not compose
// dialog;sla publications (it sends a watcher the newest one), so the
// Manager, which holds every phone's latest state, is the line's state
// agent. It publishes one `dialog;sla` publication per line (pres_id
// LinePublicationID): a full document of the line AoR with its own
// version (the clock in seconds at the line's first document, then one
// more per document) holding every phone's live dialogs as the phone wrote
// them (x-line-id or appearance, local target naming the phone), phones in
// ContactID order. Dialog ids are qualified by the phone ("a1~3f2c9d10",
// the first 8 hex digits of its ContactID), so phones using one id never
// merge; an id a phone writes back in its qualified form is mapped to its
// own. A dialog a phone's NOTIFY ends is shown once, terminated. A phone
// whose subscription ends or whose contact goes leaves the document at
// once; when no phone has state left, the publication is removed.
//
// Sender: by default the composed PUBLISH carries no Sender header, so the
// presence server tells every phone of the line every document, the
// phone's own calls included (a composed document holds them anyway): each
// phone's last view is the line as it is. With header_name set, a PUBLISH
// caused by a phone's NOTIFY names that phone (pua_bla's Sender); a
// presence server using handle_publish("$hdr(Sender)") then never tells
// that phone the line after its own change, so after its own hang-up its
// last view shows its call still up (see the operator guide).
//
// Contract with an embedded presence server (package pa), which composes
// dialog;sla at NOTIFY time from a line's publications: bla is the one
// source of truth. It hands pa exactly one publication per line, already
// the whole line; pa must treat it as the line's complete state (the
// composition of one publication is that publication) and must not also
// compose the phones' per-phone state, which bla never publishes.
//
// Upgrade: the per-phone publications of earlier versions (pres_id =
// ContactID) are claimed by nobody at start; the engine's sweep removes
// them at the presence server.
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
// Differences from pua_bla: one composed document per line built from
// every phone's state (pua_bla publishes each phone's document as the
// line's, so phones overwrite each other); a missing Subscription-State
// expires is tolerated; every bad NOTIFY gets a precise 4xx reply (never
// silence); seize arbitration; a phone's partial documents are merged into
// its full state.
//
// Shared lines come from the YAML file (Config.Lines) and from the database
// (table puaside_shared_lines, managed with AddLine and RemoveLine). A line
// of the file hides the database's line of the same AoR; when a reload
// drops the file's line, the database's line is back in effect at once.
package bla
