#!/bin/sh
# run-unit.sh BUILD_DIR -- run every Check suite in BUILD_DIR/tests; print
# the totals and record them in BUILD_DIR/results/unit.
dir=${1:-build}
mkdir -p "$dir/results"
passed=0; failed=0; status=0
for t in "$dir"/tests/test_*; do
    [ -x "$t" ] || continue
    out=$(CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-30} "$t" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks|:[EF]:' | sed "s|^|$(basename "$t"): |"
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks' | tail -1)
    if [ -z "$line" ]; then
        printf '%s\n' "$out" | tail -20
        echo "$(basename "$t"): crashed (exit $rc)"; failed=$((failed + 1)); status=1; continue
    fi
    n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
    f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
    e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
    bad=$((f + e))
    passed=$((passed + n - bad)); failed=$((failed + bad))
    if [ $rc -ne 0 ] || [ $bad -ne 0 ]; then status=1; fi
done
echo "$passed $failed" > "$dir/results/unit"
echo "unit ($dir): $passed passed, $failed failed"
exit $status
