package mgmt

import (
	"encoding/json"
	"time"

	"github.com/puaside/puaside/pua"
)

// WatcherParams is the body of PUT /v1/watchers/{call_id}.
type WatcherParams struct {
	// Status is the owner's decision: active (allow) or terminated (deny).
	Status string `json:"status"`
}

// PolicyRuleParams is the body of PUT /v1/policy: one authorization rule
// of the embedded presence server.
type PolicyRuleParams struct {
	// Presentity is an AoR or a domain; empty is every presentity.
	Presentity string `json:"presentity"`
	// Watcher is an AoR or a domain; empty is every watcher.
	Watcher string `json:"watcher"`
	// Action is allow, pending or deny.
	Action string `json:"action"`
}

// PublishParams is the body of POST /v1/publish.
type PublishParams struct {
	// PresentityURI is the Request-URI and To of the PUBLISH (required).
	PresentityURI string `json:"presentity_uri"`
	// Expires in seconds; absent means the engine's default, 0 removes the
	// publication.
	Expires *int `json:"expires,omitempty"`
	// Event is the event package, e.g. presence (required).
	Event string `json:"event"`
	// ContentType overrides the event's default content type.
	ContentType string `json:"content_type,omitempty"`
	// ETag, when set, must be the publication's current entity tag.
	ETag string `json:"etag,omitempty"`
	// ExtraHeaders are "Name: value" lines added to the PUBLISH.
	ExtraHeaders []string `json:"extra_headers,omitempty"`
	// Body is the event state document. It may be left out only for a
	// refresh of an existing publication named by ETag.
	Body string `json:"body,omitempty"`
	// ID distinguishes several publications of one presentity and event.
	ID string `json:"id,omitempty"`
	// OutboundProxy overrides the engine's outbound proxy.
	OutboundProxy string `json:"outbound_proxy,omitempty"`
	// KeepOnTimeout keeps a publication whose PUBLISH got no final reply
	// in time: the engine goes on retrying it in the background. Without
	// it a timeout (504) ends the manual publication. A publication the
	// presence server refused always ends, its old entity tag with it.
	KeepOnTimeout bool `json:"keep_on_timeout,omitempty"`
}

// SubscribeParams is the body of POST /v1/subscribe.
type SubscribeParams struct {
	// PresentityURI is the resource subscribed to (required).
	PresentityURI string `json:"presentity_uri"`
	// WatcherURI is the From of the SUBSCRIBE (required).
	WatcherURI string `json:"watcher_uri"`
	// Event is the event package (required).
	Event string `json:"event"`
	// Expires in seconds; absent means the engine's default, 0 ends the
	// subscription.
	Expires *int `json:"expires,omitempty"`
	// ID distinguishes several subscriptions of the same pair.
	ID string `json:"id,omitempty"`
}

// SIPResult is the outcome of a publish or subscribe: the final SIP reply.
type SIPResult struct {
	Status  int    `json:"status"`
	Reason  string `json:"reason"`
	ETag    string `json:"etag,omitempty"`
	Expires int    `json:"expires"`
}

// ErrorBody is every error response of the API. Field names the request
// field at fault; Status and Reason carry the SIP reply when the presence
// server refused a request.
type ErrorBody struct {
	Error  string `json:"error"`
	Field  string `json:"field,omitempty"`
	Status int    `json:"status,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// List is a page of a listing: the items and the total count after
// filtering, before pagination.
type List[T any] struct {
	Items []T `json:"items"`
	Total int `json:"total"`
}

// Publication is one publication record as listed by GET /v1/publications.
type Publication struct {
	PresentityURI string     `json:"presentity_uri"`
	Event         string     `json:"event"`
	ID            string     `json:"id"`
	Owner         string     `json:"owner"`
	Flag          int        `json:"flag"`
	State         string     `json:"state"`
	ETag          string     `json:"etag"`
	LastStatus    int        `json:"last_status"`
	LastReason    string     `json:"last_reason"`
	Expires       *time.Time `json:"expires,omitempty"`
	NextRefresh   *time.Time `json:"next_refresh,omitempty"`
	ContentType   string     `json:"content_type"`
	Body          string     `json:"body"`
	ExtraHeaders  []string   `json:"extra_headers,omitempty"`
}

// Subscription is one subscription record as listed by GET /v1/subscriptions.
type Subscription struct {
	PresentityURI  string     `json:"presentity_uri"`
	WatcherURI     string     `json:"watcher_uri"`
	Event          string     `json:"event"`
	ID             string     `json:"id"`
	Owner          string     `json:"owner"`
	Flag           int        `json:"flag"`
	Target         string     `json:"target,omitempty"`
	State          string     `json:"state"`
	LastStatus     int        `json:"last_status"`
	LastReason     string     `json:"last_reason"`
	Expires        *time.Time `json:"expires,omitempty"`
	CallID         string     `json:"call_id"`
	LocalTag       string     `json:"local_tag"`
	RemoteTag      string     `json:"remote_tag"`
	LastNotify     *time.Time `json:"last_notify,omitempty"`
	LastNotifyCT   string     `json:"last_notify_content_type,omitempty"`
	LastNotifyBody string     `json:"last_notify_body,omitempty"`
}

// FlagParams is the optional body of PUT /v1/flags/{aor}.
type FlagParams struct {
	// Enabled is the stored flag value; absent means true.
	Enabled *bool `json:"enabled,omitempty"`
}

// LineParams is the optional body of PUT /v1/lines/{aor}.
type LineParams struct {
	// Members are the member phones' URIs; empty means learned from the
	// line's registrations.
	Members []string `json:"members,omitempty"`
}

// RawList is a listing whose items are kept as raw JSON (registrations,
// dialogs, lines, flags: their shapes belong to the trackers).
type RawList = List[json.RawMessage]

// ownerName names a source flag for listings.
func ownerName(flag int) string {
	switch flag {
	case pua.FlagUsrloc:
		return "usrloc"
	case pua.FlagBLAPublish:
		return "bla"
	case pua.FlagBLASubscribe:
		return "bla"
	case pua.FlagRPCPublish, pua.FlagRPCSubscribe:
		return "api"
	case pua.FlagDialogPublish:
		return "dialoginfo"
	case pua.FlagXMPPPublish, pua.FlagXMPPSubscribe, pua.FlagXMPPWinfo:
		return "xmpp"
	}
	return "other"
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func publicationOf(p pua.PublicationInfo) Publication {
	out := Publication{
		PresentityURI: p.Key.PresURI,
		Event:         p.Key.Event,
		ID:            p.Key.ID,
		Owner:         ownerName(p.Flag),
		Flag:          p.Flag,
		State:         p.State,
		ETag:          p.ETag,
		LastStatus:    p.LastStatus,
		LastReason:    p.LastReason,
		Expires:       timePtr(p.Expires),
		NextRefresh:   timePtr(p.NextRefresh),
		ContentType:   p.ContentType,
		Body:          string(p.Body),
	}
	for _, h := range p.ExtraHeaders {
		out.ExtraHeaders = append(out.ExtraHeaders, h.Name+": "+h.Value)
	}
	return out
}

func subscriptionOf(s pua.SubscriptionInfo) Subscription {
	return Subscription{
		PresentityURI:  s.Key.PresURI,
		WatcherURI:     s.Key.WatcherURI,
		Event:          s.Key.Event,
		ID:             s.Key.ID,
		Owner:          ownerName(s.Flag),
		Flag:           s.Flag,
		Target:         s.Target,
		State:          s.State,
		LastStatus:     s.LastStatus,
		LastReason:     s.LastReason,
		Expires:        timePtr(s.Expires),
		CallID:         s.CallID,
		LocalTag:       s.LocalTag,
		RemoteTag:      s.RemoteTag,
		LastNotify:     timePtr(s.LastNotify),
		LastNotifyCT:   s.LastNotifyCT,
		LastNotifyBody: string(s.LastNotifyDoc),
	}
}
