package pa

import (
	"context"
	"time"
)

// PublicationRecord is one publication as stored (a row of Kamailio's
// presentity table).
type PublicationRecord struct {
	// PresURI is the presentity's AoR ("sip:alice@example.com").
	PresURI string
	// Event is the event package ("presence", "dialog;sla", ...).
	Event string
	// ID names the publication within the presentity and event: the
	// caller's pres_id for in-process publications, a generated one for
	// PUBLISHes from outside (Kamailio's ruid column).
	ID string
	// ETag is the current entity tag (empty for in-process publications).
	ETag string
	// Expires is when it expires (Unix seconds); 0 is never.
	Expires int64
	// Received is when it last changed (Unix seconds).
	Received int64
	// Seq orders the publications of a presentity (Kamailio's priority).
	Seq int64
	// Body is the event state document.
	Body []byte
	// Sender is the publisher's Sender header, if any.
	Sender string
	// Flag is the owner of an in-process publication (pua.FlagUsrloc, ...);
	// 0 for PUBLISHes from outside.
	Flag int
	// Shard and Epoch fence a write only the owner of the presentity's
	// shard makes (with a Cluster): the store refuses it once the shard's
	// lease has another epoch. Epoch 0 is not fenced.
	Shard int
	Epoch int64
	// Expired makes a removal conditional (with a Cluster): the row is
	// deleted only while its stored expiry is not later than Expires, so
	// a refresh accepted at another instance meanwhile keeps it.
	Expired bool
}

// WatcherRecord is one subscription dialog as stored (a row of
// active_watchers, and its watcher's row of watchers).
type WatcherRecord struct {
	// PresURI is the presentity's AoR, WatcherURI the watcher's (From),
	// Event the package watched.
	PresURI    string
	WatcherURI string
	Event      string
	// EventID is the Event header's id parameter, if any.
	EventID string
	CallID  string
	// ToTag is our tag, FromTag the watcher's.
	ToTag   string
	FromTag string
	// LocalCSeq is the reserved CSeq: every NOTIFY sent so far had a lower
	// one. RemoteCSeq is the watcher's last SUBSCRIBE CSeq.
	LocalCSeq  uint32
	RemoteCSeq uint32
	// Contact is the remote target, RouteSet the route set in order.
	Contact  string
	RouteSet []string
	// LocalContact is our Contact in the dialog.
	LocalContact string
	// Expires is when the subscription ends (Unix seconds).
	Expires int64
	// Status is active or pending; Reason its reason, if any.
	Status string
	Reason string
	// Version is the reserved document version (dialog, winfo).
	Version uint64
	// UserAgent is the watcher's User-Agent.
	UserAgent string
	// Notified is a digest of the state last notified (with a Cluster,
	// written by the owner of the presentity's shard; 0 unknown).
	Notified uint64
	// Shard and Epoch fence an owner's write, as PublicationRecord's.
	Shard int
	Epoch int64
	// Expired makes a removal conditional, as PublicationRecord's.
	Expired bool
}

// Batch is one transaction of changes.
type Batch struct {
	// Publications are written (inserted or replaced).
	Publications []PublicationRecord
	// RemovedPublications are deleted (PresURI, Event and ID name them).
	RemovedPublications []PublicationRecord
	// Watchers are written (inserted or replaced).
	Watchers []WatcherRecord
	// RemovedWatchers are deleted (CallID, ToTag and FromTag name them).
	RemovedWatchers []WatcherRecord
	// Notified are the notifier's own updates of existing subscriptions
	// (with a Cluster): the CSeq and version reserved (never lowered) and
	// the digest notified. A row that is gone is not written again.
	Notified []WatcherRecord
	// Origin, when set (with a Cluster), logs every subscription written or
	// removed and every publication from outside (with an ETag) in the
	// change log under this instance's id, in the same transaction.
	Origin string
}

// Empty reports whether b holds no change.
func (b *Batch) Empty() bool {
	return len(b.Publications)+len(b.RemovedPublications)+len(b.Watchers)+len(b.RemovedWatchers)+len(b.Notified) == 0
}

// Change is one entry of the change log with the current state of the row
// it names.
type Change struct {
	// ID orders the entries; Origin is the instance that wrote the row.
	ID     int64
	Origin string
	// Watcher tells a subscription (Subscription) from a publication
	// (Publication).
	Watcher bool
	// Gone reports that the row no longer exists: the record holds only its
	// key (PresURI, Event, ID; or CallID, ToTag, FromTag).
	Gone         bool
	Publication  PublicationRecord
	Subscription WatcherRecord
}

// ChangeLog is the shared change log of several instances (with a
// Cluster); implemented by package store (*store.DB).
type ChangeLog interface {
	// LastPresenceChange returns the id of the newest entry (0: none).
	LastPresenceChange(ctx context.Context) (int64, error)
	// PresenceChanges returns up to limit entries above after, oldest
	// first, each with the row it names as it is now; an entry skip
	// reports true for (nil skips none) holds its ID and Origin only, its
	// row not read.
	PresenceChanges(ctx context.Context, after int64, limit int, skip func(id int64, origin string) bool) ([]Change, error)
	// PrunePresenceChanges deletes the entries older than age by the
	// store's clock, except the newest (the ids continue above it after
	// a database restart).
	PrunePresenceChanges(ctx context.Context, age time.Duration) error
}

// Store keeps pa's state; implemented by package store (*store.DB).
type Store interface {
	// LoadPresence returns every stored publication and subscription.
	LoadPresence(ctx context.Context) ([]PublicationRecord, []WatcherRecord, error)
	// ApplyPresence writes b in one transaction. Records refused by the
	// epoch guard are left out, the rest committed, and a
	// *pua.StaleEpochError naming their shards returned.
	ApplyPresence(ctx context.Context, b Batch) error
}
