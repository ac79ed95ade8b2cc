-- Only the indexes of the pua table that puaside's queries use: the row id,
-- the identity index (the lookup by pres_uri of every write) and the unique
-- key pua_idx (a constraint, kept so that the table stays Kamailio's). The
-- four other Kamailio indexes serve queries of Kamailio's pua module that
-- puaside never makes; each cost a B-tree update on every INSERT and DELETE
-- and a page in every write-ahead-log commit. The columns are untouched, so
-- Kamailio can still read and write the table; should it be run on the table
-- again, its queries work without them (by the identity index or a scan).
DROP INDEX IF EXISTS {{pua}}_expires_idx;
DROP INDEX IF EXISTS {{pua}}_dialog1_idx;
DROP INDEX IF EXISTS {{pua}}_dialog2_idx;
DROP INDEX IF EXISTS {{pua}}_record_idx;
