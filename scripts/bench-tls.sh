#!/bin/sh
# bench-tls.sh -- `make bench-tls` (and part of `make bench`): TLS handshakes
# on build/secbroker and Debian's mosquitto side by side, same load tools,
# same certificates (ECDSA P-256), same suites (ECDHE-ECDSA-AES128-GCM-SHA256
# for TLS 1.2, TLS_AES_128_GCM_SHA256 for TLS 1.3), runs alternating between
# the brokers, each on a freshly started broker:
#   - broker CPU per full handshake, TLS 1.2 and TLS 1.3, and per resumed
#     handshake (session tickets), from secbench storms (16 in flight);
#   - handshakes/s with `openssl s_time` (-new and -reuse, both versions);
#   - memory per idle TLS connection (RSS delta over 1,000 clients / 1,000);
#   - p99 publish-to-delivery latency of one established publisher/
#     subscriber pair (1,000 msg/s, QoS 0) alone and during a storm of
#     1,000 clients doing full handshakes at once (a second secbench).
# Writes build/bench/tls.md (scripts/bench.sh puts it into
# docs/performance.md) and, run on its own, replaces that section of
# docs/performance.md in place. Raw lines: build/bench/tls-results.txt.
# Env: BENCH_RUNS (3) BENCH_SECS (5) BENCH_TLS_STORM (1000)
#      BENCH_TLS_ROWS ("full resumed stime idle latency": a subset runs only
#      those rows and keeps the other rows' earlier lines in the raw file)
#      BENCH_TLS_REPORT_ONLY=1 (rewrite the report from the raw lines)
#      BENCH_SECBROKER, BENCH_SECBENCH (other binaries than build/'s).
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUNS=${BENCH_RUNS:-3}
SECS=${BENCH_SECS:-5}
STORM=${BENCH_TLS_STORM:-1000}
REPORT_ONLY=${BENCH_TLS_REPORT_ONLY:-0}
ROWS=${BENCH_TLS_ROWS:-full resumed stime idle latency}
want() { case " $ROWS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
MOSQUITTO=/usr/sbin/mosquitto
SECBENCH=${BENCH_SECBENCH:-$ROOT/build/secbench}
SECBROKER=${BENCH_SECBROKER:-$ROOT/build/secbroker}
CIPHER12=ECDHE-ECDSA-AES128-GCM-SHA256
CIPHER13=TLS_AES_128_GCM_SHA256
RAW=$ROOT/build/bench
RES=$RAW/tls-results.txt
MD=$RAW/tls.md
PERF=docs/performance.md
WORK=$(mktemp -d /tmp/secbroker-bench-tls.XXXXXX)
BPID=""
SPID=""
cleanup() {
    for p in $SPID $BPID; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$RAW"
say() { printf '%s\n' "$*" >&2; }
die() { say "bench-tls: $*"; exit 1; }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listening() {
    hex=$(printf '%04X' "$1")
    awk -v p=":$hex" 'NR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
        /proc/net/tcp 2>/dev/null
}

# start KIND -> BPID, PORT: one TLS listener (TLS 1.2 and 1.3 both allowed;
# each client picks its version), logging errors only
start() {
    PORT=$(free_port)
    conf=$WORK/$1.conf
    {
        echo "allow_anonymous true"
        echo "persistence false"
        echo "log_dest file $WORK/$1.log"
        echo "log_type error"
        echo "connection_messages false"
        if [ "$1" = mosquitto ]; then
            echo "per_listener_settings false"
            echo "set_tcp_nodelay true"
            echo "max_connections -1"
            [ "$(id -u)" = 0 ] && echo "user root"
        fi
        echo "listener $PORT 127.0.0.1"
        echo "certfile $WORK/certs/server.crt"
        echo "keyfile $WORK/certs/server.key"
        echo "tls_version tlsv1.2"
        echo "ciphers $CIPHER12"
        echo "ciphers_tls1.3 $CIPHER13"
    } > "$conf"
    if [ "$1" = mosquitto ]; then
        "$MOSQUITTO" -c "$conf" > "$WORK/$1.out" 2>&1 &
    else
        "$SECBROKER" -c "$conf" > "$WORK/$1.out" 2>&1 &
    fi
    BPID=$!
    i=0
    until listening "$PORT"; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 "$BPID" 2>/dev/null; then
            cat "$WORK/$1.out" "$WORK/$1.log" >&2 2>/dev/null || true
            die "$1 did not start"
        fi
        sleep 0.1
    done
}
stop() {
    kill "$BPID" 2>/dev/null || true
    wait "$BPID" 2>/dev/null || true
    BPID=""
}
record() { # KIND KEY LINE
    echo "$1 $2 ${3:-failed=1}" >> "$RES"
    say "  $1 $2: $(echo "${3:-failed}" | tr ' ' '\n' |
        grep -E '^(conn_per_s|broker_us_per_conn|bytes_per_conn|lat_p99_us|s_time_per_s|resumed|failed)=' | tr '\n' ' ')"
}
bench() { # ARGS...: secbench against the running broker, its SECBENCH line
    timeout 300 "$SECBENCH" -h 127.0.0.1 -p "$PORT" --quiet --pid "$BPID" "$@" 2>"$WORK/err" |
        grep '^SECBENCH ' | tail -1 || true
}

# one secbench scenario on a fresh broker: KEY ARGS...
sb() {
    key=$1
    shift
    for kind in secbroker mosquitto; do
        start "$kind"
        line=$(bench "$@")
        [ -n "$line" ] || say "bench-tls: $key on $kind failed: $(head -c 300 "$WORK/err")"
        stop
        record "$kind" "$key" "${line#SECBENCH }"
    done
}

# openssl s_time for SECS seconds: KEY VERSION_FLAG MODE(-new|-reuse)
stime() {
    key=$1 ver=$2 mode=$3
    for kind in secbroker mosquitto; do
        start "$kind"
        if [ "$ver" = -tls1_2 ]; then c="-cipher $CIPHER12"; else c="-ciphersuites $CIPHER13"; fi
        # shellcheck disable=SC2086
        out=$(timeout $((SECS + 60)) openssl s_time -connect "127.0.0.1:$PORT" "$ver" $c "$mode" \
            -time "$SECS" 2>&1 || true)
        stop
        # "N connections in T real seconds, B bytes read per connection"
        rate=$(echo "$out" | awk '/connections in .* real seconds/ { if ($4 > 0) printf "%.1f", $1 / $4; exit }')
        line=""
        [ -n "$rate" ] && line="s_time_per_s=$rate"
        [ -n "$rate" ] || say "bench-tls: s_time $key on $kind: $(echo "$out" | tail -2 | tr '\n' ' ')"
        record "$kind" "$key" "$line"
    done
}

# the established pair's latency, alone (KEY-quiet) and during a storm of
# STORM concurrent full handshakes from a second secbench (KEY-storm)
storm_latency() {
    key=$1 ver=$2
    for kind in secbroker mosquitto; do
        start "$kind"
        pair="--scenario pairs -n 1 -q 0 --rate 1000 -d $SECS --tls-version $ver --cafile $WORK/certs/ca.crt --insecure"
        # shellcheck disable=SC2086
        line=$(bench $pair)
        record "$kind" "$key-quiet" "${line#SECBENCH }"
        "$SECBENCH" -h 127.0.0.1 -p "$PORT" --quiet --scenario storm --full -n "$STORM" \
            -d $((SECS + 4)) --tls-version "$ver" --no-verify \
            > "$WORK/storm.out" 2>&1 &
        SPID=$!
        sleep 2 # the storm is under way before the pair connects
        # shellcheck disable=SC2086
        line=$(bench $pair)
        wait "$SPID" 2>/dev/null || true
        SPID=""
        stop
        st=$(grep '^SECBENCH ' "$WORK/storm.out" | tail -1)
        record "$kind" "$key-storm" "${line#SECBENCH } storm_conn_per_s=$(echo "$st" | tr ' ' '\n' | sed -n 's/^conn_per_s=//p')"
    done
}

if [ "$REPORT_ONLY" != 1 ]; then
    make --no-print-directory build/secbroker build/secbench >&2 || die "build failed"
    [ -x "$MOSQUITTO" ] || die "$MOSQUITTO is not installed (apt-get install mosquitto)"
    command -v openssl >/dev/null 2>&1 || die "openssl is not installed"
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    sh scripts/mkcerts.sh "$WORK/certs" >/dev/null 2>&1 || die "scripts/mkcerts.sh failed"
    CA=$WORK/certs/ca.crt
    # a subset keeps the other rows' lines from an earlier run
keys=""
want full && keys="$keys full12 full13"
want resumed && keys="$keys resumed12 resumed13"
want stime && keys="$keys stime-new12 stime-new13 stime-reuse12 stime-reuse13"
want idle && keys="$keys idle12 idle13"
want latency && keys="$keys lat13-quiet lat13-storm"
touch "$RES"
awk -v ks="$keys" 'BEGIN { n = split(ks, a, " "); for (i = 1; i <= n; i++) drop[a[i]] = 1 } !($2 in drop)' \
    "$RES" > "$WORK/res" && cp "$WORK/res" "$RES"
    T0=$(date +%s)
    say "bench-tls: $RUNS run(s) per row and broker, $SECS s each; raw lines in $RES"
    r=0
    while [ $r -lt "$RUNS" ]; do
        if want full; then
            sb full12 --scenario storm --full -n 16 -d "$SECS" --tls-version tlsv1.2 --no-verify
            sb full13 --scenario storm --full -n 16 -d "$SECS" --tls-version tlsv1.3 --no-verify
        fi
        if want resumed; then
            sb resumed12 --scenario storm --resumed -n 16 -d "$SECS" --tls-version tlsv1.2 --cafile "$CA" --insecure
            sb resumed13 --scenario storm --resumed -n 16 -d "$SECS" --tls-version tlsv1.3 --cafile "$CA" --insecure
        fi
        if want stime; then
            stime stime-new12 -tls1_2 -new
            stime stime-new13 -tls1_3 -new
            stime stime-reuse12 -tls1_2 -reuse
            stime stime-reuse13 -tls1_3 -reuse
        fi
        if want idle; then
            sb idle12 --scenario idle -n 1000 -d 0 --resumed --tls-version tlsv1.2 --cafile "$CA" --insecure
            sb idle13 --scenario idle -n 1000 -d 0 --resumed --tls-version tlsv1.3 --cafile "$CA" --insecure
        fi
        if want latency; then storm_latency lat13 tlsv1.3; fi
        r=$((r + 1))
    done
    echo "ELAPSED $(($(date +%s) - T0))" > "$RAW/tls-meta.txt"
    echo "LOAD $(cut -d' ' -f1-3 /proc/loadavg)" >> "$RAW/tls-meta.txt"
fi

# ---- the report -------------------------------------------------------------------
[ -s "$RES" ] || die "no results in $RES: run without BENCH_TLS_REPORT_ONLY first"
med() { # KIND KEY FIELD: median over the runs, "-" if none
    awk -v k="$1" -v s="$2" -v f="$3" '
        $1 == k && $2 == s { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f && kv[2] != "-" && kv[2] != "") v[n++] = kv[2] + 0 } }
        END {
            if (n == 0) { print "-"; exit }
            for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            print (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
        }' "$RES"
}
fmt() { case $1 in -) echo "-" ;; *) awk -v x="$1" 'BEGIN { s = sprintf("%.0f", x); o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) } print s o }' ;; esac; }
ratio() { case "$1$2" in *-*) echo "-" ;; *) awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2fx", a / b }' ;; esac; }
row() { # LABEL KEY FIELD
    a=$(med secbroker "$2" "$3"); b=$(med mosquitto "$2" "$3")
    echo "| $1 | $(fmt "$a") | $(fmt "$b") | $(ratio "$a" "$b") |"
}
target() { # LABEL KEY FIELD FACTOR: secbroker <= FACTOR x mosquitto?
    a=$(med secbroker "$2" "$3"); b=$(med mosquitto "$2" "$3")
    v=$(case "$a$b" in *-*) echo "not measured" ;; *) awk -v a="$a" -v b="$b" -v f="$4" 'BEGIN { print (a <= f * b) ? "met" : "**missed**" }' ;; esac)
    echo "| $1 | $(fmt "$a") vs $(fmt "$b") us = $(ratio "$a" "$b") | $v |"
}
RUNS_DONE=$(awk '$1 == "secbroker" && $2 == "full12"' "$RES" | wc -l)
META_ELAPSED=$(sed -n 's/^ELAPSED //p' "$RAW/tls-meta.txt" 2>/dev/null || echo "?")
META_LOAD=$(sed -n 's/^LOAD //p' "$RAW/tls-meta.txt" 2>/dev/null || echo "?")
{
    cat <<EOF
<!-- bench-tls: generated by scripts/bench-tls.sh (make bench-tls); do not edit by hand -->
### TLS handshakes (mbedTLS 3.6 build) against Mosquitto

\`make bench-tls\` (scripts/bench-tls.sh): medians of $RUNS_DONE run(s) per row
and broker, runs alternating, a fresh broker for each, $SECS s each (the
last invocation took $(fmt "$META_ELAPSED") s; load average at its end
$META_LOAD). secbroker
on its bundled mbedTLS 3.6 against mosquitto $("$MOSQUITTO" -h 2>/dev/null | awk 'NR == 1 { print $3 }') on OpenSSL
$(openssl version 2>/dev/null | awk '{ print $2 }'). ECDSA P-256 server certificate; X25519 key exchange (the
first group both offer); TLS 1.2 $CIPHER12, TLS 1.3 $CIPHER13.
The machine is shared with other jobs: single runs vary by 10-30%, the
ratios are the figures to read.

| TLS handshakes | secbroker | mosquitto | ratio |
|---|---|---|---|
$(row "broker CPU per full handshake, TLS 1.2, us (lower is better)" full12 broker_us_per_conn)
$(row "broker CPU per full handshake, TLS 1.3, us (lower is better)" full13 broker_us_per_conn)
$(row "broker CPU per resumed handshake, TLS 1.2 (ticket), us (lower is better)" resumed12 broker_us_per_conn)
$(row "broker CPU per resumed handshake, TLS 1.3 (ticket, psk_dhe_ke), us (lower is better)" resumed13 broker_us_per_conn)
$(row "full handshakes/s, TLS 1.2 (secbench storm, 16 in flight)" full12 conn_per_s)
$(row "full handshakes/s, TLS 1.3 (secbench storm, 16 in flight)" full13 conn_per_s)
$(row "resumed handshakes/s, TLS 1.2 (secbench storm)" resumed12 conn_per_s)
$(row "resumed handshakes/s, TLS 1.3 (secbench storm)" resumed13 conn_per_s)
$(row "openssl s_time -new -tls1_2, handshakes/s" stime-new12 s_time_per_s)
$(row "openssl s_time -new -tls1_3, handshakes/s" stime-new13 s_time_per_s)
$(row "openssl s_time -reuse -tls1_2, handshakes/s" stime-reuse12 s_time_per_s)
$(row "openssl s_time -reuse -tls1_3, handshakes/s" stime-reuse13 s_time_per_s)
$(row "memory per idle TLS 1.2 connection, bytes (1,000 clients; lower is better)" idle12 bytes_per_conn)
$(row "memory per idle TLS 1.3 connection, bytes (1,000 clients; lower is better)" idle13 bytes_per_conn)
$(row "established pair, TLS 1.3, 1,000 msg/s: p99 latency alone, us" lat13-quiet lat_p99_us)
$(row "the same during a storm of $(fmt "$STORM") concurrent full TLS 1.3 handshakes: p99, us" lat13-storm lat_p99_us)
$(row "the same: max latency during the storm, us" lat13-storm lat_max_us)
$(row "the storm's completed full handshakes/s (its own secbench)" lat13-storm storm_conn_per_s)

Targets (measured here, not pass/fail):

| target | measured (secbroker vs mosquitto) | verdict |
|---|---|---|
$(target "broker CPU per full TLS 1.2 handshake <= mosquitto's" full12 broker_us_per_conn 1)
$(target "broker CPU per full TLS 1.3 handshake <= 1.5x mosquitto's" full13 broker_us_per_conn 1.5)
$(target "broker CPU per resumed TLS 1.2 handshake <= mosquitto's" resumed12 broker_us_per_conn 1)
$(target "broker CPU per resumed TLS 1.3 handshake <= mosquitto's" resumed13 broker_us_per_conn 1)

"broker CPU" is the broker process's utime + stime over the storm divided
by the handshakes completed (each storm connection also sends CONNECT,
gets CONNACK and sends DISCONNECT). s_time opens TLS connections without
MQTT and closes them; it is one OpenSSL process, so its rates are bound by
whichever side is slower. The idle rows are the RSS growth of the broker
for 1,000 connected TLS clients, divided by 1,000 (resumed handshakes, so
the setup is quick; what a connection keeps is the same). The latency rows
are one publisher and one subscriber (QoS 0, 64-byte payloads, 1,000 msg/s)
connected before the storm; the storm is a second secbench keeping
$(fmt "$STORM") full handshakes in flight (TLS 1.3, X25519, no certificate
check on its side) while the pair publishes.
<!-- bench-tls end -->
EOF
} > "$MD"
say "bench-tls: wrote $MD"
# run on its own: replace the section in docs/performance.md (bench.sh does
# the same when it rewrites the whole file)
if [ -z "${BENCH_TLS_NO_SPLICE:-}" ] && [ -f "$PERF" ] && grep -q '^<!-- bench-tls: ' "$PERF"; then
    awk -v md="$MD" '
        /^<!-- bench-tls: / { while ((getline l < md) > 0) print l; skip = 1; next }
        /^<!-- bench-tls end -->/ { skip = 0; next }
        !skip' "$PERF" > "$WORK/perf.md" && cp "$WORK/perf.md" "$PERF"
    say "bench-tls: replaced the TLS handshake section of $PERF"
fi
cat "$MD" >&2
