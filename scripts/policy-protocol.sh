#!/usr/bin/env bash
# The out-of-sample evaluation of the default policy against HPA's rule, through
# `haproxy-autoscaler simulate` (the real decision core), on the traces in TRACES_DIR.
#
# The model is scripts/policy-bench.sh's: servers of 100 req/s, each trace scaled so that its
# peak needs 50 of them, boot 120 s, a run every 60 s. The candidates are the `peak` policy
# (with the saturation guard) at targets 0.8 to 0.95 of capacity, `headroom_quantile` 0 (none),
# 0.6, 0.8 (the default) and 0.9, scale-down windows of 300 and 600 s (the default), and
# `lead_s` 0 (the default) and 300. HPA's rule is `policy = "target"` at 0.6, 0.7, 0.8 and 0.9,
# with its own 300 s window and, as Kubernetes has it, no saturation guard
# (`saturation_queue = 1e12`: never reached).
#
# Two protocols, each choosing settings without the traffic it is scored on:
#   leave one out   for each trace, for each HPA point, the candidate chosen on the other traces
#                   is scored on the left-out trace against the same HPA point. The choice: the
#                   candidates that beat that HPA point on the most of them (as good on unserved
#                   % and cost ratio, better on one, with no more scale actions a day), and of
#                   those the one with the widest margin (the least, over the traces and the
#                   three figures, of its relative saving), not the cheapest: a setting chosen
#                   at the edge of the other traces' trade-off falls off it on the next one;
#   halves          for each trace, the same choice made on its first half alone is scored on
#                   its second half (the simulation starts empty there: the forecast learns
#                   again, as it would in production).
# Each line says whether the chosen setting beats the HPA point out of sample, and by what;
# "LOSES" lines are where it does not. The foresight limit (perfect foresight with the same
# boots and runs) is printed per trace.
#
# Usage: scripts/policy-protocol.sh [TRACES_DIR] [BINARY]
# (defaults: examples/traces and target/release/haproxy-autoscaler, built here if missing).
# About fifteen minutes with a release binary on two cores (it runs two simulations at once).
set -euo pipefail
cd "$(dirname "$0")/.."
traces=${1:-examples/traces}
binary=${2:-${CARGO_TARGET_DIR:-target}/release/haproxy-autoscaler}
if [ ! -x "$binary" ]; then
    cargo build --release --quiet
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$traces" "$binary" "$work" <<'PY'
import csv, json, os, subprocess, sys
from concurrent.futures import ThreadPoolExecutor

traces_dir, binary, work = sys.argv[1:4]
CAPACITY = 100.0

POOL = open("scripts/simulate-pool.toml").read()

def config(lines):
    return POOL + "step_up = 500\nstep_down = 500\n" + lines + "\n"

def hpa(u):
    return (f'policy = "target"\ntarget = {u * CAPACITY:g}\ntolerance = 0.1\n'
            f'scale_down_window_s = 300\nsaturation_queue = 1e12')

def candidate(u, quantile, window, lead):
    return (f'policy = "peak"\ntarget = {u * CAPACITY:g}\nheadroom_quantile = {quantile}\n'
            f'scale_down_window_s = {window}\nlead_s = {lead}')

HPA = [0.6, 0.7, 0.8, 0.9]
CANDIDATES = [(u, q, w, lead) for u in (0.8, 0.85, 0.9, 0.95) for q in (0, 0.6, 0.8, 0.9)
              for w in (300, 600) for lead in (0, 300)]

def label(c):
    u, q, w, lead = c
    return f"peak {u}, q {q}, window {w}, lead {lead}"

def write_trace(name, rows):
    path = os.path.join(work, name + ".csv")
    with open(path, "w") as out:
        out.write("t_seconds,load\n")
        for t, load in rows:
            out.write(f"{t},{load}\n")
    return path

# Each trace whole, and its two halves (the second one's times from 0 again).
traces = {}
for file in sorted(os.listdir(traces_dir)):
    if not file.endswith(".csv"):
        continue
    name = file[:-4]
    rows = [(int(r["t_seconds"]), float(r["load"]))
            for r in csv.DictReader(open(os.path.join(traces_dir, file), encoding="utf-8-sig"))]
    half = len(rows) // 2
    first, second = rows[:half], rows[half:]
    start = second[0][0]
    traces[name] = os.path.join(traces_dir, file)
    traces[name + " (1st half)"] = write_trace(name + "-1", first)
    traces[name + " (2nd half)"] = write_trace(name + "-2", [(t - start, l) for t, l in second])

scales = {}
def scale_of(name):
    # Every part of a trace at the whole trace's scale.
    whole = name.split(" (")[0]
    if whole not in scales:
        peak = max(float(r["load"]) for r in csv.DictReader(open(traces[whole], encoding="utf-8-sig")))
        scales[whole] = 50 * CAPACITY / peak
    return scales[whole]

cache = {}
def simulate(name, lines):
    key = (name, lines)
    if key not in cache:
        path = os.path.join(work, f"config-{abs(hash(key))}.toml")
        open(path, "w").write(config(lines))
        out = subprocess.run(
            [binary, "simulate", "--config", path, "--trace", traces[name],
             "--capacity", str(CAPACITY), "--scale", str(scale_of(name)),
             "--boot-s", "120", "--interval-s", "60", "--format", "json"],
            capture_output=True, text=True, check=True)
        f = json.loads(out.stdout)
        cache[key] = (f["unserved_pct"], f["cost_ratio"], f["actions_per_day"],
                      f["foresight_cost_ratio"])
    return cache[key]

def beats(a, b):
    """a beats b: as good on unserved and cost, better on one, no more actions a day."""
    return (a[0] <= b[0] and a[1] <= b[1] and (a[0] < b[0] or a[1] < b[1])
            and a[2] <= b[2])

def margin(a, b):
    """How far inside b's figures a is, at its tightest: the least of its relative savings on
    unserved %, cost and actions a day (negative where it is worse)."""
    return min((y - x) / y if y > 0 else (0.0 if x <= y else -1.0) for x, y in zip(a[:3], b[:3]))

def choose(train, u):
    scored = []
    for c in CANDIDATES:
        pairs = [(simulate(t, candidate(*c)), simulate(t, hpa(u))) for t in train]
        wins = sum(beats(p, h) for p, h in pairs)
        slack = min(margin(p, h) for p, h in pairs)
        scored.append((-wins, -slack, c))
    scored.sort()
    return scored[0][2], -scored[0][0]

def report(kind, test, train):
    h_fore = simulate(test, hpa(0.8))[3]
    print(f"\n{kind}: {test}   (chosen on: {', '.join(train)}; foresight limit {h_fore:.3f})")
    print(f"  {'HPA':<8} {'unserved%':>9} {'cost':>6} {'act/day':>8}   "
          f"{'chosen setting':<36} {'unserved%':>9} {'cost':>6} {'act/day':>8}  verdict")
    losses = 0
    for u in HPA:
        chosen, wins = choose(train, u)
        h = simulate(test, hpa(u))
        p = simulate(test, candidate(*chosen))
        verdict = "beats" if beats(p, h) else "LOSES"
        losses += verdict == "LOSES"
        print(f"  {u:<8} {h[0]:>9.3f} {h[1]:>6.3f} {h[2]:>8.1f}   {label(chosen):<36} "
              f"{p[0]:>9.3f} {p[1]:>6.3f} {p[2]:>8.1f}  {verdict}"
              f" (chosen for beating it on {wins} of {len(train)})")
    return losses

# Every simulation once, two at a time (each is one process on one core).
jobs = [(name, lines) for name in traces
        for lines in [hpa(u) for u in HPA] + [candidate(*c) for c in CANDIDATES]]
with ThreadPoolExecutor(2) as pool:
    list(pool.map(lambda job: simulate(*job), jobs))

whole = [n for n in traces if " (" not in n]
total = 0
lines = 0
for test in whole:
    total += report("leave one out", test, [t for t in whole if t != test])
    lines += len(HPA)
for name in whole:
    total += report("halves", name + " (2nd half)", [name + " (1st half)"])
    lines += len(HPA)
print(f"\n{lines - total} of {lines} HPA points beaten out of sample; {total} lost.")
# In sample: a setting that beats an HPA point on every whole trace at once, if there is one.
for u in HPA:
    everywhere = [c for c in CANDIDATES
                  if all(beats(simulate(t, candidate(*c)), simulate(t, hpa(u))) for t in whole)]
    print(f"in sample, HPA {u}: beaten on all {len(whole)} traces at once by "
          f"{len(everywhere)} of {len(CANDIDATES)} settings"
          + (f" ({', '.join(label(c) for c in everywhere)})" if everywhere else ""))
PY
