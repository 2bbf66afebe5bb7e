#!/usr/bin/env bash
# Benchmark (not a test): N cycles of scale up and down under keep-alive load with the local
# example (examples/local/demo.py --cycles N), then the figures: requests sent, failed, reloads
# done, and p99 latency of requests started during a reload (the run that reloaded, plus one
# second) against the rest. Each cycle is about 13 reloads; the default 4 cycles take ~4 minutes.
# Reloads in the cycles come with scaling, when the pool is short of capacity, so their latency
# mixes both; a last 60 s phase holds 20 requests/s and forces a reload every other run (a
# changed comment in a copy of the template), to measure what a reload alone costs.
# Usage: scripts/bench-reloads.sh [CYCLES] [extra demo.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

prepare_and_isolate "$0" "$@"
cycles=${1:-4}
shift || true
summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
status=0
python3 examples/local/demo.py --quiet --cycles "$cycles" --phase 15 --reload-phase 60 \
    --summary "$summary" "$@" || status=$?
python3 - "$summary" "$cycles" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"cycles                      {sys.argv[2]}")
print(f"requests sent               {s['requests']} ({s['slow_requests']} of them 1.5 s /slow)")
print(f"failed                      {s['failed']}")
print(f"reloads                     {s['reloads']}")
print(f"launches / drains / terms   {s['launches']} / {len(s['drains'])} / {s['terminates']}")
print(f"p50 / p99 all               {s['p50_ms']} / {s['p99_ms']} ms")
print(f"p99 during reloads          {s['p99_during_reloads_ms']} ms")
print(f"p99 steady                  {s['p99_steady_ms']} ms")
print(f"forced-reload phase         {s['forced_reloads']} reloads, {s['forced_requests']} requests at 20/s")
print(f"  p50 / p99 / max in reload {s['p50_forced_reload_ms']} / {s['p99_forced_reload_ms']} / {s['max_forced_reload_ms']} ms")
print(f"  p99 between reloads       {s['p99_forced_steady_ms']} ms")
PY
exit "$status"
