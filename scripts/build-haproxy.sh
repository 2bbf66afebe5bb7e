#!/usr/bin/env bash
# Builds the HAProxy versions of the test matrix beside Debian 12's packaged 2.6, each once, into
# target/haproxy/VERSION/haproxy, and prints one line per version: `VERSION PATH`.
#
#   scripts/build-haproxy.sh [3.0] [3.2]      (both by default)
#
# 3.0  Debian 13 (trixie)'s source package: its upstream haproxy_3.0.*.orig.tar.gz, found through
#      a private deb-src sources file given to apt with -o (the machine's own apt sources are not
#      touched), its sha256 checked against the signed Sources index.
# 3.2  The upstream source tarball named by HAPROXY_3_2_SOURCE (any HAProxy source tarball: the
#      version is read from it). HAPROXY_3_2_SHA256, when set, is checked first. CI sets both to
#      the 3.2.0 tarball in ../shared/haproxy/.
#
# Each is built with `make TARGET=linux-glibc` (about 3 minutes on 2 cores, no OpenSSL, Lua or
# PCRE: the tests need the runtime API, master-worker reloads and stats). A build is kept with the
# sha256 of its source, so a second run builds nothing. A source that cannot be had is an error,
# never a silent skip.
set -euo pipefail
cd "$(dirname "$0")/.."

root="$PWD/target/haproxy"
mkdir -p "$root"

fail() {
    echo "error: $*" >&2
    exit 1
}

# Builds tarball $2 (sha256 $3) as version label $1 unless that exact source is built already.
build() {
    local label=$1 tarball=$2 sha=$3
    local dir="$root/$label"
    if [ -x "$dir/haproxy" ] && [ "$(cat "$dir/source.sha256" 2>/dev/null)" = "$sha" ]; then
        echo "$label $dir/haproxy"
        return 0
    fi
    echo "building HAProxy $label from $(basename "$tarball") (about 3 minutes)" >&2
    rm -rf "$dir"
    mkdir -p "$dir/src"
    tar -xzf "$tarball" -C "$dir/src" --strip-components=1
    if ! make -C "$dir/src" -j"$(nproc)" TARGET=linux-glibc >"$dir/build.log" 2>&1; then
        tail -20 "$dir/build.log" >&2
        fail "building HAProxy $label failed; the whole log is $dir/build.log"
    fi
    cp "$dir/src/haproxy" "$dir/haproxy"
    rm -rf "$dir/src"
    echo "$sha" >"$dir/source.sha256"
    echo "$label $dir/haproxy"
}

# Debian 13's HAProxy 3.0: the orig tarball of trixie's source package.
build_3_0() {
    local apt="$root/apt"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/download"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${DEBIAN_MIRROR:-http://deb.debian.org/debian} trixie main" \
        >"$apt/sources.list"
    local options=(
        -o "Dir::Etc::SourceList=$apt/sources.list"
        -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$apt/lists"
        -o "Dir::Cache=$apt/cache"
        -o "APT::Sandbox::User=root"
    )
    if ! apt-get "${options[@]}" -qq update >"$apt/update.log" 2>&1; then
        cat "$apt/update.log" >&2
        fail "cannot read Debian trixie's Sources index (apt-get update with $apt/sources.list)"
    fi
    # `'URI' NAME SIZE SHA256:HEX`, from the Sources index apt has just verified.
    local line
    line=$(apt-get "${options[@]}" --print-uris source haproxy 2>/dev/null | grep "\.orig\.tar\.gz' " | head -1) ||
        fail "Debian trixie's Sources index lists no haproxy orig tarball"
    local uri name sha
    read -r uri name _ sha <<<"$line"
    uri=${uri//\'/}
    sha=${sha#SHA256:}
    [ "${#sha}" = 64 ] || fail "no sha256 for $name in Debian trixie's Sources index: $line"
    local version=${name#haproxy_}
    version=${version%.orig.tar.gz}
    local tarball="$apt/download/$name"
    if [ ! -f "$tarball" ] || [ "$(sha256sum <"$tarball" | cut -d' ' -f1)" != "$sha" ]; then
        curl -fsS -o "$tarball.part" "$uri" || fail "cannot download $uri"
        mv "$tarball.part" "$tarball"
    fi
    local got
    got=$(sha256sum <"$tarball" | cut -d' ' -f1)
    [ "$got" = "$sha" ] || fail "$name has sha256 $got; Debian's Sources index says $sha"
    build "$version" "$tarball" "$sha" | sed 's/^[^ ]*/3.0/'
}

# The current LTS, from the upstream source an operator (or CI) points at.
build_3_2() {
    local tarball=${HAPROXY_3_2_SOURCE:-}
    [ -n "$tarball" ] || fail "HAPROXY_3_2_SOURCE is not set: point it at an HAProxy 3.2 source tarball (CI uses ../shared/haproxy/haproxy-3.2.0.tar.gz)"
    [ -f "$tarball" ] || fail "HAPROXY_3_2_SOURCE=$tarball: no such file"
    local sha
    sha=$(sha256sum <"$tarball" | cut -d' ' -f1)
    if [ -n "${HAPROXY_3_2_SHA256:-}" ] && [ "$sha" != "$HAPROXY_3_2_SHA256" ]; then
        fail "$tarball has sha256 $sha, not HAPROXY_3_2_SHA256=$HAPROXY_3_2_SHA256"
    fi
    local version
    version=$(tar -xzOf "$tarball" --wildcards '*/VERSION' 2>/dev/null | head -1) ||
        fail "$tarball holds no VERSION file: is it an HAProxy source tarball?"
    case "$version" in
        3.2*) ;;
        *) fail "$tarball is HAProxy ${version:-of no version}, not 3.2" ;;
    esac
    build "$version" "$tarball" "$sha" | sed 's/^[^ ]*/3.2/'
}

versions=("$@")
[ "${#versions[@]}" -gt 0 ] || versions=(3.0 3.2)
for version in "${versions[@]}"; do
    case "$version" in
        3.0) build_3_0 ;;
        3.2) build_3_2 ;;
        *) fail "unknown HAProxy version \`$version\`: this script builds 3.0 and 3.2 (2.6 is Debian's package)" ;;
    esac
done
