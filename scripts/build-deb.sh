#!/usr/bin/env bash
# Builds the Debian package of puaside with dpkg-deb (package dpkg, present
# on every Debian system) and Go; no make, no root.
#
#   scripts/build-deb.sh [-o DIR] [-v VERSION] [-a ARCH]
#
# VERSION defaults to the git description (a leading "v" dropped; without a
# tag: 0.0.0~git<commit date>.<short hash>), ARCH to the Go target
# architecture (GOARCH, mapped to Debian's name). The package is written to
# DIR (default dist/) as puaside_VERSION_ARCH.deb and its path printed last.
#
# The package holds /usr/bin/puaside (static, version stamped),
# /lib/systemd/system/puaside.service (deploy/systemd/ with this binary's
# path), /etc/puaside/puaside.yaml (a conffile: every key at its default,
# the SQLite database in /var/lib/puaside) and the documentation; its
# maintainer scripts (deploy/debian/) create the puaside user and the state
# directory, and purge removes both.
set -euo pipefail
cd "$(dirname "$0")/.."

out=dist
version=""
arch=""
while getopts "o:v:a:" opt; do
	case "$opt" in
	o) out=$OPTARG ;;
	v) version=$OPTARG ;;
	a) arch=$OPTARG ;;
	*) echo "usage: $0 [-o DIR] [-v VERSION] [-a ARCH]" >&2; exit 2 ;;
	esac
done

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$revision" ] && [ "$revision" != unknown ] && [ -n "$(git status --porcelain 2>/dev/null)" ]; then
	revision="$revision-dirty"
fi
if [ -z "$version" ]; then
	if desc=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
		# v1.2.3-4-gabc123 -> 1.2.3+4.gabc123 (sorts after 1.2.3)
		version=$(echo "${desc#v}" | sed -E 's/-([0-9]+)-g([0-9a-f]+)$/+\1.g\2/')
	else
		when=$(git log -1 --format=%cd --date=format:%Y%m%d%H%M%S 2>/dev/null || date -u +%Y%m%d%H%M%S)
		short=$(git rev-parse --short=12 HEAD 2>/dev/null || echo 0)
		version="0.0.0~git$when.$short"
	fi
fi
if ! echo "$version" | grep -Eq '^[0-9][A-Za-z0-9.+~-]*$'; then
	echo "build-deb: version $version is not a Debian version (it must start with a digit)" >&2
	exit 2
fi
goarch=$(go env GOARCH)
if [ -z "$arch" ]; then
	case "$goarch" in
	amd64 | arm64 | i386 | ppc64el | s390x | riscv64) arch=$goarch ;;
	386) arch=i386 ;;
	arm) arch=armhf ;;
	ppc64le) arch=ppc64el ;;
	*) echo "build-deb: no Debian architecture for GOARCH=$goarch (pass -a)" >&2; exit 2 ;;
	esac
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/puaside" \
	"$root/usr/share/doc/puaside"

# The binary: static (the SQLite driver is pure Go), stamped.
pkg=github.com/puaside/puaside/internal/buildinfo
CGO_ENABLED=0 go build -trimpath \
	-ldflags "-s -w -X $pkg.version=$version -X $pkg.revision=$revision" \
	-o "$root/usr/bin/puaside" ./cmd/puaside

# The unit, pointing at the packaged binary.
sed 's#/usr/local/bin/puaside#/usr/bin/puaside#g' deploy/systemd/puaside.service \
	>"$root/lib/systemd/system/puaside.service"

# The default configuration: every key at its default, the database in the
# state directory whatever the working directory.
{
	echo "# puaside configuration (Debian package): every key at its default,"
	echo "# except the SQLite database, kept in the state directory."
	echo "# puaside serves presence itself (pa, the embedded presence server);"
	echo "# set pua.server_address only to publish to an external presence"
	echo "# server. Then"
	echo "#   puaside check -config /etc/puaside/puaside.yaml"
	echo "#   systemctl enable --now puaside"
	echo "# Every key is described in /usr/share/doc/puaside/README.md."
	grep -v '^# puaside configuration: every key at its default value.$' puaside.example.yaml |
		sed 's#^db_url: sqlite://puaside.db$#db_url: sqlite:///var/lib/puaside/puaside.db#'
} >"$root/etc/puaside/puaside.yaml"
if ! grep -q '^db_url: sqlite:///var/lib/puaside/puaside.db$' "$root/etc/puaside/puaside.yaml"; then
	echo "build-deb: puaside.example.yaml has no 'db_url: sqlite://puaside.db' line to point at /var/lib/puaside" >&2
	exit 1
fi

install -m 0644 README.md docs/operator-guide.md "$root/usr/share/doc/puaside/"
install -m 0644 deploy/puaside.production.yaml "$root/usr/share/doc/puaside/puaside.production.yaml"
cat >"$root/usr/share/doc/puaside/copyright" <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: puaside
Source: https://github.com/puaside/puaside
COPYRIGHT

install -m 0644 deploy/debian/conffiles "$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do
	install -m 0755 "deploy/debian/$s" "$root/DEBIAN/$s"
done
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
	deploy/debian/control.in >"$root/DEBIAN/control"

chmod -R u=rwX,go=rX "$root/usr" "$root/lib" "$root/etc"
chmod 0755 "$root/usr/bin/puaside"
mkdir -p "$out"
deb="$out/puaside_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
