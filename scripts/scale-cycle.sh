#!/usr/bin/env bash
# One real scale-up / scale-down cycle, end to end, on loopback: moto (mock EC2), Debian's
# HAProxy in master-worker mode, one loopback HTTP backend, and the tool run every 5 s as cron
# would. Launched instances carry the tag endpoint=127.0.0.1:PORT and the pool renders
# `address = "tag:endpoint"`, so HAProxy (and the readiness probe) only ever reach loopback.
# Load: ~10 requests/s for 40 s (bounded), then none. Prints each run's output.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
prepare_and_isolate "$0" "$@"

bin=$HAPROXY_AUTOSCALER_BIN
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
start_moto "$work"
pids+=("$moto_pid")

backend=$(free_port)
frontend=$(free_port)
python3 -m http.server "$backend" --bind 127.0.0.1 --directory "$work" >/dev/null 2>&1 &
pids+=($!)

cat >"$work/haproxy.cfg.hbs" <<HBS
global
    stats socket $work/admin.sock mode 600 level admin expose-fd listeners
    hard-stop-after 10s
defaults
    mode http
    option idle-close-on-response
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend http
    bind 127.0.0.1:$frontend
    default_backend web
backend web
{{#each backends.web.servers}}
    server {{name}} {{address}}:{{port}}{{#if booting}} disabled{{/if}}{{#if draining}} weight 0{{/if}}
{{/each}}
HBS
printf 'global\n    stats socket %s/admin.sock mode 600 level admin expose-fd listeners\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\nfrontend http\n    bind 127.0.0.1:%s\n    default_backend web\nbackend web\n' "$work" "$frontend" >"$work/haproxy.cfg"
haproxy -W -S "$work/master.sock" -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)

cat >"$work/config.toml" <<TOML
[state]
path = "$work/state.json"
[haproxy]
config = "$work/haproxy.cfg"
template = "$work/haproxy.cfg.hbs"
stats_socket = "$work/admin.sock"
check_command = ["haproxy", "-c", "-q", "-f", "{config}"]
master_socket = "$work/master.sock"
[aws]
region = "eu-west-1"
endpoint_url = "http://127.0.0.1:$moto_port"
[[pool]]
name = "web"
port = 8080
address = "tag:endpoint"
ready_check = "tcp"
[pool.discover]
tags = { role = "web" }
[pool.launch]
image_id = "ami-12345678"
instance_type = "t3.micro"
tags = { role = "web", endpoint = "127.0.0.1:$backend" }
[pool.scaling]
min = 1
max = 3
metric = "request_rate"
policy = "threshold"
scale_up_above = 2
scale_down_below = 0.5
cooldown_s = 0
warmup_s = 0
drain_s = 10
TOML

export AWS_ACCESS_KEY_ID=cycle AWS_SECRET_ACCESS_KEY=cycle AWS_EC2_METADATA_DISABLED=true HOME="$work"
sleep 1
load() {  # bounded: 400 requests, ~10 per second
    for _ in $(seq 400); do curl -s -o /dev/null "http://127.0.0.1:$frontend/" || true; sleep 0.1; done
}
run() {
    local servers
    servers=$(echo "show stat" | python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"show stat\n"); s.shutdown(1)
data = b""
while chunk := s.recv(65536): data += chunk
lines = data.decode().splitlines()
header = lines[0].lstrip("# ").split(",")  # columns by name: their order varies
rows = [dict(zip(header, l.split(","))) for l in lines[1:] if l]
print(" ".join(r["svname"] + "=" + r["status"] for r in rows if r["pxname"] == "web" and r["svname"] != "BACKEND"))' "$work/admin.sock")
    printf '\n[%s] %s | in HAProxy: %s\n' "$(date +%T)" "$1" "${servers:-none}"
    if [ "${2:-}" = plan ]; then
        echo "  \$ haproxy-autoscaler --plan"
        "$bin" --config "$work/config.toml" --plan 2>&1 | sed 's/^/    /'
        echo "  \$ haproxy-autoscaler"
    fi
    "$bin" --config "$work/config.toml" -v 2>&1 | grep -vE '^info: pool .* listed in' | sed 's/^/    /' || true
}
run "start, no load"
sleep 5
run "no load"
load &
pids+=($!)
for n in $(seq 8); do sleep 5; run "load ~10 req/s ($n)" "$([ "$n" = 2 ] && echo plan)"; done
wait "${pids[-1]}" 2>/dev/null || true
for n in $(seq 10); do sleep 5; run "no load ($n)"; done
echo
echo "instances left in moto:"
.venv/bin/python - "$moto_port" <<'PY'
import sys, boto3
ec2 = boto3.client("ec2", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="eu-west-1",
                   aws_access_key_id="x", aws_secret_access_key="x")
for r in ec2.describe_instances()["Reservations"]:
    for i in r["Instances"]:
        print("   ", i["InstanceId"], i["State"]["Name"])
PY
