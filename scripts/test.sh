#!/usr/bin/env bash
# Runs every check the project has, on a fresh machine too: installs haproxy and moto, then
# cargo fmt --check, cargo clippy -D warnings, the book (scripts/book.sh: mdBook, installed with
# cargo when missing, and a check of every relative link), cargo test, the HAProxy version matrix, and the
# installation test of the Debian package (scripts/test-package.sh). The cargo tests run inside a
# private network namespace where only loopback exists, so nothing can reach moto's 10.x
# addresses. Arguments go to cargo test (a filter, say) and skip the matrix and the installation
# test.
#
# The HAProxy version matrix: the whole suite runs against Debian's HAProxy 2.6; then the tests
# that talk to HAProxy (tests/integration/haproxy/, the `haproxy::` tests) run again against 3.0
# and 3.2, built once into target/haproxy/ by scripts/build-haproxy.sh (3.2 from the source
# tarball HAPROXY_3_2_SOURCE names). Under CI a version that cannot be built is a failure;
# elsewhere it is skipped with a warning.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

# Runs "$@" inside a private network namespace where only loopback exists.
isolated() {
    if unshare -n true 2>/dev/null; then
        unshare -n -- bash -c 'ip link set lo up && exec "$@"' bash "$@"
    elif [ -n "${CI:-}" ]; then
        echo "error: cannot create a private network namespace (unshare -n); CI must run the tests isolated" >&2
        exit 1
    else
        echo "warning: unshare -n is not available (not root?); running the tests without network isolation" >&2
        "$@"
    fi
}

scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
scripts/book.sh
# Build everything while the network is still there; the namespace below has none.
cargo test --locked --no-run

if [ "$#" -gt 0 ]; then
    isolated cargo test --locked --offline "$@"
    exit 0
fi

# The other HAProxy versions are built (3.0's source downloaded) while the network is there.
matrix=()
for version in 3.0 3.2; do
    if built=$(scripts/build-haproxy.sh "$version"); then
        matrix+=("${built#* }")
    elif [ -n "${CI:-}" ]; then
        echo "error: HAProxy $version could not be built for the version matrix (see above)" >&2
        exit 1
    else
        echo "warning: HAProxy $version could not be built (see above): its tests are skipped" >&2
    fi
done

echo "HAProxy matrix: the whole suite against $(haproxy -v | head -1)" >&2
isolated cargo test --locked --offline
for binary in "${matrix[@]}"; do
    echo "HAProxy matrix: the haproxy:: tests against $("$binary" -v | head -1)" >&2
    HAPROXY="$binary" isolated cargo test --locked --offline --test integration -- haproxy::
done

# The installation test builds the release .deb (12-19 minutes cold, seconds after), installs,
# checks and purges it.
scripts/test-package.sh
