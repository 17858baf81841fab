#!/usr/bin/env bash
# setup.sh: install what pgmarket needs from Debian's archive, then build and
# install the extension into PostgreSQL 15.
#
#   scripts/setup.sh [SOURCE_DIR]
#
# Idempotent: apt is touched only when a package is missing. Works as root or
# as a user with sudo. SOURCE_DIR (default: the tree this script lives in) is
# where `make` runs; scripts/test.sh points it at its private copy.
set -euo pipefail

# PGMARKET_PG_CONFIG points at another PostgreSQL 15 installation (a private
# copy, say); the default is Debian's.
PG_CONFIG=${PGMARKET_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=${1:-$(cd "$here/.." && pwd)}

# Root runs things directly; anybody else goes through sudo.
if [ "$(id -u)" -eq 0 ]; then
    as_root() { "$@"; }
else
    as_root() { sudo "$@"; }
fi

packages=(build-essential pkg-config postgresql-15 postgresql-server-dev-15
          libsodium-dev libcrypt-dev libpq-dev libipc-run-perl pgbouncer
          postgresql-15-plproxy
          python3 python3-psycopg python3-psycopg-pool python3-nacl
          python3-pytest python3-pytest-asyncio python3-flask
          python3-setuptools python3-wheel python3-pip python3-venv
          python3-mypy)

# For `make fuzz` with libFuzzer; without them it falls back to gcc and a
# driver of its own, so they are installed only where the archive has them.
optional=(clang-14 libclang-rt-14-dev)

installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# A real package (not a purely virtual name) that apt could install.
available() {
    apt-cache show --no-all-versions "$1" 2>/dev/null | grep -q '^Package:'
}

missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done
optional_missing=()
for p in "${optional[@]}"; do
    installed "$p" || optional_missing+=("$p")
done

# Debian 12 ships contrib inside postgresql-15 (it Provides
# postgresql-contrib-15); other releases have a real package of that name.
contrib_needed() {
    ! installed postgresql-contrib-15 &&
    ! dpkg-query -W -f='${Provides}' postgresql-15 2>/dev/null |
        grep -q 'postgresql-contrib-15' &&
    available postgresql-contrib-15
}

if [ "${#missing[@]}" -gt 0 ] || [ "${#optional_missing[@]}" -gt 0 ] || contrib_needed; then
    echo "setup: installing missing packages: ${missing[*]} ${optional_missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # Asked again after the update: the package lists may have been empty.
    if contrib_needed; then
        missing+=(postgresql-contrib-15)
    fi
    for p in "${optional_missing[@]}"; do
        available "$p" && missing+=("$p")
    done
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "setup: all packages present"
fi

[ -x "$PG_CONFIG" ] || { echo "setup: $PG_CONFIG not found" >&2; exit 1; }

# Build as the caller, install as root (the target is a system directory).
jobs=$(nproc 2>/dev/null || echo 2)
echo "setup: building in $src"
make -C "$src" -j"$jobs" PG_CONFIG="$PG_CONFIG"
as_root make -C "$src" install PG_CONFIG="$PG_CONFIG"
echo "setup: pgmarket installed into $("$PG_CONFIG" --pkglibdir)"
