#!/bin/sh
# bench-persist.sh -- what durability costs: QoS 1 fan-in to a persistent
# session with persistence off, strict and interval, against Debian's
# mosquitto with persistence true (which does not sync); the fsync latency
# of the disk; and the restart time with 1,000,000 stored messages.
# Writes build/bench/persist.md (scripts/bench.sh puts it into
# docs/performance.md). Env: BENCH_RUNS (3) BENCH_SECS (5) PERSIST_BIG (1000000).
set -e
cd "$(dirname "$0")/.."
RUNS=${BENCH_RUNS:-3}
SECS=${BENCH_SECS:-5}
BIG=${PERSIST_BIG:-1000000}
B=build
OUT=$B/bench/persist.md
WORK=$(mktemp -d /tmp/secbroker-bench-persist.XXXXXX)
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM
mkdir -p "$B/bench"
say() { printf '%s\n' "$*" >&2; }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { /usr/bin/python3 -c "
import socket,sys,time
t=time.time()+60
while time.time()<t:
    try: socket.create_connection(('127.0.0.1',$1),0.2).close(); sys.exit(0)
    except OSError: time.sleep(0.01)
sys.exit(1)"; }
kv() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
med() { sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "-")}'; }

# KIND: mem | strict | interval | mosquitto -> PID PORT (globals)
start() {
    PORT=$(free_port)
    d="$WORK/$1"; rm -rf "$d"; mkdir -p "$d"
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 100\nmax_queued_messages 100000\n' "$PORT" > "$d/b.conf"
    case $1 in
    mem) ;;
    strict) printf 'persistence true\npersistence_location %s\n' "$d" >> "$d/b.conf" ;;
    interval) printf 'persistence true\npersistence_location %s\npersistence_sync interval\nautosave_interval 5\n' "$d" >> "$d/b.conf" ;;
    mosquitto) printf 'persistence true\npersistence_location %s/\nuser root\n' "$d" >> "$d/b.conf" ;;
    esac
    if [ "$1" = mosquitto ]; then
        /usr/sbin/mosquitto -c "$d/b.conf" > "$d/log" 2>&1 & PID=$!
    else
        printf 'log_dest file %s/log\n' "$d" >> "$d/b.conf"
        "$B/secbroker" -c "$d/b.conf" & PID=$!
    fi
    PIDS="$PIDS $PID"
    wait_port "$PORT"
}

fanin() { # KIND -> median delivered msg/s over RUNS
    for r in $(seq "$RUNS"); do
        start "$1"
        line=$("$B/secbench" --scenario fan-in -p "$PORT" -n 10 -q 1 -d "$SECS" --persistent --quiet --pid "$PID")
        kill "$PID"; wait "$PID" 2>/dev/null || true
        say "  $1 run $r: $(kv "$line" msgs_per_s) msg/s, lost $(kv "$line" lost), broker CPU $(kv "$line" broker_cpu_pct)%"
        kv "$line" msgs_per_s
    done | med
}

fsync_us() {
    /usr/bin/python3 - "$WORK/fsync.tmp" <<'EOF'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
n = 200
t = time.perf_counter()
for i in range(n):
    os.pwrite(fd, b"x" * 4096, 0)
    os.fdatasync(fd)
print("%.0f" % ((time.perf_counter() - t) / n * 1e6))
EOF
}

# A database holding BIG queued messages for one offline persistent session
# (written straight into the schema the broker created), then the time from
# exec until the broker accepts connections, and its RSS.
restart_big() {
    start strict
    kill "$PID"; wait "$PID" 2>/dev/null || true
    db="$WORK/strict/secbroker.db"
    /usr/bin/python3 - "$db" "$BIG" <<'EOF'
import sqlite3, sys
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
c.execute("PRAGMA journal_mode=WAL")
c.execute("INSERT INTO sessions(client_id, username, expiry) VALUES('big', NULL, 4294967295)")
c.execute("INSERT INTO subscriptions(client_id, filter, qos) VALUES('big', 'big/#', 1)")
c.executemany("INSERT INTO messages(id, topic, payload, qos, retain, refs) VALUES(?, 'big/t', ?, 1, 0, 0)",
              ((i, b"%064d" % i) for i in range(1, n + 1)))
c.executemany("INSERT INTO deliveries(client_id, seq, msg_id, qos, retain, state, pid) VALUES('big', ?, ?, 1, 0, 0, 0)",
              ((i, i) for i in range(1, n + 1)))
c.commit()
c.close()
EOF
    SIZE=$(du -k "$db" | cut -f1)
    n0=$(grep -c 'persistence: loaded' "$WORK/strict/log")
    t0=$(date +%s.%N)
    "$B/secbroker" -c "$WORK/strict/b.conf" & PID=$!
    PIDS="$PIDS $PID"
    # the listener opens first; clients are served once the load is done
    while [ "$(grep -c 'persistence: loaded' "$WORK/strict/log")" -le "$n0" ]; do sleep 0.05; done
    wait_port "$PORT"
    t1=$(date +%s.%N)
    SERVE=$(echo "$t1 - $t0" | bc)
    LOADMS=$(sed -n 's/.*persistence: loaded .* in \([0-9]*\) ms.*/\1/p' "$WORK/strict/log" | tail -1)
    RSS=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
    kill "$PID"; wait "$PID" 2>/dev/null || true
}

say "bench-persist: fsync latency"
FSYNC=$(fsync_us)
say "bench-persist: QoS 1 fan-in to a persistent session, $RUNS x $SECS s each"
MEM=$(fanin mem)
STRICT=$(fanin strict)
INTERVAL=$(fanin interval)
MOSQ=$(fanin mosquitto)
say "bench-persist: restart with $BIG stored messages"
restart_big
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
cat > "$OUT" <<EOF
## Durability (persistence)

QoS 1 fan-in, 10 publishers to one subscriber with a persistent session
(\`secbench --scenario fan-in -n 10 -q 1 --persistent\`, max_inflight_messages
100), delivered messages per second, median of $RUNS runs of $SECS s. fdatasync
of 4 KiB on this disk: $FSYNC us.

| broker | delivered msg/s | vs secbroker in memory | vs mosquitto (persistence true, no sync) |
|---|---|---|---|
| secbroker, persistence false | $MEM | 1.00 | $(ratio "$MEM" "$MOSQ") |
| secbroker, persistence_sync strict | $STRICT | $(ratio "$STRICT" "$MEM") | $(ratio "$STRICT" "$MOSQ") |
| secbroker, persistence_sync interval (5 s) | $INTERVAL | $(ratio "$INTERVAL" "$MEM") | $(ratio "$INTERVAL" "$MOSQ") |
| mosquitto 2.0.11, persistence true | $MOSQ | $(ratio "$MOSQ" "$MEM") | 1.00 |

Strict: every PUBACK leaves after the write-ahead log that holds the message
was synced (a helper thread syncs while the loop goes on; one sync per batch).
Mosquitto writes its database only every autosave_interval and never syncs.

Restart with $BIG messages queued for one offline persistent session
(database ${SIZE} KiB): the broker accepted connections ${SERVE} s after it
was started; loading took ${LOADMS} ms; RSS after loading ${RSS} KiB.
Reproduce: \`sh scripts/bench-persist.sh\` (PERSIST_BIG, BENCH_RUNS, BENCH_SECS).
EOF
say "bench-persist: wrote $OUT"
cat "$OUT"
