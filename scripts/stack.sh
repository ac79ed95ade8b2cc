#!/usr/bin/env bash
# Runs the puaside stack without Docker on one Debian machine:
#   - Kamailio as presence server (deploy/kamailio/presence.cfg, WITH_MYSQL) on
#     a MariaDB database created here from Kamailio's standard and presence SQL;
#   - Kamailio as registrar/proxy (deploy/kamailio/registrar.cfg) mirroring to
#     puaside with the chosen variant;
#   - puaside (a binary given in PUASIDE_BIN, or built here) with a generated
#     configuration, on its own MariaDB database (it creates its tables).
# MariaDB must already run (default 127.0.0.1:3306, user root, no password).
# Needs the Debian packages kamailio, kamailio-presence-modules,
# kamailio-mysql-modules and mariadb-client (scripts/test.sh installs them).
#
# usage: scripts/stack.sh start|stop|status|clean
#   start   create the databases (if missing), start the three processes,
#           wait until each answers, print the addresses
#   stop    stop the processes started by start (pid files in the run dir)
#   status  show which processes run
#   clean   stop, drop both databases, remove the run dir
#
# Settings (environment):
#   STACK_RUN_DIR        pid files, logs, generated config  (default: $TMPDIR/puaside-stack-UID)
#   STACK_MIRROR         WITH_REPLICATE | WITH_SIPTRACE | WITH_HEP  (default WITH_REPLICATE)
#   STACK_ADDR           address of every socket             (default 127.0.0.1)
#   STACK_REGISTRAR_PORT registrar SIP, UDP+TCP              (default 5060)
#   STACK_PRESENCE_PORT  presence server SIP, UDP+TCP        (default 5070)
#   STACK_SIP_PORT       puaside SIP (pua listen), UDP+TCP   (default 5080)
#   STACK_REPLICATE_PORT puaside replicate_listen, UDP+TCP   (default 5090)
#   STACK_TRACE_PORT     puaside trace_listen, UDP           (default 5091)
#   STACK_HEP_PORT       puaside hep_listen, UDP             (default 9060)
#   STACK_HTTP_PORT      puaside HTTP API                    (default 8080)
#   STACK_MYSQL_HOST, STACK_MYSQL_PORT, STACK_MYSQL_USER, STACK_MYSQL_PASSWORD
#                        MariaDB server and account          (default 127.0.0.1, 3306, root, none)
#   STACK_PUASIDE_DB     puaside's database                  (default puaside_stack)
#   STACK_KAMAILIO_DB    the presence server's database      (default kamailio_stack)
#   STACK_LOG_LEVEL      puaside log_level                   (default info)
#   STACK_WAIT           seconds to wait for each process    (default 20)
#   PUASIDE_BIN          puaside binary (default: go build ./cmd/puaside into the run dir)
#   KAMAILIO_BIN         kamailio binary                     (default kamailio, else /usr/sbin/kamailio)
#   KAMAILIO_SQL_DIR     Kamailio's MySQL schema files       (default /usr/share/kamailio/mysql)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${STACK_RUN_DIR:-${TMPDIR:-/tmp}/puaside-stack-$(id -u)}
MIRROR=${STACK_MIRROR:-WITH_REPLICATE}
ADDR=${STACK_ADDR:-127.0.0.1}
REGISTRAR_PORT=${STACK_REGISTRAR_PORT:-5060}
PRESENCE_PORT=${STACK_PRESENCE_PORT:-5070}
SIP_PORT=${STACK_SIP_PORT:-5080}
REPLICATE_PORT=${STACK_REPLICATE_PORT:-5090}
TRACE_PORT=${STACK_TRACE_PORT:-5091}
HEP_PORT=${STACK_HEP_PORT:-9060}
HTTP_PORT=${STACK_HTTP_PORT:-8080}
MYSQL_HOST=${STACK_MYSQL_HOST:-127.0.0.1}
MYSQL_PORT=${STACK_MYSQL_PORT:-3306}
MYSQL_USER=${STACK_MYSQL_USER:-root}
MYSQL_PASSWORD=${STACK_MYSQL_PASSWORD:-}
PUASIDE_DB=${STACK_PUASIDE_DB:-puaside_stack}
KAMAILIO_DB=${STACK_KAMAILIO_DB:-kamailio_stack}
LOG_LEVEL=${STACK_LOG_LEVEL:-info}
WAIT=${STACK_WAIT:-20}
KAMAILIO_SQL_DIR=${KAMAILIO_SQL_DIR:-/usr/share/kamailio/mysql}

# Components in start order; stop runs in reverse.
COMPONENTS=(presence puaside registrar)

die() { echo "stack: $*" >&2; exit 1; }

check_settings() {
	case "$MIRROR" in
	WITH_REPLICATE | WITH_SIPTRACE | WITH_HEP) ;;
	*) die "STACK_MIRROR=$MIRROR: want WITH_REPLICATE, WITH_SIPTRACE or WITH_HEP" ;;
	esac
	local v
	for v in REGISTRAR_PORT PRESENCE_PORT SIP_PORT REPLICATE_PORT TRACE_PORT HEP_PORT HTTP_PORT MYSQL_PORT WAIT; do
		[[ ${!v} =~ ^[0-9]+$ ]] || die "$v=${!v}: not a number"
	done
	for v in PUASIDE_DB KAMAILIO_DB; do
		[[ ${!v} =~ ^[A-Za-z0-9_]+$ ]] || die "$v=${!v}: use letters, digits and _ only"
	done
}

kamailio_bin() {
	if [ -n "${KAMAILIO_BIN:-}" ]; then
		echo "$KAMAILIO_BIN"
	elif command -v kamailio >/dev/null 2>&1; then
		command -v kamailio
	elif [ -x /usr/sbin/kamailio ]; then
		echo /usr/sbin/kamailio
	else
		die "kamailio not found (apt-get install kamailio kamailio-presence-modules kamailio-mysql-modules)"
	fi
}

# sql DB STATEMENT...: run SQL on MariaDB (DB may be empty).
sql() {
	local db=$1
	shift
	MYSQL_PWD=$MYSQL_PASSWORD mysql --protocol=tcp -h "$MYSQL_HOST" -P "$MYSQL_PORT" -u "$MYSQL_USER" \
		--batch --skip-column-names ${db:+--database="$db"} "$@"
}

# db_url NAME: the URL of database NAME for puaside and Kamailio.
db_url() {
	local auth=$MYSQL_USER
	[ -n "$MYSQL_PASSWORD" ] && auth="$MYSQL_USER:$MYSQL_PASSWORD"
	echo "mysql://$auth@$MYSQL_HOST:$MYSQL_PORT/$1"
}

create_databases() {
	command -v mysql >/dev/null 2>&1 || die "mysql client not found (apt-get install mariadb-client)"
	sql "" -e "CREATE DATABASE IF NOT EXISTS \`$PUASIDE_DB\`; CREATE DATABASE IF NOT EXISTS \`$KAMAILIO_DB\`" ||
		die "cannot create the databases on $MYSQL_HOST:$MYSQL_PORT (is MariaDB running?)"
	local have
	have=$(sql "" -e "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='$KAMAILIO_DB' AND table_name='presentity'")
	if [ "$have" = 0 ]; then
		local f
		for f in standard presence; do
			[ -r "$KAMAILIO_SQL_DIR/$f-create.sql" ] || die "$KAMAILIO_SQL_DIR/$f-create.sql not found (package kamailio-mysql-modules)"
			sql "$KAMAILIO_DB" <"$KAMAILIO_SQL_DIR/$f-create.sql" || die "loading $f-create.sql into $KAMAILIO_DB failed"
		done
		echo "stack: created Kamailio's tables in $KAMAILIO_DB"
	fi
}

pid_of() { cat "$RUN_DIR/$1.pid" 2>/dev/null || true; }

# running NAME: the component's process is alive and is what we started.
running() {
	local pid
	pid=$(pid_of "$1")
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
	local want=kamailio
	[ "$1" = puaside ] && want=puaside
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$want"
}

# alive NAME: the process spawn started has not exited. Unlike running, it
# does not look at the command line: just after spawn the child may still be
# the forked shell, not yet the program it executes.
alive() {
	local pid state
	pid=$(pid_of "$1")
	[ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
	state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# spawn NAME CMD...: start CMD in its own session, logging to NAME.log.
spawn() {
	local name=$1
	shift
	setsid "$@" >"$RUN_DIR/$name.log" 2>&1 </dev/null &
	echo $! >"$RUN_DIR/$name.pid"
}

# tcp_open PORT: something accepts TCP connections on ADDR:PORT.
tcp_open() { (exec 3<>"/dev/tcp/$ADDR/$1") 2>/dev/null; }

# http_status PATH: the status code of GET PATH on puaside's API.
http_status() {
	(
		exec 3<>"/dev/tcp/$ADDR/$HTTP_PORT" || exit 1
		printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$1" "$ADDR" >&3
		local line
		IFS= read -r -t 5 line <&3 || exit 1
		echo "$line" | awk '{print $2}'
	) 2>/dev/null
}

# wait_for NAME CHECK...: wait until CHECK succeeds while NAME runs.
wait_for() {
	local name=$1 i
	shift
	for ((i = 0; i < WAIT * 10; i++)); do
		alive "$name" || { failed "$name" "exited during start-up"; }
		if "$@"; then return 0; fi
		sleep 0.1
	done
	failed "$name" "not ready after ${WAIT}s"
}

failed() {
	echo "stack: $1 $2; last lines of $RUN_DIR/$1.log:" >&2
	tail -n 30 "$RUN_DIR/$1.log" >&2 || true
	stop_all >&2
	exit 1
}

puaside_ready() { [ "$(http_status /readyz)" = 200 ]; }

write_config() {
	cat >"$RUN_DIR/puaside.yaml" <<EOF
# Generated by scripts/stack.sh.
log_level: $LOG_LEVEL
log_format: text
db_url: $(db_url "$PUASIDE_DB")
pua:
  listen: ["udp:$ADDR:$SIP_PORT", "tcp:$ADDR:$SIP_PORT"]
  server_address: sip:$ADDR:$PRESENCE_PORT
ingest:
  replicate_listen: ["udp:$ADDR:$REPLICATE_PORT", "tcp:$ADDR:$REPLICATE_PORT"]
  trace_listen: ["udp:$ADDR:$TRACE_PORT"]
  hep_listen: ["udp:$ADDR:$HEP_PORT"]
  trusted_sources: ["$ADDR/32", "127.0.0.0/8"]
http:
  http_listen: $ADDR:$HTTP_PORT
  # A lab stack: no token, even when STACK_ADDR is not loopback.
  allow_insecure: true
  trusted_sources: ["$ADDR/32", "127.0.0.0/8"]
EOF
}

start_all() {
	check_settings
	mkdir -p "$RUN_DIR"
	local c
	for c in "${COMPONENTS[@]}"; do
		running "$c" && die "$c already runs (pid $(pid_of "$c")); run: $0 stop"
	done
	local kam
	kam=$(kamailio_bin)
	create_databases

	local puaside=${PUASIDE_BIN:-}
	if [ -z "$puaside" ]; then
		command -v go >/dev/null 2>&1 || die "go not found: install Go or set PUASIDE_BIN"
		echo "stack: building puaside"
		(cd "$ROOT" && CGO_ENABLED=0 go build -o "$RUN_DIR/puaside" ./cmd/puaside) || die "go build failed"
		puaside=$RUN_DIR/puaside
	fi
	[ -x "$puaside" ] || die "PUASIDE_BIN=$puaside is not executable"
	write_config

	mkdir -p "$RUN_DIR/presence" "$RUN_DIR/registrar"
	spawn presence "$kam" -DD -E -f "$ROOT/deploy/kamailio/presence.cfg" \
		-Y "$RUN_DIR/presence" -w "$RUN_DIR/presence" \
		-A WITH_MYSQL -A "LISTEN_ADDR=$ADDR" -A "LISTEN_PORT=$PRESENCE_PORT" -A WORKERS=2 \
		-A "DBURL=\"$(db_url "$KAMAILIO_DB")\""
	wait_for presence tcp_open "$PRESENCE_PORT"

	spawn puaside "$puaside" run -config "$RUN_DIR/puaside.yaml"
	wait_for puaside puaside_ready

	spawn registrar "$kam" -DD -E -f "$ROOT/deploy/kamailio/registrar.cfg" \
		-Y "$RUN_DIR/registrar" -w "$RUN_DIR/registrar" \
		-A "$MIRROR" -A "LISTEN_ADDR=$ADDR" -A "LISTEN_PORT=$REGISTRAR_PORT" -A WORKERS=2 \
		-A "PUASIDE_REPLICATE_URI=\"sip:$ADDR:$REPLICATE_PORT\"" \
		-A "PUASIDE_TRACE_URI=\"sip:$ADDR:$TRACE_PORT\"" \
		-A "PUASIDE_HEP_URI=\"sip:$ADDR:$HEP_PORT\""
	wait_for registrar tcp_open "$REGISTRAR_PORT"

	cat <<EOF
stack: running ($MIRROR)
  registrar  sip:$ADDR:$REGISTRAR_PORT   (phones register here)   log $RUN_DIR/registrar.log
  presence   sip:$ADDR:$PRESENCE_PORT   (phones subscribe here)  log $RUN_DIR/presence.log
  puaside    sip:$ADDR:$SIP_PORT, replicate $ADDR:$REPLICATE_PORT, trace $ADDR:$TRACE_PORT, HEP $ADDR:$HEP_PORT
             http://$ADDR:$HTTP_PORT (API, /metrics, /readyz)    log $RUN_DIR/puaside.log
  config     $RUN_DIR/puaside.yaml
  databases  $(db_url "$PUASIDE_DB"), $(db_url "$KAMAILIO_DB")
stop with: $0 stop
EOF
}

# stop_one NAME: SIGTERM to the component's process group, SIGKILL after WAIT s.
stop_one() {
	local name=$1 pid i
	pid=$(pid_of "$name")
	if [ -n "$pid" ] && running "$name"; then
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < WAIT * 10; i++)); do
			[ -e "/proc/$pid" ] || break
			sleep 0.1
		done
		if [ -e "/proc/$pid" ]; then
			echo "stack: $name (pid $pid) did not stop in ${WAIT}s; killing it"
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		fi
		echo "stack: stopped $name (pid $pid)"
	fi
	rm -f "$RUN_DIR/$name.pid"
}

stop_all() {
	local i
	for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
		stop_one "${COMPONENTS[i]}"
	done
}

status_all() {
	local c rc=0
	for c in "${COMPONENTS[@]}"; do
		if running "$c"; then
			echo "$c: running (pid $(pid_of "$c"))"
		else
			echo "$c: stopped"
			rc=3
		fi
	done
	return $rc
}

clean_all() {
	check_settings
	stop_all
	sql "" -e "DROP DATABASE IF EXISTS \`$PUASIDE_DB\`; DROP DATABASE IF EXISTS \`$KAMAILIO_DB\`"
	rm -rf "$RUN_DIR"
	echo "stack: dropped $PUASIDE_DB and $KAMAILIO_DB, removed $RUN_DIR"
}

case "${1:-}" in
start) start_all ;;
stop) stop_all ;;
status) status_all ;;
clean) clean_all ;;
*)
	echo "usage: $0 start|stop|status|clean" >&2
	exit 2
	;;
esac
