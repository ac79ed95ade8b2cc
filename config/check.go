package config

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Checker is a further check of a parsed configuration that this package
// cannot make itself (the database URL's form, owned by the store). It
// returns problems keyed by their key path; Check finds their lines.
type Checker func(Config) Errors

// Check is Parse plus the checks that look outside the file without
// binding a port or touching the database: the files it names (TLS
// certificate and key) are readable, and every Checker passes. It is what
// `puaside check` runs. The error is an Errors, every problem with its
// key path and, when the key is written in the file, its line.
func Check(b []byte, more ...Checker) (Config, error) {
	c, lines, err := decode(b)
	if err != nil {
		return Config{}, err
	}
	var errs Errors
	if err := c.Validate(); err != nil && !errors.As(err, &errs) {
		return Config{}, err
	}
	errs = append(errs, c.checkFiles()...)
	for _, m := range more {
		errs = append(errs, m(c)...)
	}
	if len(errs) > 0 {
		return Config{}, errs.withLines(lines)
	}
	return c, nil
}

// files lists the keys naming a file the daemon reads at start.
func (c Config) files() []struct{ key, path string } {
	return []struct{ key, path string }{
		{"pua.tls.cert_file", c.PUA.TLS.CertFile},
		{"pua.tls.key_file", c.PUA.TLS.KeyFile},
		{"pua.tls.ca_file", c.PUA.TLS.CAFile},
		{"pa.tls.cert_file", c.PA.TLS.CertFile},
		{"pa.tls.key_file", c.PA.TLS.KeyFile},
		{"pa.tls.ca_file", c.PA.TLS.CAFile},
		{"ingest.tls_cert", c.Ingest.TLSCert},
		{"ingest.tls_key", c.Ingest.TLSKey},
		{"http.tls_cert", c.HTTP.TLSCert},
		{"http.tls_key", c.HTTP.TLSKey},
	}
}

// checkFiles reports the files the configuration names that cannot be read.
func (c Config) checkFiles() Errors {
	var errs Errors
	for _, f := range c.files() {
		if f.path == "" {
			continue
		}
		fh, err := os.Open(f.path)
		if err == nil {
			_, err = fh.Read(make([]byte, 1))
			if errors.Is(err, io.EOF) {
				err = errors.New("empty file")
			}
			fh.Close()
		}
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			errs = append(errs, Problem{Key: f.key, Msg: fmt.Sprintf("%q: cannot be read: %v", f.path, err)})
		}
	}
	return errs
}
