#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine:
# Debian's haproxy and prometheus (promtool) packages, and moto (the mock EC2 server) in ./.venv.
# Idempotent: does nothing when both are already there.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

if ! command -v haproxy >/dev/null 2>&1; then
    echo "installing Debian's haproxy package" >&2
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq haproxy >/dev/null
fi

# promtool (Debian's prometheus package) validates the metrics file the tests write.
if ! command -v promtool >/dev/null 2>&1; then
    echo "installing Debian's prometheus package (for promtool)" >&2
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    # No service is started: the tests run promtool only.
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

wanted=$(grep -v '^#' scripts/requirements-test.txt | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/moto_server ] || [ "$(cat .venv/.requirements 2>/dev/null)" != "$wanted" ]; then
    echo "installing moto into .venv" >&2
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
    echo "$wanted" > .venv/.requirements
fi
