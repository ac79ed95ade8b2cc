// Package proxyrpc asks a SIP proxy for its state over its management RPC
// and returns plain snapshots of it: the registrar's bindings and the
// dialog module's calls. It is what puaside's reconciliation reads to learn
// what it missed while it was down (an un-REGISTER, a BYE).
//
// Kamailio is spoken to with JSON-RPC 2.0 over HTTP (modules jsonrpcs and
// xhttp), commands ul.dump and dlg.list. Responses are bounded in size,
// every call has a deadline, and an input that is not what Kamailio 5.6
// sends is reported as an error (a whole response) or skipped and counted
// (one entry of it), never trusted.
//
// Place in the flow: an input beside ingest, read by reconcile, which
// corrects the trackers with it.
package proxyrpc
