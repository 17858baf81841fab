#!/usr/bin/env bash
# bench/client.sh: charges through libpgmarket three ways, side by side on
# one connection to one throwaway cluster: one pgm_deduct_balance call at a
# time, the pipelined pgm_deduct_batch, and pgm_deduct_batch_array (the
# server's deduct_batch).  Prints charges per second, the ratios to one call
# at a time and the target line; writes bench/results/client.txt.
#
#   bash bench/client.sh [--no-build] [--charges N] [--users N] [--repeat N] [--strict]
#
# PGMARKET_PG_CONFIG (the PostgreSQL to build against and run),
# PGMARKET_BENCH_BASE (working directory, default /tmp/pgmarket-bench-client:
# data, socket, logs, the bench program) and PGMARKET_BENCH_PORT (default
# 54396) as for the other scripts.  As root the cluster runs as postgres.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: bash bench/client.sh [options]

  --no-build     do not run make / make install of the extension
  --charges N    charges per way and run (default 10000)
  --users N      users they are spread over (default 1000)
  --repeat N     run the three ways N times, interleaved, and keep the best
                 of each (default 1; a shared machine only ever slows a run)
  --strict       exit 1 when the target is missed
  -h, --help     this text
USAGE
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=$("${PGMARKET_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)
PG_CONFIG=$PGBIN/pg_config
BASE=${PGMARKET_BENCH_BASE:-/tmp/pgmarket-bench-client}
DATA=$BASE/data
PORT=${PGMARKET_BENCH_PORT:-54396}
DB=postgres
DBUSER=postgres
RESULTS=$REPO/bench/results/client.txt

CHARGES=10000
USERS=1000
REPEAT=1
RUN_SECS=1                        # unused here; bench_check_options wants it
CLIENTS=1
BUILD=1
STRICT=0

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

while [ $# -gt 0 ]; do
    case "$1" in
        --charges) CHARGES=${2:?--charges needs a value}; shift 2; continue ;;
        --charges=*) CHARGES=${1#*=}; shift; continue ;;
        --users) USERS=${2:?--users needs a value}; shift 2; continue ;;
        --users=*) USERS=${1#*=}; shift; continue ;;
    esac
    bench_option "$@" || { usage >&2; exit 2; }
    shift "$BENCH_SHIFT"
done
bench_check_options
for v in "$CHARGES" "$USERS"; do
    case "$v" in ''|*[!0-9]*|0) echo "client.sh: --charges and --users must be positive integers" >&2; exit 2 ;; esac
done

bench_begin
make -s -C "$REPO/client" libpgmarket.a >>"$BASE/build.log" 2>&1 ||
    { tail -n 30 "$BASE/build.log" >&2; die "make -C client failed (see $BASE/build.log)"; }
# shellcheck disable=SC2046
cc -O2 -Wall -Wextra -Werror -I"$REPO/client" $(pkg-config --cflags libpq libsodium) \
    -o "$BASE/batch" "$REPO/bench/client/batch.c" "$REPO/client/libpgmarket.a" \
    $(pkg-config --libs libpq libsodium) || die "bench/client/batch.c does not build"
chmod 755 "$BASE/batch"

bench_initdb </dev/null
bench_start_server
psql_do -c "CREATE EXTENSION pgmarket" >/dev/null

mkdir -p "$(dirname "$RESULTS")"
log "$CHARGES charges of $USERS users, three ways, best of $REPEAT"
set +e    # the program's status (3: a target missed) is read below
{
    echo "bench/client.sh: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $("$PG_CONFIG" --version)"
    echo "$CHARGES charges of $USERS users, one connection (Unix socket), fsync and synchronous_commit on, best of $REPEAT"
    echo
    as_pg "$BASE/batch" "host=$BASE port=$PORT dbname=$DB user=$DBUSER" "$USERS" "$CHARGES" "$REPEAT"
} | tee "$RESULTS.tmp"
rc=${PIPESTATUS[0]}
set -e
mv "$RESULTS.tmp" "$RESULTS"
log "took $(( $(date +%s) - T_START ))s; $RESULTS"
if [ "$rc" -eq 3 ] && [ "$STRICT" -eq 0 ]; then rc=0; fi    # 3: target missed
exit "$rc"
