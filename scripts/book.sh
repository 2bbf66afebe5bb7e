#!/usr/bin/env bash
# Builds the book (docs/, mdBook) into target/book/ and fails on a broken link (a relative link to
# a file that does not exist, or to a heading a page does not have: scripts/check-links.py, over
# the README, the CHANGELOG and the book). Installs mdBook with cargo when it is missing or
# another version: into cargo's own bin folder (~/.cargo/bin), once per machine, about 2.5
# minutes on two cores (without its `serve` and `watch` features, which a build does not use).
set -euo pipefail
cd "$(dirname "$0")/.."
mdbook_version=0.5.4
mdbook="$(command -v mdbook || echo "${CARGO_HOME:-$HOME/.cargo}/bin/mdbook")"
if [ "$("$mdbook" --version 2>/dev/null)" != "mdbook v$mdbook_version" ]; then
    echo "installing mdBook $mdbook_version with cargo" >&2
    cargo install mdbook --version "$mdbook_version" --locked --no-default-features --quiet
    mdbook="${CARGO_HOME:-$HOME/.cargo}/bin/mdbook"
fi
python3 scripts/check-links.py
"$mdbook" build docs 2>&1 | { grep -v '^ *INFO' || true; }
test -s target/book/index.html
echo "book: target/book/index.html" >&2
