package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/puaside/puaside/aor"
	"github.com/puaside/puaside/mgmt"
	"github.com/puaside/puaside/pa"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/puaxmpp"
	"github.com/puaside/puaside/shard"
)

// paEngine is what the trackers and the management API publish through
// when the presence server runs: publications go into pa in process, and
// with upstream (pa.mode on and pua.server_address set) through the pua
// engine as well. Subscriptions (bla's to the phones, the API's) stay with
// the engine, whose other methods it keeps.
type paEngine struct {
	*pua.Engine
	pa       *pa.Server
	upstream bool
	// onResult, when set, is told each in-process outcome as the engine
	// tells its PUBLISH results (the lamp board); not with upstream, where
	// the engine's own results are told.
	onResult func(key pua.Key, op string, res pua.Result)
}

// Publish implements the trackers' Publisher.
func (e paEngine) Publish(req pua.PublishRequest) error {
	if e.upstream {
		if err := e.Engine.Publish(req); err != nil {
			return err
		}
	}
	err := e.pa.Publish(req)
	e.told(req.Key, "modify", err)
	return err
}

// Remove implements the trackers' Publisher.
func (e paEngine) Remove(key pua.Key) error {
	if e.upstream {
		if err := e.Engine.Remove(key); err != nil {
			return err
		}
	}
	err := e.pa.Remove(key)
	e.told(key, "remove", err)
	return err
}

// told reports an in-process outcome to onResult: 200, or 400 with the
// refusal.
func (e paEngine) told(key pua.Key, op string, err error) {
	if e.onResult == nil || e.upstream {
		return
	}
	res := pua.Result{Status: 200, Reason: "OK (presence server in process)"}
	if err != nil {
		res = pua.Result{Status: 400, Reason: err.Error()}
	}
	e.onResult(key, op, res)
}

// PublishWait is the management API's publish: in process it is accepted
// at once (200) or refused as an invalid request.
func (e paEngine) PublishWait(ctx context.Context, req pua.PublishRequest) (pua.Result, error) {
	if e.upstream {
		res, err := e.Engine.PublishWait(ctx, req)
		if err != nil || res.Status/100 != 2 {
			return res, err
		}
		if err := e.pa.Publish(req); err != nil {
			return res, fmt.Errorf("%w: %w", mgmt.ErrInvalid, err)
		}
		return res, nil
	}
	if err := e.pa.Publish(req); err != nil {
		return pua.Result{}, fmt.Errorf("%w: %w", mgmt.ErrInvalid, err)
	}
	return pua.Result{Status: 200, Reason: "OK"}, nil
}

// RemoveWait is the management API's removal.
func (e paEngine) RemoveWait(ctx context.Context, key pua.Key) (pua.Result, error) {
	if e.upstream {
		res, err := e.Engine.RemoveWait(ctx, key)
		_ = e.pa.Remove(key)
		return res, err
	}
	if err := e.pa.Remove(key); err != nil {
		return pua.Result{}, fmt.Errorf("%w: %w", mgmt.ErrInvalid, err)
	}
	return pua.Result{Status: 200, Reason: "OK"}, nil
}

// Publications lists what the trackers compare their state with at start:
// the engine's records when it publishes upstream, else pa's.
func (e paEngine) Publications() []pua.PublicationInfo {
	if e.upstream {
		return e.Engine.Publications()
	}
	return e.pa.Publications()
}

// Claim keeps a loaded publication; it reports whether every publisher
// still holds it (else the tracker publishes it again).
func (e paEngine) Claim(key pua.Key) bool {
	held := e.pa.Claim(key)
	if e.upstream {
		held = e.Engine.Claim(key) && held
	}
	return held
}

// ClaimsDone tells both: the engine waits for every owner's claims (bla's
// subscriptions among them) before its sweep, pa sweeps the owner's
// unclaimed publications.
func (e paEngine) ClaimsDone(flag int) {
	e.pa.ClaimsDone(flag)
	e.Engine.ClaimsDone(flag)
}

// shardListeners tells every listener of the shards gained, in order (the
// pua engine, then the presence server), and of a shard lost, all at once:
// each waits for its requests in flight, and the lease loop waits for the
// slowest only.
type shardListeners []shard.Listener

func (ls shardListeners) ShardsGained(ctx context.Context, gained map[int]int64) {
	for _, l := range ls {
		l.ShardsGained(ctx, gained)
	}
}

func (ls shardListeners) ShardLost(ctx context.Context, sh int) {
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Go(func() { l.ShardLost(ctx, sh) })
	}
	wg.Wait()
}

// presence adapts the presence server to the management API.
type presence struct{ s *pa.Server }

func (p presence) Presentities() any { return p.s.Presentities() }
func (p presence) Watchers() any     { return p.s.Watchers() }

func (p presence) DeletePresentity(_ context.Context, aor, event string) error {
	if p.s.DeletePresentity(aor, event) == 0 {
		return fmt.Errorf("%w: no publication of %s", mgmt.ErrNotFound, aor)
	}
	return nil
}

func (p presence) DeleteWatcher(_ context.Context, callID string) error {
	if !p.s.DeleteWatcher(callID) {
		return fmt.Errorf("%w: no subscription with Call-ID %s", mgmt.ErrNotFound, callID)
	}
	return nil
}

func (p presence) AuthorizeWatcher(_ context.Context, callID string, allow bool) error {
	if !p.s.Authorize(callID, allow) {
		return fmt.Errorf("%w: no subscription with Call-ID %s", mgmt.ErrNotFound, callID)
	}
	return nil
}

// policy adapts the presence server's authorization rules to the
// management API.
type policy struct{ s *pa.Server }

func (p policy) PolicyRules() any { return p.s.Rules() }

func (p policy) PutPolicyRule(ctx context.Context, r mgmt.PolicyRuleParams) error {
	err := p.s.PutRule(ctx, pa.Rule{Presentity: r.Presentity, Watcher: r.Watcher, Action: r.Action})
	if errors.Is(err, pa.ErrBadRule) {
		return fmt.Errorf("%w: %w", mgmt.ErrInvalid, err)
	}
	return err
}

func (p policy) DeletePolicyRule(ctx context.Context, presentity, watcher string) error {
	found, err := p.s.DeleteRule(ctx, presentity, watcher)
	switch {
	case errors.Is(err, pa.ErrBadRule):
		return fmt.Errorf("%w: %w", mgmt.ErrInvalid, err)
	case err != nil:
		return err
	case !found:
		return fmt.Errorf("%w: no stored rule of %q for %q", mgmt.ErrNotFound, watcher, presentity)
	}
	return nil
}

// paAuthorizer lets the XMPP gateway decide pa's pending watchers of an
// XMPP user (the user's "subscribed" or "unsubscribed").
type paAuthorizer struct{ s *pa.Server }

func (a paAuthorizer) Authorize(_ context.Context, presentity, watcher string, allow bool) error {
	if a.s.AuthorizeWatcher(presentity, watcher, allow) == 0 {
		return fmt.Errorf("%w: no subscription of %s to %s", mgmt.ErrNotFound, watcher, presentity)
	}
	return nil
}

// paGateway is the XMPP gateway as pa's Gateway: the presentities it
// serves are the SIP addresses of XMPP users (not of a local SIP domain);
// pa's new and ended presence subscriptions of them become the gateway's
// subscription requests and unsubscribes.
type paGateway struct {
	gw    *puaxmpp.Gateway // set once the gateway is built
	local func(host string) bool
}

// Serves reports the SIP addresses of XMPP users as the gateway's, and an
// address in its domains that names no XMPP user as the gateway's with
// the reason (pa answers 404); local SIP domains are never its.
func (g *paGateway) Serves(presURI string) (bool, error) {
	if g.gw == nil || g.local != nil && g.local(aor.Domain(presURI)) {
		return false, nil
	}
	_, err := g.gw.Mapper().XMPPUserOfSIP(presURI)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, puaxmpp.ErrNoUser):
		return true, err
	}
	return false, nil
}

func (g *paGateway) WatcherAdded(ctx context.Context, presentity, watcher string) error {
	return g.gw.WatcherAdded(ctx, presentity, watcher)
}

func (g *paGateway) WatcherRemoved(ctx context.Context, presentity, watcher string) error {
	return g.gw.WatcherRemoved(ctx, presentity, watcher)
}

// paSubscriber is the engine as the XMPP gateway's Subscriber when pa is
// the only presence server: the gateway's SUBSCRIBEs on behalf of XMPP
// users go to pa's listener (the engine has no server_address to send
// them to).
type paSubscriber struct {
	*pua.Engine
	pa *pa.Server
}

// Subscribe sends the subscription through pa's address unless it names
// a proxy of its own.
func (p paSubscriber) Subscribe(req pua.SubscribeRequest) error {
	if req.OutboundProxy == "" {
		req.OutboundProxy = p.pa.ContactURI()
	}
	return p.Engine.Subscribe(req)
}
