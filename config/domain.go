package config

// ShareDefaultDomain gives the daemon one default domain: usrloc's
// default_domain is the domain of every AoR written without one, and the
// bla and reconcile sections use it unless they set their own (a per-section
// key still wins, for configurations written before the keys were shared).
// WithDefaults (so Parse) applies it; so does the daemon, for
// configurations built in code.
func (c *Config) ShareDefaultDomain() {
	if c.BLA.DefaultDomain == "" {
		c.BLA.DefaultDomain = c.Usrloc.DefaultDomain
	}
	if c.Reconcile.DefaultDomain == "" {
		c.Reconcile.DefaultDomain = c.Usrloc.DefaultDomain
	}
}
