// Package pua is puaside's presence user agent engine: the only component
// that sends SIP. Data flows ingest → trackers (usrloc, dialoginfo, bla) →
// pua engine → SIP (presence server, phones) and store.
//
// Trackers hand the engine the desired state of each publication
// (PublishRequest) or subscription (SubscribeRequest). The engine makes the
// far end converge to it:
//
//   - Publications follow RFC 3903: an initial PUBLISH with the body and no
//     SIP-If-Match, refreshes (SIP-If-Match, no body) before the granted
//     expiry, modifies (SIP-If-Match and body) and a remove (SIP-If-Match,
//     Expires: 0). One request is in flight per record; changes made meanwhile
//     are coalesced and only the latest state is sent after the reply, so
//     nothing reaches the server out of order. 412 starts a new initial
//     publication with the full body, 423 retries with Min-Expires,
//     408/5xx/timeouts back off exponentially, other failures wait for the
//     next change. A dialog publication whose document shows only
//     terminated dialogs is replaced (remove, then initial) instead of
//     modified or refreshed, because Kamailio never updates one.
//   - Subscriptions follow RFC 6665: the engine keeps the dialog itself
//     (Call-ID, tags, CSeq, route set, remote target), accepts NOTIFYs that
//     arrive before the 2xx, refreshes in-dialog and starts over with a new
//     initial SUBSCRIBE when the dialog is lost. An un-SUBSCRIBE that fails
//     transiently (5xx, timeout) is tried again in its dialog on the
//     backoff until the subscription would have expired, unless the owner
//     subscribes again meanwhile: that goes at once, in a new dialog.
//     NOTIFYs are handed to the owner's NotifyHandler, registered per
//     source flag, one at a time per dialog and in CSeq order: one older
//     than the last of its dialog gets 500 with Retry-After (RFC 3261
//     §12.2.2), and one received while Start loads the stored dialogs
//     waits for them.
//
// Records are written behind to a Store every update_period and flushed on
// Stop; with sync_etags (the default) every new ETag and every removal is
// written within 10 ms (group commit). Start loads them and carries on with
// the stored ETags and dialogs, so a restart, graceful or not, leaves no
// duplicate publication at the server. What a crash can still lose is a
// write still running (a few milliseconds), or with sync_etags off the
// changes of the last update_period: such a publication is published anew
// and the server keeps the lost one until it expires.
//
// Consumers should not depend on *Engine directly: they define a small
// interface with the methods they call and test against a fake.
package pua
