#!/usr/bin/env bash
# The tool's main job on a local default, no AWS account needed: starts moto (a mock EC2) on
# loopback, launches three instances in a security group, then runs haproxy-autoscaler with
# --plan and for real, terminates one instance and runs again. HAProxy's own `haproxy -c` checks
# every candidate; the reload command only prints, because moto's 10.x addresses are not real
# backends and nothing may connect to them. Runs inside a private network namespace when it can.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

prepare_and_isolate "$0" "$@"

bin=$HAPROXY_AUTOSCALER_BIN
work=$(mktemp -d)
start_moto "$work"
trap 'kill $moto_pid 2>/dev/null; rm -rf "$work"' EXIT
port=$moto_port

ec2() {
    .venv/bin/python - "$port" "$@" <<'PY'
import sys, boto3
port, action = sys.argv[1], sys.argv[2]
ec2 = boto3.client("ec2", endpoint_url=f"http://127.0.0.1:{port}", region_name="eu-west-1",
                   aws_access_key_id="demo", aws_secret_access_key="demo")
if action == "launch":
    ec2.create_security_group(GroupName="web", Description="demo web pool")
    out = ec2.run_instances(ImageId="ami-12345678", MinCount=3, MaxCount=3, SecurityGroups=["web"],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "role", "Value": "web"}]}])
    print(" ".join(sorted(i["InstanceId"] for i in out["Instances"])))
elif action == "terminate":
    ec2.terminate_instances(InstanceIds=[sys.argv[3]])
PY
}

mkdir -p "$work/etc" "$work/state" "$work/haproxy"
moto_config "$work" 'region = "eu-west-1"' 'tags = { role = "web" }' >"$work/etc/config.toml"

export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_EC2_METADATA_DISABLED=true
export HAPROXY_AUTOSCALER_CONFIG="$work/etc/config.toml"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

read -r -a ids <<<"$(ec2 launch)"
step "moto: launched ${ids[*]} in security group 'web'"
step "haproxy-autoscaler --plan   (prints the actions and the diff, changes nothing)"
"$bin" --plan
step "haproxy-autoscaler          (installs haproxy.cfg after haproxy -c, reloads)"
"$bin"
step "installed backend"
sed -n '/^backend/,$p' "$work/haproxy/haproxy.cfg"
step "haproxy-autoscaler          (nothing changed: prints nothing, no reload)"
"$bin"
echo "(exit $?)"
ec2 terminate "${ids[0]}"
step "moto: terminated ${ids[0]}; haproxy-autoscaler"
"$bin"
step "state file (jq-readable, mode $(stat -c %a "$work/state/state.json"))"
cat "$work/state/state.json"
