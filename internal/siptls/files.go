package siptls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// Files holds the certificate, key and CA bundle of a Config and
// reads them again when they change on disk (checked at most once a
// second), so renewed files are used without a restart.
type Files struct {
	cfg Config

	mu      sync.Mutex
	checked time.Time
	stamp   string // sizes and modification times of the files last read
	cert    *tls.Certificate
	pool    *x509.CertPool // nil: the system's
	err     error          // of the last reload; the previous files stay in use

	// names maps an IP address to the domain name it was resolved from, the
	// name its certificate must carry (RFC 5922 §7.2).
	names sync.Map
}

// NewFiles reads the files of cfg (cfg with its defaults filled in).
func NewFiles(cfg Config) (*Files, error) {
	f := &Files{cfg: cfg}
	if err := f.reload(true); err != nil {
		return nil, err
	}
	return f, nil
}

// stampOf describes the files' sizes and modification times.
func (f *Files) stampOf() string {
	s := ""
	for _, p := range []string{f.cfg.CertFile, f.cfg.KeyFile, f.cfg.CAFile} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			s += fmt.Sprintf("%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
		} else {
			s += p + ":missing;"
		}
	}
	return s
}

// reload reads the files again if they changed (or force).
func (f *Files) reload(force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if !force && now.Sub(f.checked) < time.Second {
		return f.err
	}
	f.checked = now
	st := f.stampOf()
	if !force && st == f.stamp {
		return f.err
	}
	f.stamp = st
	var cert *tls.Certificate
	if f.cfg.CertFile != "" {
		c, err := tls.LoadX509KeyPair(f.cfg.CertFile, f.cfg.KeyFile)
		if err != nil {
			f.err = fmt.Errorf("tls certificate %s: %w", f.cfg.CertFile, err)
			return f.err
		}
		cert = &c
	}
	var pool *x509.CertPool
	if f.cfg.CAFile != "" {
		pem, err := os.ReadFile(f.cfg.CAFile)
		if err != nil {
			f.err = fmt.Errorf("tls ca_file: %w", err)
			return f.err
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			f.err = fmt.Errorf("tls ca_file %s: no PEM certificate in it", f.cfg.CAFile)
			return f.err
		}
	}
	f.cert, f.pool, f.err = cert, pool, nil
	return nil
}

func (f *Files) current() (*tls.Certificate, *x509.CertPool) {
	_ = f.reload(false) // a failed reload keeps the files last read; it is logged by the caller's handshake error
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cert, f.pool
}

// RememberName records that ip was resolved from the domain name host.
func (f *Files) RememberName(ip, host string) {
	if net.ParseIP(host) == nil && host != "" {
		f.names.Store(ip, host)
	}
}

func (f *Files) minVersion() uint16 {
	if f.cfg.MinVersion == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// ClientConfig is the tls.Config of the connections a SIP client opens.
// Verification is done in VerifyConnection so the CA bundle can be
// reloaded and the expected name be the SIP domain, not the IP dialled.
func (f *Files) ClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         f.minVersion(),
		ServerName:         f.cfg.ServerName,
		InsecureSkipVerify: true, // verified below, as the mode says
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c, _ := f.current(); c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error { return f.verifyServer(cs) },
	}
}

// verifyServer checks a server's certificate as tls.verify says.
func (f *Files) verifyServer(cs tls.ConnectionState) error {
	if f.cfg.Verify == "none" {
		return nil
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: server sent no certificate")
	}
	_, pool := f.current()
	opts := x509.VerifyOptions{Roots: pool, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if f.cfg.Verify == "full" {
		name := f.cfg.ServerName
		if name == "" {
			name = cs.ServerName
			if n, ok := f.names.Load(name); ok {
				name = n.(string)
			}
		}
		opts.DNSName = name
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return fmt.Errorf("tls: server certificate (%s): %w", opts.DNSName, err)
	}
	return nil
}

// ServerConfig is the tls.Config of the `tls:` listeners.
func (f *Files) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: f.minVersion(),
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, _ := f.current()
			if c == nil {
				return nil, errors.New("tls: no certificate configured")
			}
			return c, nil
		},
	}
}

// tlsListener accepts TLS connections whose handshake must end within
// timeout: a peer that stalls it is cut off instead of holding a
// connection forever.
type tlsListener struct {
	net.Listener
	conf    *tls.Config
	timeout time.Duration
}

// Listener wraps ln so that every accepted connection is a TLS server
// connection with f's certificate whose handshake must end within the
// configured handshake_timeout (run on the first read or write).
func (f *Files) Listener(ln net.Listener) net.Listener {
	return &tlsListener{Listener: ln, conf: f.ServerConfig(), timeout: f.cfg.HandshakeTimeout}
}

// HandshakeTimeout is the configured handshake_timeout.
func (f *Files) HandshakeTimeout() time.Duration { return f.cfg.HandshakeTimeout }

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &handshakeConn{Conn: tls.Server(c, l.conf), timeout: l.timeout}, nil
}

// handshakeConn runs the server handshake under a deadline on first use.
type handshakeConn struct {
	*tls.Conn
	timeout time.Duration
	once    sync.Once
	err     error
}

func (c *handshakeConn) handshake() error {
	c.once.Do(func() {
		_ = c.Conn.SetDeadline(time.Now().Add(c.timeout)) // a failure shows as the handshake timing out
		if err := c.Conn.Handshake(); err != nil {
			c.err = fmt.Errorf("tls handshake from %s: %w", c.RemoteAddr(), err)
			c.Conn.Close()
			return
		}
		_ = c.Conn.SetDeadline(time.Time{})
	})
	return c.err
}

func (c *handshakeConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *handshakeConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
