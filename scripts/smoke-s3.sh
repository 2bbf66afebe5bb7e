#!/usr/bin/env bash
# Opt-in smoke test of the shared state against a real S3 (not run by CI or the test suite: it
# needs an AWS account). moto checks an ETag and then writes without a lock between; this checks
# that real S3 accepts the conditional writes the tool sends and that two nodes racing on one
# object take each decision once.
#
# When: before a release, and after a change to src/store/ or the AWS SDK versions.
# Needs: a checkout and a Rust toolchain (it builds the debug binary), python3, and a region
# (AWS_REGION or the profile's). Success is two `ok:` lines and exit 0; a failure prints
# `FAIL: ...` and exits 1.
#
# Usage: scripts/smoke-s3.sh s3://BUCKET/PREFIX
#   AWS credentials and region from the environment (AWS_PROFILE, AWS_REGION, ...);
#   SMOKE_ENDPOINT_URL=http://... points it at an S3-compatible store instead. The caller
#   needs s3:GetObject, s3:PutObject and s3:DeleteObject on PREFIX/*, and s3:ListBucket on BUCKET.
#   Writes one object PREFIX/smoke-<random>.json and removes it at the end (with the AWS CLI or
#   boto3 when either is installed; otherwise it prints the object to remove).
#
# Two node configs share the object and one exec provider (tests/fixtures/exec-provider.py, its
# instances on loopback in a local file; nothing is launched in EC2). Node a runs (the pool's
# min = 2 launches 2: the first write with If-None-Match: *), node b runs (nothing to do), then
# min becomes 3 and both nodes run at once, five rounds: exactly one more instance may result.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/smoke-s3.sh s3://BUCKET/PREFIX}
[[ $target == s3://?*/* ]] || { echo "error: $target is not s3://BUCKET/PREFIX" >&2; exit 2; }
cargo build --locked --quiet
bin=$(realpath "${CARGO_TARGET_DIR:-target}")/debug/haproxy-autoscaler
work=$(mktemp -d)
prefix=${target#s3://*/}; prefix=${prefix%/}
key="${prefix:+$prefix/}smoke-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n').json"
bucket=${target#s3://}; bucket=${bucket%%/*}
object="s3://$bucket/$key"
provider=$PWD/tests/fixtures/exec-provider.py
export EXEC_PROVIDER_STATE=$work/instances.json

remove_object() {
    if command -v aws >/dev/null; then
        aws s3 rm "$object" >/dev/null && echo "removed $object"
    elif python3 -c 'import boto3' 2>/dev/null; then
        python3 -c 'import sys, boto3; boto3.client("s3").delete_object(Bucket=sys.argv[1], Key=sys.argv[2])' \
            "$bucket" "$key" && echo "removed $object"
    else
        echo "remove $object by hand (no AWS CLI or boto3 here)"
    fi
    rm -rf "$work"
}
trap remove_object EXIT

node_config() {   # $1: node name, $2: min
    mkdir -p "$work/$1"
    cat <<TOML
[state]
path = "$object"
local_path = "$work/$1/state.json"
node = "$1"
[haproxy]
config = "$work/$1/haproxy.cfg"
template = "$PWD/templates/haproxy.cfg.hbs"
stats_socket = "$work/$1/missing.sock"
check_command = ["true", "{config}"]
reload_command = ["true"]
${SMOKE_ENDPOINT_URL:+[aws]
endpoint_url = \"$SMOKE_ENDPOINT_URL\"}
[[pool]]
name = "web"
port = 80
provider = "exec"
ready_check = "none"
[pool.exec]
list = ["python3", "$provider", "list"]
launch = ["python3", "$provider", "launch"]
terminate = ["python3", "$provider", "terminate"]
[pool.scaling]
min = $2
max = 5
step_up = 3
scale_up_above = 1000
scale_down_below = 0
warmup_s = 0
cooldown_s = 0
TOML
}

count() { python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$EXEC_PROVIDER_STATE"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

for node in a b; do node_config "$node" 2 >"$work/$node.toml"; done
"$bin" --config "$work/a.toml" -q || fail "node a's first run"
[ "$(count)" = 2 ] || fail "node a launched $(count), not 2"
"$bin" --config "$work/b.toml" -q || fail "node b's first run"
[ "$(count)" = 2 ] || fail "node b launched again: $(count) instances"
echo "ok: the first write (If-None-Match: *) and the next ones (If-Match) were accepted"

for node in a b; do node_config "$node" 3 >"$work/$node.toml"; done
raced=0
for round in 1 2 3 4 5; do
    "$bin" --config "$work/a.toml" -q & a=$!
    "$bin" --config "$work/b.toml" -q & b=$!
    for pid in $a $b; do
        code=0; wait "$pid" || code=$?
        case $code in
            0) ;;
            75) raced=$((raced + 1)) ;;
            *) fail "round $round: exit $code" ;;
        esac
    done
done
[ "$(count)" = 3 ] || fail "$(count) instances, not 3: a decision was taken twice"
diff <(grep ' server ' "$work/a/haproxy.cfg") <(grep ' server ' "$work/b/haproxy.cfg") \
    || fail "the nodes render different servers"
echo "ok: 5 rounds of both nodes at once, $raced lost race(s), 3 instances, the same servers on both"
