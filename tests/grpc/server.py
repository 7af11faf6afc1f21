#!/usr/bin/env python3
"""gRPC test server with raw-bytes generic handlers (no protoc/codegen needed).

usage: server.py PORT
Service `weft.test.Echo`:
  Echo(bytes) -> bytes                 unary: returns b"echo:" + request
  Count(bytes "N") -> stream bytes     server streaming: N messages b"item-0" .. b"item-{N-1}"
  Missing(bytes) -> bytes              aborts with NOT_FOUND "no such widget"
  Slow(bytes "MS") -> bytes            sleeps MS milliseconds, then answers b"slept"
"""
import sys
import time
from concurrent import futures

import grpc

SERVICE = "weft.test.Echo"


def echo(request, context):
    context.set_trailing_metadata((("x-server", "weft-test"),))
    return b"echo:" + request


def count(request, context):
    n = int(request.decode() or "0")
    for i in range(n):
        yield f"item-{i}".encode()


def missing(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such widget")


def slow(request, context):
    time.sleep(int(request.decode() or "0") / 1000.0)
    return b"slept"


def main():
    port = int(sys.argv[1])
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Missing": grpc.unary_unary_rpc_method_handler(missing),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    if bound != port:
        print(f"could not bind 127.0.0.1:{port}", file=sys.stderr, flush=True)
        sys.exit(1)
    server.start()
    print(f"grpc test server listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
