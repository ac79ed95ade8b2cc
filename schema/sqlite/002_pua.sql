-- The pua table: Kamailio's pua table (table version 7, column for column,
-- with its unique key and indexes under Kamailio's SQLite names), plus four
-- puaside columns so that a restart can re-send state: body, content_type,
-- event_name (the event package name; Kamailio only keeps the event bit, 0
-- for a package it does not know) and outbound_proxy. The added columns are
-- nullable or have defaults, so Kamailio's own INSERTs still work.
--
-- The unique key pua_idx (etag, tuple_id, call_id, from_tag) is kept. A record
-- not yet accepted by the server has an empty etag and a publication has
-- empty call_id and from_tag, so two pending publications would collide on
-- it. puaside therefore never stores an empty tuple_id: a record without a
-- tuple id of its own gets one derived from its identity (pres_uri, pres_id,
-- event_name, flag, watcher_uri), "ps:" followed by 32 hex digits of a
-- SHA-256, unique per record; loading turns it back into an empty tuple id.
--
-- Index names are prefixed with the table name, as SQLite index names are
-- per database: with the default table name they are Kamailio's names.
CREATE TABLE {{pua}} (
    id INTEGER PRIMARY KEY NOT NULL,
    pres_uri VARCHAR(255) NOT NULL,
    pres_id VARCHAR(255) NOT NULL,
    event INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    desired_expires INTEGER NOT NULL,
    flag INTEGER NOT NULL,
    etag VARCHAR(128) NOT NULL,
    tuple_id VARCHAR(64),
    watcher_uri VARCHAR(255) NOT NULL,
    call_id VARCHAR(255) NOT NULL,
    to_tag VARCHAR(128) NOT NULL,
    from_tag VARCHAR(128) NOT NULL,
    cseq INTEGER NOT NULL,
    record_route TEXT,
    contact VARCHAR(255) NOT NULL,
    remote_contact VARCHAR(255) NOT NULL,
    version INTEGER NOT NULL,
    extra_headers TEXT NOT NULL,
    body BLOB,
    content_type VARCHAR(255) NOT NULL DEFAULT '',
    event_name VARCHAR(64) NOT NULL DEFAULT '',
    outbound_proxy VARCHAR(255) NOT NULL DEFAULT '',
    CONSTRAINT {{pua}}_pua_idx UNIQUE (etag, tuple_id, call_id, from_tag)
);
CREATE INDEX {{pua}}_expires_idx ON {{pua}} (expires);
CREATE INDEX {{pua}}_dialog1_idx ON {{pua}} (pres_id, pres_uri);
CREATE INDEX {{pua}}_dialog2_idx ON {{pua}} (call_id, from_tag);
CREATE INDEX {{pua}}_record_idx ON {{pua}} (pres_id);
-- puaside's lookup by record identity.
CREATE INDEX {{pua}}_identity_idx ON {{pua}} (pres_uri, pres_id, event_name, flag, watcher_uri);
INSERT OR IGNORE INTO version (table_name, table_version) VALUES ('{{pua}}', 7);
