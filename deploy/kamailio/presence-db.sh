#!/bin/sh
# Creates the SQLite database deploy/kamailio/presence.cfg uses by default,
# /var/lib/kamailio/presence.db (Debian's kamailio packages do not create
# that directory), from the table scripts of kamailio-sqlite-modules, in WAL
# mode, owned by the kamailio user when it exists. Run it as root, once:
#
#   deploy/kamailio/presence-db.sh [PATH]
#
# An existing database is left as it is. Needs the sqlite3 command (Debian
# package sqlite3).
set -eu

db=${1:-/var/lib/kamailio/presence.db}
schemas=${KAMAILIO_SQLITE_SCHEMAS:-/usr/share/kamailio/db_sqlite}

if [ -e "$db" ]; then
	echo "presence-db: $db exists, left as it is"
	exit 0
fi
for f in standard-create.sql presence-create.sql; do
	if [ ! -r "$schemas/$f" ]; then
		echo "presence-db: $schemas/$f not found (install kamailio-sqlite-modules)" >&2
		exit 1
	fi
done
command -v sqlite3 >/dev/null || { echo "presence-db: sqlite3 not found (install sqlite3)" >&2; exit 1; }

dir=$(dirname "$db")
owner=""
if getent passwd kamailio >/dev/null; then
	owner=kamailio:$(id -gn kamailio)
fi
install -d -m 0750 "$dir"
[ -z "$owner" ] || chown "$owner" "$dir"
tmp="$db.creating"
rm -f "$tmp"
cat "$schemas/standard-create.sql" "$schemas/presence-create.sql" | sqlite3 "$tmp"
sqlite3 "$tmp" 'PRAGMA journal_mode=WAL;' >/dev/null
chmod 0640 "$tmp"
[ -z "$owner" ] || chown "$owner" "$tmp"
mv "$tmp" "$db"
echo "presence-db: created $db"
