package pa

import "context"

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
}

// Empty reports whether b holds no change.
func (b *Batch) Empty() bool {
	return len(b.Publications)+len(b.RemovedPublications)+len(b.Watchers)+len(b.RemovedWatchers) == 0
}

// Store keeps pa's state; implemented by package store (*store.DB).
type Store interface {
	// LoadPresence returns every stored publication and subscription.
	LoadPresence(ctx context.Context) ([]PublicationRecord, []WatcherRecord, error)
	// ApplyPresence writes b in one transaction.
	ApplyPresence(ctx context.Context, b Batch) error
}
