#!/usr/bin/env bash
# Benchmark (not a test): N cycles of scale up and down under keep-alive load with the local
# example (examples/local/demo.py --cycles N), once with `haproxy.apply = "reload"` (every change
# reloads HAProxy: the behaviour before the runtime API) and once with `"runtime"` (the default:
# server changes through the runtime API), then the figures side by side: requests sent, failed,
# reloads per cycle (the tool's and HAProxy's own count), changes through the runtime API, and the
# p99 latency of requests started while servers join and leave (a run that changed them, plus
# one second) against the whole cycles. A last 60 s phase holds 20 requests/s and forces a
# structural change (so a reload) every other run, to measure what a reload alone costs.
# About 5 minutes per mode with the default 4 cycles.
# Usage: scripts/bench-reloads.sh [CYCLES] [extra demo.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

prepare_and_isolate "$0" "$@"
cycles=${1:-4}
shift || true
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for apply in reload runtime; do
    echo "haproxy.apply = $apply: $cycles cycles ..." >&2
    python3 examples/local/demo.py --quiet --cycles "$cycles" --phase 15 --reload-phase 60 \
        --apply "$apply" --summary "$work/$apply.json" "$@" >&2 || status=$?
done
python3 - "$work/reload.json" "$work/runtime.json" "$cycles" <<'PY'
import json, sys
before, after = (json.load(open(path)) for path in sys.argv[1:3])
cycles = int(sys.argv[3])
rows = [
    ("requests sent", lambda s: s["requests"]),
    ("failed", lambda s: s["failed"]),
    ("reloads per cycle", lambda s: round(s["cycle_reloads"] / cycles, 1)),
    ("HAProxy's reload count (all)", lambda s: s["master_reloads"]),
    ("runtime API changes per cycle", lambda s: round((s["cycle_changes"] - s["cycle_reloads"]) / cycles, 1)),
    ("launches / drains / terms", lambda s: f"{s['launches']} / {len(s['drains'])} / {s['terminates']}"),
    ("p50 / p99 in the cycles ms", lambda s: f"{s['p50_cycles_ms']} / {s['p99_cycles_ms']}"),
    ("p99 while servers change ms", lambda s: s["p99_during_changes_ms"]),
    ("forced reloads (last phase)", lambda s: s["forced_reloads"]),
    ("  p99 in reload / between ms", lambda s: f"{s['p99_forced_reload_ms']} / {s['p99_forced_steady_ms']}"),
]
print(f"{'cycles ' + str(cycles):32} {'apply = reload':>18} {'apply = runtime':>18}")
for name, value in rows:
    print(f"{name:32} {str(value(before)):>18} {str(value(after)):>18}")
PY
exit "$status"
