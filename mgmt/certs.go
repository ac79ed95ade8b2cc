package mgmt

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// certFiles serves the HTTPS certificate of tls_cert/tls_key and reads the
// files again when they change on disk (checked at most once a second at a
// handshake), so a renewed certificate is used without a restart. A pair
// that does not load keeps the previous one in use.
type certFiles struct {
	cert, key string

	mu      sync.Mutex
	checked time.Time
	stamp   string
	cur     *tls.Certificate
}

func newCertFiles(cert, key string) (*certFiles, error) {
	c := &certFiles{cert: cert, key: key}
	if err := c.load(c.stampOf()); err != nil {
		return nil, err
	}
	return c, nil
}

// stampOf describes the files' sizes and modification times.
func (c *certFiles) stampOf() string {
	s := ""
	for _, p := range []string{c.cert, c.key} {
		if fi, err := os.Stat(p); err == nil {
			s += fmt.Sprintf("%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
		} else {
			s += p + ":missing;"
		}
	}
	return s
}

// load reads the pair; must hold mu or own c.
func (c *certFiles) load(stamp string) error {
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return fmt.Errorf("tls_cert %s: %w", c.cert, err)
	}
	c.cur, c.stamp = &pair, stamp
	return nil
}

// get is tls.Config.GetCertificate.
func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= time.Second {
		c.checked = now
		if st := c.stampOf(); st != c.stamp {
			_ = c.load(st) // a broken pair keeps the previous one
			c.stamp = st
		}
	}
	return c.cur, nil
}
