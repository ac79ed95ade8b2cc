package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/store"
)

// blackholeUDP is a presence server that reads every request and answers
// none. received is closed at the first datagram holding what.
func blackholeUDP(t *testing.T, what string) (addr string, received <-chan struct{}) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	got := make(chan struct{})
	go func() {
		var once sync.Once
		buf := make([]byte, 65535)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if strings.Contains(string(buf[:n]), what) {
				once.Do(func() { close(got) })
			}
		}
	}()
	return pc.LocalAddr().String(), got
}

// freezingProxy forwards TCP to target until freeze; from then on it
// neither forwards nor closes anything (a store that stopped answering,
// as behind a dead link), and new connections are accepted and held.
type freezingProxy struct {
	ln     net.Listener
	frozen atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newFreezingProxy(t *testing.T, target string) *freezingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{ln: ln}
	t.Cleanup(p.close)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.hold(c)
			if p.frozen.Load() {
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.hold(up)
			go p.pipe(up, c)
			go p.pipe(c, up)
		}
	}()
	return p
}

func (p *freezingProxy) hold(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

// pipe copies until frozen; a frozen pipe stops reading, so the peer's
// writes fill the buffers and its reads wait.
func (p *freezingProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if p.frozen.Load() {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			return
		}
	}
}

func (p *freezingProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// TestSIGTERMBoundedWhenUnreachable: SIGTERM is logged at once and the
// daemon is gone within its stop bound (stopTimeout, plus a margin for
// the process's start of the stop) when the presence server answers
// nothing or the database stops answering while a write is due.
func TestSIGTERMBoundedWhenUnreachable(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t, t.TempDir())
	for _, c := range []struct {
		name   string
		frozen bool // the database stops answering before SIGTERM
		pa     bool // the embedded presence server, not an upstream one
	}{{"presence server", false, false}, {"database", true, false}, {"database with pa", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			server, published := blackholeUDP(t, "PUBLISH sip:alice@example.com")
			dbURL := "sqlite://" + filepath.Join(dir, "puaside.db")
			var proxy *freezingProxy
			if c.frozen {
				u := dbtest.URL(t, store.MySQL)
				_, rest, _ := strings.Cut(strings.TrimPrefix(u, "mysql://"), "@")
				hostPort, name, _ := strings.Cut(rest, "/")
				proxy = newFreezingProxy(t, hostPort)
				dbURL = "mysql://" + strings.TrimSuffix(strings.TrimPrefix(u, "mysql://"), rest) + proxy.ln.Addr().String() + "/" + name
			}
			cfgPath := filepath.Join(dir, "puaside.yaml")
			upstream := "sip:" + server
			if c.pa {
				upstream = ""
			}
			doc := fmt.Sprintf(`db_url: %s
pua:
  listen: ["udp:127.0.0.1:0"]
  server_address: "%s"
  update_period: 100ms
pa:
  listen: ["udp:127.0.0.1:0"]
ingest:
  replicate_listen: []
  trace_listen: []
  hep_listen: []
http:
  http_listen: 127.0.0.1:0
`, dbURL, upstream)
			if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			d := startDaemon(t, bin, cfgPath)
			base := "http://" + d.httpAddr()
			post(t, base+"/v1/events", `{"type":"registration","aor":"sip:alice@example.com",
				"contacts":[{"uri":"sip:alice@127.0.0.1:5999","expires":600}]}`)
			if c.pa {
				waitPresentity(t, base, "sip:alice@example.com")
			} else {
				select {
				case <-published:
				case <-time.After(10 * time.Second):
					t.Fatalf("no PUBLISH reached the presence server:\n%s", d.logs.String())
				}
			}
			if proxy != nil {
				proxy.frozen.Store(true)
				// A change to write while the database does not answer.
				post(t, base+"/v1/events", `{"type":"registration","aor":"sip:bob@example.com",
					"contacts":[{"uri":"sip:bob@127.0.0.1:5998","expires":600}]}`)
				time.Sleep(300 * time.Millisecond)
			}
			start := time.Now()
			d.signal(syscall.SIGTERM)
			d.waitLog("stopping: draining and flushing")
			if s := time.Since(start); s > 2*time.Second {
				t.Errorf("SIGTERM logged after %v", s)
			}
			bound := stopTimeout + 2*time.Second
			select {
			case <-d.exited:
			case <-time.After(bound):
				t.Fatalf("still running %v after SIGTERM:\n%s", bound, d.logs.String())
			}
			t.Logf("exited after %v (%v)", time.Since(start), d.waitErr)
		})
	}
}

// waitPresentity waits until the embedded presence server lists aor.
func waitPresentity(t *testing.T, base, aor string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get(base + "/v1/presentities")
		if err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if strings.Contains(string(b), aor) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the presence server does not list %s", aor)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
