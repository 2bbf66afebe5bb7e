#!/usr/bin/env python3
"""A loopback HTTP backend for the local example.

Each request to / costs a fixed time (--cost-ms) and such requests are served one at a time, so
the backend's capacity is 1000 / cost-ms requests per second and load above it really queues.
GET /slow takes --slow-ms without holding that worker (a long download, say), so a server
being drained usually has requests in flight. For its first --not-ready-for seconds the backend
accepts connections but answers 503 to everything, as a real server that is still starting does.
GET /health answers 200 once ready.
Every request is appended to --log as "<start> <end> <path> <status>" (Unix time, seconds).
"""
import argparse
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--id", required=True)
parser.add_argument("--cost-ms", type=float, default=10.0)
parser.add_argument("--slow-ms", type=float, default=1500.0)
parser.add_argument("--not-ready-for", type=float, default=0.0)
parser.add_argument("--log")
args = parser.parse_args()

started = time.monotonic()
worker = threading.Lock()
log_lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real clients and HAProxy use it

    def do_GET(self):
        began = time.time()
        if time.monotonic() - started < args.not_ready_for:
            status, body = 503, b"starting\n"
        elif self.path == "/health":
            status, body = 200, b"ok\n"
        elif self.path == "/slow":
            time.sleep(args.slow_ms / 1000.0)
            status, body = 200, f"{args.id}\n".encode()
        else:
            with worker:
                time.sleep(args.cost_ms / 1000.0)
            status, body = 200, f"{args.id}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if args.log:
            with log_lock, open(args.log, "a") as log:
                log.write(f"{began:.3f} {time.time():.3f} {self.path} {status}\n")

    def log_message(self, *_):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
