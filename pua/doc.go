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
//     next change.
//   - Subscriptions follow RFC 6665: the engine keeps the dialog itself
//     (Call-ID, tags, CSeq, route set, remote target), accepts NOTIFYs that
//     arrive before the 2xx, refreshes in-dialog and starts over with a new
//     initial SUBSCRIBE when the dialog is lost. NOTIFYs are handed to the
//     owner's NotifyHandler, registered per source flag.
//
// Records are written behind to a Store every update_period and flushed on
// Stop; Start loads them and carries on with the stored ETags and dialogs,
// so a graceful restart never leaves a duplicate publication at the server.
// After a crash (SIGKILL, power loss) the changes of the last update_period
// are lost: a publication whose new ETag was not yet written is published
// anew, and the server keeps the lost one until it expires.
//
// Consumers should not depend on *Engine directly: they define a small
// interface with the methods they call and test against a fake.
package pua
