-- The embedded presence server (pa): Kamailio presence's tables, in its
-- layout and table versions (presentity 5, active_watchers 12, watchers 3),
-- so operators read them as they know them. puaside adds two columns to
-- presentity: pres_id, the publication's id within its presentity and event
-- (the tracker's pres_id for in-process publications, which have no ETag:
-- their etag column holds "pa-" and the pres_id), and flag, the owner of an
-- in-process publication (the pua table's flag bits: 1 usrloc, 2 bla,
-- 1024 dialoginfo, 64 the management API), so that after a restart each
-- owner claims its own and the unclaimed ones are removed. ruid is unique per
-- publication. active_watchers.local_cseq and version hold the CSeq and
-- document version reserved ahead: every NOTIFY sent had lower ones.
-- status: 1 active, 2 pending, 3 terminated (Kamailio's values). A database
-- made by Kamailio's presence-create.sql is adopted (pres_id is added).
CREATE TABLE `presentity` (
    id INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    username VARCHAR(64) NOT NULL,
    domain VARCHAR(64) NOT NULL,
    event VARCHAR(64) NOT NULL,
    etag VARCHAR(128) NOT NULL,
    expires INT(11) NOT NULL,
    received_time INT(11) NOT NULL,
    body MEDIUMBLOB NOT NULL,
    sender VARCHAR(255) NOT NULL,
    priority INT(11) DEFAULT 0 NOT NULL,
    ruid VARCHAR(64),
    pres_id VARCHAR(255) NOT NULL DEFAULT '',
    flag INT(11) NOT NULL DEFAULT 0,
    CONSTRAINT presentity_idx UNIQUE (username, domain, event, etag),
    CONSTRAINT ruid_idx UNIQUE (ruid)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX presentity_expires ON `presentity` (expires);
CREATE INDEX account_idx ON `presentity` (username, domain, event);
CREATE TABLE `active_watchers` (
    id INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    presentity_uri VARCHAR(255) NOT NULL,
    watcher_username VARCHAR(64) NOT NULL,
    watcher_domain VARCHAR(64) NOT NULL,
    to_user VARCHAR(64) NOT NULL,
    to_domain VARCHAR(64) NOT NULL,
    event VARCHAR(64) DEFAULT 'presence' NOT NULL,
    event_id VARCHAR(64),
    to_tag VARCHAR(128) NOT NULL,
    from_tag VARCHAR(128) NOT NULL,
    callid VARCHAR(255) NOT NULL,
    local_cseq INT(11) NOT NULL,
    remote_cseq INT(11) NOT NULL,
    contact VARCHAR(255) NOT NULL,
    record_route TEXT,
    expires INT(11) NOT NULL,
    status INT(11) DEFAULT 2 NOT NULL,
    reason VARCHAR(64),
    version INT(11) DEFAULT 0 NOT NULL,
    socket_info VARCHAR(64) NOT NULL,
    local_contact VARCHAR(255) NOT NULL,
    from_user VARCHAR(64) NOT NULL,
    from_domain VARCHAR(64) NOT NULL,
    updated INT(11) NOT NULL,
    updated_winfo INT(11) NOT NULL,
    flags INT(11) DEFAULT 0 NOT NULL,
    user_agent VARCHAR(255) DEFAULT '',
    CONSTRAINT active_watchers_idx UNIQUE (callid, to_tag, from_tag)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX active_watchers_expires ON `active_watchers` (expires);
CREATE INDEX active_watchers_pres ON `active_watchers` (presentity_uri, event);
CREATE TABLE `watchers` (
    id INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    presentity_uri VARCHAR(255) NOT NULL,
    watcher_username VARCHAR(64) NOT NULL,
    watcher_domain VARCHAR(64) NOT NULL,
    event VARCHAR(64) DEFAULT 'presence' NOT NULL,
    status INT(11) NOT NULL,
    reason VARCHAR(64),
    inserted_time INT(11) NOT NULL,
    CONSTRAINT watcher_idx UNIQUE (presentity_uri, watcher_username, watcher_domain, event)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
INSERT IGNORE INTO version (table_name, table_version) VALUES ('presentity', 5);
INSERT IGNORE INTO version (table_name, table_version) VALUES ('active_watchers', 12);
INSERT IGNORE INTO version (table_name, table_version) VALUES ('watchers', 3);
