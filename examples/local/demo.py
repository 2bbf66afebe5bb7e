#!/usr/bin/env python3
"""The local end-to-end demo: HAProxy (master-worker, seamless reloads through the master
socket) in front of loopback backends that haproxy-autoscaler launches, drains and terminates
through examples/local/provider.py, under keep-alive load that ramps up, holds, ramps down and
idles. The tool runs every --period seconds, as cron would run it every minute.

Prints a live table and a summary line with the failed-request count; --summary FILE also writes
the summary as JSON (what tests/integration/local_demo.rs and scripts/bench-reloads.sh read).
Loopback only; every process it starts is stopped before it exits.

The load: --clients keep-alive clients share the offered rate of GET / (20 ms of serialized work
each on a backend, so one backend serves 50 requests/s and more queues), and --slow-clients
clients send GET /slow (1.5 s each, a long download) back to back, so that servers being drained
have requests in flight. Like real clients, a client closes a connection it has left idle for
CLIENT_IDLE_S, shorter than HAProxy's `timeout http-keep-alive`, and never retries: any
connection error or 5xx counts as a failed request.
"""
import argparse
import http.client
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from ports import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLIENT_IDLE_S = 4.0
IDLE_RATE = 2.0

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
# scripts/demo.sh builds it and says where (HAPROXY_AUTOSCALER_BIN, under $CARGO_TARGET_DIR).
parser.add_argument("--binary", default=os.environ.get("HAPROXY_AUTOSCALER_BIN"))
parser.add_argument("--period", type=float, default=2.0, help="seconds between runs of the tool")
parser.add_argument("--phase", type=float, default=30.0, help="seconds of each of the four load phases")
parser.add_argument("--peak", type=float, default=150.0, help="peak offered requests per second")
parser.add_argument("--cycles", type=int, default=1, help="ramp up/down cycles (the benchmark runs many)")
parser.add_argument("--drain-s", type=int, default=10, help="the pool's drain_s")
parser.add_argument("--clients", type=int, default=32)
parser.add_argument("--slow-clients", type=int, default=6)
parser.add_argument("--reload-phase", type=float, default=0.0,
                    help="after the cycles, seconds of constant load with a reload forced on every run "
                         "(the benchmark's measure of what a reload alone costs)")
parser.add_argument("--reload-rate", type=float, default=20.0, help="offered requests per second in that phase")
parser.add_argument("--apply", choices=["runtime", "reload"], default="runtime",
                    help="the config's haproxy.apply: server changes through the runtime API, or a reload for each")
parser.add_argument("--summary", help="write the summary as JSON to this file")
parser.add_argument("--work", help="use this folder (kept) instead of a temporary one (removed)")
parser.add_argument("--quiet", action="store_true", help="no live table")
args = parser.parse_args()
if args.binary is None:
    parser.error("run scripts/demo.sh (it builds the binary and says where), or give --binary")


if args.work:
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
else:
    work = tempfile.mkdtemp(prefix="haproxy-autoscaler-demo-")
frontend = free_port()
env = dict(os.environ, DEMO_FRONTEND_PORT=str(frontend), LOCAL_POOL_DIR=os.path.join(work, "pool"),
           LOCAL_COST_MS="20", LOCAL_SLOW_MS="1500", LOCAL_NOT_READY_FOR=str(max(3.0, 2 * args.period)))
config = os.path.join(work, "config.toml")
template = os.path.join(work, "haproxy.cfg.hbs")
shutil.copyfile(os.path.join(HERE, "haproxy.cfg.hbs"), template)
provider = [sys.executable, os.path.join(HERE, "provider.py")]
with open(os.path.join(HERE, "config.toml")) as file:
    text = file.read()
for name, value in {"@WORK@": work, "@PROVIDER@": provider[1], "@PYTHON@": provider[0],
                    "@DRAIN_S@": str(args.drain_s), "@APPLY@": args.apply}.items():
    text = text.replace(name, value)
with open(config, "w") as file:
    file.write(text)
# HAProxy starts with an empty backend; the tool's first run renders the real config.
with open(os.path.join(work, "haproxy.cfg"), "w") as file:
    file.write(f"global\n    master-worker\n    stats socket {work}/admin.sock mode 600 level admin expose-fd listeners\n"
               f"defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n"
               f"frontend http\n    bind 127.0.0.1:{frontend}\n    default_backend web\nbackend web\n")

lock = threading.Lock()
stop = threading.Event()
offered = [0.0]
# Fast requests: (start, latency); failures: (elapsed, what).
fast, failures, window = [], [], []
tokens = queue.Queue(maxsize=args.clients)
counts = {"sent": 0, "slow": 0}
cycle_s = 4 * args.phase
started = time.monotonic()


def schedule(elapsed):
    """Per cycle: ramp up over one phase, hold for one, ramp down over one, then idle for one."""
    p, t = args.phase, elapsed % cycle_s
    if t < p:
        return max(IDLE_RATE, args.peak * t / p)
    if t < 2 * p:
        return args.peak
    if t < 3 * p:
        return max(IDLE_RATE, args.peak * (3 * p - t) / p)
    return IDLE_RATE


class Client:
    """One keep-alive client connection, closed after CLIENT_IDLE_S idle or a `Connection: close`."""

    def __init__(self):
        self.connection, self.used = None, 0.0

    def close_if_idle(self):
        if self.connection is not None and time.monotonic() - self.used > CLIENT_IDLE_S:
            self.close()

    def get(self, path):
        now = time.monotonic()
        self.close_if_idle()
        try:
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", frontend, timeout=30)
            self.connection.request("GET", path)
            response = self.connection.getresponse()
            response.read()
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            error = None if response.status < 500 else f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as problem:
            self.close()
            error = f"{type(problem).__name__}: {problem}"
        self.used = time.monotonic()
        if error:
            with lock:
                failures.append((round(now - started, 3), path, error))
        return error is None

    def close(self):
        if self.connection is not None:
            self.connection.close()
        self.connection = None


def pacer():
    """Hands out one token per request at the offered rate, whichever client is free takes it.
    Tokens that no client is free to take within a second are dropped (the load is closed-loop
    beyond --clients requests in flight)."""
    last = time.monotonic()
    while not stop.is_set():
        due = last + 1.0 / offered[0]
        now = time.monotonic()
        if now < due:
            time.sleep(min(due - now, 0.02))
            continue
        last = max(due, now - 1.0)
        try:
            tokens.put_nowait(now)
        except queue.Full:
            pass


def fast_client(_):
    client = Client()
    while not stop.is_set():
        try:
            tokens.get(timeout=0.2)
        except queue.Empty:
            client.close_if_idle()
            continue
        began = time.monotonic()
        client.get("/")
        latency = time.monotonic() - began
        with lock:
            counts["sent"] += 1
            fast.append((began, latency))
            window.append(latency)
    client.close()


def slow_client(_):
    client = Client()
    while not stop.is_set():
        client.get("/slow")
        with lock:
            counts["slow"] += 1
    client.close()


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


def run_tool():
    began = time.monotonic()
    run = subprocess.run([args.binary, "--config", config], env=env, capture_output=True, text=True)
    lines = [line for line in run.stdout.splitlines() if line]
    if run.returncode != 0:
        lines.append(f"run failed (exit {run.returncode}): {run.stderr.strip()}")
    return {"at": time.time(), "elapsed": round(began - started, 3), "took": round(time.monotonic() - began, 3),
            "exit": run.returncode, "lines": lines}


def short(lines):
    """The table's action column: what changed, without the reasons."""
    words = []
    for line in lines:
        if line.startswith(("launch ", "drain ", "terminate ", "run failed")):
            words.append(line.split(" (")[0].split(":")[0])
    if any(line.startswith("reload haproxy") for line in lines):
        words.append("reload")
    if any(line.startswith("apply through the runtime API") for line in lines):
        words.append("runtime API")
    return "; ".join(words)


def master_reloads():
    """The master's reload count (`show proc`), HAProxy's own word on how often it reloaded."""
    try:
        with socket.socket(socket.AF_UNIX) as master:
            master.settimeout(5)
            master.connect(f"{work}/master.sock")
            master.sendall(b"show proc\n")
            master.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := master.recv(65536):
                answer += chunk
    except OSError:
        return None
    for line in answer.decode().splitlines():
        if " master " in f" {line} ":
            return int(line.split()[2])
    return None


haproxy = subprocess.Popen(["haproxy", "-W", "-S", f"{work}/master.sock", "-f", f"{work}/haproxy.cfg"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
runs, most_servers, threads = [], 0, []
reloads_before_load = reloads_during_load = None
try:
    # Like a real deployment, traffic starts once the pool has a server in service.
    deadline = time.monotonic() + 60
    while pool_roles()[0] < 1:
        runs.append(run_tool())
        if runs[-1]["exit"] != 0 or time.monotonic() > deadline:
            sys.exit(f"demo: the pool never got a server in service: {runs[-1]['lines']}")
        time.sleep(args.period / 2)
    started = time.monotonic()
    load_runs_from = len(runs)
    reloads_before_load = master_reloads()
    offered[0] = schedule(0)
    threads = [threading.Thread(target=pacer, daemon=True)]
    threads += [threading.Thread(target=fast_client, args=(n,), daemon=True) for n in range(args.clients)]
    threads += [threading.Thread(target=slow_client, args=(n,), daemon=True) for n in range(args.slow_clients)]
    for thread in threads:
        thread.start()
    if not args.quiet:
        print(f"{'time':>5} {'offered':>8} {'served':>7} {'serving':>8} {'booting':>8} {'draining':>9} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'failed':>7}  actions", flush=True)
    next_run, sent_before, forced = time.monotonic(), [0], 0

    def tick(rate, phase):
        """Waits for the next period, runs the tool once and prints a row."""
        global next_run, most_servers
        offered[0] = rate
        while time.monotonic() < next_run:
            time.sleep(0.05)
        since = time.monotonic() - next_run + args.period
        next_run += args.period
        run = run_tool()
        run["phase"] = phase
        runs.append(run)
        serving, booting, draining = pool_roles()
        most_servers = max(most_servers, serving)
        with lock:
            latencies, window[:] = list(window), []
            sent, failed = counts["sent"], len(failures)
        served, sent_before[0] = (sent - sent_before[0]) / max(since, 0.001), sent
        if not args.quiet:
            print(f"{run['elapsed']:5.0f} {offered[0]:8.0f} {served:7.0f} {serving:8d} {booting:8d} {draining:9d} "
                  f"{percentile(latencies, 0.5) * 1000:7.1f} {percentile(latencies, 0.99) * 1000:7.1f} "
                  f"{failed:7d}  {short(run['lines'])}", flush=True)

    while time.monotonic() - started < cycle_s * args.cycles:
        tick(schedule(time.monotonic() - started), "cycles")
    reload_phase_from = time.monotonic()
    with open(os.path.join(HERE, "haproxy.cfg.hbs")) as file:
        original = file.read()
    # Every other run changes the rendered config (a comment), so it reloads; the runs between
    # leave quiet seconds to compare with.
    tick_number = 0
    while time.monotonic() - reload_phase_from < args.reload_phase:
        tick_number += 1
        if tick_number % 2:
            forced += 1
            # A line of the backend's own (not a server line): a change of structure, which
            # reloads whatever haproxy.apply says.
            with open(template + ".tmp", "w") as file:
                file.write(f"{original}    timeout tarpit {forced}s\n")
            os.replace(template + ".tmp", template)
        tick(args.reload_rate, "forced")
    reloads_during_load = None if reloads_before_load is None else master_reloads() - reloads_before_load
finally:
    stop.set()
    for thread in threads:
        thread.join(timeout=35)
    haproxy.terminate()
    try:
        haproxy.wait(timeout=10)
    except subprocess.TimeoutExpired:
        haproxy.kill()
    listed = subprocess.run(provider + ["list"], env=env, capture_output=True, text=True).stdout or "[]"
    ids = [instance["id"] for instance in json.loads(listed)]
    subprocess.run(provider + ["terminate"], env=env, input=json.dumps({"pool": "web", "ids": ids}), text=True)

# Latency during reloads: requests that started while a run that reloaded was under way or in the
# second after it; the rest is steady.
reload_windows = [(started + run["elapsed"], started + run["elapsed"] + run["took"] + 1.0)
                  for run in runs[load_runs_from:] if any(l.startswith("reload haproxy") for l in run["lines"])]
during = [lat for began, lat in fast if any(a <= began <= b for a, b in reload_windows)]
steady = [lat for began, lat in fast if not any(a <= began <= b for a, b in reload_windows)]
# Latency while servers join and leave: requests that started while a run that changed the
# backend's servers (through the runtime API or a reload) was under way or in the second after it.
CHANGES = ("reload haproxy", "apply through the runtime API")
cycle_runs = [run for run in runs[load_runs_from:] if run.get("phase") == "cycles"]
change_windows = [(started + run["elapsed"], started + run["elapsed"] + run["took"] + 1.0)
                  for run in cycle_runs if any(l.startswith(CHANGES) for l in run["lines"])]
cycles_end = started + cycle_s * args.cycles
in_cycles = [(began, lat) for began, lat in fast if began < cycles_end]
changing = [lat for began, lat in in_cycles if any(a <= began <= b for a, b in change_windows)]
# The forced-reload phase: the same constant load, requests during a reload against the rest.
forced_windows = [(started + run["elapsed"], started + run["elapsed"] + run["took"] + 1.0)
                  for run in runs if run.get("phase") == "forced"
                  and any(l.startswith("reload haproxy") for l in run["lines"])]
phase_from = started + min((run["elapsed"] for run in runs if run.get("phase") == "forced"), default=1e12)
in_phase = [(began, lat) for began, lat in fast if began >= phase_from]
forced_during = [lat for began, lat in in_phase if any(a <= began <= b for a, b in forced_windows)]
forced_steady = [lat for began, lat in in_phase if not any(a <= began <= b for a, b in forced_windows)]
serving, booting, draining = pool_roles()
summary = {
    "requests": counts["sent"] + counts["slow"], "slow_requests": counts["slow"], "failed": len(failures),
    "failures": failures[:20], "apply": args.apply, "reloads": len(reload_windows),
    "master_reloads": reloads_during_load,
    "runtime_applies": sum(any(l.startswith("apply through the runtime API") for l in run["lines"])
                           for run in runs[load_runs_from:]),
    "cycle_reloads": sum(any(l.startswith("reload haproxy") for l in run["lines"]) for run in cycle_runs),
    "cycle_changes": len(change_windows),
    "p50_cycles_ms": round(percentile([lat for _, lat in in_cycles], 0.5) * 1000, 1),
    "p99_cycles_ms": round(percentile([lat for _, lat in in_cycles], 0.99) * 1000, 1),
    "p99_during_changes_ms": round(percentile(changing, 0.99) * 1000, 1),
    "launches": sum(l.startswith("launch ") for run in runs for l in run["lines"]),
    "drains": [l for run in runs for l in run["lines"] if l.startswith("drain server")],
    "terminates": sum(l.startswith("terminate instance") for run in runs for l in run["lines"]),
    "failed_runs": sum(run["exit"] != 0 for run in runs),
    "most_servers_in_service": most_servers, "servers_at_end": serving + booting + draining,
    "p50_ms": round(percentile([lat for _, lat in fast], 0.5) * 1000, 1),
    "p99_ms": round(percentile([lat for _, lat in fast], 0.99) * 1000, 1),
    "p99_during_reloads_ms": round(percentile(during, 0.99) * 1000, 1),
    "p99_steady_ms": round(percentile(steady, 0.99) * 1000, 1),
    "forced_reloads": len(forced_windows),
    "forced_requests": len(in_phase),
    "p50_forced_reload_ms": round(percentile(forced_during, 0.5) * 1000, 1),
    "p99_forced_reload_ms": round(percentile(forced_during, 0.99) * 1000, 1),
    "p99_forced_steady_ms": round(percentile(forced_steady, 0.99) * 1000, 1),
    "max_forced_reload_ms": round(max(forced_during, default=0.0) * 1000, 1),
    "runs": runs, "work": work,
}
if args.summary:
    with open(args.summary, "w") as file:
        json.dump(summary, file, indent=1)
if not args.work:
    shutil.rmtree(work, ignore_errors=True)
for when, path, what in failures[:5]:
    print(f"  failed at {when:.1f}s: GET {path}: {what}")
print(f"\nsummary (haproxy.apply = {args.apply}): {summary['requests']} requests, {summary['failed']} failed, "
      f"{summary['reloads']} reloads (HAProxy counted {summary['master_reloads']}), "
      f"{summary['runtime_applies']} changes through the runtime API, "
      f"{summary['launches']} launches, {len(summary['drains'])} drains, up to {most_servers} servers in service, "
      f"p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms "
      f"(while servers join and leave {summary['p99_during_changes_ms']} ms"
      + (f", during reloads {summary['p99_during_reloads_ms']} ms" if summary["reloads"] else "")
      + f", steady {summary['p99_steady_ms']} ms)")
sys.exit(1 if failures or summary["failed_runs"] else 0)
