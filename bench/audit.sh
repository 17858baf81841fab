#!/usr/bin/env bash
# bench/audit.sh: the cost of auditing writes, side by side on one throwaway
# cluster (/tmp/pgmarket-auditbench, port 54391, stopped on exit):
#
#   none      an accounts-like table without any audit
#   C         the same table with pgmarket's C trigger (enable_audit)
#   PL/pgSQL  the same table with the usual to_jsonb(OLD)/to_jsonb(NEW) trigger
#   pgaudit   the unaudited table with pgaudit.log = 'write' (statement
#             logging to the server log; needs shared_preload_libraries, so
#             it runs last, after a restart; skipped when not installed)
#
# Workloads (pgbench, same seed for all): "mixed" = one-row transactions,
# 3 UPDATEs of a random row for 1 INSERT of a new row; "bulk" = statements
# of 1000 rows (UPDATE of a range, INSERT ... SELECT), reported in rows/s,
# where the per-row cost of the trigger shows.  Then seal_audit() over
# everything the C trigger wrote, in rows/s.
#
#   bash bench/audit.sh [--no-build] [--seconds N] [--clients N]
#
# Results go to bench/results/audit.txt.  Targets: C >= 0.85x none and
# >= 1.6x PL/pgSQL; seal_audit >= 100,000 rows/s.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SQLDIR=$REPO/bench/audit
RESULTS=$REPO/bench/results/audit.txt
PGBIN=$("${PGMARKET_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)
BASE=${PGMARKET_BENCH_BASE:-/tmp/pgmarket-auditbench}
DATA=$BASE/data
PORT=${PGMARKET_BENCH_PORT:-54391}
DB=bench
SECS=10
CLIENTS=4
BUILD=1
SEED=20240601

while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0 ;;
        --seconds) SECS=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$(id -u)" -eq 0 ]; then
    as_pg() { runuser -u postgres -- "$@"; }
    OSUSER=postgres
else
    as_pg() { "$@"; }
    OSUSER=$(id -un)
fi

stop() {
    if [ -f "$DATA/postmaster.pid" ]; then
        (cd / && as_pg "$PGBIN/pg_ctl" stop -D "$DATA" -m fast -w) >/dev/null 2>&1 || true
    fi
}
trap stop EXIT

if [ "$BUILD" -eq 1 ]; then
    make -C "$REPO" PG_CONFIG=$PGBIN/pg_config >/dev/null
    make -C "$REPO" PG_CONFIG=$PGBIN/pg_config install >/dev/null
fi

stop
rm -rf "$BASE"
mkdir -p "$BASE"
chown "$OSUSER" "$BASE"
cp -r "$SQLDIR" "$BASE/sql"
chown -R "$OSUSER" "$BASE/sql"
as_pg "$PGBIN/initdb" -D "$DATA" -A trust -U postgres >/dev/null
cat >> "$DATA/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$BASE'
shared_buffers = 256MB
max_wal_size = 4GB
synchronous_commit = on
pgmarket.master_key_file = 'bench.key'
CONF
as_pg sh -c "umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | sed 's/^/1:/' > '$DATA/bench.key'"
start() { (cd / && as_pg "$PGBIN/pg_ctl" start -D "$DATA" -l "$BASE/log" -w) >/dev/null; }
start
PSQL=(as_pg "$PGBIN/psql" -X -q -h "$BASE" -p "$PORT" -U postgres -v ON_ERROR_STOP=1)
"${PSQL[@]}" -d postgres -c "CREATE DATABASE $DB"
"${PSQL[@]}" -d "$DB" -f "$BASE/sql/setup.sql" >/dev/null

# pgbench TPS of one run
run() {    # table workload-files...
    local tbl=$1; shift
    "${PSQL[@]}" -d "$DB" -c 'CHECKPOINT' >/dev/null
    sleep 1
    (cd "$BASE/sql" && as_pg env ${PGOPTIONS_EXTRA:+PGOPTIONS="$PGOPTIONS_EXTRA"} \
        "$PGBIN/pgbench" -n -h "$BASE" -p "$PORT" -U postgres -c "$CLIENTS" \
        -j "$CLIENTS" -T "$SECS" --random-seed=$SEED -D tbl="$tbl" "$@" "$DB" 2>&1) |
        awk '/^tps = / { printf "%.0f", $3 }'
}

declare -A R
for v in none c plpgsql; do
    R[$v,mixed]=$(run "t_$v" -f update.sql@3 -f insert.sql@1)
    R[$v,bulk_u]=$(( $(run "t_$v" -f bulk_update.sql) * 1000 ))
    R[$v,bulk_i]=$(( $(run "t_$v" -f bulk_insert.sql) * 1000 ))
done

# seal everything the C trigger wrote
rows=$("${PSQL[@]}" -d "$DB" -At -c 'SELECT count(*) FROM pgmarket.audit_log')
seal_ms=$("${PSQL[@]}" -d "$DB" -At -c \
    "SELECT round(extract(epoch FROM clock_timestamp() - t0) * 1000) FROM
       (SELECT clock_timestamp() AS t0) a, LATERAL (SELECT pgmarket.seal_audit()) s")
sealed=$("${PSQL[@]}" -d "$DB" -At -c 'SELECT sum(row_count) FROM pgmarket.audit_seals')
verify=$("${PSQL[@]}" -d "$DB" -At -c \
    "SELECT coalesce(first_bad_id::text, 'ok') || ' ' || checked FROM pgmarket.verify_audit()")
seal_rate=$(( sealed * 1000 / (seal_ms > 0 ? seal_ms : 1) ))

# pgaudit, after a restart with it preloaded
pgaudit_note=""
if [ -f "$($PGBIN/pg_config --pkglibdir)/pgaudit.so" ]; then
    echo "shared_preload_libraries = 'pgaudit'" >> "$DATA/postgresql.conf"
    stop; start
    "${PSQL[@]}" -d "$DB" -c 'CREATE EXTENSION IF NOT EXISTS pgaudit' >/dev/null
    export PGOPTIONS_EXTRA='-c pgaudit.log=write'
    R[pgaudit,mixed]=$(run t_none -f update.sql@3 -f insert.sql@1)
    R[pgaudit,bulk_u]=$(( $(run t_none -f bulk_update.sql) * 1000 ))
    R[pgaudit,bulk_i]=$(( $(run t_none -f bulk_insert.sql) * 1000 ))
    unset PGOPTIONS_EXTRA
else
    pgaudit_note="pgaudit: not installed (apt-get install postgresql-15-pgaudit); skipped"
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
{
    echo "bench/audit.sh: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, PostgreSQL $($PGBIN/postgres --version | awk '{print $3}'),"
    echo "$CLIENTS clients, $SECS s per run, synchronous_commit = on, 100,000-row accounts-like tables"
    echo
    printf '%-10s %14s %16s %16s\n' variant "mixed (tps)" "bulk UPDATE r/s" "bulk INSERT r/s"
    for v in none c plpgsql pgaudit; do
        [ -n "${R[$v,mixed]:-}" ] || continue
        printf '%-10s %14s %16s %16s\n' "$v" "${R[$v,mixed]}" "${R[$v,bulk_u]}" "${R[$v,bulk_i]}"
    done
    echo
    printf 'C / none:      mixed %s  bulk UPDATE %s  bulk INSERT %s   (target >= 0.85)\n' \
        "$(ratio "${R[c,mixed]}" "${R[none,mixed]}")" "$(ratio "${R[c,bulk_u]}" "${R[none,bulk_u]}")" \
        "$(ratio "${R[c,bulk_i]}" "${R[none,bulk_i]}")"
    printf 'C / PL/pgSQL:  mixed %s  bulk UPDATE %s  bulk INSERT %s   (target >= 1.6)\n' \
        "$(ratio "${R[c,mixed]}" "${R[plpgsql,mixed]}")" "$(ratio "${R[c,bulk_u]}" "${R[plpgsql,bulk_u]}")" \
        "$(ratio "${R[c,bulk_i]}" "${R[plpgsql,bulk_i]}")"
    echo "seal_audit: $sealed of $rows audit rows in $seal_ms ms = $seal_rate rows/s (target >= 100000); verify_audit: $verify"
    [ -z "$pgaudit_note" ] || echo "$pgaudit_note"
    echo "pgaudit logs statements (one line per statement, not per row) to the server log; it records no old or new values."
} | tee "$RESULTS"
