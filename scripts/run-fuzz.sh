#!/bin/sh
# run-fuzz.sh BUILD SECONDS TARGET... -- a short run of each libFuzzer target
# on its committed corpus (tests/fuzz/corpus/TARGET). New inputs go to
# BUILD/corpus/TARGET, never into the committed seeds. A target passes when
# libFuzzer ends without a crash, leak, timeout or sanitizer report.
# Writes "PASSED FAILED" to BUILD/results/fuzz (one count per target).
build=$1; secs=$2; shift 2
# absolute paths: fuzz_config works in a scratch directory of its own
case "$build" in /*) ;; *) build="$PWD/$build" ;; esac
seeds="$PWD/tests/fuzz/corpus"
mkdir -p "$build/results" "$build/logs"
passed=0; failed=0
for t in "$@"; do
    mkdir -p "$build/corpus/$t"
    log="$build/logs/$t.log"
    if nice "$build/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$build/logs/$t-" \
        "$build/corpus/$t" "$seeds/$t" >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "PASS fuzz_$t (${secs}s, ${runs:-?} runs)"
        passed=$((passed + 1))
    else
        echo "FAIL fuzz_$t: see $log"; tail -n 30 "$log"
        failed=$((failed + 1))
    fi
done
echo "$passed $failed" > "$build/results/fuzz"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
