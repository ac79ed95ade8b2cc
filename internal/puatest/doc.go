// Package puatest is the project's test kit, imported by the tests of every
// stage of the flow (ingest, trackers, pua engine, store, e2e): one fake
// presence server (PresenceServer), metric reading (Metric,
// TrackerEvents), fixture loading (ReadFile, WireSIP, FixSIP,
// ParseSIP) and polling for a condition (Eventually). The fake clock is clock/clocktest; the recording publisher
// and subscriber the trackers' tests drive is puatest/recorder, a package
// of its own because it speaks pua's types and pua's own tests use this
// one. Test support only: no production package imports it.
package puatest
