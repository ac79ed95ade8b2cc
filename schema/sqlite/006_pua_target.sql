-- Where a subscription's initial SUBSCRIBE goes (its owner's target, else the
-- presentity), so that a subscription restored after a restart whose dialog
-- is then lost subscribes anew there, not to the notifier's Contact
-- (remote_contact). '' in a row written without it (by Kamailio, or before
-- this column): remote_contact stands in for it. Kamailio ignores it.
ALTER TABLE {{pua}} ADD COLUMN target VARCHAR(255) NOT NULL DEFAULT '';
