#!/usr/bin/env python3
"""Tiny HTTP/1.1 backend for weft integration tests.

usage: http_backend.py NAME PORT [BIND]
Every response names the backend (body `backend=NAME path=PATH` and header `x-backend: NAME`).
"""
import http.server
import sys

from request_body import read_body

name = sys.argv[1]
port = int(sys.argv[2])
bind = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"


class Handler(http.server.BaseHTTPRequestHandler):
    """Paths: /status/NNN answers NNN; /big?n=N answers N bytes; /chunked?n=N answers N chunks.
    Request bodies (content-length or chunked) are summarised as `len=N sum=S` (S = byte sum mod 2^32)."""

    protocol_version = "HTTP/1.1"

    def _read_body(self):
        return read_body(self.rfile, self.headers)

    def _reply(self):
        req = self._read_body()
        path, _, query = self.path.partition("?")
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        status = 200
        if path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
        head = f"backend={name} path={self.path} method={self.command} len={len(req)} sum={sum(req) & 0xFFFFFFFF}\n".encode()
        if path == "/chunked":
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Backend", name)
            self.end_headers()
            if self.command != "HEAD":
                chunks = [head] + [f"chunk-{i}\n".encode() for i in range(int(params.get("n", "3")))]
                for c in chunks:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            return
        body = head
        if path == "/big":
            n = int(params.get("n", "0"))
            body = (head + b"0123456789" * (n // 10 + 1))[:n] if n >= len(head) else head
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", name)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = _reply
    do_POST = _reply
    do_PUT = _reply
    do_HEAD = _reply
    do_DELETE = _reply

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


Server((bind, port), Handler).serve_forever()
