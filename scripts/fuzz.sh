#!/usr/bin/env bash
# Fuzzes the stats parser, the config loader and the state loader with cargo-fuzz (libFuzzer),
# each for SECONDS (default 600), seeded with the hostile-input corpus and the fixtures.
# Not part of CI. Needs the nightly toolchain; installs cargo-fuzz if missing.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET ...]   (targets: stats_parser config_loader state_loader)
# A crash is saved under fuzz/artifacts/TARGET/ and ends the run with a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(stats_parser config_loader state_loader)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# No sanitizer: the crate forbids unsafe code, so AddressSanitizer would find nothing that a
# panic does not already show, and building the AWS SDK with it costs much time and memory.
cargo +nightly fuzz build --sanitizer none

seeds_for() {
    case $1 in
        stats_parser) echo tests/hostile/stats tests/fixtures/show-stat-haproxy-2.6.12.csv ;;
        config_loader) echo tests/hostile/config ;;
        state_loader) echo tests/hostile/state ;;
    esac
}

for target in "${targets[@]}"; do
    corpus=fuzz/corpus/$target
    mkdir -p "$corpus"
    for seed in $(seeds_for "$target"); do
        if [ -d "$seed" ]; then cp "$seed"/* "$corpus"/; else cp "$seed" "$corpus"/; fi
    done
    echo "== $target: ${seconds}s" >&2
    cargo +nightly fuzz run --sanitizer none "$target" "$corpus" -- \
        -max_total_time="$seconds" -max_len=65536 -print_final_stats=1
done
