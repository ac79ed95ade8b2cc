package mgmt

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/puaside/puaside/board"
	"github.com/puaside/puaside/internal/trusted"
	"github.com/puaside/puaside/metrics"
)

//go:embed openapi.yaml
var openAPISpec []byte

// Options are the server's collaborators.
type Options struct {
	// Logger receives request errors; nil discards.
	Logger *slog.Logger
	// Metrics is served at /metrics; nil disables the endpoint.
	Metrics *metrics.Metrics
}

// Server is the management HTTP server.
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	metrics *metrics.Metrics
	access  atomic.Pointer[access] // token and trusted_sources, replaced by a reload
	certs   *certFiles             // nil without tls_cert
	logLim  *trusted.Limiter
	routes  []route
	handler http.Handler
	// metricsHandler serves metrics_listen: /metrics and the health checks.
	metricsHandler http.Handler

	mu        sync.Mutex
	listeners []*listener
}

// listener is one bound socket and the HTTP server on it.
type listener struct {
	name string
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// route is one registered endpoint. A control route changes state or sends
// SIP: it answers only to trusted_sources.
type route struct {
	method, path string
	h            http.HandlerFunc
	control      bool
}

// New builds the server. It registers the engine state gauges on
// opts.Metrics when both the engine and the metrics are present.
func New(cfg Config, deps Deps, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mgmt: %w", err)
	}
	sources, err := trusted.Parse(cfg.TrustedSources)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, deps: deps, log: opts.Logger, metrics: opts.Metrics, logLim: trusted.NewLimiter(time.Minute)}
	s.access.Store(&access{token: cfg.Token, trusted: sources})
	if cfg.TLSCert != "" {
		if s.certs, err = newCertFiles(cfg.TLSCert, cfg.TLSKey); err != nil {
			return nil, fmt.Errorf("mgmt: %w", err)
		}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if deps.Engine != nil && opts.Metrics != nil {
		if err := opts.Metrics.Register(newStateCollector(deps.Engine)); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("mgmt: register state gauges: %w", err)
			}
		}
	}
	s.routes = s.buildRoutes()
	mux := http.NewServeMux()
	for _, rt := range s.routes {
		h := rt.h
		if rt.control {
			h = s.trustedOnly(h)
		}
		mux.HandleFunc(rt.method+" "+rt.path, h)
	}
	mux.HandleFunc("/", s.fallback(mux))
	s.handler = s.recoverer(s.auth(s.limitBody(mux)))

	mmux := http.NewServeMux()
	mmux.HandleFunc("GET /metrics", s.handleMetrics)
	mmux.HandleFunc("GET /healthz", s.handleHealthz)
	mmux.HandleFunc("GET /readyz", s.handleReadyz)
	mmux.HandleFunc("/", s.fallback(mmux))
	s.metricsHandler = s.recoverer(mmux)
	return s, nil
}

func (s *Server) buildRoutes() []route {
	return []route{
		{"GET", "/healthz", s.handleHealthz, false},
		{"GET", "/readyz", s.handleReadyz, false},
		{"GET", "/metrics", s.handleMetrics, false},
		{"GET", "/v1/openapi.yaml", s.handleOpenAPI, false},
		{"POST", "/RPC", s.handleRPC, true},
		{"POST", "/v1/publish", s.handlePublish, true},
		{"POST", "/v1/subscribe", s.handleSubscribe, true},
		{"GET", "/v1/publications", s.handleListPublications, false},
		{"DELETE", "/v1/publications", s.handleDeletePublication, true},
		{"GET", "/v1/subscriptions", s.handleListSubscriptions, false},
		{"DELETE", "/v1/subscriptions", s.handleDeleteSubscription, true},
		{"GET", "/v1/registrations", s.handleListRegistrations, false},
		{"GET", "/v1/registrations/{aor}", s.handleGetRegistration, false},
		{"GET", "/v1/flags", s.handleListFlags, false},
		{"PUT", "/v1/flags/{aor}", s.handleSetFlag, true},
		{"DELETE", "/v1/flags/{aor}", s.handleClearFlag, true},
		{"GET", "/v1/dialogs", s.handleListDialogs, false},
		{"GET", "/v1/lines", s.handleListLines, false},
		{"PUT", "/v1/lines/{aor}", s.handlePutLine, true},
		{"DELETE", "/v1/lines/{aor}", s.handleDeleteLine, true},
		{"GET", "/v1/presentities", s.handleListPresentities, false},
		{"DELETE", "/v1/presentities/{aor}", s.handleDeletePresentity, true},
		{"GET", "/v1/watchers", s.handleListWatchers, false},
		{"DELETE", "/v1/watchers/{call_id}", s.handleDeleteWatcher, true},
		{"PUT", "/v1/watchers/{call_id}", s.handlePutWatcher, true},
		{"GET", "/v1/policy", s.handleListPolicy, false},
		{"PUT", "/v1/policy", s.handlePutPolicy, true},
		{"DELETE", "/v1/policy", s.handleDeletePolicy, true},
		{"GET", "/v1/shards", s.handleListShards, false},
		// The JSON event input checks ingest.trusted_sources itself.
		{"POST", "/v1/events", s.handleEvents, false},
		// The lamp board: read only, like the listings.
		{"GET", "/board", s.handleBoard, false},
		{"GET", "/board/assets/{file}", s.handleBoard, false},
		{"GET", "/board/events", s.handleBoard, false},
		{"GET", "/board/aor", s.handleBoard, false},
	}
}

// Routes lists the registered endpoints as "METHOD /path" (path patterns
// use {name} for path parameters, as in the OpenAPI description).
func (s *Server) Routes() []string {
	out := make([]string, 0, len(s.routes))
	for _, rt := range s.routes {
		out = append(out, rt.method+" "+rt.path)
	}
	return out
}

// Handler returns the server's HTTP handler (all endpoints, with the token
// check and body limit), for embedding or tests.
func (s *Server) Handler() http.Handler { return s.handler }

// Start binds http_listen (and metrics_listen when set) and serves until
// Stop or ctx ends.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listeners != nil {
		return errors.New("mgmt: already started")
	}
	binds := []struct {
		name, addr string
		h          http.Handler
	}{{"http_listen", s.cfg.HTTPListen, s.handler}}
	if s.cfg.MetricsListen != "" {
		binds = append(binds, struct {
			name, addr string
			h          http.Handler
		}{"metrics_listen", s.cfg.MetricsListen, s.metricsHandler})
	}
	var lc net.ListenConfig
	var lns []net.Listener
	for _, b := range binds {
		ln, err := lc.Listen(ctx, "tcp", b.addr)
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return fmt.Errorf("mgmt: %s %s: %w", b.name, b.addr, err)
		}
		lns = append(lns, ln)
	}
	for i, b := range binds {
		s.listeners = append(s.listeners, s.serve(ctx, b.name, lns[i], b.h))
	}
	return nil
}

// serve runs an HTTP server on ln until Stop.
func (s *Server) serve(ctx context.Context, name string, ln net.Listener, h http.Handler) *listener {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	l := &listener{name: name, srv: srv, ln: ln, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		var err error
		if s.certs != nil {
			srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.certs.get}
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("mgmt: http server stopped", "listener", name, "err", err)
		}
	}()
	s.log.Info("mgmt: listening", "listener", name, "addr", ln.Addr().String(), "tls", s.cfg.TLSCert != "")
	return l
}

// Addr returns the bound address of http_listen (useful with port 0), or ""
// before Start.
func (s *Server) Addr() string { return s.addr("http_listen") }

// MetricsAddr returns the bound address of metrics_listen, or "" when it is
// not configured or before Start.
func (s *Server) MetricsAddr() string { return s.addr("metrics_listen") }

func (s *Server) addr(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		if l.name == name {
			return l.ln.Addr().String()
		}
	}
	return ""
}

// Stop shuts the server down gracefully, waiting for requests in progress
// until ctx ends.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	ls := s.listeners
	s.mu.Unlock()
	var errs []error
	for _, l := range ls {
		err := l.srv.Shutdown(ctx)
		if err != nil {
			_ = l.srv.Close()
			errs = append(errs, fmt.Errorf("mgmt: shutdown %s: %w", l.name, err))
		}
		select {
		case <-l.done:
		case <-ctx.Done():
		}
	}
	return errors.Join(errs...)
}

// ---- middleware ----

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("mgmt: handler panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
				writeError(w, &apiError{code: http.StatusInternalServerError, msg: "internal error"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := s.access.Load().token
		if token == "" || r.URL.Path == "/healthz" || (r.Method == http.MethodGet && board.PublicPath(r.URL.Path)) {
			next.ServeHTTP(w, r)
			return
		}
		want := []byte("Bearer " + token)
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="puaside"`)
			s.refuse(w, r, metrics.RefusedUnauthorised, &apiError{code: http.StatusUnauthorized, msg: "missing or wrong bearer token"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// trustedOnly answers 403 to a control request from a source outside
// trusted_sources.
func (s *Server) trustedOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.trustedSource(r.RemoteAddr) {
			s.refuse(w, r, metrics.RefusedUntrusted, &apiError{code: http.StatusForbidden,
				msg: fmt.Sprintf("%s %s is a control endpoint: source %s is not in http.trusted_sources", r.Method, r.URL.Path, remoteHost(r.RemoteAddr))})
			return
		}
		next(w, r)
	}
}

// trustedSource reports whether the peer address (host:port) is in
// trusted_sources.
func (s *Server) trustedSource(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range s.access.Load().trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func remoteHost(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// refuse answers a request the management plane does not let through
// (wrong token, untrusted source, reserved header): it is counted by reason
// and logged, at most once a minute per source and reason.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, reason string, e *apiError) {
	s.metrics.HTTPRefused(reason)
	if s.logLim.Allow(reason+" "+remoteHost(r.RemoteAddr), time.Now()) {
		s.log.Warn("mgmt: request refused", "reason", reason, "method", r.Method, "path", r.URL.Path,
			"remote", r.RemoteAddr, "code", e.code, "err", e.msg)
	}
	writeError(w, e)
}

func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.cfg.MaxBody {
			writeError(w, tooLarge(s.cfg.MaxBody))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
		next.ServeHTTP(w, r)
	})
}

func tooLarge(limit int64) *apiError {
	return &apiError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body larger than max_body (%d bytes)", limit)}
}

// fallback answers requests no route matched: 405 with Allow when the path
// exists for other methods, else 404.
func (s *Server) fallback(mux *http.ServeMux) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
			r2 := r.Clone(r.Context())
			r2.Method = m
			if _, pat := mux.Handler(r2); pat != "" && pat != "/" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, &apiError{code: http.StatusMethodNotAllowed, msg: fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", "))})
			return
		}
		writeError(w, &apiError{code: http.StatusNotFound, msg: "no such endpoint: " + r.URL.Path})
	}
}

// ---- errors and JSON ----

// apiError is an error answer: HTTP status, message, field at fault and,
// for a refused SIP request, the SIP status and reason.
type apiError struct {
	code   int
	msg    string
	field  string
	sip    int
	reason string
	// refusal, when set, is the puaside_http_refused_total reason.
	refusal string
}

func (e *apiError) Error() string { return e.msg }

func badField(field, format string, args ...any) *apiError {
	return &apiError{code: http.StatusBadRequest, field: field, msg: field + ": " + fmt.Sprintf(format, args...)}
}

func notEnabled(feature string) *apiError {
	return &apiError{code: http.StatusNotFound, msg: "feature not enabled: " + feature}
}

// writeJSON answers v as JSON. XML documents in bodies stay readable: <, >
// and & are not escaped (the answer is application/json with nosniff,
// never HTML).
func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	b := []byte(`{"error":"cannot encode response"}` + "\n")
	if err := enc.Encode(v); err != nil {
		code = http.StatusInternalServerError
	} else {
		b = buf.Bytes()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.code, ErrorBody{Error: e.msg, Field: e.field, Status: e.sip, Reason: e.reason})
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, e *apiError) {
	lvl := slog.LevelInfo
	if e.code >= 500 {
		lvl = slog.LevelWarn
	}
	s.log.Log(r.Context(), lvl, "mgmt: request refused", "method", r.Method, "path", r.URL.Path,
		"code", e.code, "field", e.field, "err", e.msg)
	writeError(w, e)
}

// decodeJSON reads exactly one JSON value into v, refusing unknown fields,
// wrong types and trailing data, naming the field at fault.
func decodeJSON(r io.Reader, v any, maxBody int64) *apiError {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, maxBody)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return jsonError(err, maxBody)
		}
		return &apiError{code: http.StatusBadRequest, msg: "malformed JSON: data after the request object"}
	}
	return nil
}

func jsonError(err error, maxBody int64) *apiError {
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return tooLarge(maxBody)
	case errors.Is(err, io.EOF):
		return &apiError{code: http.StatusBadRequest, msg: "empty request body"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &apiError{code: http.StatusBadRequest, msg: "malformed JSON: unexpected end of input"}
	case errors.As(err, &se):
		return &apiError{code: http.StatusBadRequest, msg: fmt.Sprintf("malformed JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))}
	case errors.As(err, &te):
		if te.Field == "" {
			return &apiError{code: http.StatusBadRequest, msg: fmt.Sprintf("request must be a JSON object, got %s", te.Value)}
		}
		return badField(te.Field, "wrong type: expected %s, got %s", jsonTypeName(te.Type.String()), te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badField(f, "unknown field")
	}
	return &apiError{code: http.StatusBadRequest, msg: "malformed JSON: " + strings.TrimPrefix(err.Error(), "json: ")}
}

func jsonTypeName(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "array"
	case strings.Contains(goType, "int") || strings.Contains(goType, "float"):
		return "number"
	case strings.Contains(goType, "string"):
		return "string"
	case strings.Contains(goType, "bool"):
		return "boolean"
	}
	return goType
}

// ---- health, readiness, metrics, openapi ----

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	for _, c := range s.deps.Ready {
		if c.Check == nil {
			continue
		}
		if err := c.Check(ctx); err != nil {
			s.log.Warn("mgmt: not ready", "check", c.Name, "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "check": c.Name, "error": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if s.metrics == nil {
		s.fail(w, r, notEnabled("metrics"))
		return
	}
	promhttp.HandlerFor(s.metrics.Registry(), promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}).ServeHTTP(w, r)
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(openAPISpec)
}

func (s *Server) handleBoard(w http.ResponseWriter, r *http.Request) {
	if s.deps.Board == nil {
		s.fail(w, r, notEnabled("board"))
		return
	}
	s.deps.Board.ServeHTTP(w, r)
}

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	if s.deps.Events == nil {
		s.fail(w, r, notEnabled("events"))
		return
	}
	s.deps.Events.ServeHTTP(w, r)
}
