package mgmt

import (
	"fmt"
	"net/http"
)

// The embedded presence server's listings and decisions (Deps.Presence).

func (s *Server) handleListPresentities(w http.ResponseWriter, r *http.Request) {
	s.serveList(w, r, s.deps.Presence != nil, "pa", func() any { return s.deps.Presence.Presentities() })
}

func (s *Server) handleListWatchers(w http.ResponseWriter, r *http.Request) {
	s.serveList(w, r, s.deps.Presence != nil, "pa", func() any { return s.deps.Presence.Watchers() })
}

func (s *Server) handleDeletePresentity(w http.ResponseWriter, r *http.Request) {
	aor, ok := s.aorParam(w, r, s.deps.Presence != nil, "pa")
	if !ok {
		return
	}
	if e := checkQuery(r, "event"); e != nil {
		s.fail(w, r, e)
		return
	}
	ev := r.URL.Query().Get("event")
	if err := s.deps.Presence.DeletePresentity(r.Context(), aor, ev); err != nil {
		s.fail(w, r, engineError(fmt.Errorf("delete presentity %s: %w", aor, err)))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"aor": aor, "event": ev, "removed": true})
}

func (s *Server) handleDeleteWatcher(w http.ResponseWriter, r *http.Request) {
	id, ok := s.callIDParam(w, r)
	if !ok {
		return
	}
	if err := s.deps.Presence.DeleteWatcher(r.Context(), id); err != nil {
		s.fail(w, r, engineError(fmt.Errorf("delete watcher %s: %w", id, err)))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"call_id": id, "removed": true})
}

func (s *Server) handlePutWatcher(w http.ResponseWriter, r *http.Request) {
	id, ok := s.callIDParam(w, r)
	if !ok {
		return
	}
	var p WatcherParams
	if e := decodeJSON(r.Body, &p, s.cfg.MaxBody); e != nil {
		s.fail(w, r, e)
		return
	}
	if p.Status != "active" && p.Status != "terminated" {
		s.fail(w, r, &apiError{code: http.StatusBadRequest, field: "status", msg: "status: want active or terminated"})
		return
	}
	if err := s.deps.Presence.AuthorizeWatcher(r.Context(), id, p.Status == "active"); err != nil {
		s.fail(w, r, engineError(fmt.Errorf("authorize watcher %s: %w", id, err)))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"call_id": id, "status": p.Status})
}

func (s *Server) handleListPolicy(w http.ResponseWriter, r *http.Request) {
	s.serveList(w, r, s.deps.Policy != nil, "pa", func() any { return s.deps.Policy.PolicyRules() })
}

func (s *Server) handlePutPolicy(w http.ResponseWriter, r *http.Request) {
	if s.deps.Policy == nil {
		s.fail(w, r, notEnabled("pa"))
		return
	}
	var p PolicyRuleParams
	if e := decodeJSON(r.Body, &p, s.cfg.MaxBody); e != nil {
		s.fail(w, r, e)
		return
	}
	switch p.Action {
	case "allow", "pending", "deny":
	default:
		s.fail(w, r, &apiError{code: http.StatusBadRequest, field: "action", msg: "action: want allow, pending or deny"})
		return
	}
	if err := s.deps.Policy.PutPolicyRule(r.Context(), p); err != nil {
		s.fail(w, r, engineError(fmt.Errorf("put policy rule: %w", err)))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"presentity": p.Presentity, "watcher": p.Watcher, "action": p.Action})
}

func (s *Server) handleDeletePolicy(w http.ResponseWriter, r *http.Request) {
	if s.deps.Policy == nil {
		s.fail(w, r, notEnabled("pa"))
		return
	}
	if e := checkQuery(r, "presentity", "watcher"); e != nil {
		s.fail(w, r, e)
		return
	}
	q := r.URL.Query()
	pres, watcher := q.Get("presentity"), q.Get("watcher")
	if err := s.deps.Policy.DeletePolicyRule(r.Context(), pres, watcher); err != nil {
		s.fail(w, r, engineError(fmt.Errorf("delete policy rule: %w", err)))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"presentity": pres, "watcher": watcher, "removed": true})
}

// callIDParam reads the path's {call_id} of a watcher of the presence
// server; on a disabled server or a bad Call-ID it answers and reports
// false.
func (s *Server) callIDParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	if s.deps.Presence == nil {
		s.fail(w, r, notEnabled("pa"))
		return "", false
	}
	id := r.PathValue("call_id")
	if id == "" || len(id) > 255 {
		s.fail(w, r, &apiError{code: http.StatusBadRequest, msg: "call_id: want a Call-ID of 1 to 255 bytes"})
		return "", false
	}
	return id, true
}
