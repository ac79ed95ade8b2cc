-- Active calls followed by the dialoginfo (BLF) tracker, one row per call
-- (Call-ID + caller tag); data is the tracker's JSON encoding of the call
-- and its dialogs. Rows are removed when the call's publications are.
CREATE TABLE IF NOT EXISTS puaside_dialogs (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    call_id VARCHAR(255) NOT NULL,
    from_tag VARCHAR(128) NOT NULL,
    caller VARCHAR(255) NOT NULL DEFAULT '',
    callee VARCHAR(255) NOT NULL DEFAULT '',
    state VARCHAR(16) NOT NULL DEFAULT '',
    data BLOB NOT NULL,
    updated BIGINT NOT NULL DEFAULT 0
);
-- Last dialog-info document version per entity (versions only grow).
CREATE TABLE IF NOT EXISTS puaside_dialog_versions (
    entity VARCHAR(255) NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL DEFAULT 0
);
