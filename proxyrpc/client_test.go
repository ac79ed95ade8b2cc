package proxyrpc

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// rpcServer answers every request with the body reply builds from it.
func rpcServer(t *testing.T, status int, reply func(id string) string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			JSONRPC string          `json:"jsonrpc"`
			Method  string          `json:"method"`
			ID      json.RawMessage `json:"id"`
		}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &req); err != nil || req.JSONRPC != "2.0" || r.Method != http.MethodPost {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, reply(string(req.ID)))
	}))
	t.Cleanup(s.Close)
	return s
}

func TestCallResult(t *testing.T) {
	s := rpcServer(t, 200, func(id string) string { return `{"jsonrpc":"2.0","result":[],"id":` + id + `}` })
	d, err := Kamailio{Client: NewClient(s.URL, Options{})}.Dialogs(context.Background())
	if err != nil || len(d.Dialogs) != 0 {
		t.Fatalf("got %+v, %v", d, err)
	}
}

func TestCallErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		status int
		reply  func(id string) string
		check  func(error) bool
	}{
		{"method not found", 500, func(id string) string {
			return `{"jsonrpc":"2.0","error":{"code":500,"message":"Method Not Found"},"id":` + id + `}`
		}, func(err error) bool {
			var e *Error
			return errors.As(err, &e) && e.Code == 500 && e.Message == "Method Not Found"
		}},
		{"html error page", 404, func(string) string { return "<html>not found</html>" },
			func(err error) bool { return errors.Is(err, ErrProtocol) && strings.Contains(err.Error(), "HTTP 404") }},
		{"not json", 200, func(string) string { return "{" }, func(err error) bool { return errors.Is(err, ErrProtocol) }},
		{"wrong version", 200, func(id string) string { return `{"jsonrpc":"1.0","result":[],"id":` + id + `}` },
			func(err error) bool { return errors.Is(err, ErrProtocol) }},
		{"wrong id", 200, func(string) string { return `{"jsonrpc":"2.0","result":[],"id":999}` },
			func(err error) bool { return errors.Is(err, ErrProtocol) && strings.Contains(err.Error(), "id") }},
		{"no result", 200, func(id string) string { return `{"jsonrpc":"2.0","id":` + id + `}` },
			func(err error) bool { return errors.Is(err, ErrProtocol) }},
		{"result of another shape", 200, func(id string) string { return `{"jsonrpc":"2.0","result":{"a":1},"id":` + id + `}` },
			func(err error) bool { return errors.Is(err, ErrProtocol) }},
		{"too large", 200, func(id string) string {
			return `{"jsonrpc":"2.0","result":["` + strings.Repeat("x", 4096) + `"],"id":` + id + `}`
		}, func(err error) bool { return errors.Is(err, ErrTooLarge) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := rpcServer(t, tc.status, tc.reply)
			_, err := Kamailio{Client: NewClient(s.URL, Options{MaxResponse: 1024})}.Dialogs(ctx)
			if err == nil || !tc.check(err) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestCallTimeout(t *testing.T) {
	release := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","result":[`)
		w.(http.Flusher).Flush()
		select { // a proxy that starts answering and never finishes
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer s.Close()
	defer close(release)
	c := NewClient(s.URL, Options{Timeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := c.Call(context.Background(), "dlg.list")
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline error", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("the call took %v despite a 200 ms timeout", time.Since(start))
	}
}

func TestCallCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := NewClient("http://127.0.0.1:1/RPC", Options{}).Call(ctx, "ul.dump")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestCallNoRedirect(t *testing.T) {
	s := httptest.NewServer(http.RedirectHandler("http://198.51.100.1/RPC", http.StatusFound))
	defer s.Close()
	_, err := NewClient(s.URL, Options{}).Call(context.Background(), "ul.dump")
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("err = %v, want ErrProtocol (redirects are not followed)", err)
	}
}
