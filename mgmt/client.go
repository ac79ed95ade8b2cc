package mgmt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client calls the management API (used by the command line).
type Client struct {
	// BaseURL is the API's root, e.g. http://127.0.0.1:8080.
	BaseURL string
	// Token is sent as a bearer token when set.
	Token string
	// HTTP is the client used; nil means a client with a 60 s timeout.
	HTTP *http.Client
}

// NewClient returns a client for baseURL.
func NewClient(baseURL, token string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Token: token, HTTP: &http.Client{Timeout: 60 * time.Second}}
}

// APIError is an error answer of the API.
type APIError struct {
	// HTTPStatus is the HTTP status code.
	HTTPStatus int
	ErrorBody
}

// Error implements error.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d", e.HTTPStatus)
	if e.Status != 0 {
		fmt.Fprintf(&b, ", SIP %d %s", e.Status, e.Reason)
	}
	if e.ErrorBody.Error != "" {
		b.WriteString(": " + e.ErrorBody.Error)
	}
	return b.String()
}

// do sends a request with an optional JSON body and decodes a 2xx answer
// into out (when not nil).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	u := strings.TrimRight(c.BaseURL, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("mgmt: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("mgmt: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("mgmt: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("mgmt: %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := &APIError{HTTPStatus: resp.StatusCode}
		if json.Unmarshal(data, &ae.ErrorBody) != nil || ae.ErrorBody.Error == "" {
			ae.ErrorBody.Error = strings.TrimSpace(string(data))
		}
		return ae
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("mgmt: %s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// Publish publishes (or removes, with Expires 0) and returns the SIP result.
func (c *Client) Publish(ctx context.Context, p PublishParams) (SIPResult, error) {
	var r SIPResult
	err := c.do(ctx, http.MethodPost, "/v1/publish", nil, p, &r)
	return r, err
}

// Subscribe subscribes (or unsubscribes, with Expires 0).
func (c *Client) Subscribe(ctx context.Context, p SubscribeParams) (SIPResult, error) {
	var r SIPResult
	err := c.do(ctx, http.MethodPost, "/v1/subscribe", nil, p, &r)
	return r, err
}

// Listings the client knows, by name.
const (
	ListPublications  = "publications"
	ListSubscriptions = "subscriptions"
	ListRegistrations = "registrations"
	ListDialogs       = "dialogs"
	ListLines         = "lines"
	// ListPresentities and ListWatchers are the presence server's.
	ListPresentities = "presentities"
	ListWatchers     = "watchers"
	// ListPolicy is the presence server's authorization rules.
	ListPolicy = "policy"
	ListShards = "shards"
	ListFlags  = "flags"
)

// List fetches a listing (publications, subscriptions, registrations,
// dialogs, lines, flags or shards) with filters and pagination as query values.
func (c *Client) List(ctx context.Context, kind string, query url.Values) (RawList, error) {
	switch kind {
	case ListPublications, ListSubscriptions, ListRegistrations, ListDialogs, ListLines, ListFlags, ListPresentities, ListWatchers, ListPolicy, ListShards:
	default:
		return RawList{}, fmt.Errorf("mgmt: unknown listing %q", kind)
	}
	var l RawList
	err := c.do(ctx, http.MethodGet, "/v1/"+kind, query, nil, &l)
	return l, err
}

// Registration fetches one AoR's registration as raw JSON.
func (c *Client) Registration(ctx context.Context, aor string) (json.RawMessage, error) {
	var r json.RawMessage
	err := c.do(ctx, http.MethodGet, "/v1/registrations/"+url.PathEscape(aor), nil, nil, &r)
	return r, err
}

// SetFlag stores the publishing flag of aor.
func (c *Client) SetFlag(ctx context.Context, aor string, on bool) error {
	return c.do(ctx, http.MethodPut, "/v1/flags/"+url.PathEscape(aor), nil, FlagParams{Enabled: &on}, nil)
}

// ClearFlag removes the stored flag of aor.
func (c *Client) ClearFlag(ctx context.Context, aor string) error {
	return c.do(ctx, http.MethodDelete, "/v1/flags/"+url.PathEscape(aor), nil, nil, nil)
}

// AddLine creates or replaces a shared line.
func (c *Client) AddLine(ctx context.Context, aor string, members []string) error {
	return c.do(ctx, http.MethodPut, "/v1/lines/"+url.PathEscape(aor), nil, LineParams{Members: members}, nil)
}

// RemoveLine deletes a shared line.
func (c *Client) RemoveLine(ctx context.Context, aor string) error {
	return c.do(ctx, http.MethodDelete, "/v1/lines/"+url.PathEscape(aor), nil, nil, nil)
}

// PutPolicyRule stores an authorization rule of the presence server.
func (c *Client) PutPolicyRule(ctx context.Context, r PolicyRuleParams) error {
	return c.do(ctx, http.MethodPut, "/v1/policy", nil, r, nil)
}

// DeletePolicyRule removes a stored authorization rule.
func (c *Client) DeletePolicyRule(ctx context.Context, presentity, watcher string) error {
	q := url.Values{}
	if presentity != "" {
		q.Set("presentity", presentity)
	}
	if watcher != "" {
		q.Set("watcher", watcher)
	}
	return c.do(ctx, http.MethodDelete, "/v1/policy", q, nil, nil)
}

// RemovePublication removes a publication (PUBLISH Expires 0).
func (c *Client) RemovePublication(ctx context.Context, presentity, event, id string) (SIPResult, error) {
	q := url.Values{"presentity_uri": {presentity}, "event": {event}}
	if id != "" {
		q.Set("id", id)
	}
	var r SIPResult
	err := c.do(ctx, http.MethodDelete, "/v1/publications", q, nil, &r)
	return r, err
}

// IsSIPFailure reports whether err is an API error carrying a SIP status
// (the presence server refused, or no reply came).
func IsSIPFailure(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.Status != 0 || ae.HTTPStatus == http.StatusBadGateway || ae.HTTPStatus == http.StatusGatewayTimeout)
}
