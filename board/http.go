package board

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS

// Drop reasons of puaside_board_clients_dropped_total.
const (
	// DropSlow: a write did not complete within the write timeout.
	DropSlow = "slow"
	// DropWriteError: the connection failed.
	DropWriteError = "write_error"
	// DropTooMany: the stream was refused, MaxClients are open.
	DropTooMany = "too_many_clients"
)

// heartbeat is the interval of SSE comments that keep idle streams open
// through proxies.
const heartbeat = 15 * time.Second

// PublicPath reports whether path is one of the page's static files, which
// hold no data and are served without the bearer token (a browser cannot
// send one when it loads a page); the data (/board/events, /board/aor) is
// not public.
func PublicPath(path string) bool {
	return path == "/board" || path == "/board/" || strings.HasPrefix(path, "/board/assets/")
}

// ServeHTTP serves the page (/board), its assets (/board/assets/...), the
// event stream (/board/events) and one AoR's detail (/board/aor?aor=...).
func (b *Board) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+r.URL.Path)
		return
	}
	switch p := r.URL.Path; {
	case p == "/board" || p == "/board/":
		b.serveAsset(w, r, "index.html")
	case strings.HasPrefix(p, "/board/assets/"):
		b.serveAsset(w, r, strings.TrimPrefix(p, "/board/assets/"))
	case p == "/board/events":
		b.serveEvents(w, r)
	case p == "/board/aor":
		b.serveDetail(w, r)
	default:
		httpError(w, http.StatusNotFound, "no such endpoint: "+p)
	}
}

func (b *Board) serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	sub, err := fs.Sub(assets, "assets")
	if err != nil || name == "" || strings.Contains(name, "..") {
		httpError(w, http.StatusNotFound, "no such file: "+name)
		return
	}
	if _, err := fs.Stat(sub, name); err != nil {
		httpError(w, http.StatusNotFound, "no such file: "+name)
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, sub, name)
}

func (b *Board) serveDetail(w http.ResponseWriter, r *http.Request) {
	a := r.URL.Query().Get("aor")
	if a == "" {
		httpError(w, http.StatusBadRequest, "aor: missing query parameter")
		return
	}
	d, ok := b.Detail(a)
	if !ok {
		httpError(w, http.StatusNotFound, "no such AoR on the board: "+a)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(d)
}

// eventID is the SSE id of version v.
func (b *Board) eventID(v uint64) string { return b.epoch + "." + strconv.FormatUint(v, 10) }

// resumeFrom is the version a Last-Event-ID resumes from: 0 (a snapshot)
// when it is absent, malformed or from another run of the daemon.
func (b *Board) resumeFrom(id string) uint64 {
	ep, v, ok := strings.Cut(strings.TrimSpace(id), ".")
	if !ok || ep != b.epoch {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

func (b *Board) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	select {
	case <-b.closed:
		httpError(w, http.StatusServiceUnavailable, "the board is shutting down")
		return
	default:
	}
	if b.hub.clients() >= b.opts.MaxClients {
		b.opts.Metrics.BoardDropped(DropTooMany)
		b.log.Warn("board: event stream refused", "reason", DropTooMany, "remote", r.RemoteAddr)
		httpError(w, http.StatusServiceUnavailable, "too many board clients")
		return
	}
	wake, cancel := b.hub.watch()
	defer cancel()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	cursor := b.resumeFrom(r.Header.Get("Last-Event-ID"))
	if q := r.URL.Query().Get("last"); q != "" && cursor == 0 {
		cursor = b.resumeFrom(q)
	}
	var buf bytes.Buffer
	send := func(force bool) error {
		b.flush() // the changes nobody rendered yet, this client's first
		changes, ver, reset := b.hub.since(cursor)
		if len(changes) == 0 && !reset && !force {
			return nil
		}
		buf.Reset()
		encodeBatch(&buf, b.eventID(ver), changes, reset)
		if err := b.write(rc, w, buf.Bytes()); err != nil {
			return err
		}
		cursor = ver
		return nil
	}
	if err := send(true); err != nil {
		b.drop(r, err)
		return
	}
	ping := time.NewTicker(heartbeat)
	defer ping.Stop()
	coalesce := time.NewTimer(time.Hour)
	coalesce.Stop()
	pending := false
	for {
		select {
		case <-r.Context().Done():
			return
		case <-b.closed:
			return
		case <-wake:
			if !pending {
				pending = true
				coalesce.Reset(b.opts.Coalesce)
			}
		case <-coalesce.C:
			pending = false
			if err := send(false); err != nil {
				b.drop(r, err)
				return
			}
		case <-ping.C:
			if err := b.write(rc, w, []byte(": ping\n\n")); err != nil {
				b.drop(r, err)
				return
			}
		}
	}
}

// errSlow is a write that did not finish within the write timeout.
var errSlow = errors.New("board: client too slow")

// write sends p within the write timeout and flushes it. A write that
// fails once the deadline has passed is a slow client.
func (b *Board) write(rc *http.ResponseController, w http.ResponseWriter, p []byte) error {
	deadline := time.Now().Add(b.opts.WriteTimeout)
	_ = rc.SetWriteDeadline(deadline)
	_, err := w.Write(p)
	if err == nil {
		err = rc.Flush()
	}
	if err != nil && !time.Now().Before(deadline) {
		return fmt.Errorf("%w: %v", errSlow, err)
	}
	return err
}

// drop counts and logs a client the board gave up on.
func (b *Board) drop(r *http.Request, err error) {
	reason := DropWriteError
	switch {
	case errors.Is(err, errSlow):
		reason = DropSlow
	case r.Context().Err() != nil:
		return // the client went away
	}
	b.opts.Metrics.BoardDropped(reason)
	b.log.Warn("board: client dropped", "reason", reason, "remote", r.RemoteAddr, "err", err)
}

// encodeBatch writes one SSE event: a snapshot (reset) or a delta of
// changes, as {"reset":…,"items":[{"k":key,"v":doc}…],"gone":[key…]}.
func encodeBatch(buf *bytes.Buffer, id string, changes []change, reset bool) {
	buf.WriteString("id: ")
	buf.WriteString(id)
	if reset {
		buf.WriteString("\nevent: snapshot\ndata: {\"reset\":true,\"items\":[")
	} else {
		buf.WriteString("\nevent: delta\ndata: {\"reset\":false,\"items\":[")
	}
	first := true
	for _, c := range changes {
		if c.doc == nil {
			continue
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		buf.WriteString(`{"k":`)
		buf.Write(mustJSON(c.key))
		buf.WriteString(`,"v":`)
		buf.Write(c.doc)
		buf.WriteByte('}')
	}
	buf.WriteString(`],"gone":[`)
	first = true
	for _, c := range changes {
		if c.doc != nil {
			continue
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		buf.Write(mustJSON(c.key))
	}
	buf.WriteString("]}\n\n")
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
