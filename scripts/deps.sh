#!/bin/sh
# deps.sh build|test -- install the Debian packages a target needs.
# As root: apt-get update once, then install what is missing.
# Otherwise: print the one command to run and fail.
# debian-archive-keyring + bzip2: make fetches and unpacks the mbedTLS 3.6 source
# package (scripts/mbedtls.sh) where the system has an older mbedTLS.
set -e
BUILD_PKGS="make gcc pkg-config libmbedtls-dev openssl apt debian-archive-keyring bzip2"
TEST_PKGS="$BUILD_PKGS clang-format check libsubunit-dev mosquitto mosquitto-clients python3 python3-paho-mqtt tshark"
case "$1" in
    build) want="$BUILD_PKGS" ;;
    test)  want="$TEST_PKGS" ;;
    *) echo "usage: $0 build|test" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
# Node.js for MQTT.js: any node and npm on PATH will do (some machines carry a
# nodejs package that bundles npm and conflicts with Debian's npm package).
if [ "$1" = test ]; then
    command -v node >/dev/null 2>&1 || missing="$missing nodejs"
    command -v npm >/dev/null 2>&1 || missing="$missing npm"
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages:$missing" >&2
    echo "run: sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer for it.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
apt-get update -q
apt-get install -y -q --no-install-recommends $missing
