#!/usr/bin/env python3
"""gRPC endpoint that can be made to fail, and a client for it (raw-bytes generic handlers, as in
server.py: no protoc/codegen).

usage: flaky_server.py serve PORT MODE     MODE: good | flaky
       flaky_server.py call TARGET N       N sequential Echo calls on ONE channel; prints JSON
       flaky_server.py calls TARGET        prints how many Echo calls the server at TARGET got

Service `weft.test.Echo`:
  Echo(bytes) -> bytes    good: b"echo:" + request; flaky: UNAVAILABLE (a trailers-only answer,
                          grpc-status 14 in the response headers), every time
  Calls(bytes) -> bytes   the number of Echo calls this server has received, as ASCII (never
                          fails; call it directly, not through weft)
  SetHealth(bytes)        b"SERVING" or b"NOT_SERVING": what the health service answers from now on

Service `grpc.health.v1.Health`, Check: the standard health protocol (HealthCheckResponse with
status SERVING = 1 or NOT_SERVING = 2), hand-encoded.

       flaky_server.py set-health TARGET STATUS
"""
import json
import sys
import threading
from concurrent import futures

import grpc

SERVICE = "weft.test.Echo"


def serve(port, mode):
    lock = threading.Lock()
    calls = [0]

    def echo(request, context):
        with lock:
            calls[0] += 1
        if mode == "flaky":
            context.abort(grpc.StatusCode.UNAVAILABLE, "flaky endpoint")
        return b"echo:" + request

    def count(request, context):
        with lock:
            return str(calls[0]).encode()

    health = [b"\x08\x01"]

    def set_health(request, context):
        health[0] = b"\x08\x01" if request == b"SERVING" else b"\x08\x02"
        return b"ok"

    def check(request, context):
        return health[0]

    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Calls": grpc.unary_unary_rpc_method_handler(count),
        "SetHealth": grpc.unary_unary_rpc_method_handler(set_health),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler(SERVICE, handlers),
        grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)}),
    ))
    if server.add_insecure_port(f"127.0.0.1:{port}") != port:
        print(f"could not bind 127.0.0.1:{port}", file=sys.stderr, flush=True)
        sys.exit(1)
    server.start()
    print(f"flaky grpc server ({mode}) listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    server.wait_for_termination()


def channel(target):
    return grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0), ("grpc.enable_retries", 0)])


def call(target, n):
    """N unary calls one after the other on one channel (one HTTP/2 connection to weft)."""
    out = {"ok": 0, "errors": {}, "first_error": None}
    with channel(target) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        echo = ch.unary_unary(f"/{SERVICE}/Echo")
        for i in range(n):
            try:
                if echo(str(i).encode(), timeout=10) == f"echo:{i}".encode():
                    out["ok"] += 1
                else:
                    out["errors"]["wrong-answer"] = out["errors"].get("wrong-answer", 0) + 1
            except grpc.RpcError as e:
                code = e.code().name
                out["errors"][code] = out["errors"].get(code, 0) + 1
                if out["first_error"] is None:
                    out["first_error"] = {"call": i, "code": code, "details": e.details()}
    print(json.dumps(out, sort_keys=True))


def calls(target):
    with channel(target) as ch:
        print(ch.unary_unary(f"/{SERVICE}/Calls")(b"", timeout=10).decode())


def main():
    cmd = sys.argv[1]
    if cmd == "serve":
        serve(int(sys.argv[2]), sys.argv[3])
    elif cmd == "call":
        call(sys.argv[2], int(sys.argv[3]))
    elif cmd == "calls":
        calls(sys.argv[2])
    elif cmd == "set-health":
        with channel(sys.argv[2]) as ch:
            print(ch.unary_unary(f"/{SERVICE}/SetHealth")(sys.argv[3].encode(), timeout=10).decode())
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
