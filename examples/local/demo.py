#!/usr/bin/env python3
"""WORK IN PROGRESS (issue 4): not yet the README's demo, not run by CI.

Status, measured with `unshare -n python3 examples/local/demo.py --phase 15 --peak 120`: it
scales 1 → 5 → 1 with ~13 reloads, but requests fail (16 of 2,313 in one run, 34 of 3,500 in
another) and in one run the keep-alive clients stalled for ~12 s on the single starting backend
before any scale-up. Both need finding out before this becomes the demo.

The local end-to-end demo: HAProxy (master-worker) in front of loopback backends that the
tool launches and terminates through examples/local/provider.py, under a keep-alive load that
ramps up and back down. The tool runs every --period seconds, as cron would. Prints a live
table and a summary; with --summary FILE also writes the summary as JSON. Loopback only.
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

parser = argparse.ArgumentParser()
parser.add_argument("--binary", default=os.path.join(ROOT, "target/debug/haproxy-autoscaler"))
parser.add_argument("--period", type=float, default=2.0, help="seconds between runs of the tool")
parser.add_argument("--phase", type=float, default=30.0, help="seconds of each load phase")
parser.add_argument("--peak", type=float, default=120.0, help="peak offered requests per second")
parser.add_argument("--summary", help="write the summary as JSON to this file")
args = parser.parse_args()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


work = tempfile.mkdtemp(prefix="haproxy-autoscaler-demo-")
frontend = free_port()
env = dict(os.environ, DEMO_FRONTEND_PORT=str(frontend), LOCAL_POOL_DIR=os.path.join(work, "pool"),
           LOCAL_COST_MS="20", LOCAL_NOT_READY_FOR="2")
config = os.path.join(work, "config.toml")
provider = ["python3", os.path.join(HERE, "provider.py")]
with open(config, "w") as file:
    file.write(f"""
[state]
path = "{work}/state.json"
[haproxy]
config = "{work}/haproxy.cfg"
template = "{HERE}/haproxy.cfg.hbs"
stats_socket = "{work}/admin.sock"
check_command = ["haproxy", "-c", "-q", "-f", "{{config}}"]
master_socket = "{work}/master.sock"
[[pool]]
name = "web"
port = 80
provider = "exec"
ready_check = "http:/health"
[pool.exec]
list = {json.dumps(provider + ["list"])}
launch = {json.dumps(provider + ["launch"])}
terminate = {json.dumps(provider + ["terminate"])}
[pool.scaling]
min = 1
max = 5
metric = "request_rate"
policy = "threshold"
scale_up_above = 30
scale_down_below = 12
instance_ratio = 0.5
step_up = 1
step_down = 1
cooldown_s = 0
warmup_s = 0
drain_s = 6
""")
with open(os.path.join(work, "haproxy.cfg"), "w") as file:
    file.write(f"global\n    master-worker\n    stats socket {work}/admin.sock mode 600 level admin expose-fd listeners\n"
               f"defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n"
               f"frontend http\n    bind 127.0.0.1:{frontend}\n    default_backend web\nbackend web\n")
haproxy = subprocess.Popen(["haproxy", "-W", "-S", f"{work}/master.sock", "-f", f"{work}/haproxy.cfg"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

lock = threading.Lock()
stats = {"sent": 0, "failed": 0, "latencies": [], "window": []}
stop = threading.Event()
offered = [0.0]
started = time.monotonic()


def schedule(elapsed):
    """Ramp up over one phase, hold for one, ramp down over one, then idle for one."""
    p = args.phase
    if elapsed < p:
        return args.peak * elapsed / p
    if elapsed < 2 * p:
        return args.peak
    if elapsed < 3 * p:
        return args.peak * (3 * p - elapsed) / p
    return 2.0


def client(number, workers):
    connection = None
    next_at = time.monotonic() + number / max(1.0, args.peak)
    while not stop.is_set():
        rate = max(offered[0], 1.0) / workers
        now = time.monotonic()
        if next_at > now:
            time.sleep(min(next_at - now, 0.2))
            continue
        next_at = max(next_at + 1.0 / rate, now - 1.0)
        began = time.monotonic()
        ok = False
        try:
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", frontend, timeout=10)
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            ok = response.status < 500
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = None
        except (OSError, http.client.HTTPException):
            if connection is not None:
                connection.close()
            connection = None
        latency = time.monotonic() - began
        with lock:
            stats["sent"] += 1
            stats["failed"] += 0 if ok else 1
            stats["latencies"].append(latency)
            stats["window"].append(latency)


def percentile(values, q):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def pool_roles():
    try:
        with open(f"{work}/state.json") as file:
            pool = json.load(file)["pools"]["web"]
    except (OSError, KeyError, ValueError):
        return 0, 0, 0
    serving, draining = len(pool.get("in_service", [])), len(pool.get("draining", []))
    return serving, max(0, len(pool.get("servers", [])) - serving - draining), draining


total = 4 * args.phase
workers = 16
threads = [threading.Thread(target=client, args=(n, workers), daemon=True) for n in range(workers)]
reloads, actions_seen, most_servers = 0, [], 0
summary = {}
try:
    # Like a real deployment, traffic starts once the pool has a server in service.
    for _ in range(30):
        subprocess.run([args.binary, "--config", config, "-q"], env=env)
        if pool_roles()[0] >= 1:
            break
        time.sleep(1)
    started = time.monotonic()
    for thread in threads:
        thread.start()
    print(f"{'time':>5} {'offered':>8} {'serving':>8} {'booting':>8} {'draining':>9} {'p50 ms':>7} {'p99 ms':>7} {'failed':>7}  actions")
    next_run = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        if elapsed > total:
            break
        offered[0] = schedule(elapsed)
        if time.monotonic() >= next_run:
            next_run += args.period
            run = subprocess.run([args.binary, "--config", config], env=env, capture_output=True, text=True)
            lines = [line for line in run.stdout.splitlines() if line]
            if run.returncode != 0:
                lines.append(f"run failed (exit {run.returncode}): {run.stderr.strip().splitlines()[-1:]}")
            reloads += sum(1 for line in lines if line.startswith("reload haproxy"))
            actions_seen += lines
            short = [line.split(":")[0] for line in lines if not line.startswith(("install", "reload", "add server", "remove server"))]
            with lock:
                window, stats["window"] = stats["window"], []
                failed = stats["failed"]
            serving, booting, draining = pool_roles()
            most_servers = max(most_servers, serving)
            print(f"{elapsed:5.0f} {offered[0]:8.0f} {serving:8d} {booting:8d} {draining:9d} "
                  f"{percentile(window, 0.5) * 1000:7.1f} {percentile(window, 0.99) * 1000:7.1f} {failed:7d}  "
                  f"{'; '.join(short)}{' +reload' if any(l.startswith('reload') for l in lines) else ''}", flush=True)
        time.sleep(0.1)
finally:
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    serving, booting, draining = pool_roles()
    with lock:
        summary = {"requests": stats["sent"], "failed": stats["failed"], "reloads": reloads,
                   "most_servers_in_service": most_servers, "servers_at_end": serving,
                   "p50_ms": round(percentile(stats["latencies"], 0.5) * 1000, 1),
                   "p99_ms": round(percentile(stats["latencies"], 0.99) * 1000, 1),
                   "actions": actions_seen}
    haproxy.terminate()
    try:
        haproxy.wait(timeout=10)
    except subprocess.TimeoutExpired:
        haproxy.kill()
    listed = subprocess.run(provider + ["list"], env=env, capture_output=True, text=True).stdout or "[]"
    ids = [instance["id"] for instance in json.loads(listed)]
    subprocess.run(provider + ["terminate"], env=env, input=json.dumps({"pool": "web", "ids": ids}), text=True)
    shutil.rmtree(work, ignore_errors=True)

print(f"\nsummary: {summary['requests']} requests, {summary['failed']} failed, {summary['reloads']} reloads, "
      f"up to {summary['most_servers_in_service']} servers in service, {summary['servers_at_end']} at the end, "
      f"p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms")
if args.summary:
    with open(args.summary, "w") as file:
        json.dump(summary, file)
sys.exit(0)
