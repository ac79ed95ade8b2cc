-- XMPP subscription requests the gateway sent for SIP watchers (one row
-- per XMPP user and SIP watcher), so that a restart does not ask again.
CREATE TABLE IF NOT EXISTS puaside_xmpp_requests (
    xmpp_user VARCHAR(255) NOT NULL,
    watcher VARCHAR(255) NOT NULL,
    created BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (xmpp_user, watcher)
);
