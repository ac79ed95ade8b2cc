package daemon

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/puaside/puaside/config"
)

// reloadable are the keys Reload applies at run time. Everything else
// waits for a restart. The certificate and key files named by pua.tls and
// http.tls_cert/tls_key are read again when they change on disk, without a
// reload; their paths need a restart.
var reloadable = []string{
	"log_level",
	"usrloc.publish_patterns", "usrloc.publish_default",
	"bla.lines",
	"ingest.trusted_sources",
	"http.token", "http.trusted_sources",
}

// Reloadable returns the keys a reload applies without a restart.
func Reloadable() []string { return append([]string(nil), reloadable...) }

// ReloadResult says what a Reload did.
type ReloadResult struct {
	// Applied are the reloadable keys whose value changed and was applied.
	Applied []string
	// Restart are the changed keys that wait for a restart.
	Restart []string
}

// Reload applies the reloadable keys of next (a configuration that loaded
// and validated) to the running daemon without dropping state: publishing
// patterns and default, the configured shared lines (the phones of a new
// line are subscribed from the known registrations, those of a removed
// line unsubscribed), the trusted sources of ingest and http, and the API
// token. log_level is the caller's (it owns the logger). Changed keys that
// need a restart are listed, not applied. On an error some keys may have
// been applied; the error names the ones that were not.
func (d *Daemon) Reload(ctx context.Context, next config.Config) (ReloadResult, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	next.ShareDefaultDomain()
	cur := d.cfg
	var res ReloadResult
	for _, k := range diffKeys(reflect.ValueOf(cur), reflect.ValueOf(next), "") {
		if isReloadable(k) {
			res.Applied = append(res.Applied, k)
		} else {
			res.Restart = append(res.Restart, k)
		}
	}
	var errs []error
	if d.ul != nil && (!reflect.DeepEqual(cur.Usrloc.PublishPatterns, next.Usrloc.PublishPatterns) ||
		cur.Usrloc.PublishDefault != next.Usrloc.PublishDefault) {
		if err := d.ul.SetPublishing(next.Usrloc.PublishPatterns, next.Usrloc.PublishDefault); err != nil {
			errs = append(errs, err)
		} else {
			d.cfg.Usrloc.PublishPatterns, d.cfg.Usrloc.PublishDefault = next.Usrloc.PublishPatterns, next.Usrloc.PublishDefault
		}
	}
	if d.bl != nil && !reflect.DeepEqual(cur.BLA.Lines, next.BLA.Lines) {
		ch, err := d.bl.SetConfigLines(ctx, next.BLA.Lines)
		if err != nil {
			errs = append(errs, err)
		} else {
			d.cfg.BLA.Lines = next.BLA.Lines
			if d.ul != nil && (len(ch.Added) > 0 || len(ch.Updated) > 0) {
				for _, r := range d.ul.Registrations() {
					d.bl.ContactsChanged(ctx, r.AoR, blaContacts(r.Contacts))
				}
			}
			d.log.Info("reload: shared lines", "added", ch.Added, "removed", ch.Removed, "updated", ch.Updated)
		}
	}
	if !reflect.DeepEqual(cur.Ingest.TrustedSources, next.Ingest.TrustedSources) {
		if err := d.in.SetTrustedSources(next.Ingest.TrustedSources); err != nil {
			errs = append(errs, err)
		} else {
			d.cfg.Ingest.TrustedSources = next.Ingest.TrustedSources
		}
	}
	if cur.HTTP.Token != next.HTTP.Token || !reflect.DeepEqual(cur.HTTP.TrustedSources, next.HTTP.TrustedSources) {
		if err := d.api.SetAccess(next.HTTP.Token, next.HTTP.TrustedSources); err != nil {
			errs = append(errs, err)
		} else {
			d.cfg.HTTP.Token, d.cfg.HTTP.TrustedSources = next.HTTP.Token, next.HTTP.TrustedSources
		}
	}
	d.cfg.LogLevel = next.LogLevel
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("daemon: reload: %w", err)
	}
	return res, nil
}

func isReloadable(key string) bool {
	for _, k := range reloadable {
		if key == k || strings.HasPrefix(key, k+".") || strings.HasPrefix(key, k+"[") {
			return true
		}
	}
	return false
}

// diffKeys names the configuration keys (YAML paths) whose values differ
// between a and b, descending into structs; a list or map that differs is
// one key.
func diffKeys(a, b reflect.Value, prefix string) []string {
	if a.Kind() != reflect.Struct {
		if reflect.DeepEqual(a.Interface(), b.Interface()) {
			return nil
		}
		return []string{prefix}
	}
	var out []string
	t := a.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		out = append(out, diffKeys(a.Field(i), b.Field(i), key)...)
	}
	sort.Strings(out)
	return out
}
