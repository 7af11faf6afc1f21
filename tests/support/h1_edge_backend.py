#!/usr/bin/env python3
"""Raw-socket HTTP/1.1 backend for edge cases of weft's HTTP/1.1 path.

usage: h1_edge_backend.py MODE PORTFILE
Binds a free port itself (no race with other tests picking ports) and writes it to PORTFILE.
  upgrade  answers `101 Switching Protocols` to an Upgrade request, then echoes bytes uppercased
  oneshot  answers one request per connection (keep-alive framing, no `Connection: close`) and
           then closes, as a server with a tiny keep-alive timeout does; counts requests
  continue honours `Expect: 100-continue`: sends `100 Continue`, reads the body, answers its length
  stall    answers a head promising 100 bytes, sends 3, then goes silent
  noreason answers `HTTP/1.1 200` with no reason phrase
  drop2    answers the first request of a connection; reads the second and closes unanswered
  chunky   answers HTTP/1.1 requests chunked, HTTP/1.0 requests close-delimited
  (any mode) a request with content-length answers `got N` after reading N body bytes
GET /count on any mode returns how many requests were served (not counting /count).
"""
import os
import socket
import sys
import threading

mode, portfile = sys.argv[1], sys.argv[2]
served = 0
lock = threading.Lock()


def read_head(conn, buf):
    while b"\r\n\r\n" not in buf:
        d = conn.recv(65536)
        if not d:
            return None, buf
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return (lines[0], headers), rest


def answer(conn, body, extra=""):
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra.encode(), body))


def handle(conn):
    global served
    buf = b""
    nth = 0
    with conn:
        while True:
            parsed, buf = read_head(conn, buf)
            if parsed is None:
                return
            (start, headers) = parsed
            if start.split(" ")[1] == "/count":
                with lock:
                    answer(conn, str(served).encode())
                continue
            with lock:
                served += 1
            nth += 1
            if mode == "drop2" and nth == 2:
                return
            if mode == "noreason":
                conn.sendall(b"HTTP/1.1 200\r\ncontent-length: 2\r\n\r\nok")
                continue
            if mode == "chunky":
                if start.endswith("HTTP/1.1"):
                    conn.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
                    continue
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello")
                return
            if mode == "upgrade" and headers.get("upgrade"):
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
                data = buf
                while True:
                    if data:
                        conn.sendall(data.upper())
                    data = conn.recv(65536)
                    if not data:
                        return
            if mode == "continue" or "content-length" in headers:
                n = int(headers.get("content-length", "0"))
                if headers.get("expect", "").lower() == "100-continue":
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                while len(buf) < n:
                    d = conn.recv(65536)
                    if not d:
                        return
                    buf += d
                body, buf = buf[:n], buf[n:]
                answer(conn, b"got %d" % len(body))
                continue
            if mode == "stall":
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc")
                threading.Event().wait()
            answer(conn, b"hello")
            if mode == "oneshot":
                return


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(128)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.getsockname()[1]))
os.rename(portfile + ".tmp", portfile)
while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
