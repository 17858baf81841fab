#!/usr/bin/env bash
# bench/ratelimit.sh: what a platform key's rate limit costs, side by side
# in one run on one throwaway cluster, in both places the limiter counts.
#
#   bash bench/ratelimit.sh [--no-build] [--seconds N] [--clients "1 8"]
#                           [--repeat N] [--strict]
#
# What it measures (pgbench -n -M prepared, 1,000 users, each with one key
# of each bench tier; TPS at 1 and 8 clients; first with pgmarket in
# shared_preload_libraries, the limiter in shared memory, then the same
# cluster restarted without it, the limiter in the unlogged table):
#
#   charge_api_key, limited     a key whose tier has limits no run reaches:
#                               every call counted and admitted
#     vs charge_api_key, open   the same call on a key whose tier has none
#   refused call                try_charge on a key that used its one
#                               request of the minute: PM005, caught
#     vs admitted call          try_charge on a limited key: admitted
#     (try_charge is a PL/pgSQL function that catches PM005; both sides of
#     this pair go through it)
#
# Targets: limited >= 0.9x open at every client count; refused >= 3x
# admitted.
#
# The cluster: data in /tmp/pgmarket-ratebench/data, port 54393, socket in
# /tmp/pgmarket-ratebench, fsync and synchronous_commit on, autovacuum off
# (VACUUM and CHECKPOINT before each run).  Run as root, the server runs as
# the postgres OS user; stopped on exit, whatever happens.  The server of
# PGMARKET_PG_CONFIG (default /usr/lib/postgresql/15/bin/pg_config) is
# used, and the extension installed into it unless --no-build.  The table
# goes to stdout and to bench/results/ratelimit.txt; pgbench output stays in
# /tmp/pgmarket-ratebench/runs/.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    cat <<'EOF2'
options:
  --no-build        do not run make / make install (assume it is installed)
  --seconds N       length of each pgbench run (default 8)
  --clients LIST    client counts (default "1 8")
  --repeat N        run every measurement N times, interleaved, and keep the
                    best TPS of each (default 1)
  --strict          exit 1 when a target is missed
  -h, --help        this text
EOF2
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SQLDIR=$REPO/bench/ratelimit
RESULTS_DIR=$REPO/bench/results
RESULTS=$RESULTS_DIR/ratelimit.txt

PG_CONFIG=${PGMARKET_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
BASE=${PGMARKET_BENCH_BASE:-/tmp/pgmarket-ratebench}
DATA=$BASE/data
KEYFILE=$BASE/master.key
PORT=${PGMARKET_BENCH_PORT:-54393}
DB=bench
DBUSER=postgres
USERS=1000
SEED=20240601

RUN_SECS=8
CLIENTS="1 8"
REPEAT=1
BUILD=1
STRICT=0

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

while [ $# -gt 0 ]; do
    bench_option "$@" || { usage >&2; exit 2; }
    shift "$BENCH_SHIFT"
done
bench_check_options
bench_begin
bench_keyfile

# --- the cluster --------------------------------------------------------------
bench_initdb <<EOF
pgmarket.master_key_file = '$KEYFILE'
include_if_exists = 'preload.conf'
EOF

# start MODE: shared_memory (preloaded) or table
start_server() {
    if [ "$1" = shared_memory ]; then
        echo "shared_preload_libraries = 'pgmarket'" | as_pg tee "$DATA/preload.conf" >/dev/null
    else
        as_pg rm -f "$DATA/preload.conf"
    fi
    bench_start_server
}
# the limiter's place, once the database exists
check_mode() {
    local mode
    mode=$(psql_val -c "LOAD 'pgmarket'" -c "SHOW pgmarket.rate_limiter" 2>/dev/null || true)
    [ "$mode" = "$1" ] || die "the limiter counts in '$mode', expected $1"
}

start_server shared_memory
as_pg "$PGBIN/createdb" -h "$BASE" -p "$PORT" -U "$DBUSER" "$DB"
check_mode shared_memory
log "loading $USERS users with three keys each"
psql_do -v users="$USERS" -f "$SQLDIR/setup.sql" >"$BASE/setup.log" 2>&1 ||
    { tail -n 30 "$BASE/setup.log" >&2; die "setup failed (see $BASE/setup.log)"; }
n=$(psql_val -c "SELECT count(*) FROM bench.raw_keys")
[ "$n" -eq $(( USERS * 3 )) ] || die "bench.raw_keys has $n rows, expected $(( USERS * 3 ))"
PG_VERSION_STR=$(psql_val -c "SHOW server_version")
EXT_VERSION=$(psql_val -c "SELECT extversion FROM pg_extension WHERE extname = 'pgmarket'")

# --- runs ---------------------------------------------------------------------
declare -A TPS NOTE
KEYS="charge_open charge_wide try_admitted try_refused"
declare -A LABEL=(
    [charge_wide]="charge_api_key, limited"
    [charge_open]="charge_api_key, open"
    [try_admitted]="admitted call (caught)"
    [try_refused]="refused call (PM005, caught)"
)

# run_one MODE KEY CLIENTS
run_one() {
    local mode=$1 key=$2 clients=$3
    local jobs=$(( clients < 2 ? clients : 2 ))
    local out="$BASE/runs/${mode}_${key}_c${clients}.$REP.log" rc=0 tps failed
    # the refused side: every tight key has used its request of this minute
    if [ "$key" = try_refused ]; then
        psql_do -v users="$USERS" -f "$SQLDIR/exhaust.sql" >/dev/null
    fi
    psql_do -c "VACUUM" >/dev/null
    psql_do -c "CHECKPOINT" >/dev/null
    sleep 1
    as_pg "$PGBIN/pgbench" -h "$BASE" -p "$PORT" -U "$DBUSER" -n -M prepared \
        -c "$clients" -j "$jobs" -T "$RUN_SECS" --random-seed="$SEED" \
        -D users="$USERS" -f "$SQLDIR/${key}.sql" "$DB" >"$out" 2>&1 || rc=$?
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$out")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
    if [ "$rc" -ne 0 ] || [ -z "$tps" ] || [ "${failed:-0}" != 0 ]; then
        NOTE[$mode,$key,$clients]="pgbench exit $rc, failed ${failed:-?}: $(grep -m 1 -E 'ERROR|error|FATAL' "$out" | cut -c 1-200)"
        log "$mode $key c=$clients: FAILED (${NOTE[$mode,$key,$clients]})"
        tps=0
    else
        log "$mode $key c=$clients: $tps tps"
    fi
    local best=${TPS[$mode,$key,$clients]:-0}
    if awk -v a="$tps" -v b="$best" 'BEGIN { exit !(a > b) }'; then
        TPS[$mode,$key,$clients]=$tps
    fi
}

MODES="shared_memory table"
for mode in $MODES; do
    if [ "$mode" = table ]; then
        as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
        start_server table
        check_mode table
    fi
    for REP in $(seq 1 "$REPEAT"); do
        for c in $CLIENTS; do
            # each pair in the other order on every other repeat: the first
            # run after the cluster's start is not always the same side
            order=$KEYS
            [ $(( REP % 2 )) -eq 0 ] && order="charge_wide charge_open try_refused try_admitted"
            for k in $order; do
                run_one "$mode" "$k" "$c"
            done
        done
    done
done

bad=$(psql_val -c "SELECT count(*) FROM pgmarket.verify_ledger()")
[ "$bad" -eq 0 ] || log "warning: verify_ledger() reports $bad problems"

# --- the report ---------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

MISSED=0
report() {
    echo "bench/ratelimit.sh: pgmarket $EXT_VERSION on PostgreSQL $PG_VERSION_STR, $(nproc) CPUs, $(date -u +'%Y-%m-%d %H:%M UTC')"
    echo "runs: pgbench -n -M prepared, ${RUN_SECS}s each, best of $REPEAT, -j min(clients,2), $USERS users x 3 keys, random key per transaction;"
    echo "      fsync on, synchronous_commit on, VACUUM + CHECKPOINT before each run"
    echo
    printf '%-14s %-30s %8s %10s %8s   %s\n' "limiter" "workload" "clients" "TPS" "ratio" "target"
    printf '%-14s %-30s %8s %10s %8s   %s\n' "--------------" "------------------------------" "-------" "----------" "--------" "------"
    for mode in $MODES; do
        for c in $CLIENTS; do
            local w=${TPS[$mode,charge_wide,$c]:-0} o=${TPS[$mode,charge_open,$c]:-0}
            local a=${TPS[$mode,try_admitted,$c]:-0} f=${TPS[$mode,try_refused,$c]:-0}
            local r verdict
            r=$(ratio "$w" "$o"); if ge "$r" 0.9; then verdict=met; else verdict=MISSED; MISSED=1; fi
            printf '%-14s %-30s %8s %10.0f %7sx   %s\n' "$mode" "${LABEL[charge_wide]}" "$c" "$w" "$r" ">= 0.9x open: $verdict"
            printf '%-14s %-30s %8s %10.0f %7sx\n' "$mode" "${LABEL[charge_open]}" "$c" "$o" "1.00"
            r=$(ratio "$f" "$a"); if ge "$r" 3; then verdict=met; else verdict=MISSED; MISSED=1; fi
            printf '%-14s %-30s %8s %10.0f %7sx   %s\n' "$mode" "${LABEL[try_refused]}" "$c" "$f" "$r" ">= 3x admitted: $verdict"
            printf '%-14s %-30s %8s %10.0f %7sx\n' "$mode" "${LABEL[try_admitted]}" "$c" "$a" "1.00"
            echo
        done
    done
    echo "ratio: limited over open; refused over admitted (both through the same catching function)."
    for mode in $MODES; do
        for k in $KEYS; do
            for c in $CLIENTS; do
                [ -n "${NOTE[$mode,$k,$c]:-}" ] && echo "note: $mode ${LABEL[$k]} at $c clients: ${NOTE[$mode,$k,$c]}"
            done
        done
    done
    echo "verify_ledger() problems: $bad"
    echo "total time: $(( $(date +%s) - T_START ))s; pgbench output in $BASE/runs/, server log $BASE/server.log"
}

mkdir -p "$RESULTS_DIR"
report >"$BASE/report.txt"
cp "$BASE/report.txt" "$RESULTS"
cat "$RESULTS"
if [ "$STRICT" -eq 1 ] && [ "$MISSED" -eq 1 ]; then
    exit 1
fi
exit 0
