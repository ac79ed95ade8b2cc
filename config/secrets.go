package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// mask replaces a secret in printed configurations.
const mask = "xxxxx"

// Masked returns c with its secrets hidden: the management token, the HEP
// auth key, the digest password, the XMPP component secret and the
// database password.
func (c Config) Masked() Config {
	for _, s := range []*string{&c.HTTP.Token, &c.Ingest.HEPAuthKey, &c.PUA.AuthPassword, &c.Gateway.XMPPPassword} {
		if *s != "" {
			*s = mask
		}
	}
	c.DBURL = redactURL(c.DBURL)
	return c
}

// YAML renders c as a configuration file: every key, defaults included,
// durations written as an operator would (1h, 2m30s).
func (c Config) YAML() ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	shortDurations(&n, reflect.ValueOf(c))
	b, err := yaml.Marshal(&n)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return b, nil
}

// shortDurations rewrites the duration scalars of n, the encoding of v,
// with FormatDuration.
func shortDurations(n *yaml.Node, v reflect.Value) {
	switch {
	case v.Type() == durationType:
		if n.Kind == yaml.ScalarNode {
			n.Value = FormatDuration(time.Duration(v.Int()))
		}
	case v.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		byKey := map[string]reflect.Value{}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" && t.Field(i).IsExported() {
				byKey[name] = v.Field(i)
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if fv, ok := byKey[n.Content[i].Value]; ok {
				shortDurations(n.Content[i+1], fv)
			}
		}
	case v.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i := 0; i < v.Len() && i < len(n.Content); i++ {
			shortDurations(n.Content[i], v.Index(i))
		}
	}
}

// FormatDuration writes d as an operator would: 1h rather than 1h0m0s,
// 2m30s, 500ms, 0s.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
