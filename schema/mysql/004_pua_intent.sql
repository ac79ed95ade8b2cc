-- Two flags that let a restart carry on where the engine stopped, instead of
-- refreshing the record as it was last accepted. Kamailio ignores them.
-- removing: 1 while the removal of the record (PUBLISH or SUBSCRIBE with
-- Expires: 0) is decided but not yet answered; a restart finishes it.
-- modified: 1 while the stored body is not yet the one the server accepted
-- under the stored ETag (a modify still to be sent); a restart sends it.
ALTER TABLE `{{pua}}` ADD COLUMN `removing` INT(11) NOT NULL DEFAULT 0;
ALTER TABLE `{{pua}}` ADD COLUMN `modified` INT(11) NOT NULL DEFAULT 0;
