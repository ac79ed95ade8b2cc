-- The embedded presence server's authorization rules managed through the
-- management API (pa.policy.rules are in the configuration): one row per
-- presentity and watcher, each an AoR key, a domain or '' (any); action is
-- allow, pending or deny.
CREATE TABLE IF NOT EXISTS puaside_pa_policy (
    presentity VARCHAR(255) NOT NULL DEFAULT '',
    watcher VARCHAR(255) NOT NULL DEFAULT '',
    action VARCHAR(16) NOT NULL,
    created BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (presentity, watcher)
);
