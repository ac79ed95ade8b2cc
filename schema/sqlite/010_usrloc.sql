-- usrloc: the contacts puaside tracks per AoR (absolute expiry, Unix
-- seconds; q in thousandths, -1 = not stated) and the per-user publishing
-- flags set by the flag header or the management API.
CREATE TABLE IF NOT EXISTS puaside_contacts (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    aor VARCHAR(255) NOT NULL,
    contact TEXT NOT NULL,
    expires BIGINT NOT NULL,
    q INTEGER NOT NULL DEFAULT -1,
    received VARCHAR(255) NOT NULL DEFAULT '',
    call_id VARCHAR(255) NOT NULL DEFAULT '',
    cseq BIGINT NOT NULL DEFAULT 0,
    instance VARCHAR(255) NOT NULL DEFAULT '',
    user_agent VARCHAR(255) NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS puaside_contacts_aor_idx ON puaside_contacts (aor);
CREATE TABLE IF NOT EXISTS puaside_publish_flags (
    aor VARCHAR(255) NOT NULL PRIMARY KEY,
    publish INTEGER NOT NULL,
    updated BIGINT NOT NULL DEFAULT 0
);
