#!/usr/bin/env bash
# run.sh: the Python package's tests (pytest), as scripts/test.sh runs them.
#
# Against the server that PGHOST/PGPORT/PGUSER name (a superuser: the
# scripts/test.sh cluster), in a fresh database per run:
#   1. CREATE EXTENSION pgmarket, the master key file that the server's
#      pgmarket.master_key_file names (written through COPY ... TO PROGRAM,
#      as client/tests/run.sh does), log_statement = 'all' for the database;
#   2. Debian's python3 -m pytest over python/tests, the package imported
#      from the tree;
# then it drops the database, removes the key file and closes on
# "N passed, N failed" (errors count as failed); exit 1 when anything failed.
set -u

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
PYTHON=${PGMARKET_PYTHON:-/usr/bin/python3}
db=pgm_python_$$_$RANDOM
keyfile=""
tmp=$(mktemp -d /tmp/pgm-python-XXXXXX)

psql_db() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

cleanup() {
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

echo "# database $db"
keyfile=$(psql_db -d postgres -At -c "LOAD 'pgmarket'" \
              -c "SELECT current_setting('pgmarket.master_key_file')" 2>/dev/null | tail -n 1)
if [ -z "$keyfile" ] || [[ $keyfile == *"'"* ]]; then
    echo "not ok - the server names a master key file (pgmarket.master_key_file)"
    keyfile=""
    echo "0 passed, 1 failed"
    exit 1
fi
if ! psql_db -d postgres -c "CREATE DATABASE $db" ||
   ! psql_db -d "$db" -o /dev/null <<SQL
CREATE EXTENSION pgmarket;
COPY (SELECT '1:' || md5(random()::text) || md5(random()::text))
    TO PROGRAM 'umask 077 && cat > $keyfile.tmp && mv $keyfile.tmp $keyfile';
ALTER DATABASE $db SET log_statement = 'all';
SQL
then
    echo "not ok - set up database $db"
    echo "0 passed, 1 failed"
    exit 1
fi
server_log=""
[ -n "${PGHOST:-}" ] && [ -f "$PGHOST/server.log" ] && server_log=$PGHOST/server.log
export PGDATABASE=$db PGMARKET_TEST_KEYFILE=$keyfile PGMARKET_SERVER_LOG=$server_log
export PYTHONDONTWRITEBYTECODE=1 PIP_NO_INPUT=1

"$PYTHON" -m pytest -p no:cacheprovider -q -rfE --junitxml="$tmp/junit.xml" tests
rc=$?
read -r p f < <("$PYTHON" - "$tmp/junit.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print(0, 1); sys.exit()
suites = [root] if root.tag == "testsuite" else list(root)
t = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skip = sum(int(s.get("skipped", 0)) for s in suites)
print(t - bad - skip, bad)
PY
)
if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
echo "$p passed, $f failed"
[ "$f" -eq 0 ] && [ "$p" -gt 0 ]
