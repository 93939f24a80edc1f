#!/bin/sh
# bench-bridge.sh -- `make bench-bridge`: messages forwarded over a TLS bridge
# to Debian's mosquitto, with secbroker and with mosquitto as the local broker
# (same certificates, same remote, same tools), and the local publish round
# trip on a broker whose bridges keep failing and reconnecting.
#
# Forwarding: mosquitto_pub -l publishes N messages (63-byte payload) to the
# local broker, which bridges `bench/#` over TLS 1.2 to a mosquitto whose
# subscriber (mosquitto_sub -C N) counts them; the figure is the time from the
# first publish to the last delivery. The remote runs with
# max_queued_messages 0 (see docs/bridge.md: with its default Debian's
# mosquitto stops reading a fast bridge once its subscriber lags).
# Knobs: BENCH_N0=200000 (QoS 0 messages) BENCH_N1=50000 (QoS 1 messages).
# Takes about a minute.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
N0=${BENCH_N0:-200000}
N1=${BENCH_N1:-50000}
MOSQUITTO=/usr/sbin/mosquitto
SECBROKER=$ROOT/build/secbroker
W=$ROOT/build/bench-bridge
rm -rf "$W"
mkdir -p "$W"
sh scripts/mkcerts.sh "$W/certs" >/dev/null 2>&1
free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
    /usr/bin/python3 - "$1" <<'EOF'
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
EOF
}
/usr/bin/python3 -c "
with open('$W/lines.txt', 'w') as f:
    for i in range(max($N0, $N1)):
        f.write('m%07d-' % i + 'x' * 55 + '\n')"

RPLAIN=$(free_port); RTLS=$(free_port); LPORT=$(free_port)
ROOTOPT=""
[ "$(id -u)" = 0 ] && ROOTOPT="user root"
cat > "$W/remote.conf" <<EOF
$ROOTOPT
allow_anonymous true
max_queued_messages 0
log_dest none
listener $RPLAIN 127.0.0.1
listener $RTLS 127.0.0.1
certfile $W/certs/server.crt
keyfile $W/certs/server.key
EOF

# one run: KIND (secbroker|mosquitto) QOS N -> "msg/s seconds received"
run() {
    kind=$1 q=$2 n=$3
    conf="$W/local-$kind-$q.conf"
    {
        [ "$kind" = mosquitto ] && echo "$ROOTOPT"
        printf 'allow_anonymous true\nlog_dest none\nmax_queued_messages 0\n'
        printf 'listener %s 127.0.0.1\nconnection up\naddress localhost:%s\n' "$LPORT" "$RTLS"
        printf 'bridge_cafile %s\ntopic bench/# out %s\n' "$W/certs/ca.crt" "$q"
    } > "$conf"
    $MOSQUITTO -c "$W/remote.conf" 2>/dev/null &
    rp=$!
    wait_port "$RPLAIN"
    if [ "$kind" = secbroker ]; then "$SECBROKER" -c "$conf" & else $MOSQUITTO -c "$conf" 2>/dev/null & fi
    lp=$!
    wait_port "$LPORT"
    sleep 1 # the bridge connects
    timeout 120 mosquitto_sub -p "$RPLAIN" -t 'bench/#' -q "$q" -C "$n" > "$W/got.txt" &
    sp=$!
    sleep 0.5
    t0=$(date +%s.%N)
    head -n "$n" "$W/lines.txt" | mosquitto_pub -p "$LPORT" -t bench/x -q "$q" -l
    wait $sp || true
    t1=$(date +%s.%N)
    got=$(wc -l < "$W/got.txt")
    kill $lp $rp
    wait $lp $rp 2>/dev/null || true
    /usr/bin/python3 -c "print('%d msg/s in %.2f s (%d of %d delivered)' % ($got / ($t1 - $t0), $t1 - $t0, $got, $n))"
}

echo "forwarded over a TLS bridge to mosquitto (mosquitto_pub -l -> local -> TLS -> mosquitto -> mosquitto_sub):"
for q in 0 1; do
    n=$N0
    [ "$q" = 1 ] && n=$N1
    for kind in secbroker mosquitto; do
        printf '  QoS %s  %-9s  %s\n' "$q" "$kind" "$(run $kind $q $n)"
    done
done

# Local round trip while three bridges fail and reconnect every second.
lat() {
    /usr/bin/python3 - "$1" <<'EOF'
import sys, time
sys.path.insert(0, "tests/integration")
from brokerlib import RawClient, connect_packet, publish_packet, subscribe_packet
port, n = int(sys.argv[1]), 3000
def conn(cid):
    c = RawClient(port)
    c.send(connect_packet(client_id=cid))
    c.read_packet()
    return c
s = conn("lat-sub")
s.send(subscribe_packet([("lat/t", 0)], pid=1))
s.read_packet()
p = conn("lat-pub")
rtt = []
for i in range(n):
    t0 = time.perf_counter()
    p.send(publish_packet("lat/t", b"x" * 16))
    s.read_packet()
    rtt.append((time.perf_counter() - t0) * 1e6)
    time.sleep(0.005)
rtt.sort()
print("p50 %.0f us, p99 %.0f us, max %.0f us (%d round trips)" % (rtt[n // 2], rtt[int(n * 0.99)], rtt[-1], n))
EOF
}
closed=$(free_port)
for bridges in 0 3; do
    port=$(free_port)
    {
        printf 'allow_anonymous true\nlog_dest none\nlistener %s 127.0.0.1\n' "$port"
        if [ "$bridges" = 3 ]; then
            printf 'connection refused\naddress 127.0.0.1:%s\nrestart_timeout 1\ntopic a/# out 1\n' "$closed"
            printf 'connection named\naddress localhost:%s\nrestart_timeout 1\ntopic b/# out 1\n' "$closed"
            printf 'connection nowhere\naddress nonexistent.invalid:1883\nrestart_timeout 1\ntopic c/# out 1\n'
        fi
    } > "$W/lat-$bridges.conf"
    "$SECBROKER" -c "$W/lat-$bridges.conf" &
    bp=$!
    wait_port "$port"
    printf 'local publish round trip, %s bridges reconnecting every second: %s\n' "$bridges" "$(lat "$port")"
    kill $bp
    wait $bp 2>/dev/null || true
done
