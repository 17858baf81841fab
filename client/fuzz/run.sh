#!/usr/bin/env bash
# run.sh: `make fuzz` of client/.  run.sh SECONDS TARGET...
#
# For each target (fuzz/fuzz_TARGET.bin, built by make): first every file of
# fuzz/corpus/TARGET/ once (the seeds and every input that ever failed: a
# regression test), then fuzzing for SECONDS / number-of-targets seconds,
# new inputs going to fuzz/out/TARGET/ (the corpus in git is only read).
# A sanitizer report, a failed property or a hang is a failure; the input is
# saved as fuzz/out/TARGET-crash-* (or -timeout-*): copy it into
# fuzz/corpus/TARGET/ with the fix.  Closes on "N passed, N failed".
set -u

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
seconds=${1:-60}
shift
[ $# -gt 0 ] || { echo "run.sh: no target" >&2; exit 2; }
each=$((seconds / $#))
[ "$each" -ge 1 ] || each=1
out=fuzz/out
mkdir -p "$out"
pass=0
fail=0

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:abort_on_error=1}

ok() { pass=$((pass + 1)); echo "ok - $*"; }
notok() {
    fail=$((fail + 1))
    echo "not ok - $1"
    tail -n 40 "$2" | sed 's/^/#   /'
    ls "$out"/"$3"-crash-* "$out"/"$3"-timeout-* "$out"/"$3"-leak-* 2>/dev/null |
        sed 's/^/#   failing input: /'
}

for t in "$@"; do
    bin=fuzz/fuzz_$t.bin
    corpus=fuzz/corpus/$t
    log=$out/$t.log
    [ -x "$bin" ] || { notok "fuzz $t: $bin is not built" /dev/null "$t"; continue; }
    rm -rf "${out:?}/$t" "$out/$t"-crash-* "$out/$t"-timeout-* "$out/$t"-leak-*
    mkdir -p "$out/$t"
    dict=()
    [ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")

    # 1. the corpus, each file once
    files=("$corpus"/*)
    if "$bin" -timeout=10 -artifact_prefix="$out/$t-" "${files[@]}" >"$log" 2>&1; then
        ok "fuzz $t: ${#files[@]} corpus inputs"
    else
        notok "fuzz $t: corpus inputs" "$log" "$t"
        continue
    fi

    # 2. fuzzing, bounded
    if "$bin" -max_total_time="$each" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
            -artifact_prefix="$out/$t-" -print_final_stats=1 "${dict[@]}" \
            "$out/$t" "$corpus" >"$log" 2>&1; then
        runs=$(grep -Eo '(stat::number_of_executed_units: *|Done )[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -n 1)
        ok "fuzz $t: ${each}s, ${runs:-?} runs, no failure"
    else
        notok "fuzz $t: ${each}s of fuzzing" "$log" "$t"
    fi
done

echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
