# bench/lib.sh: the helpers every bench/*.sh script shares.  Source it after
# setting PGBIN, BASE (socket directory), PORT and DB (and DBUSER, default
# postgres).  Log lines name the script that sourced it.

BENCH_NAME=$(basename "$0")
DBUSER=${DBUSER:-postgres}

log() { printf '[%s %s] %s\n' "$BENCH_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Run a command as the server's OS user: postgres when we are root, the
# caller otherwise (PostgreSQL refuses to run as root).
if [ "$(id -u)" -eq 0 ]; then
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

psql_do() {
    as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$BASE" -p "$PORT" \
        -U "$DBUSER" -d "$DB" "$@"
}
psql_val() { psql_do -At "$@"; }
