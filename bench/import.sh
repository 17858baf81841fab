#!/usr/bin/env bash
# bench/import.sh: pgmarket import and export at four sizes, on a throwaway
# cluster (port 55455, as the postgres OS user when run as root).  Each
# document has 7 records per user (bench/import/gen.py): 10,000, 100,000
# and 1,000,000 records, and the issue's 20,000 users (140,000 records).
# For each: the first import into an empty database, a re-run (adds
# nothing), an export --with-secrets; the records per second of the first
# import.  Writes bench/results/import.txt.
#
#   bash bench/import.sh [--no-build] [--sizes "10000 140000 100000 1000000"]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=${PGMARKET_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PGMARKET_PG_CONFIG=$PG_CONFIG
NAME=importbench
PORT=${PGMARKET_BENCH_PORT:-55455}
SIZES="10000 140000 100000 1000000"
BUILD=1
while [ $# -gt 0 ]; do
    case $1 in
        --no-build) BUILD=0 ;;
        --sizes) SIZES=$2; shift ;;
        *) echo "usage: bash bench/import.sh [--no-build] [--sizes \"N ...\"]" >&2; exit 2 ;;
    esac
    shift
done

if [ "$BUILD" = 1 ]; then
    make -s -C "$REPO" PG_CONFIG="$PG_CONFIG" >/dev/null
    make -s -C "$REPO" PG_CONFIG="$PG_CONFIG" install >/dev/null
fi
make -s -C "$REPO/client" pgmarket >/dev/null
work=$(mktemp -d /tmp/pgmarket-importbench.XXXXXX)
chmod 755 "$work"
[ "$(id -u)" = 0 ] && chown postgres "$work"
trap 'bash "$REPO/scripts/cluster.sh" destroy $NAME >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

PGMARKET_CLUSTER_SETTINGS="pgmarket.master_key_file = 'bench.key'" \
    bash "$REPO/scripts/cluster.sh" start $NAME $PORT >/dev/null
run=(env)
[ "$(id -u)" = 0 ] && run=(runuser -u postgres --)
data=/tmp/pgmarket-$NAME/data
"${run[@]}" sh -c "umask 077 && echo 1:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') > $data/bench.key"
tool() { "${run[@]}" env PGHOST=/tmp/pgmarket-$NAME PGPORT=$PORT PGUSER=postgres "$REPO/client/pgmarket" -q "$@"; }
psqlb() { bash "$REPO/scripts/cluster.sh" psql $NAME -qAt "$@"; }
secs() { date +%s.%N; }

mkdir -p "$REPO/bench/results"
{
    echo "bench/import.sh: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $("$PG_CONFIG" --version)"
    echo "7 records per user; fsync and synchronous_commit on; a machine shared with other work"
    echo
    printf '%10s %8s %10s %10s %10s %12s\n' records users import_s rerun_s export_s records_per_s
    for records in $SIZES; do
        users=$((records / 7))
        python3 "$REPO/bench/import/gen.py" "$users" "$work/doc.json"
        chmod 644 "$work/doc.json"
        db=b$records
        psqlb -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
        psqlb -d $db -c "CREATE EXTENSION pgmarket"
        t0=$(secs); tool -d "dbname=$db" import "$work/doc.json" >"$work/out1" 2>&1 || { cat "$work/out1" >&2; exit 1; }
        t1=$(secs); tool -d "dbname=$db" import "$work/doc.json" >"$work/out2" 2>&1 || { cat "$work/out2" >&2; exit 1; }
        t2=$(secs); tool -d "dbname=$db" export --with-secrets "$work/export.json" >/dev/null 2>"$work/err3" || { cat "$work/err3" >&2; exit 1; }
        t3=$(secs)
        grep -q '^ledger entries: 0 new' "$work/out2" || { echo "the re-run added entries" >&2; cat "$work/out2" >&2; exit 1; }
        awk -v r="$records" -v u="$users" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" \
            'BEGIN { printf "%10d %8d %10.1f %10.1f %10.1f %12.0f\n", r, u, b - a, c - b, d - c, r / (b - a) }'
        "${run[@]}" rm -f "$work/export.json"
        psqlb -d postgres -c "DROP DATABASE $db"
    done
} | tee "$REPO/bench/results/import.txt"
