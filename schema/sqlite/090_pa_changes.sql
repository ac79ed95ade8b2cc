-- Several instances on one database with the embedded presence server (pa):
-- the change log through which each instance learns the subscriptions and
-- PUBLISHes the others accepted. Every transaction of pa that writes or
-- removes an active_watchers row, or the presentity row of a PUBLISH from
-- outside, appends the row's key here (kind 'w': callid, to_tag, from_tag;
-- kind 'p': presentity_uri, event, pres_id) with the instance that wrote it
-- (origin); the others read the entries above the last id they saw and
-- reload those rows. Entries older than a few minutes are pruned.
-- active_watchers.puaside_notified is a digest of the state last notified to
-- the watcher, written by the owner of the presentity's shard, so that its
-- successor sends a NOTIFY at a takeover only when the state changed.
CREATE TABLE IF NOT EXISTS puaside_pa_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind CHAR(1) NOT NULL,
    presentity_uri VARCHAR(255) NOT NULL DEFAULT '',
    event VARCHAR(64) NOT NULL DEFAULT '',
    pres_id VARCHAR(255) NOT NULL DEFAULT '',
    callid VARCHAR(255) NOT NULL DEFAULT '',
    to_tag VARCHAR(128) NOT NULL DEFAULT '',
    from_tag VARCHAR(128) NOT NULL DEFAULT '',
    origin VARCHAR(64) NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX pa_changes_created ON puaside_pa_changes (created_at);
ALTER TABLE active_watchers ADD COLUMN puaside_notified BIGINT NOT NULL DEFAULT 0;
