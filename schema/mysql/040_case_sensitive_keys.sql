-- SIP users are case-sensitive (sip:Alice@x and sip:alice@x are two AoRs),
-- as they are in SQLite and in the pua table: puaside's own tables get
-- utf8mb4 with a binary collation. puaside_dialogs and
-- puaside_dialog_versions were created with the server's default character
-- set (latin1 on many servers, refusing multi-byte names), and every
-- puaside_* table with a case-insensitive collation, under which keys
-- differing only in case collide. Converting never merges rows: a binary
-- collation tells more values apart, not fewer.
ALTER TABLE `puaside_contacts` CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
ALTER TABLE `puaside_publish_flags` CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
ALTER TABLE `puaside_dialogs` CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
ALTER TABLE `puaside_dialog_versions` CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
ALTER TABLE `puaside_shared_lines` CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
