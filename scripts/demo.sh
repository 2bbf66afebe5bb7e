#!/usr/bin/env bash
# The README's first command: the tool's whole job on this machine, no cloud account needed.
# Installs what is missing (Debian's haproxy), builds, then runs examples/local/demo.py: HAProxy
# in master-worker mode in front of loopback backends that haproxy-autoscaler launches, drains
# and terminates through the exec provider (examples/local/provider.py), under keep-alive load
# that ramps up, holds, ramps down and idles, with the tool run every 2 s as cron would.
# Prints a live table and ends with a summary line with the failed-request count (exit 1 if any
# request failed). About 2.5 minutes after the one-time install and build; loopback only, inside
# a private network namespace when the machine allows it. Options go to demo.py (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

prepare_and_isolate "$0" "$@"
exec python3 examples/local/demo.py "$@"
