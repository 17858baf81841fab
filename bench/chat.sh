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
#   bash bench/chat.sh [--no-build] [--seconds N] [--clients "1 2"] [--repeat N]
#                      [--strict]
#
# Prints a table and writes it to bench/results/chat.txt.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: bash bench/chat.sh [options]

  --no-build        do not run make install (the installed pgmarket must be 0.4.0)
  --seconds N       length of each pgbench run (default 8)
  --clients LIST    client counts (default "1 2")
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
USERS=1000
SEED=20240601

RUN_SECS=8
CLIENTS="1 2"
REPEAT=1
BUILD=1
STRICT=0

while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0 ;;
        --seconds) RUN_SECS=${2:?--seconds needs a value}; shift ;;
        --clients) CLIENTS=${2:?--clients needs a value}; shift ;;
        --repeat) REPEAT=${2:?--repeat needs a value}; shift ;;
        --strict) STRICT=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "chat.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case "$RUN_SECS" in ''|*[!0-9]*|0) echo "chat.sh: --seconds must be a positive integer" >&2; exit 2 ;; esac
case "$REPEAT" in ''|*[!0-9]*|0) echo "chat.sh: --repeat must be a positive integer" >&2; exit 2 ;; esac
for c in $CLIENTS; do
    case "$c" in ''|*[!0-9]*|0) echo "chat.sh: bad client count: $c" >&2; exit 2 ;; esac
done

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_server() {
    if [ -f "$DATA/postmaster.pid" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null 2>&1 ||
            as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ -x "$PGBIN/pgbench" ] || die "$PGBIN/pgbench not found"

if [ "$BUILD" -eq 1 ]; then
    log "building and installing pgmarket"
    make -s -C "$REPO" PG_CONFIG="$PG_CONFIG" install >/dev/null
fi

# --- the throwaway cluster ------------------------------------------------------
stop_server
rm -rf "$BASE"
mkdir -p "$BASE"
[ "$(id -u)" -eq 0 ] && chown postgres "$BASE"
cp "$SQLDIR"/*.sql "$BASE"/
[ "$(id -u)" -eq 0 ] && chown postgres "$BASE"/*.sql
as_pg "$PGBIN/initdb" -D "$DATA" -A trust -U postgres >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$BASE/server.log" -w \
    -o "-p $PORT -k $BASE -c listen_addresses='' -c shared_buffers=256MB -c autovacuum=off -c max_connections=40" \
    start >/dev/null
as_pg "$PGBIN/createdb" -h "$BASE" -p "$PORT" -U postgres "$DB"
log "setup: $USERS users, a session each, one session of 10000 messages"
psql_do -v users="$USERS" -f "$BASE/setup.sql" >/dev/null
VERSION=$(psql_do -At -c "SELECT extversion FROM pg_extension WHERE extname = 'pgmarket'")
[ "$VERSION" \> "0.3.9" ] || die "pgmarket $VERSION is installed; this benchmark needs 0.4.0"

# --- runs -----------------------------------------------------------------------
declare -A BEST
run() {                       # run NAME SCRIPT CLIENTS
    local name=$1 script=$2 c=$3 tps
    psql_do -c "CHECKPOINT" >/dev/null
    tps=$(as_pg "$PGBIN/pgbench" -n -M prepared -h "$BASE" -p "$PORT" -U postgres \
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
psql_do -At -c "SELECT count(*) FROM pgmarket.verify_ledger()" | grep -qx 0 ||
    die "verify_ledger reports problems after the runs"

# --- the table ------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }'; }
met() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { print (b > 0 && a / b >= t) ? "MET    " : "NOT MET" }'; }
FIRST_C=${CLIENTS%% *}
LAST_C=${CLIENTS##* }
{
    echo "pgmarket chat benchmark (bench/chat.sh)"
    echo "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "source:    $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet 2>/dev/null || echo ' (uncommitted changes)')"
    echo "server:    $(psql_do -At -c 'SELECT version()' | cut -d, -f1), pgmarket $VERSION; $(nproc) CPUs; shared_buffers 256MB, fsync on, synchronous_commit on"
    echo "runs:      pgbench -n -M prepared, ${RUN_SECS}s each, best of $REPEAT, random user of $USERS; CHECKPOINT before each (autovacuum off)"
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
    printf '  %-58s %s %s\n' "record_completion faster than the two calls ($FIRST_C client)" \
        "$(met "${BEST[record_completion/$FIRST_C]}" "${BEST[two_calls/$FIRST_C]}" 1.0)" \
        "$(ratio "${BEST[record_completion/$FIRST_C]}" "${BEST[two_calls/$FIRST_C]}")"
    printf '  %-58s %s %s\n' "record_completion faster than the two calls ($LAST_C clients)" \
        "$(met "${BEST[record_completion/$LAST_C]}" "${BEST[two_calls/$LAST_C]}" 1.0)" \
        "$(ratio "${BEST[record_completion/$LAST_C]}" "${BEST[two_calls/$LAST_C]}")"
    printf '  %-58s %s %s\n' "history >= 0.85x the plain SELECT ($FIRST_C client)" \
        "$(met "${BEST[history/$FIRST_C]}" "${BEST[plain_history/$FIRST_C]}" 0.85)" \
        "$(ratio "${BEST[history/$FIRST_C]}" "${BEST[plain_history/$FIRST_C]}")"
    printf '  %-58s %s %s\n' "history >= 0.85x the plain SELECT ($LAST_C clients)" \
        "$(met "${BEST[history/$LAST_C]}" "${BEST[plain_history/$LAST_C]}" 0.85)" \
        "$(ratio "${BEST[history/$LAST_C]}" "${BEST[plain_history/$LAST_C]}")"
} | tee "$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"

if [ "$STRICT" -eq 1 ] && grep -q "NOT MET" "$RESULTS"; then
    exit 1
fi
