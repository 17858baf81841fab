#!/usr/bin/env bash
# bench/client.sh: 10,000 charges through libpgmarket one call at a time,
# through its pipelined batch call, and through the server's deduct_batch,
# side by side on one connection to one throwaway cluster (port 54396, as
# the postgres OS user when run as root).  Writes bench/results/client.txt.
#
#   bash bench/client.sh [--no-build] [--charges N] [--users N]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=${PGMARKET_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
NAME=clientbench
PORT=${PGMARKET_BENCH_PORT:-54396}
CHARGES=10000
USERS=1000
BUILD=1
while [ $# -gt 0 ]; do
    case $1 in
        --no-build) BUILD=0 ;;
        --charges) CHARGES=$2; shift ;;
        --users) USERS=$2; shift ;;
        *) echo "usage: bash bench/client.sh [--no-build] [--charges N] [--users N]" >&2; exit 2 ;;
    esac
    shift
done

if [ "$BUILD" = 1 ]; then
    make -s -C "$REPO" PG_CONFIG=$PG_CONFIG >/dev/null
    if [ "$(id -u)" = 0 ]; then make -s -C "$REPO" PG_CONFIG=$PG_CONFIG install >/dev/null
    else sudo make -s -C "$REPO" PG_CONFIG=$PG_CONFIG install >/dev/null; fi
fi
make -s -C "$REPO/client" libpgmarket.a >/dev/null
work=$(mktemp -d /tmp/pgmarket-clientbench-bin.XXXXXX)
trap 'bash "$REPO/scripts/cluster.sh" stop $NAME >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
# shellcheck disable=SC2046
cc -O2 -Wall -Wextra -Werror -I"$REPO/client" $(pkg-config --cflags libpq libsodium) -o "$work/batch" "$REPO/bench/client/batch.c" \
    "$REPO/client/libpgmarket.a" $(pkg-config --libs libpq libsodium)
chmod 755 "$work" "$work/batch"

bash "$REPO/scripts/cluster.sh" start $NAME $PORT >/dev/null
conninfo="host=/tmp/pgmarket-$NAME port=$PORT dbname=postgres user=postgres"
bash "$REPO/scripts/cluster.sh" psql $NAME -qc "CREATE EXTENSION pgmarket" >/dev/null
mkdir -p "$REPO/bench/results"
run=(env)
[ "$(id -u)" = 0 ] && run=(runuser -u postgres --)
{
    echo "bench/client.sh: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $("$PG_CONFIG" --version)"
    echo "$CHARGES charges of $USERS users, one connection, fsync and synchronous_commit on"
    echo
    "${run[@]}" "$work/batch" "$conninfo" "$USERS" "$CHARGES"
} | tee "$REPO/bench/results/client.txt"
