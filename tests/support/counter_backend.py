#!/usr/bin/env python3
"""HTTP/1.1 backend that counts what reaches it, for weft's retry / health / failover tests.

usage: counter_backend.py NAME PORT [--mode MODE] [--sleep-ms N] [--healthz-fail-s S]

MODE (applies to every request except the control paths below):
  ok              200, body `backend=NAME path=… method=… len=…`, header `x-backend: NAME`
  die-after-read  reads the whole request, counts it, then closes the socket without answering
                  (the request provably reached the app: a proxy must not replay a POST)
  status-503      answers 503 (body `backend=NAME overloaded`)
  status-429      answers 429 (body `backend=NAME too many requests`)
  sleep           sleeps --sleep-ms before answering 200

Control paths (never counted as requests, never affected by MODE):
  GET /healthz    200, or 503 during the first --healthz-fail-s seconds after start
  GET /_count     JSON: {"name", "requests", "by_method", "healthz", "healthz_failing",
                  "requests_while_healthz_failing", "first_request_s"} (seconds since start)

The listen backlog is 1024: the stdlib default (5) drops SYNs under 100 concurrent connections,
and a dropped SYN costs a 1 s retransmit that would show up as proxy latency.
"""
import argparse
import http.server
import json
import socket
import sys
import threading
import time

from request_body import read_body

p = argparse.ArgumentParser()
p.add_argument("name")
p.add_argument("port", type=int)
p.add_argument("--mode", default="ok", choices=["ok", "die-after-read", "status-503", "status-429", "sleep"])
p.add_argument("--sleep-ms", type=int, default=0)
p.add_argument("--healthz-fail-s", type=float, default=0.0)
p.add_argument("--bind", default="127.0.0.1")
args = p.parse_args()

START = time.monotonic()
lock = threading.Lock()
counts = {"requests": 0, "by_method": {}, "healthz": 0, "requests_while_healthz_failing": 0, "first_request_s": None}


def healthz_failing():
    return time.monotonic() - START < args.healthz_fail_s


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _body(self):
        return read_body(self.rfile, self.headers)

    def _send(self, status, body, ctype="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", args.name)
        # head and body in one write: two small writes meet Nagle + delayed ACK (40 ms a request)
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def _handle(self):
        req = self._body()
        path = self.path.partition("?")[0]
        if path == "/healthz":
            with lock:
                counts["healthz"] += 1
            failing = healthz_failing()
            self._send(503 if failing else 200, b"failing\n" if failing else b"ok\n")
            return
        if path == "/_count":
            with lock:
                snap = json.loads(json.dumps(counts))
            snap["name"] = args.name
            snap["healthz_failing"] = healthz_failing()
            self._send(200, json.dumps(snap).encode(), "application/json")
            return
        with lock:
            counts["requests"] += 1
            counts["by_method"][self.command] = counts["by_method"].get(self.command, 0) + 1
            if healthz_failing():
                counts["requests_while_healthz_failing"] += 1
            if counts["first_request_s"] is None:
                counts["first_request_s"] = round(time.monotonic() - START, 3)
        if args.mode == "die-after-read":
            # the request was read whole and counted: now vanish without a byte of answer
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if args.mode == "status-503":
            self._send(503, f"backend={args.name} overloaded\n".encode())
            return
        if args.mode == "status-429":
            self._send(429, f"backend={args.name} too many requests\n".encode())
            return
        if args.mode == "sleep":
            time.sleep(args.sleep_ms / 1000.0)
        self._send(200, f"backend={args.name} path={self.path} method={self.command} len={len(req)}\n".encode())

    do_GET = _handle
    do_POST = _handle
    do_PUT = _handle
    do_PATCH = _handle
    do_DELETE = _handle
    do_HEAD = _handle

    def log_message(self, *a):
        pass


class Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024


srv = Server((args.bind, args.port), Handler)
print(f"counter backend {args.name} ({args.mode}) on {args.bind}:{args.port}", file=sys.stderr, flush=True)
srv.serve_forever()
