#!/usr/bin/env bash
# cluster.sh: a throwaway PostgreSQL 15 cluster for tests and demos.
#
#   scripts/cluster.sh start   NAME PORT   fresh cluster in /tmp/pgmarket-NAME
#   scripts/cluster.sh stop    NAME        stop it (the directory stays, logs too)
#   scripts/cluster.sh destroy NAME        stop it and remove /tmp/pgmarket-NAME
#   scripts/cluster.sh status  NAME        exit 0 when it is running
#   scripts/cluster.sh psql    NAME [ARG...]   psql into it (database postgres)
#   scripts/cluster.sh env     NAME        print PGHOST/PGPORT/PGUSER exports
#
# Layout: data directory /tmp/pgmarket-NAME/data, Unix socket in
# /tmp/pgmarket-NAME, server log /tmp/pgmarket-NAME/server.log.
# PGMARKET_CLUSTER_SETTINGS, when set at `start`, is appended to
# postgresql.conf (scripts/test.sh names the master key file there).
# Connections: Unix socket only (listen_addresses = ''), trust auth, so
# nothing is reachable from the network; set PGMARKET_LISTEN=127.0.0.1 before
# `start` to also listen on loopback TCP.
# As root, the cluster belongs to the `postgres` OS user (PostgreSQL refuses
# to run as root) and every command runs through `runuser -u postgres`;
# otherwise it belongs to the caller. The database superuser has the OS
# user's name.
set -euo pipefail

PGBIN=$(dirname "${PGMARKET_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}")

if [ "$(id -u)" -eq 0 ]; then
    os_user=postgres
    as_user() { runuser -u "$os_user" -- "$@"; }
else
    os_user=$(id -un)
    as_user() { "$@"; }
fi

die() { echo "cluster.sh: $*" >&2; exit 1; }

usage() {
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

check_name() {
    [[ ${1:-} =~ ^[A-Za-z0-9_-]+$ ]] || die "bad cluster name '${1:-}'"
}

# The pid in postmaster.pid, if it names a live postgres process.
live_pid() {
    local pidfile=$1/postmaster.pid pid
    [ -f "$pidfile" ] || return 1
    pid=$(head -n 1 "$pidfile" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    # Guard against a recycled pid: it must be a postgres executable.
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'postgres' || return 1
    echo "$pid"
}

do_stop() {
    local dir=/tmp/pgmarket-$1 data pid i
    data=$dir/data
    [ -d "$data" ] || return 0
    [ -f "$data/postmaster.pid" ] || return 0
    # pg_ctl needs a directory it may enter as the cluster's user.
    if (cd / && as_user "$PGBIN/pg_ctl" stop -D "$data" -m fast -w -t 60) \
            >/dev/null 2>&1; then
        echo "cluster $1 stopped"
        return 0
    fi
    # Fallback: signal the postmaster named in its pid file directly.
    if pid=$(live_pid "$data"); then
        echo "cluster $1: pg_ctl failed, sending SIGQUIT to $pid" >&2
        kill -QUIT "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            [ "$i" -eq 50 ] && kill -KILL "$pid" 2>/dev/null
            sleep 0.2
        done
    fi
    echo "cluster $1 stopped"
}

do_start() {
    local name=$1 port=$2 dir data listen
    dir=/tmp/pgmarket-$name
    data=$dir/data
    listen=${PGMARKET_LISTEN:-}
    if ! [[ $port =~ ^[0-9]+$ ]] || [ "$port" -lt 1024 ] || [ "$port" -gt 65535 ]; then
        die "bad port '$port'"
    fi

    # A stale directory from an earlier run: stop whatever it runs, then drop it.
    if [ -e "$dir" ]; then
        do_stop "$name" >/dev/null
        rm -rf "$dir"
    fi
    mkdir -m 0700 "$dir"
    if [ "$(id -u)" -eq 0 ]; then chown "$os_user": "$dir"; fi

    if ! (cd "$dir" && as_user "$PGBIN/initdb" -D "$data" -U "$os_user" \
            --auth=trust --locale=C --encoding=UTF8 --no-instructions) \
            >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        die "initdb failed"
    fi

    # Appending keeps the file's owner. fsync stays on: tests check crash safety.
    cat >>"$data/postgresql.conf" <<EOF

# --- pgmarket test cluster (scripts/cluster.sh) ---
port = $port
listen_addresses = '$listen'
unix_socket_directories = '$dir'
max_connections = 50
shared_buffers = 128MB
fsync = on
synchronous_commit = on
full_page_writes = on
max_prepared_transactions = 10
lc_messages = 'C'
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
log_min_error_statement = error
${PGMARKET_CLUSTER_SETTINGS:-}
EOF
    echo "$port" >"$dir/port"

    if ! (cd "$dir" && as_user "$PGBIN/pg_ctl" start -D "$data" \
            -l "$dir/server.log" -w -t 60) >/dev/null 2>&1; then
        tail -n 30 "$dir/server.log" >&2 || true
        die "server did not start"
    fi
    echo "cluster $name running: PGHOST=$dir PGPORT=$port PGUSER=$os_user"
}

port_of() {
    local f=/tmp/pgmarket-$1/port
    [ -f "$f" ] || die "no cluster '$1' (start it first)"
    cat "$f"
}

cmd=${1:-}
[ $# -ge 2 ] || usage
name=$2
check_name "$name"
shift 2

case $cmd in
    start)
        [ $# -eq 1 ] || usage
        do_start "$name" "$1"
        ;;
    stop)
        do_stop "$name"
        ;;
    destroy)
        do_stop "$name"
        rm -rf "/tmp/pgmarket-$name"
        ;;
    status)
        live_pid "/tmp/pgmarket-$name/data" >/dev/null
        ;;
    env)
        printf 'export PGHOST=%s PGPORT=%s PGUSER=%s\n' \
            "/tmp/pgmarket-$name" "$(port_of "$name")" "$os_user"
        ;;
    psql)
        port=$(port_of "$name")
        # Through env so that a positional database name still works.
        exec_env=(env PGHOST="/tmp/pgmarket-$name" PGPORT="$port"
                  PGUSER="$os_user" PGDATABASE="${PGDATABASE:-postgres}")
        if [ "$(id -u)" -eq 0 ]; then
            # A directory the cluster's user cannot enter makes psql complain.
            runuser -u "$os_user" -- test -x . 2>/dev/null || cd /
            exec runuser -u "$os_user" -- "${exec_env[@]}" "$PGBIN/psql" -X "$@"
        fi
        exec "${exec_env[@]}" "$PGBIN/psql" -X "$@"
        ;;
    *)
        usage
        ;;
esac
