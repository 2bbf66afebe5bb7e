#!/usr/bin/env python3
"""An exec provider whose "instances" are backend.py processes on loopback (free ports).

Its state lives in $LOCAL_POOL_DIR/instances.json. A launched backend costs $LOCAL_COST_MS per
request to / (default 10) and $LOCAL_SLOW_MS per request to /slow (default 1500), and answers
503 for its first $LOCAL_NOT_READY_FOR seconds (default 0).
`list` reports a backend "pending" until its port accepts connections, and forgets dead ones;
with $LOCAL_KEEP_DEAD set it keeps listing them "running", as a cloud lists an instance whose
service crashed (HAProxy's health checks then mark it DOWN).
Speaks the exec provider JSON documented in the book (docs/src/configuration.md).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

from ports import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
DIR = os.environ["LOCAL_POOL_DIR"]
STATE = os.path.join(DIR, "instances.json")


def load():
    if not os.path.exists(STATE):
        return {"next": 1, "instances": []}
    with open(STATE) as file:
        return json.load(file)


def save(state):
    temporary = STATE + ".tmp"
    with open(temporary, "w") as file:
        json.dump(state, file)
    os.replace(temporary, STATE)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) is not alive either.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def accepting(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def main():
    os.makedirs(DIR, exist_ok=True)
    state = load()
    action = sys.argv[1]
    if action == "list":
        if not os.environ.get("LOCAL_KEEP_DEAD"):
            state["instances"] = [i for i in state["instances"] if alive(i["pid"])]
            save(state)
        json.dump([{"id": i["id"], "address": "127.0.0.1", "port": i["port"],
                    "state": "running" if accepting(i["port"]) or not alive(i["pid"]) else "pending",
                    "launch_time": i["launch_time"], "tags": i["tags"]}
                   for i in state["instances"]], sys.stdout)
    elif action == "launch":
        request = json.load(sys.stdin)
        ids = []
        for _ in range(request["count"]):
            ident, port = f"local-{state['next']}", free_port({i["port"] for i in state["instances"]})
            state["next"] += 1
            process = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "backend.py"), "--port", str(port), "--id", ident,
                 "--cost-ms", os.environ.get("LOCAL_COST_MS", "10"),
                 "--slow-ms", os.environ.get("LOCAL_SLOW_MS", "1500"),
                 "--not-ready-for", os.environ.get("LOCAL_NOT_READY_FOR", "0"),
                 "--log", os.path.join(DIR, f"{ident}.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
            launched = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            state["instances"].append({"id": ident, "port": port, "pid": process.pid,
                                       "launch_time": launched, "tags": request["tags"]})
            ids.append(ident)
        save(state)
        json.dump(ids, sys.stdout)
    elif action == "terminate":
        request = json.load(sys.stdin)
        for instance in state["instances"]:
            if instance["id"] in request["ids"] and alive(instance["pid"]):
                os.kill(instance["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 5
        for instance in state["instances"]:
            while instance["id"] in request["ids"] and alive(instance["pid"]) and time.monotonic() < deadline:
                time.sleep(0.05)
        state["instances"] = [i for i in state["instances"] if i["id"] not in request["ids"]]
        save(state)
    else:
        sys.exit(f"unknown action {action!r}: expected list, launch or terminate")


if __name__ == "__main__":
    main()
