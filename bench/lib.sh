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

# --- what the pgbench scripts share (keys.sh, ledger.sh, ratelimit.sh) ---------
# Each sets, before it parses its options, the defaults of RUN_SECS, CLIENTS,
# REPEAT, BUILD and STRICT, and PGBIN, PG_CONFIG, REPO, BASE, DATA, PORT, DB.

# One of the options every pgbench script takes: --no-build, --seconds N,
# --clients LIST, --repeat N, --strict, -h/--help (the script's usage).
# BENCH_SHIFT is how many words it took; 1 (with a message) for an option
# that is none of them.
bench_option() {
    BENCH_SHIFT=1
    case "$1" in
        --no-build) BUILD=0 ;;
        --seconds) RUN_SECS=${2:?--seconds needs a value}; BENCH_SHIFT=2 ;;
        --seconds=*) RUN_SECS=${1#*=} ;;
        --clients) CLIENTS=${2:?--clients needs a value}; BENCH_SHIFT=2 ;;
        --clients=*) CLIENTS=${1#*=} ;;
        --repeat) REPEAT=${2:?--repeat needs a value}; BENCH_SHIFT=2 ;;
        --repeat=*) REPEAT=${1#*=} ;;
        --strict) STRICT=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "$BENCH_NAME: unknown option: $1" >&2; return 1 ;;
    esac
}

# The options' values checked: exit 2 on a bad one.
bench_check_options() {
    case "$RUN_SECS" in ''|*[!0-9]*|0) echo "$BENCH_NAME: --seconds must be a positive integer" >&2; exit 2 ;; esac
    case "$REPEAT" in ''|*[!0-9]*|0) echo "$BENCH_NAME: --repeat must be a positive integer" >&2; exit 2 ;; esac
    for c in $CLIENTS; do
        case "$c" in ''|*[!0-9]*|0) echo "$BENCH_NAME: bad client count: $c" >&2; exit 2 ;; esac
        [ "$c" -le 50 ] || { echo "$BENCH_NAME: at most 50 clients (max_connections is 60)" >&2; exit 2; }
    done
}

bench_stop_server() {
    if [ -f "$DATA/postmaster.pid" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null 2>&1 ||
            as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
}

# A fresh working directory BASE (the server's data in DATA, per-run output
# in BASE/runs), the server stopped whatever happens (by BENCH_STOP, a
# script's own function, else bench_stop_server), and pgmarket built and
# installed unless --no-build; the current directory becomes BASE.
bench_begin() {
    trap "${BENCH_STOP:-bench_stop_server}" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    [ -x "$PGBIN/pgbench" ] || die "$PGBIN/pgbench not found (apt-get install postgresql-15)"
    T_START=$(date +%s)
    "${BENCH_STOP:-bench_stop_server}"
    mkdir -p "$BASE"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$BASE"
    chmod 755 "$BASE"
    rm -rf "$DATA" "$BASE/runs"
    rm -f "$BASE/server.log" "${KEYFILE:-$BASE/master.key}"
    mkdir -p "$BASE/runs"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$BASE/runs"
    cd "$BASE"
    if [ "$BUILD" -eq 1 ]; then
        log "building pgmarket (make; make install) -> $BASE/build.log"
        make -C "$REPO" PG_CONFIG="$PG_CONFIG" >"$BASE/build.log" 2>&1 ||
            { tail -n 30 "$BASE/build.log" >&2; die "make failed (see $BASE/build.log)"; }
        make -C "$REPO" PG_CONFIG="$PG_CONFIG" install >>"$BASE/build.log" 2>&1 ||
            { tail -n 30 "$BASE/build.log" >&2; die "make install failed (run as root, or use --no-build)"; }
    fi
}

# The master key file KEYFILE: one random key, readable by the server only.
bench_keyfile() {
    as_pg sh -c "umask 077 && printf '1:%s\n' \"\$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')\" > '$KEYFILE'"
    [ "$(stat -c %a "$KEYFILE")" = 600 ] || die "$KEYFILE is not mode 0600"
}

# initdb DATA with the settings every run shares (a durable server: fsync
# and synchronous_commit on; autovacuum off, the scripts VACUUM between
# runs), then the script's own settings, read from stdin.
bench_initdb() {
    log "initdb $DATA"
    as_pg "$PGBIN/initdb" -D "$DATA" -U "$DBUSER" -E UTF8 --locale=C \
        --auth-local=trust --auth-host=reject >"$BASE/initdb.log" 2>&1 ||
        { cat "$BASE/initdb.log" >&2; die "initdb failed"; }
    {
        cat <<CONF

# ---- bench/$BENCH_NAME ----
listen_addresses = ''
port = $PORT
unix_socket_directories = '$BASE'
max_connections = 60
shared_buffers = 256MB
fsync = on
synchronous_commit = on
max_wal_size = 4GB
checkpoint_timeout = 30min
autovacuum = off
log_min_messages = warning
log_line_prefix = '%m [%p] %a '
CONF
        cat
    } | as_pg tee -a "$DATA/postgresql.conf" >/dev/null
}

bench_start_server() {
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$BASE/server.log" -w -t 60 start >/dev/null ||
        { tail -n 30 "$BASE/server.log" >&2; die "the server did not start"; }
}
