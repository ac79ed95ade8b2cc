// Package pa is puaside's embedded presence server (the seed's `pa`
// module): an RFC 6665 notifier and an RFC 3903 event state compositor.
// Data flows ingest → trackers (usrloc, dialoginfo, bla) → pua engine / pa
// → SIP and store: when pa is on and pua.server_address is empty, the
// trackers and the management API publish into pa in process (Publish and
// Remove, the same contract as the pua engine's), and phones subscribe to
// pa on its own SIP listener (pa.listen, default UDP and TCP on
// 127.0.0.1:5065).
//
// Notifier. A SUBSCRIBE for presence, dialog, dialog;sla, dialog;ma,
// presence.winfo or message-summary is answered 200 and followed at once
// by a full-state NOTIFY; other packages get 489 with Allow-Events, an
// Expires below min_expires 423 with Min-Expires, an in-dialog request of
// an unknown dialog 481. The presentity is the To URI's address of record.
// The dialog keeps the watcher's Contact as remote target and the
// Record-Route set as route set. Each dialog has at most one NOTIFY in
// flight; changes meanwhile are coalesced and the latest state is sent
// after the reply, so a watcher never sees an older state after a newer
// one. A NOTIFY that times out or is answered 408 or 5xx is sent again
// with exponential backoff (retry_min … retry_max); a 481, another final
// failure, or max_retries failures in a row end the subscription. A
// refresh in the dialog starts the count again and its NOTIFY is not held
// by a backoff: the watcher is there, at the Contact it gives; a NOTIFY
// sent before the refresh that fails after it does not count either.
// Expires: 0 is answered with a final NOTIFY `terminated`; an expired
// subscription gets one too and is purged.
//
// Compositor. PUBLISH from outside follows RFC 3903: every success gets a
// new SIP-ETag, an unknown SIP-If-Match 412, Expires: 0 removes. In-process
// publications have no ETag and are accepted at once. A watcher gets, per
// package: presence — the tuples and other elements of every live
// publication of the presentity (pidf.Compose), one closed tuple when none
// is live; dialog and dialog;ma — the dialogs of every publication
// (dialogdoc.Compose) with a version counted per subscription; dialog;sla
// — the line's one publication as bla composed it, without the dialogs of
// the watching phone itself (Options.OwnDialog decides which those are);
// message-summary — the newest publication as it is; presence.winfo — the
// RFC 3858 list of the presentity's presence watchers.
//
// Authorization (Config.Policy): watchers of the presentity's own domain
// are allowed by default, others are held pending (Subscription-State:
// pending, no state) until a rule allows them; the owner's presence.winfo
// subscriptions see them.
//
// State. Publications and subscriptions are kept in Kamailio's tables
// (presentity, active_watchers, watchers) through Store: a new
// subscription is written before its 200, everything else within a few
// milliseconds (one transaction per batch). CSeqs and versions are
// reserved ahead in blocks (local_cseq and version hold the reservation),
// so after any restart, SIGKILL included, each dialog continues above
// every number it used without a write per NOTIFY. A restart notifies only
// the watchers whose state changed while the server was down (a
// publication, or a presence.winfo list's subscription, that expired);
// a subscription that expired meanwhile, within max_expires, gets its
// final NOTIFY then (one instance; with several the change log tells).
//
// Several instances (Options.Cluster, cluster.enabled). The instances
// share the tables; every instance keeps warm state of every publication
// and subscription, and only the owner of a presentity's shard (the pua
// engine's Ownership: the same hash, the same leases) sends its NOTIFYs.
// A SUBSCRIBE, refresh, unsubscribe or PUBLISH is answered by whichever
// instance gets it, stored first as alone; the others learn it from a
// change log in the database (puaside_pa_changes, appended in the same
// transaction, read every cluster_sync_period) rather than from messages
// between instances: the database is already shared and ordered, and an
// instance that was away reads what it missed. In-process publications are
// not logged: every instance's own trackers make them (every instance
// ingests everything), and the owner writes them. The owner's own writes
// (in-process publications, expiries, CSeq and version reservations, the
// digest of the state last notified) carry the shard's epoch and are
// refused once a successor holds it; a subscription row is never lowered
// (the CSeq, version and the latest refresh win), and the owner's
// reservation is an update that never brings back a row another instance
// removed. At a takeover the successor reads the log to its end and the
// shard's rows, continues each dialog above its reserved CSeq with the same
// Call-ID and tags, and notifies only the watchers whose state differs
// from the stored digest, so no change is told twice by two instances (a
// kill within the milliseconds before a digest is written tells that
// state once more). See cluster.go.
package pa
