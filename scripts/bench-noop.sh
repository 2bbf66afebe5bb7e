#!/usr/bin/env bash
# Measures the wall time of a no-op run (nothing to change) against moto with N instances,
# median of R runs, and the cost of region / credential look-ups when IMDS does not answer.
# Usage: scripts/bench-noop.sh [INSTANCES=100] [RUNS=5]   (builds the release binary if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
instances=${1:-100}
runs=${2:-5}

CARGO_PROFILE=release prepare_and_isolate "$0" "$@"

bin=$HAPROXY_AUTOSCALER_BIN
work=$(mktemp -d)
start_moto "$work"
pids=("$moto_pid")
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
port=$moto_port

moto_launch "$moto_port" "$instances"

mkdir -p "$work/state" "$work/haproxy"
moto_config "$work" 'region = "eu-west-1"' >"$work/config.toml"
moto_config "$work" '' >"$work/config-no-region.toml"

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench HOME="$work"
"$bin" --config "$work/config.toml" -q    # first run installs the config

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_runs() {  # label, then the command
    local label=$1; shift
    local times=()
    for _ in $(seq "$runs"); do
        local start; start=$(date +%s%N)
        "$@" >/dev/null 2>&1 || true
        times+=("$(ms "$start")")
    done
    printf '%-62s median %5s ms   (runs: %s)\n' "$label" "$(printf '%s\n' "${times[@]}" | median)" "${times[*]}"
}

echo "no-op run against moto, $instances instances, $runs runs each:"
AWS_EC2_METADATA_DISABLED=true time_runs "region in config, credentials in env, IMDS disabled" \
    "$bin" --config "$work/config.toml"
time_runs "region in config, credentials in env, IMDS not disabled" \
    "$bin" --config "$work/config.toml"

# An IMDS that accepts connections and never answers: the worst case off EC2.
python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
print(s.getsockname()[1], flush=True)
time.sleep(3600)' >"$work/blackhole.port" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/blackhole.port" ] && break; sleep 0.1; done
export AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$(cat "$work/blackhole.port")"
time_runs "no region anywhere, IMDS black hole (exits 2: no region)" \
    "$bin" --config "$work/config-no-region.toml"
AWS_REGION=eu-west-1 time_runs "AWS_REGION set, IMDS black hole" \
    "$bin" --config "$work/config-no-region.toml"
(
    unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    AWS_REGION=eu-west-1 time_runs "no credentials, IMDS black hole (exits 1: no credentials)" \
        "$bin" --config "$work/config-no-region.toml"
)
