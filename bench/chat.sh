#!/usr/bin/env bash
# bench/chat.sh: chat side by side, on one throwaway cluster.
#
#   record_completion (message + charge in one call) against
#   save_chat_message + deduct_balance as two calls in one transaction
#   (the atomic equivalent) and as two autocommitted calls (not atomic,
#   for reference); and get_chat_history of the last 50 messages of a
#   10,000-message session against the plain indexed SELECT of the same
#   rows.
#
#   bash bench/chat.sh [--no-build] [--seconds N] [--clients "1 8"] [--repeat N]
#                      [--strict]
#
# Targets (at every client count): record_completion >= 1.5x the two calls
# in one transaction; get_chat_history >= 0.85x the plain SELECT.
#
# The cluster: data in /tmp/pgmarket-chatbench/data, port 54392, socket in
# /tmp/pgmarket-chatbench (PGMARKET_BENCH_BASE and PGMARKET_BENCH_PORT
# choose others; PGMARKET_PG_CONFIG the PostgreSQL build), the settings of
# bench/lib.sh (fsync and synchronous_commit on, autovacuum off: CHECKPOINT
# before each run).  Run as root, the server runs as the postgres OS user;
# it is stopped on exit, whatever happens.  Prints a table and writes it to
# bench/results/chat.txt.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: bash bench/chat.sh [options]

  --no-build        do not run make / make install (assume it is installed)
  --seconds N       length of each pgbench run (default 8)
  --clients LIST    client counts (default "1 8")
  --repeat N        run every measurement N times, interleaved, keep the best (default 1)
  --strict          exit 1 when a target is not met
  -h, --help        this text
USAGE
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SQLDIR=$REPO/bench/chat
RESULTS=$REPO/bench/results/chat.txt

PGBIN=$("${PGMARKET_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)
PG_CONFIG=$PGBIN/pg_config
BASE=${PGMARKET_BENCH_BASE:-/tmp/pgmarket-chatbench}
DATA=$BASE/data
PORT=${PGMARKET_BENCH_PORT:-54392}
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

# --- the throwaway cluster ------------------------------------------------------
bench_initdb </dev/null
bench_start_server
cp "$SQLDIR"/*.sql "$BASE"/
[ "$(id -u)" -eq 0 ] && chown postgres "$BASE"/*.sql
as_pg "$PGBIN/createdb" -h "$BASE" -p "$PORT" -U "$DBUSER" "$DB"
log "setup: $USERS users, a session each, one session of 10000 messages"
psql_do -v users="$USERS" -f "$BASE/setup.sql" >"$BASE/setup.log" 2>&1 ||
    { tail -n 30 "$BASE/setup.log" >&2; die "setup failed (see $BASE/setup.log)"; }
VERSION=$(psql_val -c "SELECT extversion FROM pg_extension WHERE extname = 'pgmarket'")
printf "%s\n" 0.4.0 "$VERSION" | sort -V -C || die "pgmarket $VERSION is installed; this benchmark needs 0.4.0"
psql_do -c "CHECKPOINT" >/dev/null

# --- runs -----------------------------------------------------------------------
declare -A BEST
run() {                       # run NAME SCRIPT CLIENTS
    local name=$1 script=$2 c=$3 tps
    psql_do -c "CHECKPOINT" >/dev/null
    tps=$(as_pg "$PGBIN/pgbench" -n -M prepared -h "$BASE" -p "$PORT" -U "$DBUSER" \
            -c "$c" -j "$(( c < 2 ? c : 2 ))" -T "$RUN_SECS" -D users="$USERS" \
            --random-seed="$SEED" -f "$BASE/$script" "$DB" 2>&1 |
          sed -n 's/^tps = \([0-9.]*\) .*/\1/p')
    [ -n "$tps" ] || die "pgbench $script failed"
    tps=${tps%.*}
    log "$name, $c clients: $tps tps"
    if [ -z "${BEST[$name/$c]:-}" ] || [ "$tps" -gt "${BEST[$name/$c]}" ]; then
        BEST[$name/$c]=$tps
    fi
}
for r in $(seq 1 "$REPEAT"); do
    for c in $CLIENTS; do
        run record_completion record_completion.sql "$c"
        run two_calls two_calls.sql "$c"
        run two_calls_autocommit two_calls_autocommit.sql "$c"
        run history history.sql "$c"
        run plain_history plain_history.sql "$c"
    done
done
psql_val -c "SELECT count(*) FROM pgmarket.verify_ledger()" | grep -qx 0 ||
    die "verify_ledger reports problems after the runs"

# --- the table ------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }'; }
met() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { print (b > 0 && a / b >= t) ? "MET    " : "NOT MET" }'; }
{
    echo "pgmarket chat benchmark (bench/chat.sh)"
    echo "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "source:    $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet 2>/dev/null || echo ' (uncommitted changes)')"
    echo "server:    $(psql_do -At -c 'SELECT version()' | cut -d, -f1), pgmarket $VERSION; $(nproc) CPUs; shared_buffers 256MB, fsync on, synchronous_commit on"
    echo "runs:      pgbench -n -M prepared, ${RUN_SECS}s each, -j min(clients,2), best of $REPEAT, random user of $USERS; CHECKPOINT before each (autovacuum off)"
    echo
    echo "Completions: transactions per second (one message + one charge each)"
    printf '%-44s' "workload"; for c in $CLIENTS; do printf '%12s' "$c client(s)"; done; echo
    for w in record_completion two_calls two_calls_autocommit; do
        case $w in
            record_completion) label="record_completion (1 call, atomic)" ;;
            two_calls) label="save_chat_message + deduct_balance (tx)" ;;
            two_calls_autocommit) label="the same two calls, autocommit (not atomic)" ;;
        esac
        printf '%-44s' "$label"; for c in $CLIENTS; do printf '%12s' "${BEST[$w/$c]}"; done; echo
    done
    printf '%-44s' "ratio record_completion / two calls (tx)"
    for c in $CLIENTS; do printf '%12s' "$(ratio "${BEST[record_completion/$c]}" "${BEST[two_calls/$c]}")"; done; echo
    echo
    echo "History: the last 50 messages of a 10,000-message session, queries per second"
    printf '%-44s' "workload"; for c in $CLIENTS; do printf '%12s' "$c client(s)"; done; echo
    printf '%-44s' "get_chat_history(user, session, 50)"; for c in $CLIENTS; do printf '%12s' "${BEST[history/$c]}"; done; echo
    printf '%-44s' "plain SELECT ... ORDER BY message_id DESC"; for c in $CLIENTS; do printf '%12s' "${BEST[plain_history/$c]}"; done; echo
    printf '%-44s' "ratio get_chat_history / plain SELECT"
    for c in $CLIENTS; do printf '%12s' "$(ratio "${BEST[history/$c]}" "${BEST[plain_history/$c]}")"; done; echo
    echo
    echo "Targets"
    for c in $CLIENTS; do
        printf '  %-72s %s %s\n' "record_completion >= 1.5x the two calls in a transaction ($c client(s))" \
            "$(met "${BEST[record_completion/$c]}" "${BEST[two_calls/$c]}" 1.5)" \
            "$(ratio "${BEST[record_completion/$c]}" "${BEST[two_calls/$c]}")"
    done
    for c in $CLIENTS; do
        printf '  %-72s %s %s\n' "get_chat_history >= 0.85x the plain SELECT ($c client(s))" \
            "$(met "${BEST[history/$c]}" "${BEST[plain_history/$c]}" 0.85)" \
            "$(ratio "${BEST[history/$c]}" "${BEST[plain_history/$c]}")"
    done
    echo "total time: $(( $(date +%s) - T_START ))s; server log $BASE/server.log"
} | tee "$BASE/report.txt"
mkdir -p "$(dirname "$RESULTS")"
cp "$BASE/report.txt" "$RESULTS"

if [ "$STRICT" -eq 1 ] && grep -q "NOT MET" "$RESULTS"; then
    exit 1
fi
