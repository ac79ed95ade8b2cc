-- The Expires interval (seconds) the owner asked for on each PUBLISH or
-- SUBSCRIBE of the record, so that a restart keeps refreshing with it
-- (0 = default_expires). Kamailio ignores the column.
ALTER TABLE {{pua}} ADD COLUMN req_expires INTEGER NOT NULL DEFAULT 0;
