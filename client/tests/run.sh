#!/usr/bin/env bash
# run.sh: `make check` (and `make valgrind`) of client/.
#
# Against the server that PGHOST/PGPORT/PGUSER name (a superuser: the
# scripts/test.sh cluster), in a fresh database per run:
#   1. CREATE EXTENSION pgmarket, the master key file that the server's
#      pgmarket.master_key_file names written through COPY ... TO PROGRAM
#      (scripts/test.sh's cluster names pgmarket_test.key; a server that
#      names none is refused), log_statement = 'all' for the database;
#   2. tests/test_json.bin: the import's JSON reader and checks (no server);
#      tests/test_client.bin: every library call; tests/test_accounts.bin:
#      the account surface; tests/test_batch.bin: the pipelined batch;
#   3. each examples/*.bin;
#   4. tests/test_client.bin and tests/test_batch.bin bouncer: through a
#      pgbouncer of our own in
#      transaction mode (skipped with a note when pgbouncer is missing);
#   5. the pgmarket tool: import (twice, and a broken file), export,
#      balance, add-funds, charge, keys, verify, rotate-keys.
# Then it drops the database, removes the key file and
# closes on "N passed, N failed"; exit status 1 when anything failed.
#
# VALGRIND="valgrind ..." runs every program under it.
set -u

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
client=$(pwd)
VALGRIND=${VALGRIND:-}
read -r -a vg <<<"$VALGRIND"
# a port of its own next to the server's: 54329 -> 64329
BOUNCER_PORT=${PGMARKET_BOUNCER_PORT:-$(( ${PGPORT:-5432} + 10000 <= 65535 ? ${PGPORT:-5432} + 10000 : 64329 ))}

db=pgm_client_$$_$RANDOM
keyfile=""
tmp=$(mktemp -d /tmp/pgm-client-XXXXXX)
bouncer_pid=""
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok - $*"; }
notok() { fail=$((fail + 1)); echo "not ok - $*"; }
psql_db() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

cleanup() {
    if [ -n "$bouncer_pid" ]; then
        kill "$bouncer_pid" 2>/dev/null
        wait "$bouncer_pid" 2>/dev/null
    fi
    psql_db -d postgres >/dev/null 2>&1 <<SQL
DROP DATABASE IF EXISTS $db WITH (FORCE);
SQL
    if [ -n "$keyfile" ]; then
        psql_db -d postgres >/dev/null 2>&1 <<SQL
COPY (SELECT 1) TO PROGRAM 'cat > /dev/null && rm -f $keyfile $keyfile.tmp $keyfile.away';
SQL
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
    exit $?
}

# --- 1. the database ---------------------------------------------------------
echo "# database $db"
keyfile=$(psql_db -d postgres -At -c "LOAD 'pgmarket'" \
              -c "SELECT current_setting('pgmarket.master_key_file')" 2>/dev/null | tail -n 1)
if [ -z "$keyfile" ] || [[ $keyfile == *"'"* ]]; then
    notok "the server names a master key file (pgmarket.master_key_file)"
    keyfile=""
    finish
fi
if ! psql_db -d postgres -c "CREATE DATABASE $db" ||
   ! psql_db -d "$db" -o /dev/null <<SQL
CREATE EXTENSION pgmarket;
COPY (SELECT '1:' || md5(random()::text) || md5(random()::text))
    TO PROGRAM 'umask 077 && cat > $keyfile.tmp && mv $keyfile.tmp $keyfile';
ALTER DATABASE $db SET log_statement = 'all';
SQL
then
    notok "set up database $db"
    finish
fi
export PGDATABASE=$db PGMARKET_TEST_KEYFILE=$keyfile

# --- 2. the library ----------------------------------------------------------
run_counted() {
    local log=$tmp/$1.log rc p f
    shift
    "${vg[@]}" "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    read -r p f < <(awk '/^# tally: / { p = $3; f = $4 } END { print p + 0, f + 0 }' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
        echo "not ok - $1 exited $rc"
    fi
    pass=$((pass + p))
    fail=$((fail + f))
}
run_counted json tests/test_json.bin
run_counted library tests/test_client.bin
run_counted accounts tests/test_accounts.bin
run_counted batch tests/test_batch.bin

# --- 3. the examples ------------------------------------------------------------
for ex in examples/*.bin; do
    [ -x "$ex" ] || continue
    if out=$("${vg[@]}" "$ex" 2>&1); then
        ok "$ex"
    else
        notok "$ex"
    fi
    sed 's/^/#   /' <<<"$out"
done

# --- 4. through pgbouncer in transaction mode --------------------------------
if command -v pgbouncer >/dev/null 2>&1; then
    user=${PGUSER:-$(id -un)}
    cat >"$tmp/pgbouncer.ini" <<EOF
[databases]
$db = host=${PGHOST:-/var/run/postgresql} port=${PGPORT:-5432} dbname=$db
[pgbouncer]
listen_addr =
listen_port = $BOUNCER_PORT
unix_socket_dir = $tmp
auth_type = trust
auth_file = $tmp/users.txt
pool_mode = transaction
default_pool_size = 1
max_client_conn = 20
logfile = $tmp/pgbouncer.log
pidfile = $tmp/pgbouncer.pid
ignore_startup_parameters = extra_float_digits
EOF
    printf '"%s" ""\n' "$user" >"$tmp/users.txt"
    pgbouncer -q "$tmp/pgbouncer.ini" 9>&- &
    bouncer_pid=$!
    for _ in $(seq 1 50); do
        [ -S "$tmp/.s.PGSQL.$BOUNCER_PORT" ] && break
        sleep 0.1
    done
    if [ -S "$tmp/.s.PGSQL.$BOUNCER_PORT" ]; then
        run_counted bouncer tests/test_client.bin bouncer \
            "host=$tmp port=$BOUNCER_PORT dbname=$db user=$user"
        run_counted bouncer_batch tests/test_batch.bin bouncer \
            "host=$tmp port=$BOUNCER_PORT dbname=$db user=$user"
    else
        notok "pgbouncer did not start"
        cat "$tmp/pgbouncer.log" 2>/dev/null
    fi
    kill "$bouncer_pid" 2>/dev/null
    wait "$bouncer_pid" 2>/dev/null
    bouncer_pid=""
else
    echo "# skip: pgbouncer is not installed"
fi

# --- 5. the command-line tool ---------------------------------------------------
if [ -x ./pgmarket ]; then
    # shellcheck source=tests/cli.sh
    . tests/cli.sh
    # shellcheck source=tests/cli_amounts.sh
    . tests/cli_amounts.sh
fi

finish
