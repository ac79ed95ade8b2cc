-- Shared (BLA) lines added through the management API. One row per member
-- phone URI; a line without members (every registered contact of the AoR is
-- a member) has one row with an empty member.
CREATE TABLE IF NOT EXISTS `puaside_shared_lines` (
    `aor` VARCHAR(255) NOT NULL,
    `member` VARCHAR(255) NOT NULL DEFAULT '',
    `created` BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (`aor`, `member`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
