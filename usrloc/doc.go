// Package usrloc tracks the registrations puaside sees and publishes them as
// presence, the job Kamailio's pua_usrloc does beside a registrar.
//
// In the flow ingest → trackers (usrloc, dialoginfo, bla) → pua engine → SIP
// and store, the Tracker sits in the middle: ingest hands it mirrored
// REGISTER requests and replies (event.SIP) and JSON registration events
// (event.Registration); the Tracker keeps the contacts of every address of
// record (AoR) with their absolute expiry, expires them on its own timers,
// persists them through a Store, and asks the pua engine (through the small
// Publisher interface) to keep one PIDF publication per AoR up to date:
// "open" with one tuple per bound contact, "closed" when the last contact
// goes, then removed after closed_linger. A change feed (Options.OnChange)
// gives the BLA manager every AoR's binding set when it changes.
//
// How inputs are trusted (design §4):
//   - a t_replicate copy (event.SourceReplicate) is a statement and is
//     applied at once, binding by binding in the order of RFC 3261 §10.3:
//     a late copy of an older REGISTER of the same Call-ID neither
//     refreshes nor removes a binding a newer one set, nor adds back one a
//     newer one removed within a transaction's lifetime (after it, a lower
//     CSeq of the same Call-ID is a phone that rebooted and is applied);
//   - a traced or HEP copy of a REGISTER request is only remembered; its
//     traced 2xx reply is authoritative (the complete binding set with the
//     granted expiries); a non-2xx reply changes nothing, nor does a late
//     copy of a 2xx already applied or older (same Call-ID, CSeq not
//     higher) than one applied within a transaction's lifetime (64·T1);
//   - a JSON event is a statement.
package usrloc
