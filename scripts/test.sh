#!/usr/bin/env bash
# test.sh: every test suite of pgmarket on a fresh throwaway cluster. CI runs
# this (.ci/run); run it by hand the same way: `bash scripts/test.sh`.
#
#   bash scripts/test.sh              one run
#   bash scripts/test.sh --repeat N   N runs, each on a fresh copy and fresh
#                                     clusters; fails if any run fails
#
#  1. copy the source tree (tracked plus untracked, not ignored, files) to a
#     fresh /tmp/pgmarket-check-XXXXXX: CI's clone may sit where the
#     `postgres` OS user cannot enter, and the copy keeps build and test
#     output out of the work tree;
#  2. scripts/setup.sh on the copy: packages, make, make install;
#  3. a cluster on port 54329 (scripts/cluster.sh, name "check54329");
#  4. as the cluster's OS user (`postgres` when run as root, else the caller):
#     make installcheck, one suite per run so that a failing suite does not
#     hide the others: pg_regress (sql/), isolation (tests/isolation/specs/),
#     `make -C client check` when client/Makefile exists (it builds the
#     tool that a TAP test uses), the Python package's pytest suite
#     (python/tests/run.sh, a database of its own), `make -C client fuzz`
#     (a bounded run of the fuzz targets), then TAP (tests/t/, its own
#     clusters);
#  5. show the diffs and logs of what failed, keep them in
#     /tmp/pgmarket-failed-PORT-TIME (named in the summary, with the first
#     failing test), stop the cluster, remove the temporary directories, and
#     close on the line `N passed, N failed`.
# Exits non-zero when anything failed or when no test ran.
#
# Environment: PGMARKET_TEST_SUITES (a subset of "regress isolation client
# python fuzz tap"), PGMARKET_PG_CONFIG (another PostgreSQL 15 installation),
# PGMARKET_TEST_PORT (54329), PGMARKET_TEST_BUDGET (seconds for
# all suites together, 840), PGMARKET_KEEP=1 keeps the copy and the cluster's
# directory for a look afterwards (the server is stopped all the same).

# The counters and the EXIT handler are called indirectly.
# shellcheck disable=SC2317
set -euo pipefail

# --repeat N: run this script N times as separate processes, each with its
# own copy and clusters, and add up their closing lines.
if [ "${1:-}" = --repeat ]; then
    n=${2:-}
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [--repeat N]" >&2; exit 2; }
    total_p=0 total_f=0 bad_runs=0 t_all=$SECONDS
    for i in $(seq 1 "$n"); do
        printf '\n##### run %d of %d\n' "$i" "$n"
        out=$(mktemp /tmp/pgmarket-run-XXXXXX)
        set +e
        bash "${BASH_SOURCE[0]}" 2>&1 | tee "$out"
        rc=${PIPESTATUS[0]}
        set -e
        line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1 || true)
        rm -f "$out"
        p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
        [ -n "$line" ] || { p=0; f=1; }
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
        echo "##### run $i of $n: $p passed, $f failed (exit $rc)"
        total_p=$((total_p + p)); total_f=$((total_f + f))
        [ "$rc" -eq 0 ] || bad_runs=$((bad_runs + 1))
    done
    echo "##### $n runs, $bad_runs failed, $((SECONDS - t_all))s"
    echo "$total_p passed, $total_f failed"
    [ "$bad_runs" -eq 0 ] && [ "$total_f" -eq 0 ]
    exit $?
fi
[ $# -eq 0 ] || { echo "usage: $0 [--repeat N]" >&2; exit 2; }

PG_CONFIG=${PGMARKET_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$(dirname "$PG_CONFIG")
export PGMARKET_PG_CONFIG=$PG_CONFIG
PORT=${PGMARKET_TEST_PORT:-54329}
NAME=check$PORT
BUDGET=${PGMARKET_TEST_BUDGET:-840}
SOCKDIR=/tmp/pgmarket-$NAME

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
t0=$SECONDS
passed=0
failed=0
failed_steps=()
first_failure=""
faildir=""
work=""
logdir=""
cluster_up=0
summarized=0

if [ "$(id -u)" -eq 0 ]; then
    test_user=postgres
    as_user() { runuser -u "$test_user" -- "$@"; }
else
    test_user=$(id -un)
    as_user() { "$@"; }
fi
test_home=$(getent passwd "$test_user" | cut -d: -f6)
[ -d "$test_home" ] || test_home=/tmp

# The environment every suite runs in: the test cluster, a fixed locale, and
# nothing inherited that would point libpq elsewhere.
suite_env=(env -u PGDATABASE -u PGSERVICE -u PGOPTIONS -u PGPASSWORD
           -u PGSSLMODE -u PGHOSTADDR
           HOME="$test_home" LANG=C.UTF-8 LC_ALL=C.UTF-8
           PGHOST="$SOCKDIR" PGPORT="$PORT" PGUSER="$test_user"
           PG_CONFIG="$PG_CONFIG" PATH="$PGBIN:$PATH")

say() { printf '\n=== %s\n' "$*"; }

# Stops every server this run started, then removes its temporary files.
cleanup() {
    # Best effort: one failing step must not keep the others from running.
    local - pidfile
    set +e
    if [ -n "$work" ] && [ -d "$work" ]; then
        # TAP clusters that outlived a killed prove: stop them by data dir.
        while IFS= read -r -d '' pidfile; do
            (cd / && as_user "$PGBIN/pg_ctl" stop -D "$(dirname "$pidfile")" \
                -m immediate -w -t 30) >/dev/null 2>&1 || true
        done < <(find "$work" -name postmaster.pid -print0 2>/dev/null)
        # Their socket directories (PostgreSQL::Test::Utils::tempdir_short),
        # which a killed test leaves behind; the node logs name them.
        grep -rhoE 'host=/tmp/[A-Za-z0-9_]{10}\b' \
                "$work/tmp_check/log" "$work/tests/t/tmp_check/log" 2>/dev/null |
            sort -u | while IFS= read -r s; do rm -rf "${s#host=}"; done
    fi
    if [ "$cluster_up" -eq 1 ]; then
        bash "$src/scripts/cluster.sh" stop "$NAME" >/dev/null 2>&1 || true
        # Only a directory this run made: another run may own it otherwise.
        [ "${PGMARKET_KEEP:-0}" = 1 ] || rm -rf "$SOCKDIR"
        cluster_up=0
    fi
    if [ "${PGMARKET_KEEP:-0}" = 1 ]; then
        [ -n "$work" ] && echo "kept: $work $SOCKDIR $logdir"
    else
        [ -n "$work" ] && rm -rf "$work"
        [ -n "$logdir" ] && rm -rf "$logdir"
    fi
    work=""
    logdir=""
}

summary() {
    summarized=1
    if [ "${#failed_steps[@]}" -gt 0 ]; then
        echo "failed: ${failed_steps[*]}"
    fi
    if [ -n "$first_failure" ]; then
        echo "first failure: $first_failure"
    fi
    if [ -n "$faildir" ]; then
        echo "diffs and logs kept in $faildir"
    fi
    echo "took $((SECONDS - t0))s"
    echo "$passed passed, $failed failed"
}

on_exit() {
    local rc=$?
    trap - EXIT
    cleanup
    if [ "$summarized" -eq 0 ]; then
        echo "test.sh: stopped early (exit $rc)"
        failed=$((failed + 1))
        failed_steps+=(test.sh)
        summary
        exit 1
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# One run serves one port at a time: a second run waits instead of tearing
# down the first one's cluster.
# Servers started below get fd 9 closed, so that none of them holds the lock.
lock=/tmp/pgmarket-test-$PORT.lock
if [ ! -e "$lock" ] || [ -w "$lock" ]; then
    exec 9>>"$lock"
    flock -w 600 9 || { echo "test.sh: $lock is held by another run" >&2; exit 1; }
fi

copy_tree() {
    local dest=$1
    if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # Tracked and untracked-but-not-ignored files that exist on disk.
        (cd "$src" && git ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' f; do
                if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
            done | tar --null -T - -cf -) | tar -xf - -C "$dest"
    else
        tar -C "$src" --exclude=.git --exclude-vcs-ignores -cf - . |
            tar -xf - -C "$dest"
    fi
}

# Tally per-test result lines of pg_regress / pg_isolation_regress (PG15:
# "test name ... ok 12 ms", "... FAILED"; "failed (ignored)" counts as neither).
count_regress() {
    local log=$1 rc=$2 p f
    read -r p f < <(awk '
        /^(test +| +)[^ ]+ +\.\.\. +ok( |$)/ { p++ }
        /^(test +| +)[^ ]+ +\.\.\. +FAILED/ { f++ }
        END { print p + 0, f + 0 }' "$log")
    # The driver failed before or beyond its tests (no database, a crash).
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    echo "$p $f"
}

# prove: "Files=N, Tests=M" and the Test Summary Report's per-file
# "(Wstat: W [(exited N)] Tests: T Failed: F)"; a file that died without a failed subtest
# (bad plan, crash) counts as one failure.
count_tap() {
    local log=$1 rc=$2 p f
    read -r p f < <(awk '
        /^Files=[0-9]+, Tests=[0-9]+/ {
            s = $0; sub(/.*Tests=/, "", s); sub(/,.*/, "", s); tests = s + 0 }
        /\(Wstat: [0-9]+.* Tests: [0-9]+ Failed: [0-9]+\)/ {
            s = $0; sub(/.*Failed: /, "", s); sub(/\).*/, "", s)
            bad += (s + 0 > 0) ? s + 0 : 1 }
        /^Result: FAIL/ { result_fail = 1 }
        END {
            if (result_fail && bad == 0) bad = 1
            p = tests - bad; if (p < 0) p = 0
            print p, bad + 0 }' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    echo "$p $f"
}

# A runner that closes on its own "N passed, N failed" line.
count_closing() {
    local log=$1 rc=$2 line p f
    line=$(grep -E '^([A-Za-z]+: )?[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1 || true)
    if [ -n "$line" ]; then
        p=$(sed -E 's/^([A-Za-z]+: )?([0-9]+) passed.*/\2/' <<<"$line")
        f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
    else
        p=0
        f=0
    fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    echo "$p $f"
}

# run_step NAME COUNTER CAP_SECONDS COMMAND...: runs COMMAND as the test user
# within the time left, tees its output to a log and adds up its results.
run_step() {
    local name=$1 counter=$2 cap=$3 left limit log rc p f started
    shift 3
    left=$((BUDGET - (SECONDS - t0)))
    limit=$((cap < left ? cap : left))
    log=$logdir/$name.log
    say "$name"
    if [ "$limit" -lt 30 ]; then
        echo "$name: skipped, the time budget (${BUDGET}s) is spent"
        failed=$((failed + 1))
        failed_steps+=("$name")
        return 0
    fi
    started=$SECONDS
    set +e
    (cd "$work" && as_user "${suite_env[@]}" \
        timeout -k 20 "$limit" "$@") 9>&- 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "$name: timed out after ${limit}s"
    fi
    read -r p f < <("$counter" "$log" "$rc")
    echo "--- $name: $p passed, $f failed (exit $rc, $((SECONDS - started))s)"
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -gt 0 ]; then
        failed_steps+=("$name")
        [ -n "$first_failure" ] || first_failure="$name: $(first_failed "$name" "$log")"
    fi
}

# first_failed STEP LOG: the first failing test of a step, and where its diff
# or log will be kept.
first_failed() {
    local step=$1 log=$2 t why=""
    case $step in
        regress|isolation)
            t=$(awk '/^(test +| +)[^ ]+ +\.\.\. +FAILED/ {
                         print ($1 == "test") ? $2 : $1; exit }' "$log")
            if [ "$step" = isolation ] && [ -n "$t" ] &&
               grep -q -E '^\+(setup|teardown) failed' \
                   "$work/tests/isolation/output_iso/regression.diffs" 2>/dev/null; then
                why=" (a setup or teardown failed: every later permutation is suspect)"
            fi
            echo "${t:-the driver itself}$why; diff: @FAILDIR@/$step.diffs" ;;
        tap)
            t=$(grep -m1 -oE '^tests/t/[^ ]+\.pl' <(grep -E 'Dubious|Failed|not ok' "$log") || true)
            echo "${t:-prove itself}; log: @FAILDIR@/tap/" ;;
        python)
            t=$(grep -m1 -E '^(FAILED|ERROR) ' "$log" || grep -m1 -E '^not ok' "$log" || true)
            echo "${t:-exit status}; log: @FAILDIR@/$step.log" ;;
        *)
            t=$(grep -m1 -E '^not ok' "$log" || true)
            echo "${t:-exit status}; log: @FAILDIR@/$step.log" ;;
    esac
}

# keep_failures: copy what failed out of the work tree before it is removed.
keep_failures() {
    local step
    [ "${#failed_steps[@]}" -gt 0 ] || return 0
    faildir=$(mktemp -d "/tmp/pgmarket-failed-$PORT-$(date +%Y%m%d%H%M%S)-XXXX")
    chmod 755 "$faildir"
    # Best effort, like cleanup: a missing file must not stop the report.
    for step in "${failed_steps[@]}"; do
        cp "$logdir/$step.log" "$faildir/" 2>/dev/null || true
        case $step in
            regress) cp "$work/regression.diffs" "$faildir/regress.diffs" 2>/dev/null || true ;;
            isolation) cp "$work/tests/isolation/output_iso/regression.diffs" \
                           "$faildir/isolation.diffs" 2>/dev/null || true ;;
            tap) mkdir -p "$faildir/tap"
                 cp "$work"/tmp_check/log/* "$work"/tests/t/tmp_check/log/* \
                    "$faildir/tap/" 2>/dev/null || true ;;
        esac
    done
    cp "$SOCKDIR/server.log" "$faildir/" 2>/dev/null || true
    first_failure=${first_failure//@FAILDIR@/$faildir}
    return 0
}

# show_file FILE N [head|tail]: a diff reads best from its start, a log from
# its end.
show_file() {
    local file=$1 lines=$2 end=${3:-tail} total
    [ -s "$file" ] || return 0
    total=$(wc -l <"$file")
    if [ "$total" -le "$lines" ]; then
        echo "----- ${file#"$work"/}"
        cat "$file"
    elif [ "$end" = head ]; then
        echo "----- ${file#"$work"/} (first $lines of $total lines)"
        head -n "$lines" "$file"
    else
        echo "----- ${file#"$work"/} (last $lines of $total lines)"
        tail -n "$lines" "$file"
    fi
}

show_failures() {
    local step f
    for step in "${failed_steps[@]}"; do
        case $step in
            regress)
                say "regress: regression.diffs"
                show_file "$work/regression.diffs" 400 head
                show_file "$SOCKDIR/server.log" 40
                ;;
            isolation)
                say "isolation: regression.diffs"
                show_file "$work/tests/isolation/output_iso/regression.diffs" 400 head
                show_file "$work/output_iso/regression.diffs" 400 head
                show_file "$SOCKDIR/server.log" 40
                ;;
            tap)
                say "tap: logs"
                for f in "$work"/tmp_check/log/* "$work"/tests/t/tmp_check/log/*; do
                    if [ -f "$f" ]; then show_file "$f" 60; fi
                done
                ;;
        esac
    done
}

have() { compgen -G "$work/$1" >/dev/null; }
# PGMARKET_TEST_SUITES="regress isolation" runs only those suites (all by
# default).
want() { [[ " ${PGMARKET_TEST_SUITES:-regress isolation client python fuzz tap} " == *" $1 "* ]]; }

# --- 1. a private copy of the tree -----------------------------------------
work=$(mktemp -d /tmp/pgmarket-check-XXXXXX)
logdir=$(mktemp -d /tmp/pgmarket-logs-XXXXXX)
say "copy $src -> $work"
copy_tree "$work"

# --- 2. packages, build, install --------------------------------------------
say "setup"
if ! bash "$work/scripts/setup.sh" "$work" 9>&- 2>&1 | tee "$logdir/setup.log"; then
    echo "setup failed"
    failed=$((failed + 1))
    failed_steps+=(setup)
    cleanup
    summary
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    chown -R "$test_user": "$work"
fi

# --- 3. the cluster ------------------------------------------------------------
say "cluster $NAME on port $PORT"
cluster_up=1
# Every test that needs the vault writes this file (relative to the data
# directory) and removes it when done; the setting itself never changes, so
# no test waits for a configuration reload.
if ! PGMARKET_CLUSTER_SETTINGS="pgmarket.master_key_file = 'pgmarket_test.key'" \
        bash "$src/scripts/cluster.sh" start "$NAME" "$PORT" 9>&-; then
    failed=$((failed + 1))
    failed_steps+=(cluster)
    cleanup
    summary
    exit 1
fi

# --- 4. the suites ---------------------------------------------------------------
make_ic=(make -C "$work" installcheck PG_CONFIG="$PG_CONFIG")
ran_any=0
if want regress && have 'sql/*.sql'; then
    ran_any=1
    run_step regress count_regress 300 "${make_ic[@]}" ISOLATION= TAP_TESTS=
fi
if want isolation && have 'tests/isolation/specs/*.spec'; then
    ran_any=1
    run_step isolation count_regress 300 "${make_ic[@]}" REGRESS= TAP_TESTS=
fi
# the client suite before TAP: it builds the pgmarket tool, which the
# scale-out TAP test also runs through the proxy
if want client && [ -f "$work/client/Makefile" ]; then
    ran_any=1
    run_step client count_closing 300 make -C "$work/client" check \
        PG_CONFIG="$PG_CONFIG"
fi
# the Python package (python/): pytest with Debian's python3, in a database
# of its own on this cluster
if want python && [ -f "$work/python/tests/run.sh" ]; then
    ran_any=1
    run_step python count_closing 300 bash "$work/python/tests/run.sh"
fi
# the parsers of untrusted input under ASan/UBSan, 60 s of fuzzing in all
if want fuzz && [ -f "$work/client/fuzz/run.sh" ]; then
    ran_any=1
    run_step fuzz count_closing 240 make -C "$work/client" fuzz FUZZ_SECONDS=60
fi
if want tap && have 'tests/t/*.pl'; then
    ran_any=1
    run_step tap count_tap 600 "${make_ic[@]}" REGRESS= ISOLATION=
fi
[ "$ran_any" -eq 1 ] || echo "test.sh: no test suite found"

# --- 5. report -------------------------------------------------------------------
show_failures
keep_failures
cleanup
summary
if [ "$failed" -gt 0 ] || [ "$passed" -eq 0 ]; then
    exit 1
fi
exit 0
