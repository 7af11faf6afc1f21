#!/usr/bin/env python3
"""A slow application server, shaped like the apps users move onto weft (a Ruby or Python app
server with a fixed pool of workers in front of a database), for weft's failover tests.

usage: slow_app.py NAME PORT [--workers N] [--min-ms A] [--max-ms B] [--seen FILE]

- HTTP/1.1 with keep-alive, one thread per connection, but only N requests are worked on at
  once (the worker pool): the others queue, health checks included, so under load a health
  check waits its turn like any request.
- GET /api/vote/{name}: counts a vote for NAME *first* (the database write), then takes
  A..B ms to render, then answers 200 `votes=N`. A process killed while rendering has counted
  the vote without answering: a proxy that sends the request again elsewhere counts it twice.
  With --seen FILE, the request's `x-req-id` is appended to FILE (one line, flushed) when the
  vote is counted, so a test can tell whether the application ever saw a request twice (several
  backends may share one FILE: lines are appended with O_APPEND).
- GET /api/... (anything else): takes A..B ms, answers 200.
- GET /health: answers 200 as soon as a worker is free (it does no work of its own).
- GET /_count: JSON {"name", "requests", "votes", "health"}; not queued, never counted.
"""
import argparse
import http.server
import json
import os
import random
import socket
import socketserver
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("name")
p.add_argument("port", type=int)
p.add_argument("--workers", type=int, default=16)
p.add_argument("--min-ms", type=int, default=1000)
p.add_argument("--max-ms", type=int, default=2500)
p.add_argument("--seen", default=None)
args = p.parse_args()

workers = threading.BoundedSemaphore(args.workers)
lock = threading.Lock()
counts = {"name": args.name, "requests": 0, "votes": {}, "health": 0}
seen_fd = os.open(args.seen, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if args.seen else None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *a):
        pass

    def _send(self, status, body, ctype="text/plain"):
        data = body.encode()
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.send_header("x-backend", args.name)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/_count":
            with lock:
                body = json.dumps(counts)
            return self._send(200, body, "application/json")
        with workers:
            if self.path == "/health":
                with lock:
                    counts["health"] += 1
                return self._send(200, "ok\n")
            with lock:
                counts["requests"] += 1
            body = "ok\n"
            if self.path.startswith("/api/vote/"):
                name = self.path[len("/api/vote/"):]
                with lock:
                    counts["votes"][name] = counts["votes"].get(name, 0) + 1
                    n = counts["votes"][name]
                if seen_fd is not None:
                    os.write(seen_fd, (self.headers.get("x-req-id", "-") + "\n").encode())
                body = f"votes={n}\n"
            time.sleep(random.uniform(args.min_ms, args.max_ms) / 1000.0)
            self._send(200, body)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True


Server(("127.0.0.1", args.port), Handler).serve_forever()
