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
// same line gets 409 Conflict), and relays the body unchanged as a PUBLISH
// `dialog;sla` for the line AoR with a Sender header naming the phone, one
// publication per phone so phones never overwrite each other.
//
// Differences from pua_bla: one publication per phone instead of one per
// line; a missing Subscription-State expires is tolerated; every bad NOTIFY
// gets a precise 4xx reply (never silence); seize arbitration; the body is
// relayed byte for byte (pua_bla re-serialises it with its own version
// counter). Version numbers are the phone's: each publication carries one
// phone's document stream, whose versions the phone keeps monotonic within
// a subscription; the presence server builds and numbers the documents its
// watchers see.
//
// Shared lines come from the YAML file (Config.Lines) and from the database
// (table puaside_shared_lines, managed with AddLine and RemoveLine).
package bla
