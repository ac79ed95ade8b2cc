#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine (Kamailio with its
# presence and database modules, sipp, chromium for the lamp board tests, prosody for
# the XMPP gateway, MariaDB running on 127.0.0.1:3306)
# and runs every test of the project. Run it as root or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v kamailio >/dev/null 2>&1 || need_pkgs+=(kamailio)
for p in kamailio-presence-modules kamailio-sqlite-modules kamailio-mysql-modules kamailio-tls-modules kamailio-websocket-modules kamailio-outbound-modules sip-tester chromium prosody systemd iproute2 util-linux gcc curl adduser sqlite3; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if ! command -v mariadbd >/dev/null 2>&1 && ! command -v mysqld >/dev/null 2>&1; then
  need_pkgs+=(mariadb-server)
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing: ${need_pkgs[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_pkgs[@]}"
fi

# The store tests run against MariaDB on 127.0.0.1:3306 (root, no password).
if ! (echo > /dev/tcp/127.0.0.1/3306) >/dev/null 2>&1; then
  echo "starting MariaDB"
  $SUDO mkdir -p /run/mysqld && $SUDO chown mysql:mysql /run/mysqld 2>/dev/null || true
  $SUDO start-stop-daemon --start --oknodo --background --exec "$(command -v mariadbd || command -v mysqld)" -- --user=mysql
  for _ in $(seq 1 60); do
    (echo > /dev/tcp/127.0.0.1/3306) >/dev/null 2>&1 && break
    sleep 1
  done
fi

go mod download
go vet ./...

# golangci-lint, pinned; installed once into GOBIN, then reused (its
# analysis cache keeps later runs short). Configuration: .golangci.yml.
GOLANGCI_LINT_VERSION=v2.15.0
lint="$(go env GOPATH)/bin/golangci-lint"
if ! "$lint" version 2>/dev/null | grep -q "version ${GOLANGCI_LINT_VERSION#v} "; then
  echo "installing golangci-lint $GOLANGCI_LINT_VERSION"
  GOBIN="$(go env GOPATH)/bin" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION"
fi
"$lint" run ./...
go test -race -count=1 -timeout 25m "$@" ./...
# The store once more on the C SQLite (-tags sqlite_cgo, needs gcc): the
# driver an operator may build instead of the pure-Go default.
go vet -tags sqlite_cgo ./store
go test -tags sqlite_cgo -count=1 -timeout 10m ./store
