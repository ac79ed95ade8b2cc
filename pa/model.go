package pa

import (
	"strings"
	"time"

	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/pidf"
	"github.com/puaside/puaside/sched"
)

// Event packages served.
const (
	EventPresence = "presence"
	EventDialog   = "dialog"
	EventSLA      = "dialog;sla"
	EventMA       = "dialog;ma"
	EventWinfo    = "presence.winfo"
	EventMWI      = "message-summary"
)

// allowEvents is the Allow-Events value of 489 and OPTIONS replies.
const allowEvents = "presence, dialog, dialog;sla, dialog;ma, presence.winfo, message-summary"

// Content types of the packages.
const (
	ctPIDF   = pidf.ContentType
	ctDialog = "application/dialog-info+xml"
	ctWinfo  = "application/watcherinfo+xml"
	ctMWI    = "application/simple-message-summary"
)

// normalizeEvent returns the package an Event header names ("Dialog; SLA"
// gives "dialog;sla"), and false for one not served. An id parameter is
// ignored.
func normalizeEvent(h string) (string, bool) {
	parts := strings.Split(strings.ToLower(h), ";")
	pkg := strings.TrimSpace(parts[0])
	sla, ma := false, false
	for _, p := range parts[1:] {
		switch strings.TrimSpace(p) {
		case "sla":
			sla = true
		case "ma":
			ma = true
		}
	}
	switch {
	case pkg == EventDialog && sla:
		return EventSLA, true
	case pkg == EventDialog && ma:
		return EventMA, true
	case pkg == EventPresence, pkg == EventDialog, pkg == EventWinfo, pkg == EventMWI:
		return pkg, true
	}
	return "", false
}

// eventID returns the id parameter of an Event header (RFC 6665 §8.2.1);
// the NOTIFYs of the subscription carry it back.
func eventID(h string) string {
	for _, p := range strings.Split(h, ";")[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "id") {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return ""
}

// sourceEvent is the publications' event package a watcher of ev sees:
// dialog;ma watchers see the dialog publications; presence.winfo
// watchers see the presentity's presence watchers, not publications.
func sourceEvent(ev string) string {
	if ev == EventMA {
		return EventDialog
	}
	return ev
}

// contentType is the body type of NOTIFYs (and PUBLISHes) of an event.
func contentType(ev string) string {
	switch ev {
	case EventPresence:
		return ctPIDF
	case EventWinfo:
		return ctWinfo
	case EventMWI:
		return ctMWI
	}
	return ctDialog
}

// presKey names a presentity's state in one event package.
type presKey struct {
	uri   string
	event string // a source event (sourceEvent), or EventWinfo
}

// pubID names a publication.
type pubID struct {
	presKey
	id string
}

// presentity is one resource's publications and watchers in one package.
type presentity struct {
	key      presKey
	pubs     []*publication // in Seq order
	watchers map[*watcher]struct{}
	// composed caches the composition shared by every watcher (presence).
	composed []byte
}

// publication is one live publication.
type publication struct {
	entry    sched.Entry
	id       pubID
	etag     string // empty for in-process ones
	body     []byte
	sender   string
	flag     int       // owner of an in-process publication
	expires  time.Time // zero: until removed
	received time.Time
	seq      int64
	// parsed forms, by package
	pidf   *pidf.Parts
	dialog *dialogdoc.Document
}

// SchedEntry implements sched.Item.
func (p *publication) SchedEntry() *sched.Entry { return &p.entry }

func (p *publication) record() PublicationRecord {
	r := PublicationRecord{PresURI: p.id.uri, Event: p.id.event, ID: p.id.id, ETag: p.etag,
		Received: p.received.Unix(), Seq: p.seq, Body: p.body, Sender: p.sender, Flag: p.flag}
	if !p.expires.IsZero() {
		r.Expires = p.expires.Unix()
	}
	return r
}

// dialogKey names a subscription dialog: Call-ID and the watcher's tag.
type dialogKey struct {
	callID  string
	fromTag string
}

// watcher is one subscription dialog.
type watcher struct {
	entry sched.Entry
	key   dialogKey
	toTag string
	pres  *presentity // nil once terminated

	presURI, watcherURI, event string
	eventID                    string // the Event header's id parameter
	contact                    string
	// flow is the source address of the last SUBSCRIBE and flowTransport
	// its transport: NOTIFYs go back over that connection when it is a
	// TLS or WebSocket one (RFC 7118 §5: a browser can only be reached
	// over its own WebSocket). Not stored: after a restart the contact is
	// used, and a WebSocket watcher subscribes again on a new connection.
	flow, flowTransport string
	routeSet            []string
	localContact        string
	userAgent           string
	remoteCSeq          uint32
	cseq, cseqRes       uint32 // last used, reserved in the store
	version, versionRes uint64
	expires             time.Time
	status, reason      string
	created             time.Time

	// notifier state
	inFlight  bool
	dirty     bool      // a newer state than the last NOTIFY's exists
	changedAt time.Time // when the oldest unnotified change happened
	retryAt   time.Time // zero unless backing off
	failures  int
	// refreshes counts the refreshes in the dialog: a NOTIFY sent before
	// the last one went where the watcher may have left, and its failure
	// does not count.
	refreshes uint64
	final     bool // terminated: the next NOTIFY is the last
	fetch     bool // Expires: 0 initial SUBSCRIBE, not stored
	removed   bool // gone from s.subs
	// noWrite: its end is not written (several instances: another
	// instance removed the row, or the owner of its shard does).
	noWrite bool
	// notified is the digest of the state last notified (several
	// instances: the successor of a shard compares it with the state).
	notified uint64
}

// SchedEntry implements sched.Item.
func (w *watcher) SchedEntry() *sched.Entry { return &w.entry }

func (w *watcher) record() WatcherRecord {
	return WatcherRecord{
		PresURI: w.presURI, WatcherURI: w.watcherURI, Event: w.event, EventID: w.eventID,
		CallID: w.key.callID, ToTag: w.toTag, FromTag: w.key.fromTag,
		LocalCSeq: w.cseqRes, RemoteCSeq: w.remoteCSeq,
		Contact: w.contact, RouteSet: w.routeSet, LocalContact: w.localContact,
		Expires: w.expires.Unix(), Status: w.status, Reason: w.reason,
		Version: w.versionRes, UserAgent: w.userAgent,
	}
}
