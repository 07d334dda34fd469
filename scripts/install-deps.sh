#!/bin/sh
# Installs what optd needs to build and test, from Debian 12 packages.
# Idempotent: installs only what is missing. Needs root (or sudo).
set -eu

PKGS="build-essential cmake pkg-config
libunwind-dev libdw-dev libelf-dev libzydis-dev libevent-dev check
libjson-c-dev libinih-dev libsystemd-dev
python3 libpython3.11-testsuite sqlite3 duktape-dev strace procps"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "installing:$missing" >&2
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
