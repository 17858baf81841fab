#!/usr/bin/env bash
# scaleout.sh: a throwaway pgmarket scale-out: two data nodes behind a
# PL/Proxy database, with pgbouncer in front.
#
#   scripts/scaleout.sh start [--same-key] [--partitions N]
#   scripts/scaleout.sh stop        stop everything it started (by pid)
#   scripts/scaleout.sh destroy     stop, then remove /tmp/pgmarket-scaleout
#   scripts/scaleout.sh status      what runs; exit 0 when all of it does
#   scripts/scaleout.sh env         PGHOST/PGPORT/PGDATABASE of pgbouncer
#
# Layout under /tmp/pgmarket-scaleout/ (data, sockets, logs, keys):
#   node0  port 54402  database pgm_node0   pgmarket, master key keys/node0.key
#   node1  port 54403  database pgm_node1   pgmarket, master key keys/node1.key
#   proxy  port 54401  database pgmarket    plproxy + proxy/pgmarket_proxy.sql
#   pgbouncer port 54404 (Unix socket in /tmp/pgmarket-scaleout/pgbouncer),
#          pool_mode = transaction, database pgmarket -> the proxy.
# The nodes take the actor forwarded by the proxy from the superuser it
# connects as (pgmarket.proxy_role).
# --same-key gives both nodes one master key file (keys/shared.key), which
# the sealed path (vault_public_key through the proxy) needs; without it
# each node has its own (fixed at the first start: `destroy` to change
# it). --partitions N (a power of two >= 2, default 2)
# deals N PL/Proxy partitions round-robin over the two nodes.
# Unix sockets only, trust authentication: nothing listens on the network.
# As root, everything runs as the `postgres` OS user (runuser). `start` is
# idempotent: what runs already is left alone; a stopped set is restarted
# with its data.
set -euo pipefail

PGBIN=$(dirname "${PGMARKET_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}")
BASE=/tmp/pgmarket-scaleout
PROXY_PORT=54401
BOUNCER_PORT=54404
declare -A PORT=([proxy]=54401 [node0]=54402 [node1]=54403)
declare -A DB=([proxy]=pgmarket [node0]=pgm_node0 [node1]=pgm_node1)
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [ "$(id -u)" -eq 0 ]; then
    os_user=postgres
    as_user() { (cd / && runuser -u "$os_user" -- "$@"); }
else
    os_user=$(id -un)
    as_user() { "$@"; }
fi

die() { echo "scaleout.sh: $*" >&2; exit 1; }
usage() { sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

psql_on() {
    local name=$1; shift
    as_user env -u PGDATABASE -u PGSERVICE -u PGOPTIONS "$PGBIN/psql" -X -q \
        -v ON_ERROR_STOP=1 -h "$BASE/$name" -p "${PORT[$name]}" \
        -U "$os_user" -d "${DB[$name]}" "$@"
}

# The pid of a live process named in a pid file, whose command line
# contains $2 (guards against a recycled pid).
live_pid() {
    local pidfile=$1 what=$2 pid
    [ -f "$pidfile" ] || return 1
    pid=$(head -n 1 "$pidfile" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$what" || return 1
    echo "$pid"
}

new_key_file() {
    local f=$1 hex
    [ -f "$f" ] && return 0
    hex=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
    (umask 077 && printf '1:%s\n' "$hex" >"$f")
    chmod 0600 "$f"
    if [ "$(id -u)" -eq 0 ]; then chown "$os_user": "$f"; fi
}

start_cluster() {
    local name=$1 keyfile=${2:-} dir=$BASE/$1
    if live_pid "$dir/data/postmaster.pid" postgres >/dev/null; then
        echo "$name: running (port ${PORT[$name]})"
        return 0
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        chmod 0700 "$dir"
        if [ "$(id -u)" -eq 0 ]; then chown "$os_user": "$dir"; fi
        as_user "$PGBIN/initdb" -D "$dir/data" -U "$os_user" --auth=trust \
            --locale=C --encoding=UTF8 --no-instructions >"$dir/initdb.log" 2>&1 ||
            { cat "$dir/initdb.log" >&2; die "$name: initdb failed"; }
        cat >>"$dir/data/postgresql.conf" <<EOF

# --- pgmarket scale-out (scripts/scaleout.sh) ---
port = ${PORT[$name]}
listen_addresses = ''
unix_socket_directories = '$dir'
max_connections = 100
shared_buffers = 128MB
lc_messages = 'C'
log_line_prefix = '%m [%p] %q%u@%d '
EOF
        if [ -n "$keyfile" ]; then
            echo "pgmarket.master_key_file = '$keyfile'" >>"$dir/data/postgresql.conf"
        fi
        if [ "$name" != proxy ]; then
            # The proxy connects as the calling role; here that is the
            # superuser, the only role this set-up has.
            echo "pgmarket.proxy_role = '$os_user'" >>"$dir/data/postgresql.conf"
        fi
    fi
    as_user "$PGBIN/pg_ctl" start -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        >/dev/null || { tail -n 20 "$dir/server.log" >&2; die "$name: did not start"; }
    echo "$name: started (port ${PORT[$name]})"
}

ensure_db() {
    local name=$1
    if [ -z "$(as_user "$PGBIN/psql" -X -At -h "$BASE/$name" -p "${PORT[$name]}" \
              -U "$os_user" -d postgres \
              -c "SELECT 1 FROM pg_database WHERE datname = '${DB[$name]}'")" ]; then
        as_user "$PGBIN/createdb" -h "$BASE/$name" -p "${PORT[$name]}" \
            -U "$os_user" "${DB[$name]}"
    fi
}

start_bouncer() {
    local dir=$BASE/pgbouncer
    if live_pid "$dir/pgbouncer.pid" pgbouncer >/dev/null; then
        echo "pgbouncer: running (port $BOUNCER_PORT)"
        return 0
    fi
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then chown "$os_user": "$dir"; fi
    cat >"$dir/pgbouncer.ini" <<EOF
[databases]
pgmarket = host=$BASE/proxy port=$PROXY_PORT dbname=pgmarket

[pgbouncer]
listen_addr =
listen_port = $BOUNCER_PORT
unix_socket_dir = $dir
pool_mode = transaction
auth_type = trust
auth_file = $dir/userlist.txt
max_client_conn = 200
default_pool_size = 20
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
admin_users = $os_user
EOF
    printf '"%s" ""\n' "$os_user" >"$dir/userlist.txt"
    if [ "$(id -u)" -eq 0 ]; then chown "$os_user": "$dir"/*; fi
    as_user pgbouncer -d -q "$dir/pgbouncer.ini" ||
        { tail -n 20 "$dir/pgbouncer.log" >&2; die "pgbouncer did not start"; }
    for _ in $(seq 1 50); do
        [ -S "$dir/.s.PGSQL.$BOUNCER_PORT" ] && break
        sleep 0.1
    done
    echo "pgbouncer: started (port $BOUNCER_PORT, transaction pooling)"
}

do_start() {
    local same_key=0 partitions=2
    while [ $# -gt 0 ]; do
        case $1 in
            --same-key) same_key=1 ;;
            --partitions) partitions=${2:-}; shift ;;
            *) usage ;;
        esac
        shift
    done
    if ! [[ $partitions =~ ^[0-9]+$ ]] || [ "$partitions" -lt 2 ] ||
            [ $((partitions & (partitions - 1))) -ne 0 ]; then
        die "--partitions: a power of two, at least 2"
    fi
    [ -f "$src/proxy/pgmarket_proxy.sql" ] || die "no $src/proxy/pgmarket_proxy.sql"

    mkdir -p "$BASE/keys"
    chmod 0711 "$BASE"
    chmod 0700 "$BASE/keys"
    if [ "$(id -u)" -eq 0 ]; then chown "$os_user": "$BASE/keys"; fi
    local k0 k1
    if [ $same_key -eq 1 ]; then
        new_key_file "$BASE/keys/shared.key"
        k0=$BASE/keys/shared.key k1=$k0
    else
        new_key_file "$BASE/keys/node0.key"
        new_key_file "$BASE/keys/node1.key"
        k0=$BASE/keys/node0.key k1=$BASE/keys/node1.key
    fi

    start_cluster node0 "$k0"
    start_cluster node1 "$k1"
    start_cluster proxy
    for n in node0 node1 proxy; do ensure_db "$n"; done
    for n in node0 node1; do
        psql_on "$n" -c 'SET client_min_messages = warning' \
            -c 'CREATE EXTENSION IF NOT EXISTS pgmarket'
    done
    if [ -z "$(psql_on proxy -At -c "SELECT 1 FROM pg_namespace WHERE nspname = 'pgmarket'")" ]; then
        # The file may sit where the postgres OS user cannot read it.
        psql_on proxy -c 'CREATE EXTENSION IF NOT EXISTS plproxy' \
            -f - <"$src/proxy/pgmarket_proxy.sql" >/dev/null
    fi
    psql_on proxy -At -c "SELECT pgmarket_proxy.set_nodes(ARRAY[
        'host=$BASE/node0 port=${PORT[node0]} dbname=${DB[node0]}',
        'host=$BASE/node1 port=${PORT[node1]} dbname=${DB[node1]}'], $partitions)" \
        2>/dev/null | sed 's/^/proxy: partitions /'
    start_bouncer
    echo "connect: psql -h $BASE/pgbouncer -p $BOUNCER_PORT -U $os_user pgmarket"
}

do_stop() {
    local pid n dir=$BASE/pgbouncer
    if pid=$(live_pid "$dir/pgbouncer.pid" pgbouncer); then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        echo "pgbouncer: stopped"
    fi
    for n in proxy node1 node0; do
        [ -f "$BASE/$n/data/postmaster.pid" ] || continue
        if as_user "$PGBIN/pg_ctl" stop -D "$BASE/$n/data" -m fast -w -t 60 >/dev/null 2>&1; then
            echo "$n: stopped"
        elif pid=$(live_pid "$BASE/$n/data/postmaster.pid" postgres); then
            kill -QUIT "$pid" 2>/dev/null || true
            echo "$n: stopped (SIGQUIT)"
        fi
    done
}

do_status() {
    local n ok=0 pid
    for n in node0 node1 proxy; do
        if pid=$(live_pid "$BASE/$n/data/postmaster.pid" postgres); then
            echo "$n: running, pid $pid, port ${PORT[$n]}, database ${DB[$n]}"
        else
            echo "$n: not running"; ok=1
        fi
    done
    if pid=$(live_pid "$BASE/pgbouncer/pgbouncer.pid" pgbouncer); then
        echo "pgbouncer: running, pid $pid, port $BOUNCER_PORT"
    else
        echo "pgbouncer: not running"; ok=1
    fi
    if [ $ok -eq 0 ]; then
        psql_on proxy -At -c "SELECT 'partitions: ' || pgmarket_proxy.partition_count()"
    fi
    return $ok
}

case ${1:-} in
    start) shift; do_start "$@" ;;
    stop) do_stop ;;
    destroy) do_stop; rm -rf "$BASE" ;;
    status) do_status ;;
    env) printf 'export PGHOST=%s PGPORT=%s PGDATABASE=pgmarket PGUSER=%s\n' \
             "$BASE/pgbouncer" "$BOUNCER_PORT" "$os_user" ;;
    *) usage ;;
esac
