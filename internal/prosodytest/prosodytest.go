// Package prosodytest runs Debian's prosody XMPP server for tests, beside
// internal/kamailiotest: a generated configuration on free loopback ports
// (client logins in plain text, one XEP-0114 component), users created
// with prosodyctl in the test's data directory, restarts on the same ports
// and data, and a client session (mellium.im/xmpp) for a test user. It is
// the XMPP side of the XMPP gateway's (puaxmpp) end-to-end tests.
package prosodytest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/puaside/puaside/internal/kamailiotest"
)

// Options describe the server to run.
type Options struct {
	// Domain is the XMPP users' domain (VirtualHost); default xmpp.localhost.
	Domain string
	// Component is the component's domain; default sip.xmpp.localhost.
	Component string
	// Secret is the component secret; default s3cret.
	Secret string
}

// Server is one running prosody.
type Server struct {
	opts     Options
	dir      string
	cfgPath  string
	c2sPort  int
	compPort int
	cmd      *exec.Cmd
	done     chan struct{}
	logs     *kamailiotest.SyncBuffer
}

// Start writes the configuration, starts prosody and waits until both its
// client and component ports accept connections. The server is stopped
// when the test ends (its log printed if the test failed).
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Domain == "" {
		o.Domain = "xmpp.localhost"
	}
	if o.Component == "" {
		o.Component = "sip.xmpp.localhost"
	}
	if o.Secret == "" {
		o.Secret = "s3cret"
	}
	if _, err := exec.LookPath("prosody"); err != nil {
		t.Fatalf("prosodytest: prosody not found (install the Debian package prosody): %v", err)
	}
	s := &Server{opts: o, dir: t.TempDir(), logs: &kamailiotest.SyncBuffer{}}
	var err error
	if s.c2sPort, err = kamailiotest.FreePort(); err != nil {
		t.Fatal(err)
	}
	if s.compPort, err = kamailiotest.FreePort(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "data"), 0o750); err != nil {
		t.Fatal(err)
	}
	s.cfgPath = filepath.Join(s.dir, "prosody.cfg.lua")
	if err := os.WriteFile(s.cfgPath, []byte(s.config()), 0o640); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() || os.Getenv("PUASIDE_TEST_PROSODY_LOGS") != "" {
			b, _ := os.ReadFile(filepath.Join(s.dir, "prosody.log"))
			t.Logf("prosodytest: prosody log:\n%s\nstdout/stderr:\n%s", b, s.logs.String())
		}
	})
	s.Restart(t)
	return s
}

// config is the prosody configuration (see the operator guide's section
// on the XMPP gateway for the lines that matter).
func (s *Server) config() string {
	d := s.dir
	return fmt.Sprintf(`run_as_root = true
daemonize = false
pidfile = %[1]q
data_path = %[2]q
interfaces = { "127.0.0.1" }
c2s_ports = { %[3]d }
s2s_ports = { }
component_interfaces = { "127.0.0.1" }
component_ports = { %[4]d }
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "presence"; }
modules_disabled = { "s2s"; }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
log = { { levels = { min = "debug" }, to = "file", filename = %[5]q } }
VirtualHost %[6]q
Component %[7]q
  component_secret = %[8]q
`, filepath.Join(d, "prosody.pid"), filepath.Join(d, "data"), s.c2sPort, s.compPort,
		filepath.Join(d, "prosody.log"), s.opts.Domain, s.opts.Component, s.opts.Secret)
}

// Restart starts prosody again (after Stop) on the same ports and data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	cmd := exec.Command("prosody", "--config", s.cfgPath)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("prosodytest: start: %v", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	done := s.done
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(20 * time.Second)
	for _, port := range []int{s.c2sPort, s.compPort} {
		for {
			c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-done:
				t.Fatalf("prosodytest: prosody exited at start:\n%s", s.logs.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("prosodytest: port %d not open after 20 s: %v\n%s", port, err, s.logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// Stop stops prosody (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// Register creates user@Domain with password pw with prosodyctl.
func (s *Server) Register(t testing.TB, user, pw string) jid.JID {
	t.Helper()
	out, err := exec.Command("prosodyctl", "--config", s.cfgPath, "register", user, s.opts.Domain, pw).CombinedOutput()
	if err != nil {
		t.Fatalf("prosodytest: prosodyctl register %s: %v\n%s", user, err, out)
	}
	return jid.MustParse(user + "@" + s.opts.Domain)
}

// ComponentHost and ComponentPort are the component listener.
func (s *Server) ComponentHost() string { return "127.0.0.1" }

// ComponentPort is the component listener's port.
func (s *Server) ComponentPort() int { return s.compPort }

// C2SAddr is the client listener, host:port.
func (s *Server) C2SAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.c2sPort)) }

// Log is prosody's log file so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "prosody.log"))
	return string(b)
}

// Dial logs user (a full JID, with its resource) in with password pw and
// returns the session, negotiated without TLS (the configuration allows
// plain logins on loopback).
func (s *Server) Dial(ctx context.Context, user jid.JID, pw string) (*xmpp.Session, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.C2SAddr())
	if err != nil {
		return nil, fmt.Errorf("prosodytest: dial: %w", err)
	}
	features := []xmpp.StreamFeature{xmpp.SASL("", pw, sasl.Plain), xmpp.BindResource()}
	sess, err := xmpp.NewSession(ctx, user.Domain(), user, conn, xmpp.Secure, xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
		return xmpp.StreamConfig{Features: features}
	}))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("prosodytest: log in %s: %w", user, err)
	}
	return sess, nil
}
