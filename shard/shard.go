// Package shard lets several puaside instances share one database. Its
// place in the flow is beside the pua engine: every instance ingests
// everything and its trackers keep every presentity warm, but the engine
// sends (and writes to the store) only for the shards this instance owns.
//
// Presentities are hashed into shard_count shards (Of). Each shard is owned
// under a lease row in the shared database, taken and renewed by
// conditional UPDATEs on the database clock (store.DB.TakeLease,
// RenewLeases); the lease's epoch grows at every takeover and is the
// fencing token that every store write for the shard carries, so a paused
// old owner cannot overwrite its successor. An owner stops sending a guard
// before its lease ends by its own monotonic clock, which is conservative
// against the database's: the deadline counts from before the request that
// renewed it.
//
// A Manager renews its leases every quarter of lease_ttl (jittered) and takes
// free or expired shards up to its fair share, ceil(shard_count / live
// instances), in random order; it releases shards above its fair share a
// few per round, so instances that join or leave move shards gradually and
// never all at once. At a clean stop it releases every lease.
package shard

import "hash/fnv"

// Of returns the shard of a presentity URI among n shards (FNV-1a).
func Of(presURI string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(presURI))
	return int(h.Sum32() % uint32(n))
}
