#!/bin/sh
# lab.sh [-d DIR] [-p PORT] [SCENARIO|list|all] -- one lab scenario end to end
# on 127.0.0.1, for Wireshark (docs/lab.md walks through each one).
#
# For SCENARIO this script starts its own broker (build/secbroker) on a free
# port with the certificates in certs/ (make certs), starts tshark on the
# loopback interface with a capture filter for that port, runs the client(s),
# stops everything by PID and leaves in DIR/SCENARIO/ (default lab/SCENARIO/):
#   capture.pcapng   the packets (open it in Wireshark)
#   keylog.txt       the TLS secrets the broker wrote (tls_keylog_file): give it
#                    to Wireshark to decrypt the TLS scenarios
#   broker.log       the broker's log, with every handshake step (log_type tls)
#   broker.conf      the configuration the broker ran with
#   clients.txt      what the clients printed
#   README.txt       what to open and the tshark command to read the capture
#
# Options (or environment): -d DIR (LAB_DIR, default lab), -p PORT (LAB_PORT,
# default a free port), CERTS=DIR (default certs), BUILD=DIR (default build).
# Used by `make lab-SCENARIO` and by tests/lab/test_lab.py.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LAB_DIR=${LAB_DIR:-lab}
LAB_PORT=${LAB_PORT:-}
CERTS=${CERTS:-certs}
BUILD=${BUILD:-build}

SCENARIOS="plain tls mutual resume bad-version no-shared-cipher bad-client-cert no-client-cert plain-on-tls"
# refused client certificates (mkcerts.sh makes them; the CRL is the lab config's crlfile)
SCENARIOS="$SCENARIOS expired-client-cert revoked-client-cert"
# TLS 1.3 (the default build, mbedTLS 3.6)
SCENARIOS="$SCENARIOS tls13 tls13-resume tls13-mutual"

list() {
    cat <<'EOF'
Lab scenarios (make lab-SCENARIO, or sh scripts/lab.sh SCENARIO); see docs/lab.md:
  plain             MQTT on a plain TCP port: everything readable on the wire
  tls               MQTT over TLS (server certificate only): the full TLS 1.2
                    handshake, then MQTT that only the key log can decrypt
  mutual            mutual TLS (require_certificate true): CertificateRequest,
                    the client's Certificate and CertificateVerify
  resume            two handshakes with a session ticket, two with a session id:
                    the second of each pair is abbreviated (no Certificate)
  bad-version       a client below the minimum (TLS 1.1; TLS 1.2 against a
                    tlsv1.3 listener with mbedTLS 3.6): alert protocol_version (70)
  no-shared-cipher  a client offering only DHE-RSA-AES128-SHA256: alert
                    handshake_failure (40)
  bad-client-cert   a client certificate from an untrusted CA: alert unknown_ca (48)
  no-client-cert    no client certificate where one is required: alert
                    handshake_failure (40)
  plain-on-tls      plain MQTT sent to the TLS port: no TLS at all, no alert
  expired-client-cert  a client certificate that expired in 2020: alert
                    certificate_expired (45)
  revoked-client-cert  openssl s_client with a certificate the CA revoked
                    (crlfile certs/ca.crl): alert certificate_revoked (44)
  tls13             MQTT over TLS 1.3: after ServerHello everything is encrypted,
                    the server's certificate too (needs the mbedTLS 3.6 build)
  tls13-resume      two TLS 1.3 connections, the second resumed with the ticket
                    (pre_shared_key): no Certificate at all
  tls13-mutual      TLS 1.3 mutual authentication: CertificateRequest, the
                    client's Certificate and CertificateVerify, all encrypted
  all               every scenario above, one after the other
EOF
}

die() { echo "lab.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
        -d) [ $# -ge 2 ] || die "-d needs a directory"; LAB_DIR=$2; shift 2 ;;
        -p) [ $# -ge 2 ] || die "-p needs a port"; LAB_PORT=$2; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; echo; list; exit 0 ;;
        -*) die "unknown option $1 (see sh scripts/lab.sh --help)" ;;
        *) break ;;
    esac
done

if [ $# -eq 0 ] || [ "$1" = list ]; then
    list
    exit 0
fi
if [ "$1" = all ]; then
    for s in $SCENARIOS; do
        sh "$0" -d "$LAB_DIR" ${LAB_PORT:+-p "$LAB_PORT"} "$s" || exit 1
    done
    exit 0
fi
SCENARIO=$1
case " $SCENARIOS " in
    *" $SCENARIO "*) ;;
    *) echo "lab.sh: no scenario '$SCENARIO'" >&2; list >&2; exit 2 ;;
esac

# ---- tools and files -----------------------------------------------------------

abspath() { case $1 in /*) echo "$1" ;; *) echo "$ROOT/$1" ;; esac; }
CERTS=$(abspath "$CERTS")
BUILD=$(abspath "$BUILD")
OUT=$(abspath "$LAB_DIR")/$SCENARIO

for b in secbroker secpub secsub; do
    [ -x "$BUILD/$b" ] || die "$BUILD/$b is missing: run make first (make lab-$SCENARIO does)"
done
for f in ca.crt ca.crl server.crt server.key client.crt client.key untrusted-client.crt untrusted-client.key \
         expired-client.crt expired-client.key revoked-client.crt revoked-client.key; do
    [ -e "$CERTS/$f" ] || die "$CERTS/$f is missing: run make certs first (make lab-$SCENARIO does)"
    [ -r "$CERTS/$f" ] || die "$CERTS/$f is not readable by $(id -un) (made by another user? rm -r $CERTS; make certs)"
done
TSHARK=$(command -v tshark || true)
[ -n "$TSHARK" ] || die "tshark is not installed (sudo sh scripts/deps.sh lab)"
command -v openssl >/dev/null 2>&1 || die "openssl is not installed (sudo sh scripts/deps.sh lab)"

# Capturing on lo needs root or a dumpcap that lets the wireshark group
# capture (sudo sh scripts/deps.sh lab). Find out now, before anything starts.
capture_check() {
    why=$("$TSHARK" -L -i lo 2>&1 >/dev/null) && return 0
    why=$(printf '%s\n' "$why" | grep -v '^Running as user' | sed -n '/./{p;q;}')
    me=$(id -un)
    if [ "$(stat -c %G /usr/bin/dumpcap 2>/dev/null)" != wireshark ]; then
        fix="let the wireshark group capture (once, as root): sudo sh scripts/deps.sh lab
  then: sudo usermod -aG wireshark $me, and log out and in again"
    elif id -Gn "$me" | tr ' ' '\n' | grep -qx wireshark; then
        fix="$me is in the wireshark group, but not in this login session: log out and in again (or: newgrp wireshark)"
    else
        fix="join the wireshark group: sudo usermod -aG wireshark $me, then log out and in again"
    fi
    die "you ($me) may not capture packets on the loopback interface lo: $why
  $fix"
}
capture_check

mkdir -p "$OUT"
rm -f "$OUT/capture.pcapng" "$OUT/raw.pcapng" "$OUT/keylog.txt" "$OUT/broker.log" "$OUT/broker.conf" \
      "$OUT/clients.txt" "$OUT/tshark.txt" "$OUT/README.txt" "$OUT"/session*.pem "$OUT/mqtt-packets.bin"

BROKER_PID=
TSHARK_PID=
SUB_PID=
cleanup() {
    for pid in $SUB_PID $TSHARK_PID $BROKER_PID; do
        kill "$pid" 2>/dev/null || true
    done
    rm -f "$OUT/raw.pcapng"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for WHAT SECONDS COMMAND...: poll until COMMAND succeeds (an upper
# bound for waiting, not a measurement).
wait_for() {
    what=$1 limit=$2
    shift 2
    n=0
    while ! "$@" >/dev/null 2>&1; do
        n=$((n + 1))
        [ $n -lt $((limit * 10)) ] || die "gave up waiting for $what after ${limit}s"
        sleep 0.1
    done
}

port_free() {
    command -v ss >/dev/null 2>&1 || return 0
    [ -z "$(ss -Htan "( sport = :$1 or dport = :$1 )" 2>/dev/null)" ]
}

free_port() {
    while :; do
        p=$(( $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 30000 + 20000 ))
        if port_free "$p" && [ "$p" != "${1:-}" ]; then
            echo "$p"
            return
        fi
    done
}

PORT=${LAB_PORT:-$(free_port)}
# A port nobody listens on: connecting to it proves tshark is capturing
# (tshark says "Capturing on" a moment before its filter is live). Its
# packets are filtered out of the capture we keep.
PROBE=$(free_port "$PORT")

# ---- the broker -----------------------------------------------------------------

# bad-version: a client below the listener's minimum. With TLS 1.3 (mbedTLS
# 3.6) a TLS 1.2 client against a tlsv1.3 listener; with mbedTLS 2.28 a TLS
# 1.1 client against the default tlsv1.2.
MIN_VERSION=tlsv1.2
OLD_VERSION=tlsv1.1
if "$BUILD/secbroker" --version 2>&1 | grep -q "mbed TLS 3"; then
    TLS13=yes
    [ "$SCENARIO" != bad-version ] || { MIN_VERSION=tlsv1.3; OLD_VERSION=tlsv1.2; }
else
    TLS13=no
    case $SCENARIO in
        tls13*) die "scenario $SCENARIO needs TLS 1.3: build with mbedTLS 3.6 (plain make)" ;;
    esac
fi

ca=$CERTS/ca.crt
conf=$OUT/broker.conf
{
    echo "# secbroker for lab scenario '$SCENARIO' (written by scripts/lab.sh)"
    echo "allow_anonymous true"
    echo "log_dest file $OUT/broker.log"
    for t in error warning notice information subscribe tls; do echo "log_type $t"; done
    echo "connection_messages true"
    echo "sys_interval 0"
    echo "listener $PORT 127.0.0.1"
    case $SCENARIO in
        plain) ;;
        *)
            echo "certfile $CERTS/server.crt"
            echo "keyfile $CERTS/server.key"
            echo "tls_version $MIN_VERSION"
            echo "tls_keylog_file $OUT/keylog.txt"
            case $SCENARIO in
                mutual|tls13-mutual|bad-client-cert|no-client-cert|expired-client-cert|revoked-client-cert)
                    echo "cafile $ca"
                    echo "crlfile $CERTS/ca.crl"
                    echo "require_certificate true" ;;
            esac ;;
    esac
} > "$conf"

: > "$OUT/broker.log"
"$BUILD/secbroker" -c "$conf" > "$OUT/broker.stdout" 2>&1 &
BROKER_PID=$!
n=0
until grep -q " running " "$OUT/broker.log" 2>/dev/null; do
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        cat "$OUT/broker.stdout" "$OUT/broker.log" >&2
        die "the broker did not start (port $PORT taken? try -p PORT)"
    fi
    n=$((n + 1))
    [ $n -lt 100 ] || die "the broker did not say it is running within 10s"
    sleep 0.1
done
rm -f "$OUT/broker.stdout"

# ---- tshark ---------------------------------------------------------------------

probe() { "$BUILD/secpub" -h 127.0.0.1 -p "$PROBE" -t probe -m probe >/dev/null 2>&1 || true; }
in_capture() { [ -n "$("$TSHARK" -r "$OUT/raw.pcapng" -Y "$1" -T fields -e frame.number 2>/dev/null)" ]; }
probed() { probe; sleep 0.2; in_capture "tcp.port==$PROBE && tcp.flags.syn==1"; }

"$TSHARK" -i lo -f "tcp port $PORT or tcp port $PROBE" -w "$OUT/raw.pcapng" > /dev/null 2> "$OUT/tshark.txt" &
TSHARK_PID=$!
# tshark prints "Capturing on" even when dumpcap then fails: watch it live.
capturing() { ! kill -0 "$TSHARK_PID" 2>/dev/null || probed; }
wait_for "tshark to start capturing" 30 grep -q "Capturing on" "$OUT/tshark.txt"
wait_for "tshark to capture a probe connection" 30 capturing
kill -0 "$TSHARK_PID" 2>/dev/null || die "tshark stopped: $(grep -v '^Running as user' "$OUT/tshark.txt")"

# ---- the clients ----------------------------------------------------------------

PUB="$BUILD/secpub"
SUB="$BUILD/secsub"
TLS_OPTS="--cafile $ca"
CLIENT_CERT="--cert $CERTS/client.crt --key $CERTS/client.key"
TOPIC=lab/$SCENARIO
CONNS=0        # TCP connections the broker will have closed when we are done

# say COMMAND ARGS...: the command as a student would paste it (arguments
# with spaces or shell characters quoted; a lone & or < stays an operator).
say() {
    line='$'
    for a in "$@"; do
        case $a in
            '&'|'<') ;;
            ''|*[!A-Za-z0-9_./:=,@%+#-]*) a="'$a'" ;;
        esac
        line="$line $a"
    done
    echo "$line" >> "$OUT/clients.txt"
}
run() {
    say "$@"
    set +e
    "$@" >> "$OUT/clients.txt" 2>&1
    rc=$?
    set -e
    echo "(exit status $rc)" >> "$OUT/clients.txt"
    CONNS=$((CONNS + 1))
}
subscribed() { grep -q "subscribed to '$TOPIC'" "$OUT/broker.log"; }

# A subscriber and a publisher: the broker forwards one message.
pubsub() {
    say "$SUB" "$@" -t "$TOPIC" -C 1 -v -q 1 -i lab-sub '&'
    "$SUB" "$@" -t "$TOPIC" -C 1 -v -q 1 -i lab-sub >> "$OUT/clients.txt" 2>&1 &
    SUB_PID=$!
    wait_for "the subscriber's SUBSCRIBE" 15 subscribed
    run "$PUB" "$@" -t "$TOPIC" -m "$MESSAGE" -q 1 -i lab-pub
    set +e
    wait "$SUB_PID"
    echo "(subscriber exit status $?)" >> "$OUT/clients.txt"
    set -e
    SUB_PID=
    CONNS=$((CONNS + 1))
}

# MQTT packets for openssl s_client, which has no MQTT of its own:
# CONNECT (client id lab-resume), PUBLISH QoS 0 to lab/resume, DISCONNECT.
mqtt_bytes() {
    printf '\020\026\000\004MQTT\004\002\000\074\000\012lab-resume'
    printf '\060\027\000\012lab/resumehello again'
    printf '\340\000'
}
s_client() {
    mqtt_bytes > "$OUT/mqtt-packets.bin"
    say openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -CAfile "$ca" -ign_eof "$@" \
        '<' "$OUT/mqtt-packets.bin"
    set +e
    openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -CAfile "$ca" \
        -ign_eof "$@" < "$OUT/mqtt-packets.bin" > "$OUT/s_client.tmp" 2>&1
    rc=$?
    set -e
    grep -a -E "^(New|Reused), |^Verif|alert|^Acceptable client certificate CA names" "$OUT/s_client.tmp" \
        >> "$OUT/clients.txt" || true
    echo "(exit status $rc)" >> "$OUT/clients.txt"
    rm -f "$OUT/s_client.tmp"
    CONNS=$((CONNS + 1))
}

MESSAGE="hello from the $SCENARIO lab"
case $SCENARIO in
    plain)            pubsub -h 127.0.0.1 -p "$PORT" ;;
    tls)              pubsub -h localhost -p "$PORT" $TLS_OPTS ;;
    mutual)           pubsub -h localhost -p "$PORT" $TLS_OPTS $CLIENT_CERT ;;
    resume)
        s_client -tls1_2 -sess_out "$OUT/session-ticket.pem"
        s_client -tls1_2 -sess_in "$OUT/session-ticket.pem"
        s_client -tls1_2 -no_ticket -sess_out "$OUT/session-id.pem"
        s_client -tls1_2 -no_ticket -sess_in "$OUT/session-id.pem" ;;
    bad-version)      run "$PUB" -h localhost -p "$PORT" $TLS_OPTS --tls-version "$OLD_VERSION" -t "$TOPIC" -m "$MESSAGE" ;;
    tls13)            pubsub -h localhost -p "$PORT" $TLS_OPTS --tls-version tlsv1.3 ;;
    tls13-mutual)     pubsub -h localhost -p "$PORT" $TLS_OPTS $CLIENT_CERT --tls-version tlsv1.3 ;;
    tls13-resume)
        s_client -tls1_3 -sess_out "$OUT/session-ticket.pem"
        s_client -tls1_3 -sess_in "$OUT/session-ticket.pem" ;;
    no-shared-cipher) run "$PUB" -h localhost -p "$PORT" $TLS_OPTS --ciphers DHE-RSA-AES128-SHA256 -t "$TOPIC" -m "$MESSAGE" ;;
    bad-client-cert)  run "$PUB" -h localhost -p "$PORT" $TLS_OPTS --cert "$CERTS/untrusted-client.crt" \
                          --key "$CERTS/untrusted-client.key" -t "$TOPIC" -m "$MESSAGE" ;;
    no-client-cert)   run "$PUB" -h localhost -p "$PORT" $TLS_OPTS -t "$TOPIC" -m "$MESSAGE" ;;
    plain-on-tls)     run "$PUB" -h 127.0.0.1 -p "$PORT" -t "$TOPIC" -m "$MESSAGE" ;;
    expired-client-cert)
        run "$PUB" -h localhost -p "$PORT" $TLS_OPTS --cert "$CERTS/expired-client.crt" \
            --key "$CERTS/expired-client.key" -t "$TOPIC" -m "$MESSAGE" ;;
    revoked-client-cert)
        s_client -tls1_2 -cert "$CERTS/revoked-client.crt" -key "$CERTS/revoked-client.key" ;;
esac

# ---- stop, keep only the lab port's packets ----------------------------------------

# Every connection closed by the broker (a failed TLS handshake is its one
# "TLS handshake failed" line): its last packets are on the wire.
closed() { [ "$(grep -c -E ' closed: | disconnected: |: TLS handshake failed: ' "$OUT/broker.log")" -ge "$CONNS" ]; }
wait_for "the broker to close $CONNS connection(s)" 30 closed
# dumpcap writes in blocks and a SIGTERM can lose the last one: a last probe
# on disk means everything before it is too.
probes() { "$TSHARK" -r "$OUT/raw.pcapng" -Y "tcp.port==$PROBE && tcp.flags.syn==1" -T fields \
               -e frame.number 2>/dev/null | wc -l; }
before=$(probes)
probe
last_probe() { [ "$(probes)" -gt "$before" ]; }
wait_for "the last packets to reach the capture file" 30 last_probe
kill "$TSHARK_PID"
wait "$TSHARK_PID" 2>/dev/null || true
TSHARK_PID=
kill "$BROKER_PID"
wait "$BROKER_PID" 2>/dev/null || true
BROKER_PID=
"$TSHARK" -r "$OUT/raw.pcapng" -Y "tcp.port==$PORT" -w "$OUT/capture.pcapng" 2>/dev/null
rm -f "$OUT/raw.pcapng" "$OUT/tshark.txt"
[ -e "$OUT/keylog.txt" ] || [ "$SCENARIO" = plain ] || : > "$OUT/keylog.txt"
[ "$SCENARIO" != plain ] || rm -f "$OUT/keylog.txt"

# ---- tell the student what to open -------------------------------------------------

rel() { case $1 in "$ROOT"/*) echo "${1#"$ROOT"/}" ;; *) echo "$1" ;; esac; }
cap=$(rel "$OUT/capture.pcapng")
klog=$(rel "$OUT/keylog.txt")
blog=$(rel "$OUT/broker.log")
if [ "$SCENARIO" = plain ]; then
    decode="-d tcp.port==$PORT,mqtt"
    gui="Decode As: TCP port $PORT -> MQTT"
    keys=""
elif [ "$SCENARIO" = plain-on-tls ]; then
    decode="-d tcp.port==$PORT,mqtt"
    gui="Decode As: TCP port $PORT -> MQTT (what the client really sent; as TLS it would not parse)"
    keys=""
else
    decode="-o tls.keylog_file:$klog -d tcp.port==$PORT,tls -d tls.port==$PORT,mqtt"
    gui="Decode As: TCP port $PORT -> TLS, and TLS port $PORT -> MQTT
  Preferences > Protocols > TLS > (Pre)-Master-Secret log filename: $klog"
    keys="  $klog   TLS secrets (the broker's tls_keylog_file)
"
fi
case $SCENARIO in
    plain)            look="CONNECT, SUBSCRIBE, PUBLISH with topic and payload in clear text" ;;
    tls)              look="ClientHello .. Finished, NewSessionTicket; MQTT only with the key log" ;;
    mutual)           look="CertificateRequest, the client's Certificate (CN=labclient, readable without keys) and CertificateVerify" ;;
    resume)           look="connections 1 and 3 full; 2 (ticket) and 4 (session id) resumed: no Certificate, no key exchange" ;;
    bad-version)      look="ClientHello version $(echo "$OLD_VERSION" | sed 's/tlsv/TLS /'), then Alert (Level: Fatal, Description: Protocol Version) = 70" ;;
    tls13)            look="ClientHello, ServerHello, then only Application Data records until the key log decrypts EncryptedExtensions, Certificate, CertificateVerify, Finished, NewSessionTicket and MQTT" ;;
    tls13-resume)     look="connection 2: ClientHello with pre_shared_key, ServerHello, and no Certificate in the decrypted handshake" ;;
    tls13-mutual)     look="decrypted: CertificateRequest, the client's Certificate (CN=labclient) and CertificateVerify -- without keys nobody sees who connected" ;;
    no-shared-cipher) look="ClientHello with one cipher suite, then Alert (Fatal, Handshake Failure) = 40" ;;
    bad-client-cert)  look="the client's Certificate (issuer CN=untrusted lab CA), then Alert (Fatal, Unknown CA) = 48" ;;
    no-client-cert)   look="an empty client Certificate (Certificates Length: 0), then Alert (Fatal, Handshake Failure) = 40" ;;
    plain-on-tls)     look="an MQTT CONNECT on the TLS port, no TLS record, no alert: the broker just closes" ;;
    expired-client-cert) look="the client's Certificate (CN=expiredclient, Not After 2020), then Alert (Fatal, Certificate Expired) = 45" ;;
    revoked-client-cert) look="the client's Certificate (CN=revokedclient), then Alert (Fatal, Certificate Revoked) = 44; s_client's view in clients.txt" ;;
esac
failure=$(grep -E "TLS handshake failed" "$OUT/broker.log" | grep -v " tls: " | head -n 1 | cut -d' ' -f2- || true)
{
    echo "Lab scenario '$SCENARIO' (broker on 127.0.0.1:$PORT) -- see docs/lab.md"
    echo "  $cap   open it in Wireshark"
    printf '%s' "$keys"
    echo "  $blog   the broker's log (handshake trace: lines with ' tls: ')"
    echo "  $(rel "$OUT/clients.txt")   what the clients printed"
    echo "Look for: $look"
    [ -z "$failure" ] || echo "Broker said: $failure"
    echo "Wireshark: $gui"
    echo "tshark:"
    echo "  tshark -r $cap $decode"
    echo "  tshark -r $cap $decode -O tls,mqtt      (every field)"
} > "$OUT/README.txt"
cat "$OUT/README.txt"
