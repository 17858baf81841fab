#!/usr/bin/env bash
# demo.sh: build and install pgmarket, start a throwaway cluster "demo" on
# port 54330, create the extension in database `pgmarket` and run the tour
# (scripts/tour.sql).
#
#   scripts/demo.sh          run the tour, then stop and remove the cluster
#   scripts/demo.sh --keep   leave the cluster running afterwards to play with
set -euo pipefail

NAME=demo
PORT=54330
DB=pgmarket
DIR=/tmp/pgmarket-$NAME

keep=0
for arg in "$@"; do
    case $arg in
        --keep) keep=1 ;;
        -h|--help) sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo.sh: unknown option '$arg'" >&2; exit 2 ;;
    esac
done

# From a clone (scripts/ beside the Makefile) the demo builds and installs
# the extension first; installed by `make -C client install` (demo.sh,
# cluster.sh and tour.sql in PREFIX/share/pgmarket) it runs the extension
# that is already installed, and says what is missing when it is not.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=""
if [ -f "$here/../Makefile" ] && [ -f "$here/setup.sh" ]; then
    src=$(cd "$here/.." && pwd)
fi
cluster() { bash "$here/cluster.sh" "$@"; }

if [ "$(id -u)" -eq 0 ]; then os_user=postgres; else os_user=$(id -un); fi

started=0
ok=0
finish() {
    # --keep keeps a cluster only when the tour got through.
    if [ "$started" -eq 1 ] && { [ "$keep" -eq 0 ] || [ "$ok" -eq 0 ]; }; then
        cluster destroy "$NAME" >/dev/null 2>&1 || true
    fi
}
trap finish EXIT
trap 'exit 130' INT TERM

if [ -n "$src" ]; then
    bash "$src/scripts/setup.sh" "$src"
else
    pg_config=${PGMARKET_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
    if [ ! -x "$pg_config" ]; then
        echo "demo: needs PostgreSQL 15's server and pg_config ($pg_config not found;" >&2
        echo "      Debian: apt-get install postgresql-15 postgresql-server-dev-15)" >&2
        exit 1
    fi
    control=$("$pg_config" --sharedir)/extension/pgmarket.control
    if [ ! -f "$control" ]; then
        echo "demo: the pgmarket extension is not installed into PostgreSQL 15" >&2
        echo "      ($control is missing): from a clone of pgmarket, run" >&2
        echo "      bash scripts/setup.sh   (or: make && sudo make install)" >&2
        exit 1
    fi
fi

started=1
cluster start "$NAME" "$PORT"

# The vault's master key (read by the extension once it has the vault): one
# line VERSION:HEX64, readable by the server's OS user only.
key=$DIR/master.key
(umask 077 && printf '1:%s\n' \
    "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$key")
if [ "$(id -u)" -eq 0 ]; then chown "$os_user": "$key"; fi
chmod 0600 "$key"
printf "pgmarket.master_key_file = '%s'\n" "$key" >>"$DIR/data/postgresql.conf"
cluster psql "$NAME" -qAtc 'SELECT pg_reload_conf()' >/dev/null
# The reload is asynchronous: wait until new sessions see the setting.
for _ in $(seq 1 50); do
    [ "$(cluster psql "$NAME" -qAtc \
        "SELECT current_setting('pgmarket.master_key_file', true)")" = "$key" ] && break
    sleep 0.1
done
echo "master key: $key"

cluster psql "$NAME" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $DB"
cluster psql "$NAME" -d "$DB" -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION pgmarket'

# Through stdin: the server's OS user may not be able to read this tree.
cluster psql "$NAME" -d "$DB" -v ON_ERROR_STOP=1 -e -f - <"$here/tour.sql"
ok=1

if [ "$keep" -eq 1 ]; then
    cat <<EOF

The demo cluster is still running (database "$DB", socket in $DIR, port $PORT).
  connect:  bash $here/cluster.sh psql $NAME -d $DB
            (or: psql -h $DIR -p $PORT -U $os_user $DB)
  stop:     bash $here/cluster.sh stop $NAME      (keeps $DIR)
  remove:   bash $here/cluster.sh destroy $NAME   (stops it and deletes $DIR)
EOF
fi
