-- 1 while the removal of the record (PUBLISH or SUBSCRIBE with Expires: 0)
-- is decided but not yet answered, so that a restart finishes it instead of
-- refreshing the record. Kamailio ignores the column.
ALTER TABLE `{{pua}}` ADD COLUMN `removing` INT(11) NOT NULL DEFAULT 0;
