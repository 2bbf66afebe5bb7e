#!/usr/bin/env python3
"""haproxy-autoscaler exec provider for OpenStack, through the `openstack` CLI.

Usage in config.toml:

    [[pool]]
    name = "web"
    port = 8080
    provider = "exec"
    [pool.exec]
    list = ["/etc/haproxy-autoscaler/openstack-provider.py", "list", "web"]
    launch = ["/etc/haproxy-autoscaler/openstack-provider.py", "launch"]
    terminate = ["/etc/haproxy-autoscaler/openstack-provider.py", "terminate"]

Settings come from the environment (plus the usual OS_* variables or clouds.yaml for the CLI):
OPENSTACK_IMAGE, OPENSTACK_FLAVOR, OPENSTACK_NETWORK (all three needed to launch), and
OPENSTACK_KEY_NAME, OPENSTACK_SECURITY_GROUP (optional).

The tool's tags (haproxy-autoscaler:pool, haproxy-autoscaler:launch-token) are stored as server
properties (metadata), which `server list --long` reports. A server named after the launch token
is never created twice: a launch first looks for servers already carrying the token.
"""
import json
import os
import subprocess
import sys

POOL_TAG = "haproxy-autoscaler:pool"
TOKEN_TAG = "haproxy-autoscaler:launch-token"
STATES = {"BUILD": "pending", "ACTIVE": "running"}


def openstack(*args):
    out = subprocess.run(["openstack", *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out) if out.strip() else None


def properties(server):
    """`Properties` is a dict in recent clients and "k='v', k2='v2'" in older ones."""
    value = server.get("Properties") or {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    pairs = {}
    for item in str(value).split(", "):
        if "=" in item:
            key, _, val = item.partition("=")
            pairs[key.strip()] = val.strip().strip("'")
    return pairs


def address(server):
    """The first address of `Networks`: a dict of lists, or "net=10.0.0.5, 2001:db8::5"."""
    networks = server.get("Networks") or {}
    if isinstance(networks, dict):
        for addresses in networks.values():
            if addresses:
                return addresses[0]
        return None
    for part in str(networks).replace(";", ",").split(","):
        part = part.split("=")[-1].strip()
        if part:
            return part
    return None


def pool_servers(pool):
    servers = openstack("server", "list", "--long", "-f", "json")
    for server in servers:
        tags = properties(server)
        if tags.get(POOL_TAG) == pool:
            yield server, tags


def list_instances(pool):
    instances = []
    for server, tags in pool_servers(pool):
        state = STATES.get(server.get("Status", ""))
        ip = address(server)
        if state is None or ip is None:
            continue
        instances.append({"id": server["ID"], "address": ip, "state": state, "tags": tags})
    return instances


def main():
    action = sys.argv[1]
    if action == "list":
        if len(sys.argv) != 3:
            sys.exit("usage: openstack-provider.py list POOL")
        json.dump(list_instances(sys.argv[2]), sys.stdout)
    elif action == "launch":
        request = json.load(sys.stdin)
        token = request["token"]
        existing = [s["ID"] for s, tags in pool_servers(request["pool"]) if tags.get(TOKEN_TAG) == token]
        ids = list(existing)
        for index in range(len(existing), request["count"]):
            args = ["server", "create", "-f", "json",
                    "--image", os.environ["OPENSTACK_IMAGE"],
                    "--flavor", os.environ["OPENSTACK_FLAVOR"],
                    "--network", os.environ["OPENSTACK_NETWORK"]]
            if os.environ.get("OPENSTACK_KEY_NAME"):
                args += ["--key-name", os.environ["OPENSTACK_KEY_NAME"]]
            if os.environ.get("OPENSTACK_SECURITY_GROUP"):
                args += ["--security-group", os.environ["OPENSTACK_SECURITY_GROUP"]]
            for key, value in request["tags"].items():
                args += ["--property", f"{key}={value}"]
            args.append(f"{request['pool']}-{token}-{index}")
            ids.append(openstack(*args)["id"])
        json.dump(ids, sys.stdout)
    elif action == "terminate":
        request = json.load(sys.stdin)
        if request["ids"]:
            subprocess.run(["openstack", "server", "delete", *request["ids"]], check=True)
    else:
        sys.exit(f"unknown action {action!r}: expected list, launch or terminate")


if __name__ == "__main__":
    main()
