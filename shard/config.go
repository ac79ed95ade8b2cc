package shard

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Config is the cluster section of the YAML configuration: several
// instances on one database. Off by default: a single instance needs none
// of it and sends for every presentity.
type Config struct {
	// Enabled shares the work with the other instances on db_url (a
	// MySQL/MariaDB database; SQLite serves one host only).
	Enabled bool `yaml:"enabled"`
	// InstanceID names this instance in the lease table; unique per
	// instance, at most 64 characters. Empty: the host name.
	InstanceID string `yaml:"instance_id"`
	// TTL is the lease lifetime: a dead instance's shards are
	// taken over within it plus one renewal period (a quarter of it). An
	// owner stops sending a quarter of it before its lease ends.
	TTL time.Duration `yaml:"lease_ttl"`
	// Shards is the number of shards presentities are hashed
	// into; the same on every instance (the lease table refuses another).
	Shards int `yaml:"shard_count"`
}

// DefaultConfig returns the defaults (off; 10 s leases, 64 shards).
func DefaultConfig() Config {
	return Config{TTL: 10 * time.Second, Shards: 64}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("shard: invalid config")

// configError is a Validate error: its text is the problems found, and it
// matches ErrConfig.
type configError struct{ err error }

func (e configError) Error() string   { return e.err.Error() }
func (e configError) Unwrap() []error { return []error{ErrConfig, e.err} }

// WithDefaults fills an empty instance_id with the host name.
func (c Config) WithDefaults() Config {
	if c.InstanceID == "" {
		if h, err := os.Hostname(); err == nil {
			c.InstanceID = h
		}
	}
	return c
}

// Validate checks the configuration without changing it and reports every
// problem, each starting with its key. A disabled section is checked too.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.InstanceID) > 64 {
		bad("instance_id: %q: at most 64 characters", c.InstanceID)
	}
	if c.Enabled && c.InstanceID == "" {
		bad("instance_id: must not be empty")
	}
	if c.TTL < time.Second || c.TTL > 10*time.Minute {
		bad("lease_ttl: %s: must be between 1s and 10m", c.TTL)
	}
	if c.Shards < 1 || c.Shards > 4096 {
		bad("shard_count: %d: must be between 1 and 4096", c.Shards)
	}
	if len(errs) > 0 {
		return configError{errors.Join(errs...)}
	}
	return nil
}
