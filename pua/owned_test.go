package pua

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/puaside/puaside/internal/puatest"
)

// An owner holding max_publications gets no new publication (counted);
// other owners are not affected, changes to held publications go on, and
// a removal frees a place.
func TestMaxPublicationsPerOwner(t *testing.T) {
	fs := newFakeServer(t)
	e, m := newMeteredEngine(t, fs, newFakeClock(), nil, func(c *Config) { c.MaxPublications = 2 })
	ctx := context.Background()
	req := func(user string, flag int) PublishRequest {
		r := pubReq(user)
		r.PresURI = fmt.Sprintf("sip:%s@example.com", user)
		r.Flag = flag
		return r
	}
	for _, u := range []string{"u1", "u2"} {
		if res, err := e.PublishWait(ctx, req(u, FlagUsrloc)); err != nil || res.Status != 200 {
			t.Fatalf("publish %s: %+v %v", u, res, err)
		}
	}
	if err := e.Publish(req("u3", FlagUsrloc)); !errors.Is(err, ErrTooManyPublications) {
		t.Fatalf("third publication of one owner: %v, want ErrTooManyPublications", err)
	}
	if v := puatest.Metric(t, m, "puaside_tracker_events_total", map[string]string{"tracker": "pua", "what": "publication_cap"}); v != 1 {
		t.Fatalf("publication_cap counted %v, want 1", v)
	}
	if res, err := e.PublishWait(ctx, req("d1", FlagDialogPublish)); err != nil || res.Status != 200 {
		t.Fatalf("another owner's publication: %+v %v", res, err)
	}
	changed := req("u1", FlagUsrloc)
	changed.Body = pidf("changed")
	if res, err := e.PublishWait(ctx, changed); err != nil || res.Status != 200 {
		t.Fatalf("change of a held publication: %+v %v", res, err)
	}
	if res, err := e.RemoveWait(ctx, req("u2", FlagUsrloc).Key); err != nil || res.Status != 200 {
		t.Fatalf("remove: %+v %v", res, err)
	}
	if res, err := e.PublishWait(ctx, req("u3", FlagUsrloc)); err != nil || res.Status != 200 {
		t.Fatalf("publication after a removal freed a place: %+v %v", res, err)
	}
	if n := e.owned.count(FlagUsrloc); n != 2 {
		t.Fatalf("usrloc holds %d publications, want 2", n)
	}
}
