# Shared by the demo and benchmark scripts; source it from the repository root.

export PATH="$PATH:/usr/sbin:/sbin"

# HAPROXY names the HAProxy to run instead of the one on PATH (Debian's): a version of the
# matrix, say `HAPROXY=target/haproxy/3.0.11/haproxy` (scripts/build-haproxy.sh builds them).
if [ -n "${HAPROXY:-}" ]; then
    if [ ! -x "$HAPROXY" ] || [ "$(basename "$HAPROXY")" != haproxy ]; then
        echo "error: HAPROXY=$HAPROXY is not an executable file named haproxy" >&2
        exit 2
    fi
    PATH="$(cd "$(dirname "$HAPROXY")" && pwd):$PATH"
    export PATH
fi

# Re-executes the calling script inside a private network namespace where only loopback exists
# (when this machine allows it), so nothing can reach moto's made-up 10.x addresses.
# Usage: enter_private_network "$0" "$@"   (returns when already inside)
enter_private_network() {
    [ "${HAPROXY_AUTOSCALER_NETNS:-}" = 1 ] && return 0
    export HAPROXY_AUTOSCALER_NETNS=1
    if unshare -n true 2>/dev/null; then
        exec unshare -n -- bash -c 'ip link set lo up && exec "$0" "$@"' "$@"
    fi
    echo "warning: unshare -n is not available (not root?); running without network isolation" >&2
}

# The preamble of the demo scripts: outside the namespace, install what is needed and build
# (both need the network); then continue inside a private network namespace.
# Sets HAPROXY_AUTOSCALER_BIN, the binary it built, where cargo puts it ($CARGO_TARGET_DIR, or
# target/): every script and example runs that one (tests/integration/scripts.rs checks that
# none names target/ itself).
# Usage: prepare_and_isolate "$0" "$@"   [CARGO_PROFILE=release for a release build]
prepare_and_isolate() {
    export HAPROXY_AUTOSCALER_BIN
    HAPROXY_AUTOSCALER_BIN=$(realpath -m "${CARGO_TARGET_DIR:-target}")/${CARGO_PROFILE:-debug}/haproxy-autoscaler
    if [ "${HAPROXY_AUTOSCALER_NETNS:-}" != 1 ]; then
        scripts/install-deps.sh
        if [ "${CARGO_PROFILE:-debug}" = release ]; then
            cargo build --release --locked --quiet
        else
            cargo build --locked --quiet
        fi
    fi
    enter_private_network "$@"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts moto on a free loopback port; sets moto_port and moto_pid. $1: a folder for its log.
start_moto() {
    moto_port=$(free_port)
    .venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >"$1/moto.log" 2>&1 &
    moto_pid=$!
    for _ in $(seq 300); do
        (echo >"/dev/tcp/127.0.0.1/$moto_port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "error: moto did not start; see $1/moto.log" >&2
    return 1
}

# Launches $2 instances in a new security group `web` of the moto at port $1 (in batches).
moto_launch() {
    .venv/bin/python - "$1" "$2" <<'PY'
import sys, boto3
ec2 = boto3.client("ec2", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="eu-west-1",
                   aws_access_key_id="bench", aws_secret_access_key="bench")
ec2.create_security_group(GroupName="web", Description="bench")
left = int(sys.argv[2])
while left:
    n = min(left, 100)
    ec2.run_instances(ImageId="ami-12345678", MinCount=n, MaxCount=n, SecurityGroups=["web"])
    left -= n
PY
}

# Prints a one-pool config for a deployment under folder $1, against moto.
# $2: extra [aws] lines; $3: extra [pool.discover] lines.
moto_config() {
    cat <<TOML
[state]
path = "$1/state/state.json"

[haproxy]
config = "$1/haproxy/haproxy.cfg"
template = "$PWD/templates/haproxy.cfg.hbs"
stats_socket = "$1/haproxy/admin.sock"
check_command = ["haproxy", "-c", "-q", "-f", "{config}"]
reload_command = ["true"]   # no live HAProxy here: moto's addresses are not real backends

[aws]
endpoint_url = "http://127.0.0.1:$moto_port"
${2:-}

[[pool]]
name = "web"
port = 8080
[pool.discover]
security_group = "web"
${3:-}
TOML
}
