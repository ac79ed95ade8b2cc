package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"testing"
	"time"

	"github.com/puaside/puaside/internal/kamailiotest"
)

// buildBinary builds puaside into dir.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "puaside")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runningDaemon is the built binary running with a config file.
type runningDaemon struct {
	t       *testing.T
	cmd     *exec.Cmd
	logs    *kamailiotest.SyncBuffer
	exited  chan struct{}
	waitErr error
}

// startDaemon runs bin with cfgPath and the extra environment.
func startDaemon(t *testing.T, bin, cfgPath string, env ...string) *runningDaemon {
	t.Helper()
	d := &runningDaemon{t: t, logs: &kamailiotest.SyncBuffer{}, exited: make(chan struct{})}
	d.cmd = exec.Command(bin, "run", "-config", cfgPath)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	d.cmd.Env = append(os.Environ(), env...)
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.waitErr = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	})
	return d
}

// waitLog waits (60 s at most) for what in the log.
func (d *runningDaemon) waitLog(what string) {
	d.t.Helper()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(d.logs.String(), what) {
		select {
		case <-d.exited:
			d.t.Fatalf("daemon exited (%v) while waiting for %q:\n%s", d.waitErr, what, d.logs.String())
		case <-deadline:
			d.t.Fatalf("no %q in the log within 60s:\n%s", what, d.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

var httpAddrRE = regexp.MustCompile(`puaside started.*http=(\S+)`)

// httpAddr is the management address from the "puaside started" line.
func (d *runningDaemon) httpAddr() string {
	d.t.Helper()
	d.waitLog("puaside started")
	m := httpAddrRE.FindStringSubmatch(d.logs.String())
	if m == nil {
		d.t.Fatalf("no http address in the start line:\n%s", d.logs.String())
	}
	return m[1]
}

// signal sends sig to the daemon.
func (d *runningDaemon) signal(sig os.Signal) {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatal(err)
	}
}

// waitExit waits (30 s at most) for the exit and fails on a non-zero one.
func (d *runningDaemon) waitExit() {
	d.t.Helper()
	select {
	case <-d.exited:
		if d.waitErr != nil {
			d.t.Fatalf("exit: %v\n%s", d.waitErr, d.logs.String())
		}
	case <-time.After(30 * time.Second):
		d.t.Fatalf("no exit within 30s:\n%s", d.logs.String())
	}
}

// writeQuietConfig writes to path a configuration with no ingest input,
// the engine and the API on free loopback ports and the database at
// dbPath, after top (more top-level keys, each line ending in a newline).
func writeQuietConfig(t *testing.T, path, dbPath, top string) {
	t.Helper()
	doc := top + `db_url: sqlite://` + dbPath + `
pua:
  listen: ["udp:127.0.0.1:0"]
  server_address: sip:127.0.0.1:9
ingest:
  replicate_listen: []
  trace_listen: []
  hep_listen: []
http:
  http_listen: 127.0.0.1:0
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
}

// get returns the body of GET url.
func get(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// post sends a JSON body to the daemon's API.
func post(t *testing.T, url, body string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		t.Fatalf("POST %s: %d", url, res.StatusCode)
	}
}

// notifySocket is a unixgram socket standing in for systemd's
// $NOTIFY_SOCKET; it records every datagram.
type notifySocket struct {
	path string
	conn *net.UnixConn
	msgs chan string
}

func listenNotify(t *testing.T, dir string) *notifySocket {
	t.Helper()
	path := filepath.Join(dir, "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{path: path, conn: c, msgs: make(chan string, 64)}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	return n
}

// expect waits (60 s at most) for the next datagram and checks that it
// holds every assignment of want.
func (n *notifySocket) expect(t *testing.T, want ...string) {
	t.Helper()
	select {
	case m, ok := <-n.msgs:
		if !ok {
			t.Fatalf("notify socket closed, want %v", want)
		}
		lines := strings.Split(strings.TrimSpace(m), "\n")
		for _, w := range want {
			found := false
			for _, l := range lines {
				found = found || l == w
			}
			if !found {
				t.Fatalf("notify datagram %q has no %s", m, w)
			}
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no notify datagram within 60s, want %v", want)
	}
}

// subPhone is an emulated shared-line phone: a UDP socket that answers
// every SUBSCRIBE with 200 and reports each one's Expires.
type subPhone struct {
	conn    *net.UDPConn
	expires chan string
}

func newSubPhone(t *testing.T) *subPhone {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &subPhone{conn: c, expires: make(chan string, 64)}
	t.Cleanup(func() { c.Close() })
	go p.serve()
	return p
}

func (p *subPhone) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

func (p *subPhone) serve() {
	buf := make([]byte, 65535)
	for {
		k, src, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		msg := string(buf[:k])
		if !strings.HasPrefix(msg, "SUBSCRIBE ") {
			continue
		}
		head, _, _ := strings.Cut(msg, "\r\n\r\n")
		var resp bytes.Buffer
		resp.WriteString("SIP/2.0 200 OK\r\n")
		exp := ""
		for _, l := range strings.Split(head, "\r\n")[1:] {
			name, val, _ := strings.Cut(l, ":")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "via", "v", "from", "f", "call-id", "i", "cseq":
				resp.WriteString(l + "\r\n")
			case "to", "t":
				if !strings.Contains(val, "tag=") {
					l += ";tag=phone"
				}
				resp.WriteString(l + "\r\n")
			case "expires":
				exp = strings.TrimSpace(val)
				resp.WriteString(l + "\r\n")
			}
		}
		fmt.Fprintf(&resp, "Contact: <sip:phone@127.0.0.1:%d>\r\nContent-Length: 0\r\n\r\n", p.port())
		_, _ = p.conn.WriteToUDP(resp.Bytes(), src)
		p.expires <- exp
	}
}

// expectSubscribe waits (30 s at most) for a SUBSCRIBE whose Expires is
// zero (unsubscribe) or not.
func (p *subPhone) expectSubscribe(t *testing.T, unsubscribe bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case e := <-p.expires:
			if (e == "0") == unsubscribe {
				return
			}
		case <-deadline:
			t.Fatalf("no SUBSCRIBE (unsubscribe %v) within 30s", unsubscribe)
		}
	}
}

// noSubscribe checks that no SUBSCRIBE arrived since the last one taken.
func (p *subPhone) noSubscribe(t *testing.T, what string) {
	t.Helper()
	select {
	case e := <-p.expires:
		t.Fatalf("%s: unexpected SUBSCRIBE (Expires %s)", what, e)
	default:
	}
}
