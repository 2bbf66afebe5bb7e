#!/usr/bin/env bash
# Runs every check the project has, on a fresh machine too: installs haproxy and moto, then
# cargo fmt --check, cargo clippy -D warnings, cargo test, and the installation test of the
# Debian package (scripts/test-package.sh). The cargo tests run inside a private network
# namespace where only loopback exists, so nothing can reach moto's 10.x addresses. Arguments go
# to cargo test (a filter, say) and skip the installation test.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# Build everything while the network is still there; the namespace below has none.
cargo test --locked --no-run

if unshare -n true 2>/dev/null; then
    unshare -n -- bash -c 'ip link set lo up && exec cargo test --locked --offline "$@"' bash "$@"
elif [ -n "${CI:-}" ]; then
    echo "error: cannot create a private network namespace (unshare -n); CI must run the tests isolated" >&2
    exit 1
else
    echo "warning: unshare -n is not available (not root?); running the tests without network isolation" >&2
    cargo test --locked --offline "$@"
fi

# The installation test builds the release .deb (12-19 minutes cold, seconds after), installs,
# checks and purges it. It runs with the whole suite, not when cargo test is given a filter.
if [ "$#" -eq 0 ]; then
    scripts/test-package.sh
fi
