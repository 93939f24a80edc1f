#!/bin/sh
# Instructions the broker spends per delivered message, MQTT 5.0 against
# 3.1.1 (callgrind): each row runs the broker under callgrind twice, with K1
# and K2 messages per publisher, and divides the difference in instructions
# by the difference in deliveries, so startup and connection setup cancel.
# Usage: [VERSIONS="311 5"] scripts/v5-cost.sh [BUILD]   (needs valgrind; one line per row)
set -eu
BUILD=${1:-build}
K1=2000
K2=12000
dir=$(mktemp -d /tmp/secbroker-v5cost-XXXXXX)
trap 'rm -rf "$dir"' EXIT

port_free() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# run_one SCENARIO_ARGS VERSION COUNT -> "IR DELIVERED"
run_one() {
    args=$1 ver=$2 count=$3
    port=$(port_free)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nlog_dest none\n' "$port" >"$dir/b.conf"
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$BUILD/secbroker" -c "$dir/b.conf" \
        >"$dir/vg.log" 2>&1 &
    pid=$!
    i=0
    until python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 200 ] || { echo "broker did not start" >&2; exit 1; }; sleep 0.1
    done
    # shellcheck disable=SC2086
    line=$("$BUILD/secbench" $args -p "$port" -V "$ver" -c "$count" --drain 10 --quiet | tail -n 1)
    kill -TERM "$pid"; wait "$pid" || true
    ir=$(sed -n 's/^summary: //p' "$dir/cg.out")
    delivered=$(echo "$line" | sed 's/.* delivered=\([0-9]*\).*/\1/')
    echo "$ir $delivered"
}

for row in "fan-out QoS 0|--scenario fan-out -m 10 -q 0" "fan-out QoS 1|--scenario fan-out -m 10 -q 1" \
    "pairs QoS 1|--scenario pairs -n 5 -q 1"; do
    name=${row%%|*} args=${row#*|}
    for ver in ${VERSIONS:-311 5}; do
        set -- $(run_one "$args" "$ver" "$K1") $(run_one "$args" "$ver" "$K2")
        echo "$name MQTT $ver: $(( ($3 - $1) / ($4 - $2) )) instructions per delivered message"
    done
done
