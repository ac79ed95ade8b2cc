// Package mgmt is puaside's management interface: an HTTP JSON API, a
// JSON-RPC 2.0 endpoint with Kamailio pua_rpc's method names and positional
// parameters, the Prometheus /metrics endpoint, /healthz and /readyz, the
// OpenAPI description of all of it, and a Go Client used by the command line.
//
// It sits beside the main flow ingest → trackers (usrloc, dialoginfo, bla) →
// pua engine → SIP and store: it lets an operator publish and subscribe by
// hand through the same pua engine the trackers use (so manual requests are
// ordered and coalesced like every other), list what the engine, the trackers
// and the store hold, switch the per-user publishing flag, and manage shared
// lines. It also mounts the JSON event input of package ingest.
//
// The server depends only on the small interfaces in Deps; each may be nil,
// and the endpoints of a missing dependency answer 404 "feature not enabled".
// Every error is a JSON object {"error": "...", "field": "..."}.
//
// The control endpoints (publish, subscribe, JSON-RPC, every PUT and DELETE)
// answer only to Config.TrustedSources; an address other than loopback
// needs a token (or AllowInsecure); extra headers may not name a header the
// engine builds (pua.ReservedHeader); MetricsListen serves /metrics and the
// health checks alone. Each refusal is counted by reason.
package mgmt
