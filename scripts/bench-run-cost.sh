#!/usr/bin/env bash
# Benchmark (not a test): what one no-op run costs, as a whole process, median of R runs.
#
# 1. Against moto on loopback with N instances (default 1,000) in one security group, three
#    commands A/B interleaved: this tool's no-op run; the script users write instead (the AWS
#    CLI's describe-instances, a Jinja2 render, a file compare; installed into .venv-bench); and
#    the bare DescribeInstances round trip with curl (signed, same filters). Wall time, CPU time
#    (user + sys) and peak RSS of each, and the ratios.
# 2. The tool's own cost with no network: 10,000 and 100,000 servers from the exec provider,
#    in pools of 10,000 (the bound of scaling.max), a real HAProxy (Debian's) serving them on
#    loopback with its admin socket, so `show stat` is read and parsed on every run. The pools
#    scale (min = max = their size, so the run holds): samples and their counters are kept in
#    the state as in production, and saved by every run.
#
# Usage: scripts/bench-run-cost.sh [RUNS=5] [INSTANCES=1000] [SERVERS="10000 100000"]
# Builds the release binary if needed (12-19 min cold). Prints tables; takes ~5 minutes warm.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
runs=${1:-5}
instances=${2:-1000}
servers=${3:-10000 100000}

if [ "${HAPROXY_AUTOSCALER_NETNS:-}" != 1 ]; then
    # The users' script's tools, beside the test venv (they need the network to install).
    if [ ! -x .venv-bench/bin/aws ]; then
        python3 -m venv .venv-bench
        .venv-bench/bin/pip install -q --disable-pip-version-check awscli==1.36.* jinja2==3.1.*
    fi
fi
CARGO_PROFILE=release prepare_and_isolate "$0" "$@"

bin=$HAPROXY_AUTOSCALER_BIN
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "binary:  $bin"
echo

# One measured run: appends "wall user sys maxrss_kib" to $work/times/LABEL.
measure() {
    local label=$1; shift
    mkdir -p "$work/times"
    /usr/bin/time -f '%e %U %S %M' -a -o "$work/times/$label" "$@" >/dev/null 2>"$work/last.err" || {
        echo "error: $label failed:" >&2; cat "$work/last.err" >&2; return 1
    }
}

# Prints the medians of LABEL's runs and keeps them for ratios.
medians() {
    python3 - "$work/times" "$@" <<'PY'
import json, os, statistics, sys
folder, labels = sys.argv[1], sys.argv[2:]
out = {}
for label in labels:
    rows = [list(map(float, line.split())) for line in open(os.path.join(folder, label))
            if line.strip() and not line.startswith("Command")]
    wall = statistics.median(r[0] for r in rows)
    cpu = statistics.median(r[1] + r[2] for r in rows)
    rss = statistics.median(r[3] for r in rows) / 1024
    out[label] = (wall, cpu, rss, len(rows))
    print(f"{label:<44} {wall:8.3f} s {cpu:8.3f} s {rss:9.1f} MiB   ({len(rows)} runs)")
json.dump(out, open(os.path.join(folder, "medians.json"), "w"))
PY
}

# --- 1. moto, N instances ------------------------------------------------------------------
start_moto "$work"
pids+=("$moto_pid")
endpoint=http://127.0.0.1:$moto_port
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=eu-west-1
export AWS_EC2_METADATA_DISABLED=true HOME="$work"
moto_launch "$moto_port" "$instances"
mkdir -p "$work/state" "$work/haproxy" "$work/users"
moto_config "$work" 'region = "eu-west-1"' >"$work/config.toml"
"$bin" --config "$work/config.toml" -q    # the first run installs haproxy.cfg

# What users write instead: list, render, compare, install and reload only on a change.
cat >"$work/users/render.py" <<'PY'
import json, sys, jinja2
reservations = json.load(open(sys.argv[1]))
servers = sorted((i["InstanceId"], i["PrivateIpAddress"]) for r in reservations
                 for i in r["Instances"] if i.get("PrivateIpAddress"))
template = jinja2.Template(open(sys.argv[2]).read())
sys.stdout.write(template.render(servers=servers))
PY
cat >"$work/users/haproxy.cfg.j2" <<'J2'
global
    master-worker
    stats socket /run/haproxy/admin.sock mode 660 level admin expose-fd listeners
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend http
    bind :80
    default_backend web
backend web
    balance roundrobin
    option httpchk GET /
    default-server check inter 2s fall 3 rise 2
{% for id, ip in servers %}    server {{ id }} {{ ip }}:8080
{% endfor %}
J2
cat >"$work/users/sync.sh" <<SH
#!/usr/bin/env bash
set -euo pipefail
cd "$work/users"
$PWD/.venv-bench/bin/aws ec2 describe-instances --endpoint-url "$endpoint" --output json \\
    --filters Name=instance.group-name,Values=web Name=instance-state-name,Values=pending,running \\
    --query Reservations >reservations.json
$PWD/.venv-bench/bin/python render.py reservations.json haproxy.cfg.j2 >haproxy.cfg.new
if cmp -s haproxy.cfg.new haproxy.cfg; then
    rm haproxy.cfg.new
else
    haproxy -c -q -f haproxy.cfg.new && mv haproxy.cfg.new haproxy.cfg   # and reload
fi
SH
chmod +x "$work/users/sync.sh"
"$work/users/sync.sh" || { echo "error: the users' script failed" >&2; exit 1; }   # installs its haproxy.cfg

curl_describe=(curl -sS --fail --aws-sigv4 "aws:amz:eu-west-1:ec2" --user bench:bench "$endpoint/"
    -d 'Action=DescribeInstances&Version=2016-11-15&MaxResults=1000'
    -d 'Filter.1.Name=instance-state-name&Filter.1.Value.1=pending&Filter.1.Value.2=running'
    -d 'Filter.2.Name=instance.group-name&Filter.2.Value.1=web' -o /dev/null)

echo "1. no-op run against moto, $instances instances, median of $runs (A/B interleaved)"
for _ in $(seq "$runs"); do
    measure tool "$bin" --config "$work/config.toml" -q
    measure users-script "$work/users/sync.sh"
    measure curl "${curl_describe[@]}"
done
printf '%-44s %10s %10s %13s\n' "" wall "user+sys" "peak RSS"
medians tool users-script curl
python3 - "$work/times/medians.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
tool, users, curl = m["tool"], m["users-script"], m["curl"]
print(f"users' script / tool: CPU {users[1] / max(tool[1], 1e-3):.1f}x, wall {users[0] / tool[0]:.2f}x, RSS {users[2] / tool[2]:.1f}x")
print(f"tool / curl:          wall {tool[0] / curl[0]:.3f}x")
PY
kill "$moto_pid"
echo

# --- 2. exec provider, real HAProxy, no network beyond loopback -------------------------------
echo "2. no-op run, exec provider, a real HAProxy, median of $runs"
printf '%-44s %10s %10s %13s\n' "" wall "user+sys" "peak RSS"
labels=()
for n in $servers; do
    dir=$work/exec-$n
    mkdir -p "$dir/state" "$dir/haproxy"
    # Pools of at most 10,000 servers (the bound of scaling.max), one list file each.
    python3 - "$n" "$dir" <<'PY'
import json, sys
n, folder = int(sys.argv[1]), sys.argv[2]
for pool in range((n + 9999) // 10000):
    with open(f"{folder}/instances-{pool}.json", "w") as out:
        json.dump([{"id": f"web-{i:06d}", "address": f"127.0.{1 + i // 50000}.1",
                    "port": 10000 + i % 50000, "tags": {"Name": f"web-{i}"}}
                   for i in range(pool * 10000, min(n, (pool + 1) * 10000))], out)
PY
    # The default template, made to run unprivileged on loopback; no health checks (100,000 of
    # them would load the machine that is measured); server ids, as the README advises for
    # large backends.
    sed -e '/^    user haproxy/d; /^    group haproxy/d; /^    chroot /d; /^    log \/dev\/log/d' \
        -e "s|bind :80|bind 127.0.0.1:$(free_port)|" -e 's|default-server check |default-server |' \
        -e 's|server {{name}} {{address}}:{{port}}|& id {{position}}|' \
        templates/haproxy.cfg.hbs >"$dir/haproxy.cfg.hbs"
    cat >"$dir/config.toml" <<TOML
[state]
path = "$dir/state/state.json"
[haproxy]
config = "$dir/haproxy/haproxy.cfg"
template = "$dir/haproxy.cfg.hbs"
stats_socket = "$dir/haproxy/admin.sock"
check_command = ["haproxy", "-c", "-q", "-f", "{config}"]
reload_command = ["true"]
TOML
    for list in "$dir"/instances-*.json; do
        pool=$(basename "$list" .json)
        size=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$list")
        cat >>"$dir/config.toml" <<TOML
[[pool]]
name = "web${pool#instances-}"
port = 80
provider = "exec"
ready_check = "none"
[pool.exec]
list = ["cat", "$list"]
launch = ["false"]
terminate = ["false"]
[pool.scaling]
min = $size
max = $size
warmup_s = 0
scale_up_above = 100
scale_down_below = 10
TOML
    done
    "$bin" --config "$dir/config.toml" -q    # installs haproxy.cfg
    haproxy -W -D -q -f "$dir/haproxy/haproxy.cfg" -p "$dir/haproxy/pid"
    pids+=("$(cat "$dir/haproxy/pid")")
    "$bin" --config "$dir/config.toml" -q    # the first run with stats
    for _ in $(seq "$runs"); do
        measure "exec, $n servers" "$bin" --config "$dir/config.toml" -q
    done
    "$bin" --config "$dir/config.toml" -v 2>&1 | grep -E '^info: (load state|observe|plan and render|apply):' \
        | sed 's/^/    /' >"$dir/stages.txt"
    labels+=("exec, $n servers")
done
medians "${labels[@]}"
for n in $servers; do
    echo "  stages at $n servers (one -v run):"
    cat "$work/exec-$n/stages.txt"
done
