#!/usr/bin/env bash
# bench/ledger.sh: pgmarket's ledger side by side with a hand-written
# PL/pgSQL baseline and a one-row-update floor, on one throwaway cluster.
#
#   bash bench/ledger.sh [--no-build] [--seconds N] [--clients "1 8 16"]
#                        [--baseline-only] [--batch-only] [--strict]
#
# Prints a table and writes it to bench/results/ledger.txt.  See
# bench/README.md for what is measured and how to read it.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bash bench/ledger.sh [options]

  --no-build        do not run make / make install (assume scripts/setup.sh did)
  --seconds N       length of each pgbench run (default 8)
  --clients LIST    client counts for the single-charge runs (default "1 8 16")
  --pause N         seconds to rest after the CHECKPOINT between runs (default 2)
  --repeat N        run every measurement N times, interleaved, and keep the
                    best TPS of each (default 1; the machine is shared and
                    noisy, interference only ever lowers a number)
  --baseline-only   skip pgmarket (no build, no CREATE EXTENSION): debug the
                    baseline and floor only
  --batch-only      the batch runs alone (no single-charge runs): a short
                    check of deduct_batch against its floor and the baseline
  --strict          exit 1 when a target is not met
  -h, --help        this text
EOF
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SQLDIR=$REPO/bench/ledger
RESULTS_DIR=$REPO/bench/results
RESULTS=$RESULTS_DIR/ledger.txt

PGBIN=$("${PGMARKET_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)
PG_CONFIG=$PGBIN/pg_config
BASE=${PGMARKET_BENCH_BASE:-/tmp/pgmarket-bench}          # socket directory, logs
DATA=$BASE/data                   # the throwaway cluster
PORT=${PGMARKET_BENCH_PORT:-54340}
DB=bench
DBUSER=postgres

USERS=10000                       # users on every side; user 1 is the hot one
FUNDS=1000000                     # credits per user: never runs out
BATCH=1000                        # charges per deduct_batch call
SEED=20240601                     # pgbench --random-seed, same for every run

RUN_SECS=8
CLIENTS="1 8 16"
PAUSE=2
REPEAT=1
BUILD=1
BASELINE_ONLY=0
BATCH_ONLY=0
STRICT=0

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

while [ $# -gt 0 ]; do
    case "$1" in
        --pause) PAUSE=${2:?--pause needs a value}; shift 2; continue ;;
        --pause=*) PAUSE=${1#*=}; shift; continue ;;
        --baseline-only) BASELINE_ONLY=1; BUILD=0; shift; continue ;;
        --batch-only) BATCH_ONLY=1; shift; continue ;;
    esac
    bench_option "$@" || { usage >&2; exit 2; }
    shift "$BENCH_SHIFT"
done
bench_check_options
case "$PAUSE" in ''|*[!0-9.]*) echo "ledger.sh: --pause must be a number of seconds" >&2; exit 2 ;; esac

SAMPLER_PID=
stop_server() {
    if [ -n "$SAMPLER_PID" ]; then
        kill "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
        SAMPLER_PID=
    fi
    bench_stop_server
}
BENCH_STOP=stop_server
bench_begin
rm -f "$BASE/report.txt"

# --- the cluster --------------------------------------------------------------
bench_initdb <<EOF
full_page_writes = on
log_lock_waits = on             # lock waits over deadlock_timeout (1s) are logged
EOF
bench_start_server
as_pg "$PGBIN/createdb" -h "$BASE" -p "$PORT" -U "$DBUSER" "$DB"

# --- data ---------------------------------------------------------------------
log "loading $USERS users on each side (funds $FUNDS credits each)"
psql_do -f "$SQLDIR/setup_common.sql" >/dev/null
psql_do -v users="$USERS" -v funds="$FUNDS" -f "$SQLDIR/setup_baseline.sql" >/dev/null
if [ "$BASELINE_ONLY" -eq 0 ]; then
    psql_do -v users="$USERS" -v funds="$FUNDS" -f "$SQLDIR/setup_pgmarket.sql" \
        >"$BASE/setup_pgmarket.log" 2>&1 ||
        { cat "$BASE/setup_pgmarket.log" >&2; die "pgmarket setup failed"; }
    n=$(psql_val -c "SELECT count(*) FROM pgmarket.balances")
    [ "$n" -eq "$USERS" ] || die "pgmarket.balances has $n rows, expected $USERS"
    avail=$(psql_val -c "SELECT available_balance FROM pgmarket.get_balance(bench_tools.uid(1))")
    log "pgmarket: $n balances, hot user available $avail"
fi
psql_do -c "VACUUM ANALYZE" -c "CHECKPOINT"
PG_VERSION_STR=$(psql_val -c "SHOW server_version")
EXT_VERSION=n/a
if [ "$BASELINE_ONLY" -eq 0 ]; then
    EXT_VERSION=$(psql_val -c "SELECT extversion FROM pg_extension WHERE extname = 'pgmarket'")
fi

# --- runs ---------------------------------------------------------------------
declare -A TPS NOTE WAITS ALL

ledger_rows() { psql_val -c "SELECT count(*) FROM pgmarket.ledger"; }

# run_one KEY SCRIPT CLIENTS LO HI CHECK_PER_TXN
#   KEY names the result; CHECK_PER_TXN > 0 makes it count pgmarket.ledger rows
#   before and after and compare with the transactions pgbench reports.
run_one() {
    local key=$1 script=$2 clients=$3 lo=$4 hi=$5 per=$6
    case "$BATCH_ONLY|$key" in 1\|*\|batch\|*|1\|*\|build\|*|0\|*) ;; *) return 0 ;; esac
    local jobs=$(( clients < 2 ? clients : 2 ))
    local out="$BASE/runs/${key//|/_}.$REP.log" rc=0 before=0 after tps processed note=

    psql_do -c "VACUUM" -c "CHECKPOINT"
    sleep "$PAUSE"
    [ "$per" -gt 0 ] && before=$(ledger_rows)

    SAMPLER_PID=
    if [ "$clients" -ge 8 ] && [ "$RUN_SECS" -ge 4 ]; then
        ( sleep 1; psql_val -c "SELECT bench_tools.sample_waits($RUN_SECS - 2, 0.1)" \
              >"$out.waits" 2>&1 ) &
        SAMPLER_PID=$!
    fi

    as_pg "$PGBIN/pgbench" -h "$BASE" -p "$PORT" -U "$DBUSER" -n -M prepared \
        -T "$RUN_SECS" -c "$clients" -j "$jobs" --random-seed="$SEED" \
        -D lo="$lo" -D hi="$hi" -f "$SQLDIR/$script" "$DB" >"$out" 2>&1 || rc=$?

    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out" | tail -n 1)
    processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out" | tail -n 1)
    tps=${tps:-0}
    if [ "$rc" -ne 0 ] || [ "$tps" = 0 ]; then
        note="pgbench exit $rc: $(grep -m 1 -E 'ERROR|error|FATAL' "$out" | cut -c 1-300)"
    elif [ "$per" -gt 0 ]; then
        after=$(ledger_rows)
        if [ $(( after - before )) -ne $(( processed * per )) ]; then
            note="ledger grew by $(( after - before )) rows, expected $(( processed * per ))"
        fi
    fi

    # Keep the best run of this measurement, and its wait-event profile.
    ALL[$key]="${ALL[$key]:+${ALL[$key]} }$(printf '%.0f' "$tps")"
    if [ -z "${TPS[$key]:-}" ] || awk -v a="$tps" -v b="${TPS[$key]}" 'BEGIN { exit !(a > b) }'; then
        TPS[$key]=$tps
        if [ -n "$SAMPLER_PID" ]; then
            wait "$SAMPLER_PID" 2>/dev/null || true
            WAITS[$key]=$(head -c 400 "$out.waits")
        fi
    fi
    if [ -n "$SAMPLER_PID" ]; then
        wait "$SAMPLER_PID" 2>/dev/null || true
        SAMPLER_PID=
    fi
    [ -n "$note" ] && NOTE[$key]="${NOTE[$key]:+${NOTE[$key]}; }$note"
    log "$(printf '%-34s %10s tps  %s' "$key" "$tps" "$note")"
}

SYSTEMS="baseline floor"
[ "$BASELINE_ONLY" -eq 0 ] && SYSTEMS="pgmarket baseline floor"

for dist in random hot; do
    if [ "$dist" = random ]; then lo=1; hi=$USERS; else lo=1; hi=1; fi
    for c in $CLIENTS; do
        for REP in $(seq 1 "$REPEAT"); do
        for sys in $SYSTEMS; do
            case "$sys" in
                pgmarket) run_one "pgmarket|$dist|$c" pgmarket_deduct.sql "$c" "$lo" "$hi" 1 ;;
                baseline) run_one "baseline|$dist|$c" baseline_deduct.sql "$c" "$lo" "$hi" 0 ;;
                floor)    run_one "floor|$dist|$c" floor_update.sql "$c" "$lo" "$hi" 0 ;;
            esac
        done
        done
    done
done

# Batches: deduct_batch, its floor (the same writes with no checks, into
# copies of pgmarket's tables made when the batch runs begin) and the
# baseline's loop, interleaved.
if [ "$BASELINE_ONLY" -eq 0 ]; then
    log "batch floor: copies of pgmarket.balances and pgmarket.ledger"
    psql_do -f "$SQLDIR/setup_floor_batch.sql" >/dev/null
    psql_do -c "VACUUM ANALYZE bench_floor.balances" -c "VACUUM ANALYZE bench_floor.ledger"
fi
for REP in $(seq 1 "$REPEAT"); do
    if [ "$BASELINE_ONLY" -eq 0 ]; then
        run_one "pgmarket|batch|1" pgmarket_batch.sql 1 1 "$USERS" "$BATCH"
        run_one "floor|batch|1" floor_batch.sql 1 1 "$USERS" 0
        run_one "pgmarket|build|1" pgmarket_batch_build.sql 1 1 "$USERS" 0
    fi
    run_one "baseline|batch|1" baseline_batch.sql 1 1 "$USERS" 0
done

# --- after the runs -----------------------------------------------------------
VERIFY=n/a
LEDGER_ROWS=n/a
if [ "$BASELINE_ONLY" -eq 0 ]; then
    log "verify_ledger()"
    VERIFY=$(psql_val -c "SELECT count(*) || ' problem(s)' || coalesce(': ' || string_agg(user_id || ' ' || problem, '; '), '')
                            FROM (SELECT * FROM pgmarket.verify_ledger() LIMIT 5) v" 2>&1 | head -c 600)
    LEDGER_ROWS=$(ledger_rows)
fi
LOG_ERRORS=$(grep -cE '(ERROR|FATAL|PANIC):' "$BASE/server.log" || true)
LOG_LOCKWAITS=$(grep -c 'still waiting for' "$BASE/server.log" || true)
LOG_FIRST_ERRORS=$(grep -E '(ERROR|FATAL|PANIC):' "$BASE/server.log" | head -n 3 | cut -c 1-240 || true)

stop_server
T_END=$(date +%s)

# --- the report ---------------------------------------------------------------
num()   { awk -v x="${1:-}" 'BEGIN { if (x == "" || x + 0 == 0) print "-"; else printf "%.0f", x }'; }
ratio() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a == "" || b == "" || a + 0 == 0 || b + 0 == 0) print "-"; else printf "%.2fx", a / b }'; }
ge()    { awk -v a="${1:-}" -v b="${2:-}" -v k="${3:-1}" 'BEGIN { exit !(a != "" && b != "" && a + 0 > 0 && b + 0 > 0 && a + 0 >= k * b) }'; }

MISSED=0
target() {                        # target LABEL HAVE(empty=not run) OK(0/1) DETAIL
    local label=$1 have=$2 ok=$3 detail=$4 verdict
    if [ -z "$have" ]; then verdict="not run"
    elif [ "$ok" -eq 1 ]; then verdict=MET
    else verdict="NOT MET"; MISSED=$(( MISSED + 1 )); fi
    printf '  %-58s %-8s %s\n' "$label" "$verdict" "$detail"
}
check() { if ge "$@"; then echo 1; else echo 0; fi; }

report() {
    local dist c key first
    echo "pgmarket ledger benchmark (bench/ledger.sh)"
    echo "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "source:    $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'no commit') $(git -C "$REPO" status --porcelain 2>/dev/null | grep -q . && echo '(uncommitted changes)')"
    echo "server:    PostgreSQL $PG_VERSION_STR, pgmarket $EXT_VERSION; $(nproc) CPUs; shared_buffers 256MB, fsync on, synchronous_commit on"
    echo "runs:      pgbench -n -M prepared, ${RUN_SECS}s each, best of $REPEAT, -j min(clients,2); VACUUM, CHECKPOINT, ${PAUSE}s pause before each (autovacuum off)"
    echo "data:      $USERS users on each side, user 1 is the hot user; charge 0.000123 credits, 4 model ids"
    echo
    echo "Single charges: transactions per second (one charge per transaction)"
    printf '%-16s %-7s %7s %10s %10s %10s %9s %9s %11s\n' \
        workload dist clients pgmarket baseline floor pgm/base pgm/floor "pgm@N/pgm@1"
    for dist in random hot; do
        first=$(set -- $CLIENTS; echo "$1")
        for c in $CLIENTS; do
            printf '%-16s %-7s %7s %10s %10s %10s %9s %9s %11s\n' \
                deduct_balance "$dist" "$c" \
                "$(num "${TPS[pgmarket|$dist|$c]:-}")" \
                "$(num "${TPS[baseline|$dist|$c]:-}")" \
                "$(num "${TPS[floor|$dist|$c]:-}")" \
                "$(ratio "${TPS[pgmarket|$dist|$c]:-}" "${TPS[baseline|$dist|$c]:-}")" \
                "$(ratio "${TPS[pgmarket|$dist|$c]:-}" "${TPS[floor|$dist|$c]:-}")" \
                "$(ratio "${TPS[pgmarket|$dist|$c]:-}" "${TPS[pgmarket|$dist|$first]:-}")"
        done
    done
    echo
    echo "Batches of $BATCH charges of random users, 1 client: charges per second (= $BATCH x calls/s)"
    local pb=${TPS[pgmarket|batch|1]:-} bb=${TPS[baseline|batch|1]:-} build=${TPS[pgmarket|build|1]:-}
    local fb=${TPS[floor|batch|1]:-}
    local pbc bbc fbc
    pbc=$(awk -v t="$pb" -v n="$BATCH" 'BEGIN { if (t != "") printf "%.0f", t * n }')
    bbc=$(awk -v t="$bb" -v n="$BATCH" 'BEGIN { if (t != "") printf "%.0f", t * n }')
    fbc=$(awk -v t="$fb" -v n="$BATCH" 'BEGIN { if (t != "") printf "%.0f", t * n }')
    printf '%-44s %10s %12s\n' workload calls/s charges/s
    printf '%-44s %10s %12s\n' "pgmarket.deduct_batch(array of $BATCH)" "$(num "$pb")" "$(num "$pbc")"
    printf '%-44s %10s %12s\n' "floor: INSERT + UPDATE from unnest, no checks" "$(num "$fb")" "$(num "$fbc")"
    printf '%-44s %10s %12s\n' "baseline_deduct x $BATCH in one statement" "$(num "$bb")" "$(num "$bbc")"
    printf '%-44s %10s %12s\n' "ratio pgmarket/floor" "" "$(ratio "$pb" "$fb")"
    printf '%-44s %10s %12s\n' "ratio pgmarket/baseline" "" "$(ratio "$pb" "$bb")"
    printf '%-44s %10s %12s\n' "building the array alone (no call)" "$(num "$build")" ""
    if [ -n "$pb" ] && [ -n "$build" ]; then
        echo "  array building is ~$(awk -v a="$pb" -v b="$build" 'BEGIN { if (b > 0) printf "%.0f", 100 * a / b; else print "?" }')% of a deduct_batch transaction (calls/s / build-only calls/s)"
    fi
    echo
    echo "Targets"
    local r8p=${TPS[pgmarket|random|8]:-} r8b=${TPS[baseline|random|8]:-}
    local r1p=${TPS[pgmarket|random|1]:-} r1f=${TPS[floor|random|1]:-}
    local h1p=${TPS[pgmarket|hot|1]:-} h1f=${TPS[floor|hot|1]:-}
    local h16p=${TPS[pgmarket|hot|16]:-} h16b=${TPS[baseline|hot|16]:-}
    local h8p=${TPS[pgmarket|hot|8]:-} h8b=${TPS[baseline|hot|8]:-}
    target "random user, 8 clients: pgmarket >= 1.3x baseline" "$r8p" \
        "$(check "$r8p" "$r8b" 1.3)" "$(ratio "$r8p" "$r8b")"
    target "random user, 1 client: pgmarket >= 0.8x floor" "$r1p" \
        "$(check "$r1p" "$r1f" 0.8)" "$(ratio "$r1p" "$r1f")"
    target "hot user, 1 client: pgmarket >= 0.8x floor" "$h1p" \
        "$(check "$h1p" "$h1f" 0.8)" "$(ratio "$h1p" "$h1f")"
    target "hot user, 8 clients: pgmarket >= its own 1-client rate" "$h8p" \
        "$(check "$h8p" "$h1p" 1)" "$(ratio "$h8p" "$h1p")"
    target "hot user, 8 clients: pgmarket >= 2x baseline" "$h8p" \
        "$(check "$h8p" "$h8b" 2)" "$(ratio "$h8p" "$h8b")"
    target "hot user, 16 clients: pgmarket >= its own 1-client rate" "$h16p" \
        "$(check "$h16p" "$h1p" 1)" "$(ratio "$h16p" "$h1p")"
    target "hot user, 16 clients: pgmarket >= 2x baseline" "$h16p" \
        "$(check "$h16p" "$h16b" 2)" "$(ratio "$h16p" "$h16b")"
    target "deduct_batch >= 100,000 charges/s" "$pbc" \
        "$(check "$pbc" 100000 1)" "$(num "$pbc") charges/s"
    target "deduct_batch >= 0.8x its floor (same writes, no checks)" "$pb" \
        "$(check "$pb" "$fb" 0.8)" "$(ratio "$pb" "$fb")"
    target "deduct_batch >= 5x the baseline's loop" "$pb" \
        "$(check "$pb" "$bb" 5)" "$(ratio "$pb" "$bb")"
    echo
    echo "Checks"
    echo "  verify_ledger() after the runs: $VERIFY"
    [ "$BASELINE_ONLY" -eq 0 ] && echo "  pgmarket.ledger rows after the runs: $LEDGER_ROWS"
    echo "  server log: $LOG_ERRORS ERROR/FATAL/PANIC line(s), $LOG_LOCKWAITS lock wait(s) over 1s"
    if [ -n "$LOG_FIRST_ERRORS" ]; then
        printf '%s\n' "$LOG_FIRST_ERRORS" | sed 's/^/    /'
    fi
    local k any=0
    for k in "${!NOTE[@]}"; do
        if [ -n "${NOTE[$k]}" ]; then echo "  problem in $k: ${NOTE[$k]}"; any=1; fi
    done
    [ "$any" -eq 0 ] && echo "  every run completed without errors"
    if [ "$REPEAT" -gt 1 ]; then
        echo
        echo "Every run's TPS (the tables show the best)"
        for k in $(printf '%s\n' "${!ALL[@]}" | sort -t'|' -k2,2r -k3,3n -k1,1); do
            printf '  %-22s %s\n' "$k" "${ALL[$k]}"
        done
    fi
    echo
    echo "Wait events of the pgbench backends (sampled every 0.1s; CPU = running, idle = waiting for the client)"
    for k in $(printf '%s\n' "${!WAITS[@]}" | sort -t'|' -k2,2r -k3,3n -k1,1); do
        printf '  %-22s %s\n' "$k" "${WAITS[$k]}"
    done
    echo
    echo "total time: $(( T_END - T_START ))s; per-run pgbench output in $BASE/runs/, server log $BASE/server.log"
}

mkdir -p "$RESULTS_DIR"
report >"$BASE/report.txt"       # not in a pipe: report counts MISSED
cp "$BASE/report.txt" "$RESULTS"
cat "$RESULTS"
log "wrote $RESULTS"
if [ "$STRICT" -eq 1 ] && [ "$MISSED" -gt 0 ]; then
    exit 1
fi
exit 0
