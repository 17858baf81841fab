#!/usr/bin/env bash
# bench/scaleout.sh: the cost of the PL/Proxy hop.  One charge
# (deduct_balance of a random user of node0) directly on node0, through the
# proxy, and through pgbouncer (transaction pooling) + the proxy; pgbench,
# simple protocol, 1 and 8 clients.
#
#   bash bench/scaleout.sh [--seconds N] [--clients "1 8"] [--users N]
#
# Starts a fresh scale-out set with scripts/scaleout.sh (destroying what is
# in /tmp/pgmarket-scaleout), stops it at the end, and writes the table to
# bench/results/scaleout.txt.  Per-call overhead = 1/TPS(via) - 1/TPS(direct)
# at one client (latency), and the TPS ratio at 8.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=$("${PGMARKET_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)
BASE=${PGMARKET_BENCH_BASE:-/tmp/pgmarket-scaleout}
RESULTS=$REPO/bench/results/scaleout.txt
SECONDS_PER_RUN=5
CLIENTS="1 8"
USERS=2000

while [ $# -gt 0 ]; do
    case $1 in
        --seconds) SECONDS_PER_RUN=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --users) USERS=$2; shift ;;
        *) sed -n '2,15p' "$0"; exit 2 ;;
    esac
    shift
done

if [ "$(id -u)" -eq 0 ]; then
    os_user=postgres
    as_user() { (cd / && runuser -u "$os_user" -- "$@"); }
else
    os_user=$(id -un)
    as_user() { "$@"; }
fi

cleanup() { bash "$REPO/scripts/scaleout.sh" stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

bash "$REPO/scripts/scaleout.sh" destroy >/dev/null
bash "$REPO/scripts/scaleout.sh" start --same-key >/dev/null

psql_at() { # host port db sql...
    local h=$1 p=$2 d=$3; shift 3
    as_user "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$h" -p "$p" -U "$os_user" -d "$d" "$@"
}
PROXY=("$BASE/proxy" 54401 pgmarket)
NODE0=("$BASE/node0" 54402 pgm_node0)
BOUNCER=("$BASE/pgbouncer" 54404 pgmarket)

# Users through the proxy (ids fixed so that runs compare), funded far
# beyond what the runs spend; the node0 ones numbered in bench_users on
# node0 and on the proxy (the same lookup on every leg).
psql_at "${PROXY[@]}" >/dev/null <<SQL
SELECT count(pgmarket.create_user('b' || g || '@example.com', 'bench' || g,
              id => ('b0000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid))
  FROM generate_series(1, $USERS) g;
SELECT count(pgmarket.add_funds(('b0000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 1000000))
  FROM generate_series(1, $USERS) g;
SQL
mk_users="CREATE TABLE bench_users (i int PRIMARY KEY, id uuid NOT NULL);
INSERT INTO bench_users
SELECT row_number() OVER (ORDER BY g), id
  FROM (SELECT g, ('b0000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid AS id
          FROM generate_series(1, $USERS) g) s
 WHERE hashtext(id::text) & 1 = 0;
GRANT SELECT ON bench_users TO PUBLIC;
ANALYZE bench_users;"
psql_at "${NODE0[@]}" -c "$mk_users"
psql_at "${PROXY[@]}" -c "$mk_users"
n0=$(psql_at "${NODE0[@]}" -c 'SELECT count(*) FROM bench_users')

run() { # label clients host port db
    local label=$1 c=$2 out tps lat; shift 2
    out=$(as_user "$PGBIN/pgbench" -n -M simple -c "$c" -j "$c" -T "$SECONDS_PER_RUN" \
          -D users="$n0" -f "$REPO/bench/scaleout/charge.sql" \
          -h "$1" -p "$2" -U "$os_user" "$3" 2>&1) || { echo "$out" >&2; exit 1; }
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
    printf '%-22s %7s %10.0f %12.3f\n' "$label" "$c" "$tps" "$lat"
    echo "$label $c $tps $lat" >>"$BASE/raw.txt"
}

rm -f "$BASE/raw.txt"
{
    echo "# bench/scaleout.sh: one deduct_balance per transaction, pgbench -M simple, ${SECONDS_PER_RUN}s per run"
    echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $n0 users on node0 (of $USERS); all on one machine, Unix sockets"
    printf '%-22s %7s %10s %12s\n' path clients tps latency_ms
    for c in $CLIENTS; do
        run direct-node0 "$c" "${NODE0[@]}"
        run proxy "$c" "${PROXY[@]}"
        run pgbouncer+proxy "$c" "${BOUNCER[@]}"
    done
    echo
    echo "# per-call overhead against direct-node0 (latency difference, same client count):"
    awk '{ t[$1" "$2] = $4 } END {
        n = split("'"$CLIENTS"'", cs, " ");
        for (i = 1; i <= n; i++) { c = cs[i]; d = t["direct-node0 " c];
          printf "#   %s clients: proxy +%.3f ms, pgbouncer+proxy +%.3f ms\n", c,
                 t["proxy " c] - d, t["pgbouncer+proxy " c] - d } }' "$BASE/raw.txt"
    psql_at "${PROXY[@]}" -c "SELECT '# verify_ledger through the proxy: ' || count(*) || ' problems' FROM pgmarket.verify_ledger()"
} | tee "$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
