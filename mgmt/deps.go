package mgmt

import (
	"context"
	"errors"
	"net/http"

	"github.com/puaside/puaside/pua"
)

// Sentinel errors that adapters of Registrations and Lines wrap so the API
// answers with the right status.
var (
	// ErrNotFound: the named AoR, line or record does not exist (HTTP 404).
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the request was refused as invalid (HTTP 400).
	ErrInvalid = errors.New("invalid request")
	// ErrConflict: the request contradicts the configuration, e.g. changing
	// a shared line defined in the YAML file (HTTP 409).
	ErrConflict = errors.New("conflict")
)

// Engine is the part of the pua engine the API drives. *pua.Engine
// implements it.
type Engine interface {
	// Publish queues a publication without waiting for the reply.
	Publish(req pua.PublishRequest) error
	// PublishWait publishes and waits for the final reply.
	PublishWait(ctx context.Context, req pua.PublishRequest) (pua.Result, error)
	// Remove withdraws a publication without waiting (PUBLISH Expires: 0
	// with its entity tag; one the server never accepted is dropped).
	Remove(key pua.Key) error
	// RemoveWait removes a publication (PUBLISH Expires: 0) and waits.
	RemoveWait(ctx context.Context, key pua.Key) (pua.Result, error)
	// SubscribeWait opens a subscription and waits for the SUBSCRIBE's reply.
	SubscribeWait(ctx context.Context, req pua.SubscribeRequest) (pua.Result, error)
	// Unsubscribe ends a subscription.
	Unsubscribe(key pua.SubKey) error
	// Publications and Subscriptions return snapshots of the records.
	Publications() []pua.PublicationInfo
	Subscriptions() []pua.SubscriptionInfo
	// PublicationStates and SubscriptionStates count the records by event
	// package and state (the metrics scrape), copying none of them.
	PublicationStates() []pua.StateCount
	SubscriptionStates() []pua.StateCount
}

// Registrations is the usrloc tracker as the API sees it: listings of
// registrations and the per-user publishing flag. The listing values must be
// JSON-serialisable; Registrations and Flags should return JSON arrays.
type Registrations interface {
	// Registrations lists every AoR with its contacts.
	Registrations() any
	// Registration returns one AoR; false when unknown.
	Registration(aor string) (any, bool)
	// SetFlag stores the publishing flag of aor in the database (on or off).
	SetFlag(ctx context.Context, aor string, on bool) error
	// ClearFlag removes the stored flag of aor (back to header and patterns).
	ClearFlag(ctx context.Context, aor string) error
	// Flags lists the stored flags.
	Flags() any
}

// Dialogs is the dialoginfo tracker: a JSON array of the active dialogs.
type Dialogs interface {
	Dialogs() any
}

// Lines is the bla manager: the shared lines and their members.
type Lines interface {
	// Lines lists the shared lines (a JSON array).
	Lines() any
	// AddLine creates or replaces a shared line.
	AddLine(ctx context.Context, aor string, members []string) error
	// RemoveLine deletes a shared line; ErrNotFound when unknown.
	RemoveLine(ctx context.Context, aor string) error
}

// Shards is the cluster's shard leases (several instances on one
// database): a JSON array of the lease rows, each saying whether this
// instance holds it.
type Shards interface {
	Shards(ctx context.Context) (any, error)
}

// Presence is the embedded presence server (pa): its publications and
// subscriptions, listed and deleted.
type Presence interface {
	// Presentities lists the live publications (a JSON array of objects
	// with a "presentity" key).
	Presentities() any
	// Watchers lists the subscriptions (a JSON array, "presentity" key).
	Watchers() any
	// DeletePresentity removes the publications of aor (of event, or of
	// every event when empty); ErrNotFound when there were none.
	DeletePresentity(ctx context.Context, aor, event string) error
	// DeleteWatcher ends the subscription with that Call-ID (a final
	// NOTIFY is sent); ErrNotFound when unknown.
	DeleteWatcher(ctx context.Context, callID string) error
	// AuthorizeWatcher decides a pending subscription: allow makes it
	// active, deny ends it (reason rejected); ErrNotFound when unknown.
	AuthorizeWatcher(ctx context.Context, callID string, allow bool) error
}

// Policy is the embedded presence server's authorization rules: those
// kept in the database, managed here, and the configuration's (listed).
type Policy interface {
	// PolicyRules lists the rules in the order they are checked (a JSON
	// array of objects with presentity, watcher, action and source).
	PolicyRules() any
	// PutPolicyRule stores a rule (replacing the one of the same
	// presentity and watcher); an invalid one wraps ErrInvalid.
	PutPolicyRule(ctx context.Context, r PolicyRuleParams) error
	// DeletePolicyRule removes a stored rule; ErrNotFound when there is
	// none, ErrInvalid for an invalid address.
	DeletePolicyRule(ctx context.Context, presentity, watcher string) error
}

// ReadyCheck is one readiness condition for /readyz (database ping,
// listeners bound).
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// Deps are the components the API exposes. Any field may be nil when the
// feature is off; its endpoints then answer 404 "feature not enabled".
type Deps struct {
	Engine        Engine
	Registrations Registrations
	Dialogs       Dialogs
	Lines         Lines
	Presence      Presence
	Policy        Policy
	// Shards lists the shard leases; nil with cluster off.
	Shards Shards
	// Events handles POST /v1/events (the JSON event input of ingest).
	Events http.Handler
	// Board serves the lamp board: GET /board and everything under it
	// (package board). Its static files are served without the token
	// (board.PublicPath), its data with the token like every listing.
	Board http.Handler
	// Ready are the checks of /readyz, run in order.
	Ready []ReadyCheck
}
