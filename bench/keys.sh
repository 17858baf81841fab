#!/usr/bin/env bash
# bench/keys.sh: pgmarket's key vault and platform API keys side by side with
# what an application would otherwise do, on one throwaway cluster.
#
#   bash bench/keys.sh [--no-build] [--seconds N] [--clients "1 8"]
#                      [--repeat N] [--strict]
#
# What it measures (pgbench -n -M prepared, 10,000 users, each with one
# provider key and one platform API key; TPS at 1 and 8 clients):
#
#   get_provider_key   pgmarket.get_provider_key(user, 'openai'): decrypts
#                      (XChaCha20-Poly1305) and appends a row to
#                      key_access_log, as the contract requires
#     vs pgcrypto      pgp_sym_decrypt of the same secret by primary key
#                      (pgcrypto's default options)
#     vs plain SELECT  the same secret as a plain text column by primary key
#     (and, for what a recorded read costs at the least: the plain SELECT
#     plus an INSERT into an access log table, in one statement)
#   verify_api_key     pgmarket.verify_api_key(raw key), with every key used
#                      already in the current minute (last_used_at is kept to
#                      the minute, so no write); and once "cold", when each
#                      key's first verification in the run writes last_used_at
#     vs plain SELECT  the same key looked up by prefix in a plain table
#   charge_api_key     pgmarket.charge_api_key(raw key, 0.000001, ...)
#     vs two calls     verify_api_key, then deduct_balance for its user: two
#                      statements, two round trips (each autocommitted)
#
# The raw API key reaches every API key statement (pgmarket's and the
# baselines') through the same primary-key subquery on bench.raw_keys, since
# pgbench cannot hold 10,000 random strings; that costs both sides alike.
#
# Targets (at every client count): get_provider_key >= 0.85x the plain
# SELECT; verify_api_key >= 0.85x the plain SELECT; charge_api_key >= 1.2x
# the two calls.
#
# The cluster: data in /tmp/pgmarket-keysbench/data, port 54381, socket in
# /tmp/pgmarket-keysbench (PGMARKET_BENCH_BASE and PGMARKET_BENCH_PORT
# choose others; PGMARKET_PG_CONFIG the PostgreSQL build), fsync and synchronous_commit on, autovacuum off
# (VACUUM and CHECKPOINT before each run); the master key file is
# /tmp/pgmarket-keysbench/master.key (mode 0600, a fresh random key).  Run as
# root, the server runs as the postgres OS user.  The cluster is stopped on
# exit, whatever happens.  The table goes to stdout and to
# bench/results/keys.txt; per-run pgbench output stays in
# /tmp/pgmarket-keysbench/runs/.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    cat <<'EOF'
options:
  --no-build        do not run make / make install (assume it is installed)
  --seconds N       length of each pgbench run (default 8)
  --clients LIST    client counts (default "1 8")
  --repeat N        run every measurement N times, interleaved, and keep the
                    best TPS of each (default 1)
  --strict          exit 1 when a target is missed
  -h, --help        this text
EOF
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SQLDIR=$REPO/bench/keys
RESULTS_DIR=$REPO/bench/results
RESULTS=$RESULTS_DIR/keys.txt

PGBIN=$("${PGMARKET_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)
PG_CONFIG=$PGBIN/pg_config
BASE=${PGMARKET_BENCH_BASE:-/tmp/pgmarket-keysbench}
DATA=$BASE/data
KEYFILE=$BASE/master.key
PORT=${PGMARKET_BENCH_PORT:-54381}
DB=bench
DBUSER=postgres
USERS=10000
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
[ -f "$($PG_CONFIG --sharedir)/extension/pgcrypto.control" ] ||
    die "pgcrypto is not installed (it ships with postgresql-15 on Debian)"
bench_keyfile

# --- the cluster --------------------------------------------------------------
bench_initdb <<EOF
pgmarket.master_key_file = '$KEYFILE'
EOF
bench_start_server
as_pg "$PGBIN/createdb" -h "$BASE" -p "$PORT" -U "$DBUSER" "$DB"

# --- data ---------------------------------------------------------------------
log "loading $USERS users, provider keys, API keys and the baselines"
psql_do -v users="$USERS" -f "$SQLDIR/setup.sql" >"$BASE/setup.log" 2>&1 ||
    { tail -n 30 "$BASE/setup.log" >&2; die "setup failed (see $BASE/setup.log)"; }
n=$(psql_val -c "SELECT count(*) FROM pgmarket.provider_keys")
[ "$n" -eq "$USERS" ] || die "pgmarket.provider_keys has $n rows, expected $USERS"
n=$(psql_val -c "SELECT count(*) FROM bench.raw_keys")
[ "$n" -eq "$USERS" ] || die "bench.raw_keys has $n rows, expected $USERS"
# every side returns the same thing for one user
ok=$(psql_val -c "SELECT pgmarket.get_provider_key(bench.uid(42), 'openai') = bench.secret(42)
                     AND (SELECT pgp_sym_decrypt(ciphertext, 'bench passphrase') FROM bench.pgp_secrets WHERE user_id = bench.uid(42)) = bench.secret(42)
                     AND (SELECT user_id FROM pgmarket.verify_api_key((SELECT api_key FROM bench.raw_keys WHERE i = 42))) = bench.uid(42)
                     AND (SELECT user_id FROM bench.plain_api_keys WHERE prefix = left((SELECT api_key FROM bench.raw_keys WHERE i = 42), 24)) = bench.uid(42)")
[ "$ok" = t ] || die "the sides do not agree for user 42"
psql_do -c "VACUUM ANALYZE" -c "CHECKPOINT"
PG_VERSION_STR=$(psql_val -c "SHOW server_version")
EXT_VERSION=$(psql_val -c "SELECT extversion FROM pg_extension WHERE extname = 'pgmarket'")

# --- runs ---------------------------------------------------------------------
declare -A TPS NOTE

# Start a run early enough in a minute that it ends in the same minute:
# last_used_at is kept to the minute, and a new minute makes the next use of
# every key write again.
align_to_minute() {
    local need=$(( RUN_SECS + 8 )) sec
    [ "$need" -lt 60 ] || return 0
    sec=$(( 10#$(date +%S) ))
    if [ $(( 60 - sec )) -lt "$need" ]; then
        sleep $(( 60 - sec ))
    fi
}

# run_one KEY SCRIPT CLIENTS PREP
#   PREP: warm (every key used this minute: no stamps during the run) or
#   cold (no key used yet: each key's first use writes last_used_at)
run_one() {
    local key=$1 script=$2 clients=$3 prep=$4
    local jobs=$(( clients < 2 ? clients : 2 ))
    local out="$BASE/runs/${key}_c${clients}.$REP.log" rc=0 tps failed
    align_to_minute
    psql_do -v users="$USERS" -f "$SQLDIR/$prep.sql" >/dev/null
    # after the preparation, which stamps every key: the runs start on
    # tables without dead row versions, the plain baselines' as pgmarket's
    psql_do -c "VACUUM" >/dev/null
    psql_do -c "CHECKPOINT" >/dev/null
    sleep 1
    as_pg "$PGBIN/pgbench" -h "$BASE" -p "$PORT" -U "$DBUSER" -n -M prepared \
        -c "$clients" -j "$jobs" -T "$RUN_SECS" --random-seed="$SEED" \
        -D users="$USERS" -f "$SQLDIR/$script" "$DB" >"$out" 2>&1 || rc=$?
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$out")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
    if [ "$rc" -ne 0 ] || [ -z "$tps" ] || [ "${failed:-0}" != 0 ]; then
        NOTE[$key,$clients]="pgbench exit $rc, failed ${failed:-?}: $(grep -m 1 -E 'ERROR|error|FATAL' "$out" | cut -c 1-200)"
        log "$key c=$clients: FAILED (${NOTE[$key,$clients]})"
        tps=0
    else
        log "$key c=$clients: $tps tps"
    fi
    local best=${TPS[$key,$clients]:-0}
    if awk -v a="$tps" -v b="$best" 'BEGIN { exit !(a > b) }'; then
        TPS[$key,$clients]=$tps
    fi
}

KEYS="get_provider_key pgcrypto plain_secret plain_secret_logged verify_api_key verify_cold plain_api_key charge_api_key verify_then_deduct"
declare -A SCRIPT=(
    [get_provider_key]=get_provider_key.sql
    [pgcrypto]=pgcrypto_decrypt.sql
    [plain_secret]=plain_secret.sql
    [plain_secret_logged]=plain_secret_logged.sql
    [verify_api_key]=verify_api_key.sql
    [verify_cold]=verify_api_key.sql
    [plain_api_key]=plain_api_key.sql
    [charge_api_key]=charge_api_key.sql
    [verify_then_deduct]=verify_then_deduct.sql
)
declare -A LABEL=(
    [get_provider_key]="get_provider_key"
    [pgcrypto]="pgcrypto pgp_sym_decrypt"
    [plain_secret]="plain SELECT of a text column"
    [plain_secret_logged]="plain SELECT + access log INSERT"
    [verify_api_key]="verify_api_key"
    [verify_cold]="verify_api_key, cold minute"
    [plain_api_key]="plain SELECT by prefix"
    [charge_api_key]="charge_api_key"
    [verify_then_deduct]="verify_api_key + deduct_balance"
)

for REP in $(seq 1 "$REPEAT"); do
    for c in $CLIENTS; do
        for k in $KEYS; do
            prep=warm
            [ "$k" = verify_cold ] && prep=cold
            run_one "$k" "${SCRIPT[$k]}" "$c" "$prep"
        done
    done
done

# the ledger and the access log are whole
bad=$(psql_val -c "SELECT count(*) FROM pgmarket.verify_ledger()")
[ "$bad" -eq 0 ] || log "warning: verify_ledger() reports $bad problems"
reads=$(psql_val -c "SELECT count(*) FROM pgmarket.key_access_log")

# --- the report ---------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

MISSED=0
report() {
    echo "bench/keys.sh: pgmarket $EXT_VERSION on PostgreSQL $PG_VERSION_STR, $(nproc) CPUs, $(date -u +'%Y-%m-%d %H:%M UTC')"
    echo "runs: pgbench -n -M prepared, ${RUN_SECS}s each, best of $REPEAT, -j min(clients,2), $USERS users/keys, random user per transaction;"
    echo "      fsync on, synchronous_commit on, VACUUM + CHECKPOINT before each run"
    echo
    printf '%-34s %8s %10s %8s   %s\n' "workload" "clients" "TPS" "ratio" "target"
    printf '%-34s %8s %10s %8s   %s\n' "----------------------------------" "-------" "----------" "--------" "------"
    for c in $CLIENTS; do
        local g=${TPS[get_provider_key,$c]:-0} p=${TPS[pgcrypto,$c]:-0} s=${TPS[plain_secret,$c]:-0}
        local sl=${TPS[plain_secret_logged,$c]:-0} vc=${TPS[verify_cold,$c]:-0}
        local v=${TPS[verify_api_key,$c]:-0} pa=${TPS[plain_api_key,$c]:-0}
        local ch=${TPS[charge_api_key,$c]:-0} two=${TPS[verify_then_deduct,$c]:-0}
        local r verdict
        r=$(ratio "$g" "$s"); if ge "$r" 0.85; then verdict=met; else verdict=MISSED; MISSED=1; fi
        printf '%-34s %8s %10.0f %7sx   %s\n' "get_provider_key" "$c" "$g" "$r" ">= 0.85x plain SELECT: $verdict"
        printf '%-34s %8s %10.0f %7sx\n' "pgcrypto pgp_sym_decrypt" "$c" "$p" "$(ratio "$p" "$s")"
        printf '%-34s %8s %10.0f %7sx\n' "plain SELECT of a text column" "$c" "$s" "1.00"
        printf '%-34s %8s %10.0f %7sx   %s\n' "plain SELECT + access log INSERT" "$c" "$sl" "$(ratio "$sl" "$s")" "(get_provider_key: $(ratio "$g" "$sl")x of this)"
        r=$(ratio "$v" "$pa"); if ge "$r" 0.85; then verdict=met; else verdict=MISSED; MISSED=1; fi
        printf '%-34s %8s %10.0f %7sx   %s\n' "verify_api_key" "$c" "$v" "$r" ">= 0.85x plain SELECT: $verdict"
        printf '%-34s %8s %10.0f %7sx\n' "verify_api_key, cold minute" "$c" "$vc" "$(ratio "$vc" "$pa")"
        printf '%-34s %8s %10.0f %7sx\n' "plain SELECT by prefix" "$c" "$pa" "1.00"
        r=$(ratio "$ch" "$two"); if ge "$r" 1.2; then verdict=met; else verdict=MISSED; MISSED=1; fi
        printf '%-34s %8s %10.0f %7sx   %s\n' "charge_api_key" "$c" "$ch" "$r" ">= 1.2x the two calls: $verdict"
        printf '%-34s %8s %10.0f %7sx\n' "verify_api_key + deduct_balance" "$c" "$two" "1.00"
        echo
    done
    echo "ratio: TPS over the plain SELECT (vault and verify rows) or over the two calls (charge rows)."
    echo "Every run but the cold one starts with every key used once in the current minute and ends"
    echo "within that minute, so last_used_at is not written during it; the cold run starts with"
    echo "last_used_at cleared, so the first verification of each key in it writes (and flushes WAL)."
    for k in $KEYS; do
        for c in $CLIENTS; do
            [ -n "${NOTE[$k,$c]:-}" ] && echo "note: ${LABEL[$k]} at $c clients: ${NOTE[$k,$c]}"
        done
    done
    echo "key_access_log rows written by get_provider_key: $reads; verify_ledger() problems: $bad"
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
