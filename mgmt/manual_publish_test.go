package mgmt_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/puaside/puaside/mgmt"
	"github.com/puaside/puaside/pua"
)

// scriptedServer is a presence server on loopback UDP that answers each
// PUBLISH as answer says (0: no reply at all).
type scriptedServer struct {
	conn   *net.UDPConn
	answer func(n int, req string) (code int, etag string)

	mu   sync.Mutex
	reqs []string
}

func newScriptedServer(t *testing.T, answer func(n int, req string) (int, string)) *scriptedServer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptedServer{conn: c, answer: answer}
	t.Cleanup(func() { c.Close() })
	go s.serve()
	return s
}

func (s *scriptedServer) addr() string { return s.conn.LocalAddr().String() }

func (s *scriptedServer) serve() {
	buf := make([]byte, 65535)
	for {
		k, src, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		msg := string(buf[:k])
		if !strings.HasPrefix(msg, "PUBLISH ") {
			continue
		}
		s.mu.Lock()
		s.reqs = append(s.reqs, msg)
		n := len(s.reqs)
		s.mu.Unlock()
		code, etag := s.answer(n, msg)
		if code == 0 {
			continue
		}
		head, _, _ := strings.Cut(msg, "\r\n\r\n")
		var b strings.Builder
		fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, http.StatusText(code))
		for _, l := range strings.Split(head, "\r\n")[1:] {
			name, val, _ := strings.Cut(l, ":")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "via", "from", "call-id", "cseq":
				b.WriteString(l + "\r\n")
			case "to":
				if !strings.Contains(val, "tag=") {
					l += ";tag=srv"
				}
				b.WriteString(l + "\r\n")
			case "expires":
				if code < 300 {
					b.WriteString(l + "\r\n")
				}
			}
		}
		if etag != "" {
			fmt.Fprintf(&b, "SIP-ETag: %s\r\n", etag)
		}
		b.WriteString("Content-Length: 0\r\n\r\n")
		_, _ = s.conn.WriteToUDP([]byte(b.String()), src)
	}
}

// requests returns the PUBLISHes received so far.
func (s *scriptedServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

// realEngine starts a pua engine that publishes to srv.
func realEngine(t *testing.T, srv *scriptedServer) *pua.Engine {
	t.Helper()
	cfg := pua.DefaultConfig()
	cfg.Listen = []string{"udp:127.0.0.1:0"}
	cfg.ServerAddress = "sip:" + srv.addr()
	cfg.RequestTimeout = 2 * time.Second
	cfg.RetryMin, cfg.RetryMax = 200*time.Millisecond, time.Second
	eng, err := pua.New(cfg, pua.Options{Logger: slog.New(slog.NewTextHandler(testLog{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = eng.Stop(ctx)
	})
	return eng
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// waitGone waits (20 s at most) until the engine holds no publication.
func waitGone(t *testing.T, eng *pua.Engine, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(eng.Publications()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the publication is still held: %+v", what, eng.Publications())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const manualBody = `<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com"/>`

func manualPublish(t *testing.T, base, body, extra string) answer {
	t.Helper()
	return do(t, "POST", base+"/v1/publish", fmt.Sprintf(`{"presentity_uri":"sip:alice@example.com","event":"presence","body":%q%s}`, body, extra), nil)
}

// TestManualPublishTimeoutEnds: a manual publish that gets no reply answers
// 504 and ends; it does not go on retrying in the background.
func TestManualPublishTimeoutEnds(t *testing.T) {
	srv := newScriptedServer(t, func(int, string) (int, string) { return 0, "" })
	eng := realEngine(t, srv)
	cfg := mgmt.DefaultConfig()
	cfg.WaitTimeout = time.Second
	s := start(t, cfg, mgmt.Deps{Engine: eng}, nil)
	if a := manualPublish(t, "http://"+s.Addr(), manualBody, ""); a.code != 504 {
		t.Fatalf("publish: %d %s, want 504", a.code, a.raw)
	}
	waitGone(t, eng, "after a timeout")
}

// TestManualPublishTimeoutKept: with keep_on_timeout the engine goes on
// retrying and the publication lands once the server answers.
func TestManualPublishTimeoutKept(t *testing.T) {
	var answering atomic.Bool // silent until the API has answered 504
	srv := newScriptedServer(t, func(int, string) (int, string) {
		if !answering.Load() {
			return 0, ""
		}
		return 200, "e1"
	})
	eng := realEngine(t, srv)
	cfg := mgmt.DefaultConfig()
	cfg.WaitTimeout = time.Second
	s := start(t, cfg, mgmt.Deps{Engine: eng}, nil)
	if a := manualPublish(t, "http://"+s.Addr(), manualBody, `,"keep_on_timeout":true`); a.code != 504 {
		t.Fatalf("publish: %d %s, want 504", a.code, a.raw)
	}
	answering.Store(true)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ps := eng.Publications()
		if len(ps) == 1 && ps[0].ETag == "e1" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kept publication not published in the background: %+v", ps)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestManualPublishRefusedDropsETag: a manual publish the server refuses
// (415) ends the publication: its older accepted state is withdrawn with
// its entity tag, and no record keeps that stale tag.
func TestManualPublishRefusedDropsETag(t *testing.T) {
	srv := newScriptedServer(t, func(n int, req string) (int, string) {
		switch {
		case n == 1:
			return 200, "e1"
		case strings.Contains(req, "\r\nExpires: 0\r\n"):
			return 200, "e1"
		}
		return 415, ""
	})
	eng := realEngine(t, srv)
	s := start(t, mgmt.DefaultConfig(), mgmt.Deps{Engine: eng}, nil)
	base := "http://" + s.Addr()
	if a := manualPublish(t, base, manualBody, ""); a.code != 200 {
		t.Fatalf("first publish: %d %s", a.code, a.raw)
	}
	a := manualPublish(t, base, strings.Replace(manualBody, "/>", "><tuple id=\"t\"/></presence>", 1), "")
	if a.code != 502 || num(a.obj["status"]) != 415 {
		t.Fatalf("refused publish: %d %s, want 502 with SIP 415", a.code, a.raw)
	}
	waitGone(t, eng, "after a refusal")
	reqs := srv.requests()
	last := reqs[len(reqs)-1]
	if !strings.Contains(last, "\r\nExpires: 0\r\n") || !strings.Contains(last, "\r\nSIP-If-Match: e1\r\n") {
		t.Fatalf("the old state was not withdrawn; last PUBLISH:\n%s", last)
	}
}
