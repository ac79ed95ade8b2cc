package config

// shareDefaultDomain gives the daemon one default domain: usrloc's
// default_domain is the domain of every AoR written without one, and the
// bla and reconcile sections use it unless they set their own (a per-section
// key still wins, for configurations written before the keys were shared).
func (c *Config) shareDefaultDomain() {
	if c.BLA.DefaultDomain == "" {
		c.BLA.DefaultDomain = c.Usrloc.DefaultDomain
	}
	if c.Reconcile.DefaultDomain == "" {
		c.Reconcile.DefaultDomain = c.Usrloc.DefaultDomain
	}
}
