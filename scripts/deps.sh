#!/bin/sh
# deps.sh build|test|lab|heavy -- install the Debian packages a target needs.
# As root: apt-get update once, then install what is missing.
# Otherwise: print the one command to run and fail.
# test and lab also let members of the wireshark group capture packets (the
# lab scripts run tshark on the loopback interface): see lab_capture below.
# debian-archive-keyring + bzip2: make fetches and unpacks the mbedTLS 3.6 source
# package (scripts/mbedtls.sh) where the system has an older mbedTLS.
set -e
BUILD_PKGS="make gcc pkg-config libmbedtls-dev libsqlite3-dev openssl apt debian-archive-keyring bzip2"
# make lab-SCENARIO (docs/lab.md): tshark brings wireshark-common's dumpcap.
LAB_PKGS="$BUILD_PKGS tshark"
TEST_PKGS="$BUILD_PKGS clang libclang-rt-dev clang-format check libsubunit-dev sqlite3 mosquitto mosquitto-clients python3 python3-paho-mqtt tshark man-db groff-base chromium"
# make test-interop-heavy: peers too big or too slow for make test
HEAVY_PKGS="$TEST_PKGS rabbitmq-server"
case "$1" in
    build) want="$BUILD_PKGS" ;;
    test)  want="$TEST_PKGS" ;;
    lab)   want="$LAB_PKGS" ;;
    heavy) want="$HEAVY_PKGS" ;;
    *) echo "usage: $0 build|test|lab|heavy" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
# Node.js for MQTT.js: any node and npm on PATH will do (some machines carry a
# nodejs package that bundles npm and conflicts with Debian's npm package).
if [ "$1" = test ] || [ "$1" = heavy ]; then
    command -v node >/dev/null 2>&1 || missing="$missing nodejs"
    command -v npm >/dev/null 2>&1 || missing="$missing npm"
fi

# ---- the lab: packet capture without root ------------------------------------
# Debian's wireshark-common asks (debconf wireshark-common/install-setuid)
# whether non-root users may capture. "true" makes /usr/bin/dumpcap
# root:wireshark 0750 with the capabilities cap_net_raw,cap_net_admin (or
# setuid root where file capabilities do not work): members of the wireshark
# group capture, nobody else does.
capture_for_group() {
    [ "$(stat -c %G /usr/bin/dumpcap 2>/dev/null)" = wireshark ] || return 1
    [ -u /usr/bin/dumpcap ] && return 0
    command -v getcap >/dev/null 2>&1 || return 1
    getcap /usr/bin/dumpcap 2>/dev/null | grep -q cap_net_raw
}
lab_capture() {
    if ! capture_for_group; then
        if [ "$(id -u)" != 0 ]; then
            echo "non-root packet capture (make lab-*) is not set up;" >&2
            echo "run: sudo sh scripts/deps.sh lab" >&2
            return 1
        fi
        echo "letting members of the wireshark group capture packets (dpkg-reconfigure wireshark-common)"
        echo "wireshark-common wireshark-common/install-setuid boolean true" | debconf-set-selections
        DEBIAN_FRONTEND=noninteractive dpkg-reconfigure -f noninteractive wireshark-common
        capture_for_group || { echo "deps: /usr/bin/dumpcap is still not set up for the wireshark group" >&2; return 1; }
        echo "a student captures after: sudo usermod -aG wireshark USER, then logging out and in again"
    fi
    return 0
}

if [ -z "$missing" ]; then
    case "$1" in
        test|lab) lab_capture ;;
    esac
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages:$missing" >&2
    echo "run: sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture: yes, the wireshark group
# (lab_capture).
echo "wireshark-common wireshark-common/install-setuid boolean true" | debconf-set-selections 2>/dev/null || true
apt-get update -q
apt-get install -y -q --no-install-recommends $missing
case "$1" in
    test|lab) lab_capture ;;
esac
