// Package reconcile corrects the trackers with the proxy's own state. A
// sidecar can be down while the proxy is not: an un-REGISTER or a BYE that
// passed meanwhile was never mirrored to it. At start and every interval
// the reconciler asks the proxy for its bindings and dialogs (package
// proxyrpc) and feeds corrections into the trackers, as ingest feeds them
// input:
//
//	proxy RPC (ul.dump, dlg.list) → reconcile → usrloc, dialoginfo → pua engine
//
// usrloc gets the registrar's binding set of every AoR that differs (new
// contacts, gone contacts, moved expiries); dialoginfo ends the calls the
// proxy no longer has and, optionally, adopts answered calls it never saw.
// Whatever a tracker heard about after the proxy was asked (minus a grace
// margin for the ingest queue) wins over the proxy's answer.
package reconcile
