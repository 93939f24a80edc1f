#!/bin/sh
# run-all.sh -- every test suite; the last line is the overall count,
# "N passed, N failed, N skipped" (CI reads it). A result file holds
# "passed failed [skipped]".
status=0
make --no-print-directory test-unit || status=1
make --no-print-directory test-asan || status=1
make --no-print-directory test-integration || status=1
make --no-print-directory test-fuzz || status=1
passed=0; failed=0; skipped=0
for f in build/results/unit build-asan/results/unit build/results/integration build-fuzz/results/fuzz; do
    if [ -f "$f" ]; then
        read p fl s < "$f"
        passed=$((passed + p)); failed=$((failed + fl)); skipped=$((skipped + ${s:-0}))
    else
        echo "missing result file $f"; failed=$((failed + 1)); status=1
    fi
done
echo "$passed passed, $failed failed, $skipped skipped"
exit $status
