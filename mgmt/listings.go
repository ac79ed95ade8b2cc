package mgmt

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/puaside/puaside/aor"
	"github.com/puaside/puaside/pua"
)

// page reads limit and offset.
func page(r *http.Request) (limit, offset int, e *apiError) {
	limit, offset = defaultLimit, 0
	q := r.URL.Query()
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxLimit {
			return 0, 0, badField("limit", "must be an integer between 0 and %d, got %q", maxLimit, v)
		}
		limit = n
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, 0, badField("offset", "must be a non-negative integer, got %q", v)
		}
		offset = n
	}
	return limit, offset, nil
}

func paginate[T any](items []T, limit, offset int) List[T] {
	total := len(items)
	if offset > total {
		offset = total
	}
	end := min(offset+limit, total)
	out := items[offset:end]
	if out == nil {
		out = []T{}
	}
	return List[T]{Items: out, Total: total}
}

// listQuery refuses query parameters not in allowed and reads the
// paging ones (limit, offset).
func listQuery(r *http.Request, allowed ...string) (limit, offset int, e *apiError) {
	if e := checkQuery(r, allowed...); e != nil {
		return 0, 0, e
	}
	return page(r)
}

// checkQuery refuses query parameters not in allowed, naming the first.
func checkQuery(r *http.Request, allowed ...string) *apiError {
	for k := range r.URL.Query() {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return badField(k, "unknown query parameter (allowed: %s)", strings.Join(allowed, ", "))
		}
	}
	return nil
}

func (s *Server) handleListPublications(w http.ResponseWriter, r *http.Request) {
	if s.deps.Engine == nil {
		s.fail(w, r, notEnabled("pua engine"))
		return
	}
	limit, offset, e := listQuery(r, "presentity", "event", "state", "owner", "id", "limit", "offset")
	if e != nil {
		s.fail(w, r, e)
		return
	}
	q := r.URL.Query()
	var items []Publication
	for _, p := range s.deps.Engine.Publications() {
		pub := publicationOf(p)
		if match(q, "presentity", pub.PresentityURI) && match(q, "event", pub.Event) && match(q, "state", pub.State) &&
			match(q, "owner", pub.Owner) && match(q, "id", pub.ID) {
			items = append(items, pub)
		}
	}
	sort.Slice(items, func(i, j int) bool {
		a, b := items[i], items[j]
		if a.PresentityURI != b.PresentityURI {
			return a.PresentityURI < b.PresentityURI
		}
		if a.Event != b.Event {
			return a.Event < b.Event
		}
		return a.ID < b.ID
	})
	writeJSON(w, http.StatusOK, paginate(items, limit, offset))
}

func (s *Server) handleListSubscriptions(w http.ResponseWriter, r *http.Request) {
	if s.deps.Engine == nil {
		s.fail(w, r, notEnabled("pua engine"))
		return
	}
	limit, offset, e := listQuery(r, "presentity", "watcher", "event", "state", "owner", "id", "limit", "offset")
	if e != nil {
		s.fail(w, r, e)
		return
	}
	q := r.URL.Query()
	var items []Subscription
	for _, si := range s.deps.Engine.Subscriptions() {
		sub := subscriptionOf(si)
		if match(q, "presentity", sub.PresentityURI) && match(q, "watcher", sub.WatcherURI) && match(q, "event", sub.Event) &&
			match(q, "state", sub.State) && match(q, "owner", sub.Owner) && match(q, "id", sub.ID) {
			items = append(items, sub)
		}
	}
	sort.Slice(items, func(i, j int) bool {
		a, b := items[i], items[j]
		if a.PresentityURI != b.PresentityURI {
			return a.PresentityURI < b.PresentityURI
		}
		if a.WatcherURI != b.WatcherURI {
			return a.WatcherURI < b.WatcherURI
		}
		if a.Event != b.Event {
			return a.Event < b.Event
		}
		return a.ID < b.ID
	})
	writeJSON(w, http.StatusOK, paginate(items, limit, offset))
}

// match reports whether the filter named name is absent or equals v.
func match(q map[string][]string, name, v string) bool {
	f, ok := q[name]
	return !ok || len(f) == 0 || f[0] == "" || f[0] == v
}

func (s *Server) handleDeletePublication(w http.ResponseWriter, r *http.Request) {
	if e := checkQuery(r, "presentity_uri", "event", "id", "etag"); e != nil {
		s.fail(w, r, e)
		return
	}
	q := r.URL.Query()
	zero := 0
	res, e := s.publish(r.Context(), PublishParams{PresentityURI: q.Get("presentity_uri"), Event: q.Get("event"),
		ID: q.Get("id"), ETag: q.Get("etag"), Expires: &zero}, true)
	if e != nil {
		s.fail(w, r, e)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) handleDeleteSubscription(w http.ResponseWriter, r *http.Request) {
	if s.deps.Engine == nil {
		s.fail(w, r, notEnabled("pua engine"))
		return
	}
	if e := checkQuery(r, "presentity_uri", "watcher_uri", "event", "id"); e != nil {
		s.fail(w, r, e)
		return
	}
	q := r.URL.Query()
	key := pua.SubKey{PresURI: q.Get("presentity_uri"), WatcherURI: q.Get("watcher_uri"), Event: q.Get("event"), ID: q.Get("id")}
	for _, f := range []struct{ name, v string }{{"presentity_uri", key.PresURI}, {"watcher_uri", key.WatcherURI}, {"event", key.Event}} {
		if f.v == "" {
			s.fail(w, r, badField(f.name, "required"))
			return
		}
	}
	found := false
	for _, si := range s.deps.Engine.Subscriptions() {
		found = found || si.Key == key
	}
	if !found {
		s.fail(w, r, &apiError{code: http.StatusNotFound, msg: fmt.Sprintf("no subscription of %s to %s event %s id %q", key.WatcherURI, key.PresURI, key.Event, key.ID)})
		return
	}
	if err := s.deps.Engine.Unsubscribe(key); err != nil {
		s.fail(w, r, engineError(err))
		return
	}
	writeJSON(w, http.StatusOK, SIPResult{Status: 200, Reason: "Unsubscribed"})
}

// rawItems turns a tracker's listing into raw JSON items.
func rawItems(v any) ([]json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("mgmt: encode listing: %w", err)
	}
	if string(b) == "null" {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(b, &items); err != nil {
		return []json.RawMessage{b}, nil // a single object
	}
	return items, nil
}

// rawMatch applies the presentity and event filters to a tracker item by
// its conventional field names.
func rawMatch(q map[string][]string, item json.RawMessage) bool {
	if !match(q, "presentity", "x") || !match(q, "event", "x") {
		var m map[string]any
		if json.Unmarshal(item, &m) != nil {
			return false
		}
		str := func(keys ...string) string {
			for _, k := range keys {
				if v, ok := m[k].(string); ok {
					return v
				}
			}
			return ""
		}
		return match(q, "presentity", str("aor", "presentity_uri", "presentity", "line")) && match(q, "event", str("event"))
	}
	return true
}

// serveList answers a listing of a feature through serveRaw; a disabled
// feature gets notEnabled and list is not called.
func (s *Server) serveList(w http.ResponseWriter, r *http.Request, enabled bool, feature string, list func() any) {
	if !enabled {
		s.fail(w, r, notEnabled(feature))
		return
	}
	s.serveRaw(w, r, list())
}

// serveRaw answers a listing of v (its items as JSON), filtered by
// presentity and event and paged.
func (s *Server) serveRaw(w http.ResponseWriter, r *http.Request, v any) {
	limit, offset, e := listQuery(r, "presentity", "event", "limit", "offset")
	if e != nil {
		s.fail(w, r, e)
		return
	}
	items, err := rawItems(v)
	if err != nil {
		s.fail(w, r, &apiError{code: http.StatusInternalServerError, msg: err.Error()})
		return
	}
	q := r.URL.Query()
	var kept []json.RawMessage
	for _, it := range items {
		if rawMatch(q, it) {
			kept = append(kept, it)
		}
	}
	writeJSON(w, http.StatusOK, paginate(kept, limit, offset))
}

func (s *Server) handleListRegistrations(w http.ResponseWriter, r *http.Request) {
	s.serveList(w, r, s.deps.Registrations != nil, "usrloc", func() any { return s.deps.Registrations.Registrations() })
}

// checkAddress refuses an {aor} that no tracker could know: not a SIP
// address by the daemon's rule (package aor). A bare user is accepted: the
// tracker adds its default domain.
func checkAddress(s string) *apiError {
	if s == "" {
		return badField("aor", "required")
	}
	if _, err := aor.Parse(s, ""); err != nil && !errors.Is(err, aor.ErrNoDomain) {
		return badField("aor", "not an address of record: %q", s)
	}
	return nil
}

func (s *Server) handleGetRegistration(w http.ResponseWriter, r *http.Request) {
	aor, ok := s.aorParam(w, r, s.deps.Registrations != nil, "usrloc")
	if !ok {
		return
	}
	v, ok := s.deps.Registrations.Registration(aor)
	if !ok {
		s.fail(w, r, &apiError{code: http.StatusNotFound, msg: "no registration for " + aor})
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) handleListFlags(w http.ResponseWriter, r *http.Request) {
	s.serveList(w, r, s.deps.Registrations != nil, "usrloc", func() any { return s.deps.Registrations.Flags() })
}

func (s *Server) handleSetFlag(w http.ResponseWriter, r *http.Request) {
	aor, ok := s.aorParam(w, r, s.deps.Registrations != nil, "usrloc")
	if !ok {
		return
	}
	var p FlagParams
	if r.ContentLength != 0 {
		if e := decodeOptionalJSON(r, &p, s.cfg.MaxBody); e != nil {
			s.fail(w, r, e)
			return
		}
	}
	on := p.Enabled == nil || *p.Enabled
	if err := s.deps.Registrations.SetFlag(r.Context(), aor, on); err != nil {
		s.fail(w, r, engineError(fmt.Errorf("set flag of %s: %w", aor, err)))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"aor": aor, "enabled": on})
}

// decodeOptionalJSON decodes a body that may be empty.
func decodeOptionalJSON(r *http.Request, v any, maxBody int64) *apiError {
	e := decodeJSON(r.Body, v, maxBody)
	if e != nil && e.msg == "empty request body" {
		return nil
	}
	return e
}

func (s *Server) handleClearFlag(w http.ResponseWriter, r *http.Request) {
	aor, ok := s.aorParam(w, r, s.deps.Registrations != nil, "usrloc")
	if !ok {
		return
	}
	if err := s.deps.Registrations.ClearFlag(r.Context(), aor); err != nil {
		s.fail(w, r, engineError(fmt.Errorf("clear flag of %s: %w", aor, err)))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"aor": aor, "cleared": true})
}

func (s *Server) handleListDialogs(w http.ResponseWriter, r *http.Request) {
	s.serveList(w, r, s.deps.Dialogs != nil, "dialoginfo", func() any { return s.deps.Dialogs.Dialogs() })
}

func (s *Server) handleListLines(w http.ResponseWriter, r *http.Request) {
	s.serveList(w, r, s.deps.Lines != nil, "bla", func() any { return s.deps.Lines.Lines() })
}

func (s *Server) handleListShards(w http.ResponseWriter, r *http.Request) {
	if s.deps.Shards == nil {
		s.fail(w, r, notEnabled("cluster"))
		return
	}
	v, err := s.deps.Shards.Shards(r.Context())
	if err != nil {
		s.fail(w, r, &apiError{code: http.StatusInternalServerError, msg: err.Error()})
		return
	}
	s.serveRaw(w, r, v)
}

func (s *Server) handlePutLine(w http.ResponseWriter, r *http.Request) {
	aor, ok := s.aorParam(w, r, s.deps.Lines != nil, "bla")
	if !ok {
		return
	}
	var p LineParams
	if e := decodeOptionalJSON(r, &p, s.cfg.MaxBody); e != nil {
		s.fail(w, r, e)
		return
	}
	for i, m := range p.Members {
		if e := checkSIPURI(fmt.Sprintf("members[%d]", i), m); e != nil {
			s.fail(w, r, e)
			return
		}
	}
	if err := s.deps.Lines.AddLine(r.Context(), aor, p.Members); err != nil {
		s.fail(w, r, engineError(fmt.Errorf("add line %s: %w", aor, err)))
		return
	}
	members := p.Members
	if members == nil {
		members = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"aor": aor, "members": members})
}

func (s *Server) handleDeleteLine(w http.ResponseWriter, r *http.Request) {
	aor, ok := s.aorParam(w, r, s.deps.Lines != nil, "bla")
	if !ok {
		return
	}
	if err := s.deps.Lines.RemoveLine(r.Context(), aor); err != nil {
		s.fail(w, r, engineError(fmt.Errorf("remove line %s: %w", aor, err)))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"aor": aor, "removed": true})
}

// aorParam returns the {aor} path value of a request to a feature, or
// answers "feature not enabled" or the AoR's error and returns false.
func (s *Server) aorParam(w http.ResponseWriter, r *http.Request, enabled bool, feature string) (string, bool) {
	if !enabled {
		s.fail(w, r, notEnabled(feature))
		return "", false
	}
	aor := r.PathValue("aor")
	if e := checkAddress(aor); e != nil {
		s.fail(w, r, e)
		return "", false
	}
	return aor, true
}
