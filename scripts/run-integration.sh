#!/bin/sh
# run-integration.sh -- run every tests/{integration,interop,lab}/test_*.py
# with Debian's /usr/bin/python3 (it has python3-paho-mqtt).
set -u
mkdir -p build/results
exec /usr/bin/python3 tests/integration/runner.py "$@"
