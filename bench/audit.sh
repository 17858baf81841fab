#!/usr/bin/env bash
# bench/audit.sh: the cost of auditing writes, side by side on one throwaway
# cluster.
#
#   bash bench/audit.sh [--no-build] [--seconds N] [--clients "1 4"]
#                       [--repeat N] [--strict]
#
# Four copies of one accounts-like table of 100,000 rows:
#
#   none      not audited
#   audited   enable_audit (password_hash redacted): pgmarket's statement
#             triggers, one audit row per changed row from the transition
#             tables, written into audit_log in batches
#   row       the same C function as the row trigger it was up to 0.7.0
#             (AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW): the form a
#             partitioned table keeps, and what one-row transactions must not
#             lose against
#   plpgsql   the usual PL/pgSQL trigger: to_jsonb(OLD) / to_jsonb(NEW)
#             inserted into an audit table, per row
#
# Workloads (pgbench -n, same seed for every table): one-row
# transactions (an UPDATE of a random row; an INSERT of a new row), and
# 1,000-row statements (an UPDATE of a range of 1,000 rows; an INSERT ...
# SELECT of 1,000 new rows), reported in rows/s.  Then seal_audit() over
# everything written, in rows/s, and verify_audit().
#
# Targets: on 1,000-row statements, audited >= 0.6x none; on one-row
# transactions, audited >= 1.0x row (the 0.7.0 trigger); the ratio of
# one-row transactions to none is reported beside them.
#
# The cluster: data in /tmp/pgmarket-auditbench/data, port 54391, socket in
# /tmp/pgmarket-auditbench (PGMARKET_BENCH_BASE and PGMARKET_BENCH_PORT
# change them; PGMARKET_PG_CONFIG the PostgreSQL build), fsync and
# synchronous_commit on, autovacuum off (VACUUM and CHECKPOINT before each
# run), min_wal_size large enough that the runs reuse WAL segments instead
# of creating them (a server that has run a while does the same).  The
# table goes to stdout and to bench/results/audit.txt; per-run pgbench output
# stays in BASE/runs/.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    cat <<'EOF'
options:
  --no-build        do not run make / make install (assume it is installed)
  --seconds N       length of each pgbench run (default 8)
  --clients LIST    client counts (default "1 4")
  --repeat N        run every measurement N times, interleaved, and keep the
                    best of each (default 2)
  --strict          exit 1 when a target is missed
  -h, --help        this text
EOF
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SQLDIR=$REPO/bench/audit
RESULTS_DIR=$REPO/bench/results
RESULTS=$RESULTS_DIR/audit.txt

PGBIN=$("${PGMARKET_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)
PG_CONFIG=$PGBIN/pg_config
BASE=${PGMARKET_BENCH_BASE:-/tmp/pgmarket-auditbench}
DATA=$BASE/data
KEYFILE=$BASE/master.key
PORT=${PGMARKET_BENCH_PORT:-54391}
DB=bench
DBUSER=postgres
SEED=20240601

RUN_SECS=8
CLIENTS="1 4"
REPEAT=2
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
min_wal_size = 2GB
EOF
bench_start_server
as_pg "$PGBIN/createdb" -h "$BASE" -p "$PORT" -U "$DBUSER" "$DB"

# --- data ---------------------------------------------------------------------
log "loading four tables of 100,000 rows"
psql_do -f "$SQLDIR/setup.sql" >"$BASE/setup.log" 2>&1 ||
    { tail -n 30 "$BASE/setup.log" >&2; die "setup failed (see $BASE/setup.log)"; }
forms=$(psql_val -c "SELECT string_agg(tgrelid::regclass || ':' || tgname || ':' ||
                              CASE WHEN tgtype::int & 1 = 1 THEN 'row' ELSE 'statement' END, ' ' ORDER BY 1)
                       FROM pg_trigger WHERE tgfoid = 'pgmarket.audit_trigger()'::regprocedure
                        AND tgrelid IN ('t_audited'::regclass, 't_row'::regclass)
                        AND tgname <> 'pgmarket_audit_truncate'")
log "audit triggers: $forms"
# WAL segments to reuse: the runs write a few GB of WAL, and creating a
# segment (zero-filling 16 MB) is a cost of a fresh cluster, not of auditing
log "writing WAL once, so that the runs reuse its segments"
psql_do -c "CREATE TABLE wal_warmup AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 2500000) g" \
    -c "DROP TABLE wal_warmup" -c "CHECKPOINT" -c "CHECKPOINT" >/dev/null
psql_do -c "VACUUM ANALYZE" -c "CHECKPOINT"
PG_VERSION_STR=$(psql_val -c "SHOW server_version")
EXT_VERSION=$(psql_val -c "SELECT extversion FROM pg_extension WHERE extname = 'pgmarket'")

# --- runs ---------------------------------------------------------------------
declare -A RATE NOTE WAL
TABLES="none audited row plpgsql"
WORKLOADS="update insert bulk_update bulk_insert"
declare -A ROWS=([update]=1 [insert]=1 [bulk_update]=1000 [bulk_insert]=1000)
declare -A WLABEL=([update]="one-row UPDATE (tx/s)" [insert]="one-row INSERT (tx/s)"
                   [bulk_update]="1,000-row UPDATE (rows/s)" [bulk_insert]="1,000-row INSERT (rows/s)")

# run_one TABLE WORKLOAD CLIENTS: pgbench's TPS times the rows per statement
run_one() {
    local tbl=$1 wl=$2 clients=$3
    local jobs=$(( clients < 2 ? clients : 2 ))
    local out="$BASE/runs/${tbl}_${wl}_c${clients}.$REP.log" rc=0 tps failed rate
    local lsn0 lsn1 done_tx
    psql_do -c "VACUUM t_$tbl" >/dev/null
    psql_do -c "CHECKPOINT" >/dev/null
    lsn0=$(psql_val -c "SELECT pg_current_wal_insert_lsn()")
    as_pg "$PGBIN/pgbench" -h "$BASE" -p "$PORT" -U "$DBUSER" -n \
        -c "$clients" -j "$jobs" -T "$RUN_SECS" --random-seed="$SEED" \
        -D tbl="t_$tbl" -f "$SQLDIR/$wl.sql" "$DB" >"$out" 2>&1 || rc=$?
    lsn1=$(psql_val -c "SELECT pg_current_wal_insert_lsn()")
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$out")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
    done_tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
    # WAL written by the run (the full-page images after the CHECKPOINT
    # included: every run starts from one), per row written
    if [ -n "$done_tx" ] && [ "$done_tx" -gt 0 ]; then
        WAL[$tbl,$wl,$clients]=$(psql_val -c "SELECT round(pg_wal_lsn_diff('$lsn1', '$lsn0')
                                               / ($done_tx * ${ROWS[$wl]}))")
    fi
    if [ "$rc" -ne 0 ] || [ -z "$tps" ] || [ "${failed:-0}" != 0 ]; then
        NOTE[$tbl,$wl,$clients]="pgbench exit $rc, failed ${failed:-?}: $(grep -m 1 -E 'ERROR|error|FATAL' "$out" | cut -c 1-200)"
        log "$tbl $wl c=$clients: FAILED (${NOTE[$tbl,$wl,$clients]})"
        rate=0
    else
        rate=$(awk -v t="$tps" -v n="${ROWS[$wl]}" 'BEGIN { printf "%.0f", t * n }')
        log "$tbl $wl c=$clients: $rate"
    fi
    local best=${RATE[$tbl,$wl,$clients]:-0}
    if [ "$rate" -gt "$best" ]; then
        RATE[$tbl,$wl,$clients]=$rate
    fi
}

for REP in $(seq 1 "$REPEAT"); do
    for c in $CLIENTS; do
        for wl in $WORKLOADS; do
            for t in $TABLES; do
                run_one "$t" "$wl" "$c"
            done
        done
    done
done

# seal everything the C triggers wrote, then verify it
rows=$(psql_val -c 'SELECT count(*) FROM pgmarket.audit_log')
seal_ms=$(psql_val -c "SELECT round(extract(epoch FROM clock_timestamp() - t0) * 1000) FROM
       (SELECT clock_timestamp() AS t0) a, LATERAL (SELECT pgmarket.seal_audit()) s")
sealed=$(psql_val -c 'SELECT coalesce(sum(row_count), 0) FROM pgmarket.audit_seals')
verify=$(psql_val -c "SELECT coalesce(first_bad_id::text, 'ok') || ' (' || checked || ' rows checked)' FROM pgmarket.verify_audit()")
seal_rate=$(( sealed * 1000 / (seal_ms > 0 ? seal_ms : 1) ))

# --- the report ---------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

MISSED=0
report() {
    echo "bench/audit.sh: pgmarket $EXT_VERSION on PostgreSQL $PG_VERSION_STR, $(nproc) CPUs, $(date -u +'%Y-%m-%d %H:%M UTC')"
    echo "runs: pgbench -n, ${RUN_SECS}s each, best of $REPEAT, interleaved; 100,000-row accounts-like tables;"
    echo "      fsync on, synchronous_commit on, VACUUM + CHECKPOINT before each run"
    echo
    printf '%-27s %7s %9s %9s %9s %9s   %s\n' "workload" "clients" "none" "audited" "row" "plpgsql" "audited/none  audited/row  target"
    for c in $CLIENTS; do
        for wl in $WORKLOADS; do
            local n=${RATE[none,$wl,$c]:-0} a=${RATE[audited,$wl,$c]:-0}
            local r=${RATE[row,$wl,$c]:-0} p=${RATE[plpgsql,$wl,$c]:-0}
            local an ar verdict
            an=$(ratio "$a" "$n"); ar=$(ratio "$a" "$r")
            case "$wl" in
                bulk_*)
                    if ge "$an" 0.6; then verdict="audited >= 0.6x none: met"
                    else verdict="audited >= 0.6x none: MISSED"; MISSED=1; fi ;;
                *)
                    if ge "$ar" 1.0; then verdict="audited >= 1.0x row: met"
                    else verdict="audited >= 1.0x row: MISSED"; MISSED=1; fi ;;
            esac
            printf '%-27s %7s %9s %9s %9s %9s   %12sx %11sx  %s\n' "${WLABEL[$wl]}" "$c" "$n" "$a" "$r" "$p" "$an" "$ar" "$verdict"
        done
        echo
    done
    echo "WAL bytes per row written (pg_current_wal_insert_lsn around each run, the last run of each)"
    printf '%-27s %7s %9s %9s %9s %9s   %s\n' "workload" "clients" "none" "audited" "row" "plpgsql" "audited/none"
    for c in $CLIENTS; do
        for wl in $WORKLOADS; do
            local wn=${WAL[none,$wl,$c]:-0} wa=${WAL[audited,$wl,$c]:-0}
            printf '%-27s %7s %9s %9s %9s %9s   %11sx\n' "${WLABEL[$wl]%% (*}" "$c" "$wn" "$wa" \
                "${WAL[row,$wl,$c]:-0}" "${WAL[plpgsql,$wl,$c]:-0}" "$(ratio "$wa" "$wn")"
        done
    done
    echo
    echo "none: no audit; audited: enable_audit's statement triggers; row: the row trigger of 0.7.0 (same"
    echo "C function, FOR EACH ROW); plpgsql: a PL/pgSQL to_jsonb(OLD)/to_jsonb(NEW) trigger."
    echo "Over 1-row transactions the target compares with the row trigger (one-row transactions must not"
    echo "get slower than 0.7.0's trigger); the ratio to no audit is shown beside it."
    for t in $TABLES; do for wl in $WORKLOADS; do for c in $CLIENTS; do
        [ -n "${NOTE[$t,$wl,$c]:-}" ] && echo "note: $t $wl at $c clients: ${NOTE[$t,$wl,$c]}"
    done; done; done
    echo "seal_audit: $sealed of $rows audit rows in $seal_ms ms = $seal_rate rows/s; verify_audit: $verify"
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
