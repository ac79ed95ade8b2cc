// Package chainfuzz holds FuzzChainRecovery (chain_fuzz_test.go), the
// crash-recovery fuzz target of the whole chain: mirrored SIP copies sent to
// a real ingest, the real usrloc and dialoginfo trackers, the real pua
// engine and the real SQLite store, with random store writes, time steps,
// kill points, restarts and presence-server outages; after the last restart
// and the sweep, the publications at a fake presence server must be what the
// restarted trackers want. The package has no code of its own.
package chainfuzz
