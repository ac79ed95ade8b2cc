package dialoginfo

import "time"

// EndCall terminates every dialog of the call (callID, fromTag) that has
// not ended, because the proxy no longer has it (for example Kamailio's
// dlg.list after a BYE that passed while puaside was down). The documents
// show terminated without an event (who hung up is not known), then lapse
// after terminated_linger, as after a BYE.
//
// It changes nothing, and returns false, when the call is unknown, already
// over, or when this process received anything about it after asOf (the
// time the proxy was asked): a call still in the ingest queue when the
// proxy answered, or one that came alive since, is not the proxy's past.
// What was loaded from the store at start is older than any answer.
func (t *Tracker) EndCall(callID, fromTag string, asOf time.Time) bool {
	at := asOf.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.calls[callKey(callID, fromTag)]
	if c == nil || c.over() {
		return false
	}
	if c.touched > at {
		t.count("reconcile_skipped_newer")
		return false
	}
	now := t.now().UnixNano()
	for _, b := range c.Branches {
		if b.State != stTerminated {
			t.terminate(c, b, "", "", 0, now)
		}
	}
	t.count("reconciled_ended")
	t.log.Info("dialoginfo: call ended at the proxy", "call_id", c.CallID, "caller", c.Caller, "callee", c.Callee)
	t.sync(c)
	return true
}
