#!/bin/sh
# bench.sh -- `make bench`: build/secbroker and Debian's mosquitto side by
# side under build/secbench, on 127.0.0.1, same certificates, same cipher
# suite (ECDHE-ECDSA-AES128-GCM-SHA256, TLS 1.2), same queue limits.
#
# Every scenario runs against each broker in turn, BENCH_RUNS times (default
# 3; the median is reported), each run on a freshly started broker so no run
# inherits another's memory. Writes docs/performance.md (the table, the
# machine, the crypto bound, an ASCII plot of fan-out msg/s against the
# subscriber count) and keeps raw results and an SVG plot in build/bench/.
#
# Knobs (environment): BENCH_RUNS=3 BENCH_SECS=3 (seconds per messaging
# run) BENCH_IDLE_MAX=10000 (the big idle run) BENCH_OUT=docs/performance.md
# BENCH_REPORT_ONLY=1 (rewrite the report from build/bench/ without running).
# Takes about 10-18 minutes on 2 cores (MQTT 5 and shared-subscription rows
# included).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUNS=${BENCH_RUNS:-3}
SECS=${BENCH_SECS:-3}
IDLE_MAX=${BENCH_IDLE_MAX:-10000}
OUT=${BENCH_OUT:-docs/performance.md}
MOSQUITTO=/usr/sbin/mosquitto
CIPHER=ECDHE-ECDSA-AES128-GCM-SHA256
SECBENCH=$ROOT/build/secbench
SECBROKER=$ROOT/build/secbroker
RAW=$ROOT/build/bench
REPORT_ONLY=${BENCH_REPORT_ONLY:-0}
T0=$(date +%s)

say() { printf '%s\n' "$*" >&2; }
die() { say "bench: $*"; exit 1; }

RESULTS=$RAW/results.txt
CRYPTO=$RAW/crypto.txt
WORK=$(mktemp -d /tmp/secbench-bench.XXXXXX)
BPID=""
cleanup() {
    if [ -n "$BPID" ]; then kill "$BPID" 2>/dev/null || true; wait "$BPID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$RAW"

if [ "$REPORT_ONLY" != 1 ]; then
# ---- prerequisites ------------------------------------------------------------
make --no-print-directory build/secbroker build/secbench >&2 || die "build failed"
need_pkgs=""
[ -x "$MOSQUITTO" ] || need_pkgs="$need_pkgs mosquitto"
command -v gnuplot >/dev/null 2>&1 || need_pkgs="$need_pkgs gnuplot-nox"
command -v openssl >/dev/null 2>&1 || need_pkgs="$need_pkgs openssl"
command -v python3 >/dev/null 2>&1 || need_pkgs="$need_pkgs python3"
if [ -n "$need_pkgs" ]; then
    if [ "$(id -u)" = 0 ]; then
        say "bench: installing:$need_pkgs"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need_pkgs >&2 ||
            say "bench: could not install$need_pkgs"
    else
        say "bench: missing:$need_pkgs (run: sudo apt-get install -y$need_pkgs)"
    fi
fi
[ -x "$MOSQUITTO" ] || die "$MOSQUITTO is not installed (apt-get install mosquitto)"
command -v python3 >/dev/null 2>&1 || die "python3 is needed to pick free ports"

# 10,000 TLS clients need 10,000 descriptors in each process: secbench raises
# its own limit with setrlimit; the brokers inherit this shell's.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)

fi # REPORT_ONLY (prerequisites)

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# listening(PORT): is something listening on PORT (from /proc/net/tcp and
# tcp6: Mosquitto's websockets listeners are IPv6 sockets on every address)?
listening() {
    hex=$(printf '%04X' "$1")
    awk -v p=":$hex" 'NR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# Both brokers: the same limits. max_inflight_messages / max_queued_messages
# are generous so that QoS 1 throughput is measured, not queue overflow;
# logging is errors and warnings only, to a file.
write_conf() { # KIND PLAIN_PORT TLS_PORT WS_PORT WSS_PORT
    conf=$WORK/$1.conf
    {
        echo "allow_anonymous true"
        echo "persistence false"
        echo "log_dest file $WORK/$1.log"
        echo "log_type error"
        echo "log_type warning"
        echo "connection_messages false"
        echo "max_inflight_messages 100"
        echo "max_queued_messages 100000"
        if [ "$1" = mosquitto ]; then
            echo "per_listener_settings false"
            echo "set_tcp_nodelay true"
            echo "max_connections -1"
            # as root mosquitto drops to the mosquitto user, which could not
            # read the keys in our private work directory
            [ "$(id -u)" = 0 ] && echo "user root"
        fi
        echo "listener $2 127.0.0.1"
        echo "listener $3 127.0.0.1"
        echo "certfile $WORK/certs/server.crt"
        echo "keyfile $WORK/certs/server.key"
        echo "tls_version tlsv1.2"
        echo "ciphers $CIPHER"
        # MQTT over WebSockets, ws and wss (Mosquitto 2.0.11 binds these to
        # every address whatever ADDRESS says; it starts beside a plain one)
        echo "listener $4 127.0.0.1"
        echo "protocol websockets"
        echo "listener $5 127.0.0.1"
        echo "protocol websockets"
        echo "certfile $WORK/certs/server.crt"
        echo "keyfile $WORK/certs/server.key"
        echo "tls_version tlsv1.2"
        echo "ciphers $CIPHER"
    } > "$conf"
}

start_broker() { # KIND -> BPID PLAIN TLSP WSP WSSP
    PLAIN=$(free_port)
    TLSP=$(free_port)
    while [ "$TLSP" = "$PLAIN" ]; do TLSP=$(free_port); done
    WSP=$(free_port)
    while [ "$WSP" = "$PLAIN" ] || [ "$WSP" = "$TLSP" ]; do WSP=$(free_port); done
    WSSP=$(free_port)
    while [ "$WSSP" = "$PLAIN" ] || [ "$WSSP" = "$TLSP" ] || [ "$WSSP" = "$WSP" ]; do WSSP=$(free_port); done
    write_conf "$1" "$PLAIN" "$TLSP" "$WSP" "$WSSP"
    if [ "$1" = mosquitto ]; then
        "$MOSQUITTO" -c "$WORK/$1.conf" > "$WORK/$1.out" 2>&1 &
    else
        "$SECBROKER" -c "$WORK/$1.conf" > "$WORK/$1.out" 2>&1 &
    fi
    BPID=$!
    i=0
    until listening "$PLAIN" && listening "$TLSP" && listening "$WSP" && listening "$WSSP"; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 "$BPID" 2>/dev/null; then
            cat "$WORK/$1.out" "$WORK/$1.log" >&2 2>/dev/null || true
            die "$1 did not start"
        fi
        sleep 0.1
    done
}

stop_broker() {
    kill "$BPID" 2>/dev/null || true
    wait "$BPID" 2>/dev/null || true
    BPID=""
}

# run KEY KIND ARGS...: one run on a fresh broker; appends "KIND KEY <summary>"
# ("@TLS@" in ARGS becomes the TLS port and CA, "@PLAIN@" the plain port).
run() {
    key=$1 kind=$2
    shift 2
    start_broker "$kind"
    args=""
    for a in "$@"; do
        case $a in
            @TLS@) args="$args -p $TLSP --cafile $CA" ;;
            @TLSNV@) args="$args -p $TLSP --no-verify" ;;
            @PLAIN@) args="$args -p $PLAIN" ;;
            @WS@) args="$args -p $WSP --ws" ;;
            @WSS@) args="$args -p $WSSP --ws --cafile $CA" ;;
            *) args="$args $a" ;;
        esac
    done
    # shellcheck disable=SC2086
    line=$(timeout 300 "$SECBENCH" -h 127.0.0.1 --quiet --pid "$BPID" $args 2>"$WORK/err" | grep '^SECBENCH ' | tail -1) || true
    stop_broker
    if [ -z "$line" ]; then
        say "bench: $key on $kind failed: $(head -c 300 "$WORK/err")"
        line="SECBENCH failed=1"
    fi
    echo "$kind $key ${line#SECBENCH }" >> "$RESULTS"
    say "  $kind $key: $(echo "$line" | tr ' ' '\n' | grep -E '^(msgs_per_s|lost|conn_per_s|broker_us_per_conn|bytes_per_conn|held|lat_p99_us)=' | tr '\n' ' ')"
}

# scenario KEY RUNS ARGS...: both brokers, alternating, RUNS times each
scenario() {
    key=$1 n=$2
    shift 2
    r=0
    while [ $r -lt "$n" ]; do
        run "$key" secbroker "$@"
        run "$key" mosquitto "$@"
        r=$((r + 1))
    done
}

# med KIND KEY FIELD: median of FIELD over the runs ("-" if none)
med() {
    awk -v k="$1" -v s="$2" -v f="$3" '
        $1 == k && $2 == s { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f && kv[2] != "-") v[n++] = kv[2] + 0 } }
        END {
            if (n == 0) { print "-"; exit }
            for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            m = (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
            print m
        }' "$RESULTS"
}

fmt() { # number with thousands separators, or "-"
    case $1 in -) echo "-" ;; *) awk -v x="$1" 'BEGIN { s = sprintf("%.0f", x); o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) } print s o }' ;; esac
}
fmt1() { case $1 in -) echo "-" ;; *) awk -v x="$1" 'BEGIN { printf "%.1f", x }' ;; esac; }
pct() { case "$1$2" in *-*) echo "-" ;; *) awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", 100 * a / b }' ;; esac; }
verdict() { # A B FACTOR ge|le -> met / missed (A >= FACTOR*B, or A <= FACTOR*B)
    case "$1$2" in *-*) echo "not measured" ;; *)
        awk -v a="$1" -v b="$2" -v f="$3" -v op="$4" 'BEGIN {
            ok = (op == "ge") ? (a >= f * b) : (a <= f * b); print ok ? "met" : "**missed**" }' ;; esac
}
target_ratio() { # LABEL SCENARIO FIELD FACTOR ge|le -> one table row
    a=$(med secbroker "$2" "$3"); b=$(med mosquitto "$2" "$3")
    echo "| $1 | $(fmt "$a") vs $(fmt "$b") = $(ratio "$a" "$b") | $(verdict "$a" "$b" "$4" "$5") |"
}
ratio() { # A B -> A/B
    case "$1$2" in *-*) echo "-" ;; *) awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2fx", a / b }' ;; esac
}

# ---- the runs ------------------------------------------------------------------
if [ "$REPORT_ONLY" != 1 ]; then
: > "$RESULTS"
sh scripts/mkcerts.sh "$WORK/certs" >/dev/null 2>&1 || die "scripts/mkcerts.sh failed"
CA=$WORK/certs/ca.crt
D="-d $SECS"
say "bench: $RUNS run(s) per scenario and broker, $SECS s each; raw results in $RESULTS"

say "bench: messaging (max rate, 64-byte payloads)"
scenario fanin-tls-q0 "$RUNS" --scenario fan-in -n 50 -q 0 $D @TLS@
scenario fanin-tls-q1 "$RUNS" --scenario fan-in -n 50 -q 1 $D @TLS@
scenario fanout-tls-q0 "$RUNS" --scenario fan-out -m 100 -q 0 $D @TLS@
scenario fanout-tls-q1 "$RUNS" --scenario fan-out -m 100 -q 1 $D @TLS@
scenario pairs-tls-q0 "$RUNS" --scenario pairs -n 100 -q 0 $D @TLS@
scenario pairs-tls-q1 "$RUNS" --scenario pairs -n 100 -q 1 $D @TLS@
scenario fanin-tls-q0-v5 "$RUNS" --scenario fan-in -n 50 -q 0 -V 5 $D @TLS@
scenario fanin-tls-q1-v5 "$RUNS" --scenario fan-in -n 50 -q 1 -V 5 $D @TLS@
scenario fanout-tls-q0-v5 "$RUNS" --scenario fan-out -m 100 -q 0 -V 5 $D @TLS@
scenario fanout-tls-q1-v5 "$RUNS" --scenario fan-out -m 100 -q 1 -V 5 $D @TLS@
scenario shared-plain-q1 "$RUNS" --scenario fan-in -n 10 --shared 4 -q 1 $D @PLAIN@
scenario shared-plain-q1-v5 "$RUNS" --scenario fan-in -n 10 --shared 4 -q 1 -V 5 $D @PLAIN@
scenario fanin-plain-q0 "$RUNS" --scenario fan-in -n 50 -q 0 $D @PLAIN@
scenario fanin-plain-q1 "$RUNS" --scenario fan-in -n 50 -q 1 $D @PLAIN@
scenario fanin-tls-q0-1k "$RUNS" --scenario fan-in -n 50 -q 0 -s 1024 $D @TLS@
say "bench: MQTT over WebSockets against TCP (the framing cost per message)"
scenario fanout-plain-q0 "$RUNS" --scenario fan-out -m 100 -q 0 $D @PLAIN@
scenario fanin-ws-q0 "$RUNS" --scenario fan-in -n 50 -q 0 $D @WS@
scenario fanout-ws-q0 "$RUNS" --scenario fan-out -m 100 -q 0 $D @WS@
scenario fanin-wss-q0 "$RUNS" --scenario fan-in -n 50 -q 0 $D @WSS@
scenario fanout-wss-q0 "$RUNS" --scenario fan-out -m 100 -q 0 $D @WSS@
say "bench: latency at a fixed rate"
scenario rate-tls-q1 "$RUNS" --scenario fan-in -n 50 -q 1 --rate 5000 $D @TLS@

say "bench: connection storms"
# --no-verify: the client skips the certificate chain check (it still checks
# the ServerKeyExchange signature) so that one secbench core can push more
# full handshakes; broker_us_per_conn is the broker's CPU per connection.
scenario storm-full "$RUNS" --scenario storm --full -n 16 $D @TLSNV@
scenario storm-resumed "$RUNS" --scenario storm --resumed -n 16 $D @TLS@
scenario storm-plain "$RUNS" --scenario storm -n 16 $D @PLAIN@

say "bench: idle connections"
# resumed handshakes only make the setup faster; what the broker keeps per
# connection after the handshake is the same
scenario idle-tls-1k "$RUNS" --scenario idle -n 1000 --resumed -d 0 @TLS@
scenario idle-plain-1k "$RUNS" --scenario idle -n 1000 -d 0 @PLAIN@
scenario idle-tls-max 1 --scenario idle -n "$IDLE_MAX" --resumed -d 2 --concurrency 128 @TLS@

say "bench: fan-out against the subscriber count (TLS, QoS 0)"
for m in 1 10 100 1000; do
    scenario "plot-m$m" "$RUNS" --scenario fan-out -m "$m" -q 0 $D @TLS@
done

say "bench: crypto bound"
CB=$("$SECBENCH" --crypto-bound --cafile "$CA" --cert "$WORK/certs/server.crt" --key "$WORK/certs/server.key" \
     -d 4 --quiet | grep '^SECBENCH' || true)
# raw mbedTLS primitives, measured with the same library the broker links
cat > "$WORK/ecbench.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "mbedtls/ctr_drbg.h"
#include "mbedtls/ecdh.h"
#include "mbedtls/ecdsa.h"
#include "mbedtls/entropy.h"
#include "mbedtls/version.h"
static double cpu(void) { struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0, t, t0;
    long n;
    mbedtls_entropy_context ent; mbedtls_ctr_drbg_context drbg;
    mbedtls_entropy_init(&ent); mbedtls_ctr_drbg_init(&drbg);
    if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent, (const unsigned char *)"ecb", 3)) return 1;
    mbedtls_ecdsa_context key; mbedtls_ecdsa_init(&key);
    if (mbedtls_ecdsa_genkey(&key, MBEDTLS_ECP_DP_SECP256R1, mbedtls_ctr_drbg_random, &drbg)) return 1;
    unsigned char hash[32], sig[MBEDTLS_ECDSA_MAX_LEN]; size_t slen = 0;
    memset(hash, 7, sizeof hash);
    for (n = 0, t0 = cpu(); (t = cpu() - t0) < secs; n++)
        if (mbedtls_ecdsa_write_signature(&key, MBEDTLS_MD_SHA256, hash, 32, sig, &slen, mbedtls_ctr_drbg_random, &drbg)) return 1;
    double sign = n / t;
    for (n = 0, t0 = cpu(); (t = cpu() - t0) < secs; n++)
        if (mbedtls_ecdsa_read_signature(&key, hash, 32, sig, slen)) return 1;
    double verify = n / t;
    mbedtls_mpi d, z; mbedtls_ecp_point Q;
    mbedtls_mpi_init(&d); mbedtls_mpi_init(&z); mbedtls_ecp_point_init(&Q);
    /* one ECDHE key agreement as a TLS server does it: load the group, make
     * an ephemeral key pair, compute the shared secret with the peer's key */
    for (n = 0, t0 = cpu(); (t = cpu() - t0) < secs; n++) {
        mbedtls_ecp_group g; mbedtls_ecp_group_init(&g);
        if (mbedtls_ecp_group_load(&g, MBEDTLS_ECP_DP_SECP256R1)) return 1;
        if (mbedtls_ecdh_gen_public(&g, &d, &Q, mbedtls_ctr_drbg_random, &drbg)) return 1;
        if (mbedtls_ecdh_compute_shared(&g, &z, &key.Q, &d, mbedtls_ctr_drbg_random, &drbg)) return 1;
        mbedtls_ecp_group_free(&g);
    }
    double ecdhe = n / t;
    printf("ECBENCH lib=%s ecdsa_sign_per_s=%.0f ecdsa_verify_per_s=%.0f ecdhe_per_s=%.0f bound_per_s=%.0f\n",
           MBEDTLS_VERSION_STRING, sign, verify, ecdhe, 1.0 / (1.0 / sign + 1.0 / ecdhe));
    return 0;
}
EOF
EC=""
if cc -O2 -o "$WORK/ecbench" "$WORK/ecbench.c" -lmbedcrypto 2>"$WORK/ecbench.err"; then
    EC=$("$WORK/ecbench" 2 | grep '^ECBENCH' || true)
else
    say "bench: could not build the mbedTLS micro-benchmark: $(head -3 "$WORK/ecbench.err")"
fi
OSSL=$(openssl speed -seconds 2 ecdsap256 ecdhp256 2>/dev/null || true)
OSSL_SIGN=$(echo "$OSSL" | awk '/ecdsa \(nistp256\)/ { print $(NF-1) }' | head -1)
OSSL_ECDH=$(echo "$OSSL" | awk '/ecdh \(nistp256\)/ { print $NF }' | head -1)
[ -n "$OSSL_SIGN" ] || OSSL_SIGN=-
[ -n "$OSSL_ECDH" ] || OSSL_ECDH=-

{
    echo "CB $CB"
    echo "EC $EC"
    echo "OSSL_SIGN $OSSL_SIGN"
    echo "OSSL_ECDH $OSSL_ECDH"
    echo "ELAPSED $(( $(date +%s) - T0 ))"
    echo "NOFILE $NOFILE"
} > "$CRYPTO"
fi # REPORT_ONLY

# ---- the report -------------------------------------------------------------------
[ -s "$RESULTS" ] && [ -s "$CRYPTO" ] || die "no results in $RAW: run without BENCH_REPORT_ONLY first"
kv() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
saved() { sed -n "s/^$1 //p" "$CRYPTO" | head -1; }
CB=$(saved CB); EC=$(saved EC); OSSL_SIGN=$(saved OSSL_SIGN); OSSL_ECDH=$(saved OSSL_ECDH)
ELAPSED=$(saved ELAPSED); NOFILE=$(saved NOFILE)
RUNS=$(awk '$2 == "fanin-tls-q0" && $1 == "secbroker"' "$RESULTS" | wc -l)
SECS=$(awk '$2 == "fanin-tls-q0" && $1 == "secbroker" { for (i = 3; i <= NF; i++) if ($i ~ /^duration_s=/) { split($i, kv, "="); printf "%.0f\n", kv[2] } }' "$RESULTS" | head -1)
IDLE_MAX=$(awk '$2 == "idle-tls-max" { for (i = 3; i <= NF; i++) if ($i ~ /^conns=/) { split($i, kv, "="); print kv[2] } }' "$RESULTS" | head -1)
[ -n "$IDLE_MAX" ] || IDLE_MAX=0
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
[ -n "$CPU_MODEL" ] || CPU_MODEL=unknown
NPROC=$(nproc)
KERNEL=$(uname -sr)
MEM=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
MOSQ_VER=$("$MOSQUITTO" -h 2>/dev/null | awk 'NR == 1 { print $3 }')
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

row() { # LABEL KEY FIELD [lower]
    a=$(med secbroker "$2" "$3")
    b=$(med mosquitto "$2" "$3")
    printf '| %s | %s | %s | %s |\n' "$1" "$(fmt "$a")" "$(fmt "$b")" "$(ratio "$a" "$b")"
}
rowf() { # like row, one decimal
    a=$(med secbroker "$2" "$3")
    b=$(med mosquitto "$2" "$3")
    printf '| %s | %s | %s | %s |\n' "$1" "$(fmt1 "$a")" "$(fmt1 "$b")" "$(ratio "$a" "$b")"
}
wsrow() { # LABEL WS_KEY TCP_KEY: both brokers over WebSockets, and each against its TCP run
    a=$(med secbroker "$2" msgs_per_s); b=$(med mosquitto "$2" msgs_per_s)
    ta=$(med secbroker "$3" msgs_per_s); tb=$(med mosquitto "$3" msgs_per_s)
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$(fmt "$a")" "$(fmt "$b")" "$(ratio "$a" "$b")" \
        "$(pct "$a" "$ta")" "$(pct "$b" "$tb")"
}
detail() { # LABEL KEY
    for k in secbroker mosquitto; do
        printf '| %s | %s | %s | %s / %s / %s | %s | %s | %s |\n' "$1" "$k" \
            "$(fmt "$(med $k "$2" msgs_per_s)")" "$(fmt "$(med $k "$2" lat_p50_us)")" \
            "$(fmt "$(med $k "$2" lat_p99_us)")" "$(fmt "$(med $k "$2" lat_max_us)")" \
            "$(fmt "$(med $k "$2" lost)")" "$(fmt1 "$(med $k "$2" broker_cpu_pct)")" \
            "$(fmt "$(med $k "$2" broker_rss_kb)")"
    done
}

# the plot: gnuplot (ASCII into the markdown, SVG into build/bench/)
PLOTDATA=$RAW/fanout.dat
{
    echo "# subscribers secbroker mosquitto (delivered msg/s, median)"
    for m in 1 10 100 1000; do
        echo "$m $(med secbroker "plot-m$m" msgs_per_s) $(med mosquitto "plot-m$m" msgs_per_s)"
    done
} > "$PLOTDATA"
PLOT_ASCII=""
if command -v gnuplot >/dev/null 2>&1; then
    cat > "$WORK/plot.gp" <<EOF
set logscale x
set xrange [0.7:1500]
set xtics ("1" 1, "10" 10, "100" 100, "1000" 1000)
set xlabel "subscribers (fan-out, TLS, QoS 0, 64-byte payloads)"
set ylabel "delivered msg/s"
set key top left
set yrange [0:*]
EOF
    cp "$WORK/plot.gp" "$WORK/plot-svg.gp"
    cat >> "$WORK/plot.gp" <<EOF
set terminal dumb 78 24
plot "$PLOTDATA" using 1:2 with linespoints title "secbroker", "$PLOTDATA" using 1:3 with linespoints title "mosquitto"
EOF
    cat >> "$WORK/plot-svg.gp" <<EOF
set terminal svg size 720,420
set output "$RAW/fanout.svg"
plot "$PLOTDATA" using 1:2 with linespoints lw 2 title "secbroker", "$PLOTDATA" using 1:3 with linespoints lw 2 title "mosquitto"
EOF
    PLOT_ASCII=$(gnuplot "$WORK/plot.gp" 2>/dev/null | sed 's/[[:space:]]*$//' || true)
    gnuplot "$WORK/plot-svg.gp" 2>/dev/null || true
fi

CB_FULL=$(kv "$CB" full_srv_per_s); CB_FULL_US=$(kv "$CB" full_srv_us)
CB_RES=$(kv "$CB" resumed_srv_per_s); CB_RES_US=$(kv "$CB" resumed_srv_us)
# the mbedTLS the broker links: the bundled build's header, else the system's
BROKER_TLS_VER=$(sed -n 's/^#define MBEDTLS_VERSION_STRING *"\(.*\)"/\1/p' \
    build/mbedtls/src/include/mbedtls/build_info.h /usr/include/mbedtls/build_info.h \
    /usr/include/mbedtls/version.h 2>/dev/null | head -1)
[ "$(cat build/mbedtls-kind 2>/dev/null)" = system ] && BROKER_TLS_VER="$(echo "$EC" | tr ' ' '\n' | sed -n 's/^lib=//p') (system)"
EC_SIGN=$(kv "$EC" ecdsa_sign_per_s); EC_VER=$(kv "$EC" ecdsa_verify_per_s)
EC_ECDHE=$(kv "$EC" ecdhe_per_s); EC_BOUND=$(kv "$EC" bound_per_s)
SEC_FULL=$(med secbroker storm-full conn_per_s); SEC_FULL_US=$(med secbroker storm-full broker_us_per_conn)
SEC_FULL_BOUND=$(med secbroker storm-full broker_bound_per_s)
MOS_FULL_BOUND=$(med mosquitto storm-full broker_bound_per_s)
for v in CB_FULL CB_FULL_US CB_RES CB_RES_US EC_SIGN EC_VER EC_ECDHE EC_BOUND; do
    eval "[ -n \"\$$v\" ] || $v=-"
done
TLS_CONN_MEM="about 2 x 16.6 KiB"

{
cat <<EOF
# secbroker performance

Measured by \`make bench\` (scripts/bench.sh) with build/secbench on
$(date -u +%Y-%m-%d). Numbers are medians of $RUNS run(s) per broker, each run on a
freshly started broker; every messaging run publishes for $SECS s. Higher is
better unless the row says otherwise; ratio = secbroker / mosquitto.

## Machine

- $NPROC CPU(s): $CPU_MODEL, $MEM RAM
- kernel: $KERNEL; secbroker built with mbedTLS $BROKER_TLS_VER, mosquitto $MOSQ_VER (Debian; OpenSSL)
- load average when the run ended: $LOAD (the brokers and secbench share
  the $NPROC cores with whatever else runs: treat differences below ~10% as noise)
- open-file limit for the brokers: \`ulimit -n\` = $NOFILE
- the whole run took $((ELAPSED / 60)) min $((ELAPSED % 60)) s

## Setup

Both brokers listen on 127.0.0.1 (one plain, one TLS listener), with the
certificates of \`sh scripts/mkcerts.sh DIR\` (EC P-256 server key),
\`tls_version tlsv1.2\`, \`ciphers $CIPHER\`,
\`max_inflight_messages 100\`, \`max_queued_messages 100000\`,
\`persistence false\`, logging errors and warnings only. mosquitto also gets
\`set_tcp_nodelay true\` (secbroker always sets TCP_NODELAY) and
\`per_listener_settings false\`. \`allow_duplicate_messages\` is still listed
in mosquitto 2.0.11's mosquitto.conf(5) but deprecated (the behaviour is
always "true"), so it is not set.

secbench is one process, one thread, epoll; each broker is single-threaded
too, so the broker gets one core and secbench the other. Flow control at
the maximum rate: QoS 1 publishers keep at most 32 PUBACKs outstanding, and
every publisher keeps at most 256 messages not yet delivered to all of its
subscribers (end-to-end window), so the brokers are measured at the rate
they can deliver, not flooded into dropping. Losses are counted per message
sequence and reported (the "lost" column below).

## Results

| scenario | secbroker | mosquitto | ratio |
|---|---|---|---|
$(row "fan-in TLS QoS 0, 50 pubs -> 1 sub, msg/s" fanin-tls-q0 msgs_per_s)
$(row "fan-in TLS QoS 1, 50 pubs -> 1 sub, msg/s" fanin-tls-q1 msgs_per_s)
$(row "fan-out TLS QoS 0, 1 pub -> 100 subs, msg/s" fanout-tls-q0 msgs_per_s)
$(row "fan-out TLS QoS 1, 1 pub -> 100 subs, msg/s" fanout-tls-q1 msgs_per_s)
$(row "pairs TLS QoS 0, 100 pairs, msg/s" pairs-tls-q0 msgs_per_s)
$(row "pairs TLS QoS 1, 100 pairs, msg/s" pairs-tls-q1 msgs_per_s)
$(row "MQTT 5: fan-in TLS QoS 0, 50 pubs -> 1 sub, msg/s" fanin-tls-q0-v5 msgs_per_s)
$(row "MQTT 5: fan-in TLS QoS 1, 50 pubs -> 1 sub, msg/s" fanin-tls-q1-v5 msgs_per_s)
$(row "MQTT 5: fan-out TLS QoS 0, 1 pub -> 100 subs, msg/s" fanout-tls-q0-v5 msgs_per_s)
$(row "MQTT 5: fan-out TLS QoS 1, 1 pub -> 100 subs, msg/s" fanout-tls-q1-v5 msgs_per_s)
$(row "shared subscription, plain QoS 1, 10 pubs -> 4 members, msg/s" shared-plain-q1 msgs_per_s)
$(row "MQTT 5: shared subscription, plain QoS 1, 10 pubs -> 4 members, msg/s" shared-plain-q1-v5 msgs_per_s)
$(row "fan-in plain QoS 0, 50 pubs, msg/s" fanin-plain-q0 msgs_per_s)
$(row "fan-in plain QoS 1, 50 pubs, msg/s" fanin-plain-q1 msgs_per_s)
$(row "fan-out plain QoS 0, 1 pub -> 100 subs, msg/s" fanout-plain-q0 msgs_per_s)
$(row "fan-in TLS QoS 0, 1 KiB payloads, msg/s" fanin-tls-q0-1k msgs_per_s)
$(rowf "fan-in TLS QoS 1 at 5,000 msg/s: p99 latency, us (lower is better)" rate-tls-q1 lat_p99_us)
$(row "full TLS handshakes/s (storm, 16 in flight)" storm-full conn_per_s)
$(row "broker CPU per full handshake, us (lower is better)" storm-full broker_us_per_conn)
$(row "resumed TLS handshakes/s (storm, 16 in flight)" storm-resumed conn_per_s)
$(row "broker CPU per resumed handshake, us (lower is better)" storm-resumed broker_us_per_conn)
$(row "plain CONNECT/CONNACK/s (storm, 16 in flight)" storm-plain conn_per_s)
$(row "memory per idle TLS connection, bytes (1,000 conns; lower is better)" idle-tls-1k bytes_per_conn)
$(row "memory per idle plain connection, bytes (1,000 conns; lower is better)" idle-plain-1k bytes_per_conn)
$(row "memory per idle TLS connection, bytes ($(fmt "$IDLE_MAX") conns; lower is better)" idle-tls-max bytes_per_conn)
$(row "TLS clients held of $(fmt "$IDLE_MAX")" idle-tls-max held)

### MQTT over WebSockets

The same fan-in (50 publishers -> 1 subscriber) and fan-out (1 publisher ->
100 subscribers) at QoS 0 with 64-byte payloads over ws and wss listeners
(\`protocol websockets\`), against plain TCP and TLS. secbench masks every
frame it sends, as a browser does, and wraps what it sends in one loop turn
in one frame; each broker frames its output its own way (secbroker: one frame
per flush). "of TCP" is the WebSocket rate as a share of the same broker's
rate over TCP (or TLS, for wss): the framing cost per message.

| scenario | secbroker | mosquitto | ratio | secbroker, of TCP | mosquitto, of TCP |
|---|---|---|---|---|---|
$(wsrow "fan-in ws QoS 0, msg/s" fanin-ws-q0 fanin-plain-q0)
$(wsrow "fan-out ws QoS 0, msg/s" fanout-ws-q0 fanout-plain-q0)
$(wsrow "fan-in wss QoS 0, msg/s" fanin-wss-q0 fanin-tls-q0)
$(wsrow "fan-out wss QoS 0, msg/s" fanout-wss-q0 fanout-tls-q0)

### Targets (measured here, not pass/fail)

| target | measured | verdict |
|---|---|---|
$(target_ratio "TLS fan-in QoS 0 >= 1.5x mosquitto" fanin-tls-q0 msgs_per_s 1.5 ge)
$(target_ratio "TLS fan-in QoS 1 >= 1.5x mosquitto" fanin-tls-q1 msgs_per_s 1.5 ge)
$(target_ratio "TLS fan-out QoS 0 >= 1.5x mosquitto" fanout-tls-q0 msgs_per_s 1.5 ge)
$(target_ratio "TLS fan-out QoS 1 >= 1.5x mosquitto" fanout-tls-q1 msgs_per_s 1.5 ge)
$(target_ratio "resumed handshakes/s >= mosquitto" storm-resumed conn_per_s 1 ge)
| full handshakes/s >= 90% of mbedTLS' crypto bound ($(fmt "$EC_BOUND")/s) | $(fmt "$SEC_FULL_BOUND")/s on a saturated core = $(pct "$SEC_FULL_BOUND" "$EC_BOUND") (tls/ alone, in-process: $(pct "$CB_FULL" "$EC_BOUND")) | $(verdict "$SEC_FULL_BOUND" "$EC_BOUND" 0.9 ge) |
| memory per idle TLS connection <= 1.1 x (two record buffers 33,434 + plain state) | $(fmt "$(med secbroker idle-tls-max bytes_per_conn)") bytes = $(awk -v a="$(med secbroker idle-tls-max bytes_per_conn)" -v p="$(med secbroker idle-plain-1k bytes_per_conn)" 'BEGIN { if (a == "-" || p == "-") print "-"; else printf "%.2fx", a / (33434 + p) }') | $(verdict "$(med secbroker idle-tls-max bytes_per_conn)" "$(awk -v p="$(med secbroker idle-plain-1k bytes_per_conn)" 'BEGIN { if (p == "-") print "-"; else print 33434 + p }')" 1.1 le) |
$(target_ratio "memory per idle plain connection <= mosquitto's" idle-plain-1k bytes_per_conn 1 le)
| $(fmt "$IDLE_MAX") concurrent TLS clients held | $(fmt "$(med secbroker idle-tls-max held)") | $(verdict "$(med secbroker idle-tls-max held)" "$IDLE_MAX" 1 ge) |

Where a target is missed, the sections below say why, with the profile.

### Latency, losses and broker load (medians)

| scenario | broker | delivered msg/s | latency p50 / p99 / max, us | lost | broker CPU % | broker RSS kB |
|---|---|---|---|---|---|---|
$(detail "fan-in TLS QoS 0" fanin-tls-q0)
$(detail "fan-in TLS QoS 1" fanin-tls-q1)
$(detail "fan-out TLS QoS 0" fanout-tls-q0)
$(detail "fan-out TLS QoS 1" fanout-tls-q1)
$(detail "pairs TLS QoS 0" pairs-tls-q0)
$(detail "pairs TLS QoS 1" pairs-tls-q1)
$(detail "fan-in TLS QoS 1 @ 5k/s" rate-tls-q1)

At the maximum rate the latency is mostly the flow-control window divided by
the throughput (256 messages per publisher in flight); the fixed-rate row
shows latency under a load both brokers can carry.

Runs that lost messages or failed (any run, not only the median):
$(awk '
    $3 == "failed=1" { print "- FAILED: " $1 " " $2; n++; next }
    { lost = 0; want = 0
      for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "lost") lost = kv[2]; if (kv[1] == "expected") want = kv[2] }
      if (lost > 0) { printf "- %s %s: %s of %s messages\n", $1, $2, lost, want; n++ } }
    END { if (!n) print "- none" }' "$RESULTS")

A QoS 1 loss means the broker accepted (PUBACKed) a message and never
delivered it within the 2 s drain. mosquitto 2.0.11 sometimes left QoS 1
messages sitting in its queue like this; inflight-quota fixes went into
mosquitto 2.0.13 (eclipse-mosquitto/mosquitto#2362), possibly the cause.

## Full handshakes and the crypto bound

A full ECDHE-ECDSA handshake costs the server one ECDSA-P256 signature and
one ECDHE key agreement (ephemeral key pair + shared secret; X25519 first on
the 3.6 build, the table below measures P-256). Measured with the system's
libmbedcrypto (the 2.28 build's library; the bundled 3.6 build is measured
in instructions in the TLS handshake section), CPU time, one core:

| operation | mbedTLS $(echo "$EC" | tr ' ' '\n' | sed -n 's/^lib=//p') | OpenSSL (\`openssl speed\`, cross-check) |
|---|---|---|
| ECDSA-P256 signatures/s | $(fmt "$EC_SIGN") | $(fmt "$OSSL_SIGN") |
| ECDSA-P256 verifications/s | $(fmt "$EC_VER") | - |
| ECDHE-P256 key agreements/s | $(fmt "$EC_ECDHE") | $(fmt "$OSSL_ECDH") (shared secret only) |
| bound: 1 / (1/sign + 1/ECDHE), full handshakes/s per core | $(fmt "$EC_BOUND") | - |

In-process through tls/ (\`secbench --crypto-bound\`: tls_server and
tls_client over a socketpair, the server side's CPU time only):
full handshake $(fmt1 "$CB_FULL_US") us -> $(fmt "$CB_FULL")/s per core;
resumed handshake $(fmt1 "$CB_RES_US") us -> $(fmt "$CB_RES")/s per core.

Against the broker: secbroker completed $(fmt "$SEC_FULL") full handshakes/s
at $(fmt "$SEC_FULL_US") us of broker CPU each, i.e. at most
$(fmt "$SEC_FULL_BOUND")/s on a saturated core (mosquitto, on OpenSSL:
$(fmt "$MOS_FULL_BOUND")/s). secbench itself needs an ECDSA verification
and an ECDHE per full handshake on its one core, so the storm rows may be
bound by the load generator; the "broker CPU per handshake" rows are the
fair comparison.

Memory target: mbedTLS' two record buffers are 2 x 16.6 KiB = 33.2 KB, so
the target is <= 36.5 KB + state. secbroker measured
$(fmt "$(med secbroker idle-tls-max bytes_per_conn)") bytes per idle TLS
connection ($(fmt "$IDLE_MAX") connections), of which
$(fmt "$(med secbroker idle-plain-1k bytes_per_conn)") bytes is the state a
plain connection also has.

$(cat build/bench/tls.md 2>/dev/null || echo "(scripts/bench-tls.sh did not run: make bench-tls)")

## Reading the numbers (profiles taken while writing secbench)

- **TLS throughput is bound by mbedTLS' AES-GCM.** \`perf record -g\` on
  secbroker during TLS fan-out to 100 subscribers (~1.1 M msg/s, broker at
  96% CPU): ~52% of its CPU in AES-GCM encryption (mbedtls_aesni_gcm_mult,
  mbedtls_gcm_update, mbedtls_aesni_crypt_ecb: mbedTLS 2.28 handles one
  16-byte block per call), ~18% in send(), ~14% in routing and encoding
  (router_publish, session_deliver, conn_send_publish). Plain fan-in at
  ~2.6 M msg/s: the top broker symbols are memchr, topic/UTF-8 validation
  of every PUBLISH (~11% together), memcpy, dict_get; no single hot spot.
- **The 1 KiB TLS row measures AES-GCM on both ends.** secbench encrypts and
  decrypts the same bytes with the same mbedTLS, so with 1 KiB payloads the
  load generator and secbroker both run out of AES-GCM (~55 k msg/s each
  way at ~95% CPU on a quiet machine); against mosquitto (OpenSSL's GCM)
  secbench was at ~95% CPU and mosquitto at 30-50%: the row shows the load
  generator's ceiling, not the brokers'. In a spot check ECDHE-ECDSA-CHACHA20-POLY1305 moved ~1.35x
  more 1 KiB messages than AES128-GCM through both mbedTLS ends.
- **QoS 1 fan-in to one subscriber is bound by the inflight window.** With
  \`max_inflight_messages 100\` secbroker sends 100 PUBLISHes to the
  subscriber, then waits a round trip for PUBACKs: the fan-in QoS 1 rows
  run with secbroker well below 100% CPU. A spot check with
  \`max_inflight_messages 1000\` on secbroker: 83 k -> 259 k msg/s (TLS,
  50 publishers). mosquitto is CPU-bound there at either setting.
- **Full handshakes are bound by mbedTLS' ECDSA P-256 signature** (55% of
  the server's instructions on the 3.6 build, X25519 33%: callgrind on
  \`secbench --crypto-bound\`, see the TLS handshake section). Resumed
  TLS 1.2 handshakes skip all of it; resumed TLS 1.3 ones keep one X25519
  exchange.
- **Idle TLS memory is mbedTLS' two record buffers.** Every connection keeps
  a 16.6 KiB input and a 16.6 KiB output buffer for its whole life (our 3.6
  build: MBEDTLS_SSL_IN_CONTENT_LEN and _OUT_CONTENT_LEN 16384; an output
  length of 4096 saved 12 KB per connection but cost 13-30% more broker CPU
  per delivered message, see tls/mbedtls_config.h). The plain row is the
  broker's own per-connection state; TLS minus plain is what the TLS layer
  costs (RSS counts touched pages only). OpenSSL in mosquitto keeps much
  less per idle connection.
- The machine is shared: runs alternate between the brokers so both see
  the same background load on average, but single runs vary by 10-30%.

## Fan-out: delivered msg/s against the subscriber count

TLS, QoS 0, 64-byte payloads, one publisher (SVG: build/bench/fanout.svg).

| subscribers | secbroker | mosquitto | ratio |
|---|---|---|---|
$(for m in 1 10 100 1000; do row "$m" "plot-m$m" msgs_per_s; done)

\`\`\`
${PLOT_ASCII:-(gnuplot not available)}
\`\`\`

$(cat build/bench/persist.md 2>/dev/null || echo "(scripts/bench-persist.sh did not run)")

$(cat build/bench/memburst.md 2>/dev/null || echo "(make bench-mem did not run)")

## Reproduce

\`\`\`
make bench                 # or: sh scripts/bench.sh
BENCH_RUNS=1 BENCH_SECS=2 sh scripts/bench.sh   # a quick look
make bench-mem             # only the memory table (non-readers and a burst)
make bench-tls             # only the TLS handshake rows (scripts/bench-tls.sh)
BENCH_TLS_ROWS="full resumed" BENCH_RUNS=1 sh scripts/bench-tls.sh   # some of them
valgrind --tool=callgrind --collect-atstart=no build/secbench --crypto-bound --full \\
    --tls-version tlsv1.3 -c 10 --cafile certs/ca.crt --cert certs/server.crt \\
    --key certs/server.key     # server instructions per handshake: total / 10
\`\`\`

One scenario by hand (start a broker first; --pid adds its CPU and RSS):

\`\`\`
build/secbench --scenario fan-in -n 50 -q 1 -d 5 -p 8883 --cafile certs/ca.crt --pid \$(pidof secbroker)
build/secbench --scenario storm --resumed -n 16 -d 5 -p 8883 --cafile certs/ca.crt
build/secbench --scenario idle -n 10000 --resumed -p 8883 --cafile certs/ca.crt --pid \$(pidof secbroker)
build/secbench --crypto-bound --cafile certs/ca.crt --cert certs/server.crt --key certs/server.key
\`\`\`

Raw results (one SECBENCH line per run): build/bench/results.txt.
EOF
} > "$OUT"
say "bench: wrote $OUT in $((ELAPSED / 60)) min $((ELAPSED % 60)) s"
sed -n '/^## Results/,/^Targets/p' "$OUT"
