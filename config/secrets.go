package config

import "gopkg.in/yaml.v3"

// mask replaces a secret in printed configurations.
const mask = "xxxxx"

// Masked returns c with its secrets hidden: the management token, the HEP
// auth key, the digest password and the database password.
func (c Config) Masked() Config {
	for _, s := range []*string{&c.HTTP.Token, &c.Ingest.HEPAuthKey, &c.PUA.AuthPassword} {
		if *s != "" {
			*s = mask
		}
	}
	c.DBURL = redactURL(c.DBURL)
	return c
}

// YAML renders c as a configuration file: every key, defaults included.
func (c Config) YAML() ([]byte, error) {
	return yaml.Marshal(c)
}
