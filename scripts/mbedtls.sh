#!/bin/sh
# mbedtls.sh DIR -- put the mbedTLS 3.6 sources into DIR/src (once).
#
# From MBEDTLS_SRC (a local upstream tarball: mbedtls-3.6.x.tar.bz2/.gz/.xz,
# or Debian's mbedtls_3.6.x.orig.tar.bz2) when set; otherwise from Debian 13's
# source package, fetched with apt-get source under a private sources list,
# state and cache directory in DIR/apt, so the system's apt configuration is
# neither read nor changed. apt verifies the trixie InRelease signature with
# the Debian archive keyring (package debian-archive-keyring) and the
# tarball's checksum from the signed Sources index.
#
# Only the upstream tarball of the source package is used; Debian's two
# patches touch its CMake files and a GCC 14 warning, neither of which this
# build uses.
set -eu
dir=$1
suite=${MBEDTLS_SUITE:-trixie}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
[ -f "$dir/src/include/mbedtls/build_info.h" ] && exit 0

tarball=${MBEDTLS_SRC:-}
if [ -z "$tarball" ]; then
    if [ ! -r "$keyring" ]; then
        echo "mbedtls.sh: $keyring missing (apt-get install debian-archive-keyring)," >&2
        echo "  or build from a local tarball: make MBEDTLS_SRC=/path/to/mbedtls-3.6.x.tar.bz2" >&2
        exit 1
    fi
    apt="$dir/apt"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/dl"
    : >"$apt/status"
    echo "deb-src [signed-by=$keyring] http://deb.debian.org/debian $suite main" >"$apt/sources.list"
    set -- -o Dir::Etc::sourcelist="$apt/sources.list" -o Dir::Etc::sourceparts=/dev/null \
        -o Dir::State="$apt" -o Dir::State::lists="$apt/lists" -o Dir::State::status="$apt/status" \
        -o Dir::Cache="$apt/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User="$(id -un)" \
        -o Acquire::Languages=none -q
    echo "mbedtls.sh: apt-get source mbedtls ($suite) into $apt/dl"
    apt-get "$@" update >"$apt/update.log" 2>&1 || {
        cat "$apt/update.log" >&2
        echo "mbedtls.sh: apt-get update of the private $suite source list failed;" >&2
        echo "  offline? build from a local tarball: make MBEDTLS_SRC=FILE" >&2
        exit 1
    }
    (cd "$apt/dl" && apt-get "$@" source --download-only mbedtls) >"$apt/source.log" 2>&1 || {
        cat "$apt/source.log" >&2
        exit 1
    }
    tarball=$(ls "$apt"/dl/mbedtls_3.6.*.orig.tar.* 2>/dev/null | head -n 1)
    if [ -z "$tarball" ]; then
        echo "mbedtls.sh: $suite's mbedtls source package is not 3.6.x:" >&2
        ls "$apt/dl" >&2
        exit 1
    fi
fi
[ -r "$tarball" ] || { echo "mbedtls.sh: cannot read $tarball" >&2; exit 1; }
rm -rf "$dir/src" "$dir/src.tmp"
mkdir -p "$dir/src.tmp"
tar -xaf "$tarball" -C "$dir/src.tmp" --strip-components=1
if [ ! -f "$dir/src.tmp/include/mbedtls/build_info.h" ] ||
    ! grep -q 'MBEDTLS_VERSION_STRING *"3\.6\.' "$dir/src.tmp/include/mbedtls/build_info.h"; then
    echo "mbedtls.sh: $tarball is not an mbedTLS 3.6 source tarball" >&2
    exit 1
fi
mv "$dir/src.tmp" "$dir/src"
echo "mbedtls.sh: $(basename "$tarball") unpacked into $dir/src"
