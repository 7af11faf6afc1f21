#!/usr/bin/env python3
"""gRPC test client: runs every call against TARGET and prints one JSON object with the results.

usage: client.py TARGET [STREAM_N]
"""
import json
import sys

import grpc

SERVICE = "weft.test.Echo"


def call_error(fn):
    try:
        fn()
        return None
    except grpc.RpcError as e:
        return {"code": e.code().name, "details": e.details()}


def main():
    target = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    out = {}
    options = [("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel(target, options=options) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        echo = ch.unary_unary(f"/{SERVICE}/Echo")
        count = ch.unary_stream(f"/{SERVICE}/Count")
        missing = ch.unary_unary(f"/{SERVICE}/Missing")
        unknown = ch.unary_unary(f"/{SERVICE}/NoSuchMethod")

        resp, call = echo.with_call(b"hello weft", timeout=10)
        out["unary"] = resp.decode()
        out["unary_trailers"] = {k: v for k, v in (call.trailing_metadata() or ())}
        big = bytes(range(256)) * 4096  # 1 MiB
        out["unary_big_ok"] = echo(big, timeout=20) == b"echo:" + big
        out["stream"] = [m.decode() for m in count(str(n).encode(), timeout=10)]
        out["error"] = call_error(lambda: missing(b"x", timeout=10))
        out["unimplemented"] = call_error(lambda: unknown(b"x", timeout=10))
        # several calls on the same channel (one HTTP/2 connection, many streams)
        out["many"] = sum(1 for i in range(50) if echo(str(i).encode(), timeout=10) == f"echo:{i}".encode())
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
