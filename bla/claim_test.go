package bla

import (
	"reflect"
	"sort"
	"testing"

	"github.com/puaside/puaside/pua"
)

// claimRecorder records the claims of the manager.
type claimRecorder struct {
	pubs, subs []string
	done       []int
}

func (c *claimRecorder) Claim(k pua.Key) bool { c.pubs = append(c.pubs, k.ID); return true }
func (c *claimRecorder) ClaimSubscription(k pua.SubKey) bool {
	c.subs = append(c.subs, k.ID)
	return true
}
func (c *claimRecorder) ClaimsDone(flag int) { c.done = append(c.done, flag) }

// TestClaimRestored: the phones still registered after a restart are
// claimed (subscription, and the line's publication); a restored phone whose contact
// was not reported is forgotten and left to the engine's sweep.
func TestClaimRestored(t *testing.T) {
	fx := newFixture(t, nil)
	idA, idB := ContactID(phoneA), ContactID(phoneB)
	fx.m.RestoreSubscriptions([]pua.SubscriptionInfo{
		{Key: fx.m.subKey(lineAoR, idA), Flag: pua.FlagBLASubscribe, Target: phoneA},
		{Key: fx.m.subKey(lineAoR, idB), Flag: pua.FlagBLASubscribe, Target: phoneB},
	})
	fx.register(phoneA)
	fx.eng.TakeCalls()
	cr := &claimRecorder{}
	fx.m.ClaimRestored(cr)
	sort.Strings(cr.pubs)
	if !reflect.DeepEqual(cr.subs, []string{idA}) || !reflect.DeepEqual(cr.pubs, []string{LinePublicationID}) {
		t.Fatalf("claimed subscriptions %q, publications %q; want only %s and the line's", cr.subs, cr.pubs, idA)
	}
	if !reflect.DeepEqual(cr.done, []int{pua.FlagBLASubscribe, pua.FlagBLAPublish}) {
		t.Fatalf("claims done %v", cr.done)
	}
	if calls := fx.eng.TakeCalls(); len(calls) != 0 {
		t.Fatalf("engine calls %q: the sweep, not the manager, removes the unclaimed", calls)
	}
	// Phone B registering again is subscribed afresh.
	fx.register(phoneA, phoneB)
	if calls := fx.eng.TakeCalls(); !reflect.DeepEqual(calls, []string{"subscribe " + phoneB}) {
		t.Fatalf("calls after B registers %q", calls)
	}
}
