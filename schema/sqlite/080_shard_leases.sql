-- Several instances on one database. Presentities are hashed into shards;
-- each shard is owned by one instance under a lease row. A lease is taken
-- and renewed by a conditional UPDATE on the database's clock (times are
-- microseconds since 1970 on that clock); epoch grows by one at every
-- takeover and is the fencing token that every write for the shard carries.
-- A released lease has owner '' and expires_at 0 and keeps its epoch.
CREATE TABLE IF NOT EXISTS puaside_shard_leases (
    shard INTEGER NOT NULL PRIMARY KEY,
    owner VARCHAR(64) NOT NULL DEFAULT '',
    epoch BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT NOT NULL DEFAULT 0,
    renewed_at BIGINT NOT NULL DEFAULT 0
);
-- The live instances, each renewing its row with its leases: the fair share
-- of an instance is shard_count divided by their number.
CREATE TABLE IF NOT EXISTS puaside_instances (
    instance_id VARCHAR(64) NOT NULL PRIMARY KEY,
    expires_at BIGINT NOT NULL DEFAULT 0
);
