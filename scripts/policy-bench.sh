#!/usr/bin/env bash
# Every policy at several settings, plus the oracle, over each shared trace, through
# `haproxy-autoscaler simulate` (the real decision core). Each server serves 100 req/s and each
# trace is scaled so that its peak needs 50 servers (real request counts, as HAProxy would count
# them: a trace of 0.2 req/s at its own scale would count whole requests per minute); boot
# 120 s; a run every 60 s. The peak policy runs without a lead and with lead_s = 180 (the
# model's boot time plus one run: what its rule says to give), with `headroom_quantile` 0 (off)
# and 0.8 (its default). HPA's rule runs without the saturation guard, as Kubernetes has it.
# Prints one table:
#   trace, policy, setting, unserved %, cost ratio, actions (scale-ups + scale-downs),
# then, for every HPA point, the cheapest peak setting that beats it (at least as good on both
# figures, strictly better on one), or "not beaten".
# Usage: scripts/policy-bench.sh [TRACES_DIR] [BINARY]
# (defaults: examples/traces, and target/release/haproxy-autoscaler,
# built here if missing; a debug binary works too, about ten times slower).
set -euo pipefail
cd "$(dirname "$0")/.."
traces=${1:-examples/traces}
binary=${2:-${CARGO_TARGET_DIR:-target}/release/haproxy-autoscaler}
if [ ! -x "$binary" ]; then
    cargo build --release --quiet
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A config for one policy setting: $1 = the [pool.scaling] policy lines.
config() {
    { cat scripts/simulate-pool.toml; printf '%s\n' "$1"; } > "$work/config.toml"
}

printf '%-20s %-12s %-48s %10s %10s %8s\n' trace policy setting "unserved%" cost_ratio actions
for trace in "$traces"/*.csv; do
    name=$(basename "$trace" .csv)
    # The scale that makes the peak need 50 servers of 100 req/s.
    capacity=100
    scale=$(python3 -c "
import csv,sys
peak=max(float(r['load']) for r in csv.DictReader(open(sys.argv[1])))
print(50 * 100 / peak)" "$trace")
    run() { # $1 policy, $2 setting label, $3 scaling lines
        config "$3"
        "$binary" simulate --config "$work/config.toml" --trace "$trace" --capacity "$capacity" --scale "$scale" \
            --boot-s 120 --interval-s 60 --format json > "$work/out.json"
        python3 - "$work/out.json" "$name" "$1" "$2" "$work/rows.tsv" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<20} {sys.argv[3]:<12} {sys.argv[4]:<48} {f['unserved_pct']:>10.3f} {f['cost_ratio']:>10.3f} {f['scale_ups'] + f['scale_downs']:>8}")
with open(sys.argv[5], "a") as rows:
    rows.write(f"{sys.argv[2]}\t{sys.argv[3]}\t{sys.argv[4]}\t{f['unserved_pct']}\t{f['cost_ratio']}\n")
PY
    }
    printf '%-20s %-12s %-48s %10.3f %10.3f %8s\n' "$name" oracle "foresight, no boot" 0 1 -
    c=$capacity
    t() { python3 -c "print(round($1 * $c, 6))"; }
    for u in 0.7; do
        run threshold "up $u, down $(python3 -c "print($u/2)") x capacity" \
            "policy = \"threshold\"
scale_up_above = $(t $u)
scale_down_below = $(t "$u/2")
step_up = 4
step_down = 2"
    done
    run consecutive "up 0.7, down 0.35, 2/5 runs" "policy = \"consecutive\"
scale_up_above = $(t 0.7)
scale_down_below = $(t 0.35)
up_after = 2
down_after = 5
step_up = 4
step_down = 2"
    run average "up 0.7, down 0.35, mean of 3" "policy = \"average\"
scale_up_above = $(t 0.7)
scale_down_below = $(t 0.35)
average_of = 3
step_up = 4
step_down = 2"
    for u in 0.6 0.7 0.8 0.9; do
        # HPA's rule as Kubernetes has it: no saturation guard (a queue never that long).
        run target "HPA target $u" "policy = \"target\"
target = $(t $u)
tolerance = 0.1
scale_down_window_s = 300
saturation_queue = 1e12
step_up = 500
step_down = 500"
    done
    for q in 0 0.8; do
        for lead in 0 180; do
            for w in 300 600; do
                for u in 0.7 0.75 0.8 0.85 0.9 0.95; do
                    # A saturated server's metric reads at most its capacity: at 0.95 the
                    # default tolerance (0.1) would put the scale-up line above it, so 0.05.
                    tol=0.1 label=""
                    if [ "$u" = 0.95 ]; then tol=0.05 label=" tol 0.05"; fi
                    run peak "target $u$label, q $q, window $w s, lead $lead s" "policy = \"peak\"
target = $(t $u)
tolerance = $tol
headroom_quantile = $q
scale_down_window_s = $w
lead_s = $lead
step_up = 500
step_down = 500"
                done
            done
        done
    done
done

# For every HPA point, the peak setting that beats it: at least as good on unserved % and cost
# ratio, strictly better on one (the best cost among them), or "not beaten".
echo
python3 - "$work/rows.tsv" <<'PY'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
print(f"{'trace':<20} {'HPA setting':<16} {'HPA unserved%':>13} {'cost':>7}   best peak setting that beats it")
for trace, policy, setting, unserved, cost in rows:
    if policy != "target":
        continue
    hu, hc = float(unserved), float(cost)
    beats = [(float(c), float(u), s) for t, p, s, u, c in rows
             if t == trace and p == "peak" and float(u) <= hu and float(c) <= hc
             and (float(u) < hu or float(c) < hc)]
    best = f"{min(beats)[2]} ({min(beats)[1]:.3f} %, {min(beats)[0]:.3f})" if beats else "not beaten"
    print(f"{trace:<20} {setting:<16} {hu:>13.3f} {hc:>7.3f}   {best}")
PY
