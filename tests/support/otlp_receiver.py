#!/usr/bin/env python3
"""An independent OTLP metrics receiver for weft's tests: decodes with the OpenTelemetry project's
own protobuf definitions (PyPI opentelemetry-proto), not weft's encoder.

usage: otlp_receiver.py grpc|http PORT OUT [CERT KEY]

Listens on 127.0.0.1:PORT (gRPC: the MetricsService; http: POST /v1/metrics with an
ExportMetricsServiceRequest body) and appends one JSON line per data point to OUT:
{"node", "service_name", "resource": {...}, "headers": {...}, "name", "kind", "temporality",
 "attrs": {...}, "value" | "count"+"sum"+"buckets", "t"}.
With CERT and KEY (PEM files) it serves TLS (https / gRPC over TLS).
Prints "listening PORT" once ready.
"""
import json
import sys
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as msg

mode, port, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tls = sys.argv[4:6] if len(sys.argv) >= 6 else None
lock = threading.Lock()


def anyvalue(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attrs(kvs):
    return {kv.key: anyvalue(kv.value) for kv in kvs}


def record(req, headers):
    lines = []
    now = time.time()
    for rm in req.resource_metrics:
        res = attrs(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                data = getattr(m, kind)
                base = {"node": res.get("weft.node"), "service_name": res.get("service.name"), "resource": res,
                        "headers": headers, "name": m.name, "unit": m.unit, "kind": kind, "t": now,
                        "temporality": getattr(data, "aggregation_temporality", 0)}
                for p in data.data_points:
                    line = dict(base, attrs=attrs(p.attributes))
                    if kind == "histogram":
                        line.update(count=p.count, sum=p.sum, buckets=len(p.bucket_counts), bounds=len(p.explicit_bounds),
                                    first_bound=p.explicit_bounds[0] if p.explicit_bounds else None)
                    else:
                        line["value"] = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                    lines.append(json.dumps(line))
    with lock, open(out_path, "a") as f:
        for l in lines:
            f.write(l + "\n")


class Service(msg.MetricsServiceServicer):
    def Export(self, request, context):
        record(request, {k: v for k, v in context.invocation_metadata()})
        return ms.ExportMetricsServiceResponse()


class Http(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path != "/v1/metrics":
            self.send_response(404)
            self.end_headers()
            return
        req = ms.ExportMetricsServiceRequest.FromString(body)
        record(req, {k.lower(): v for k, v in self.headers.items()})
        resp = ms.ExportMetricsServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(resp)))
        self.end_headers()
        self.wfile.write(resp)

    def log_message(self, *a):
        pass


if mode == "grpc":
    import grpc
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    msg.add_MetricsServiceServicer_to_server(Service(), server)
    if tls:
        key, cert = open(tls[1], "rb").read(), open(tls[0], "rb").read()
        bound = server.add_secure_port(f"127.0.0.1:{port}", grpc.ssl_server_credentials([(key, cert)]))
    else:
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"listening {bound}", flush=True)
    server.wait_for_termination()
else:
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Http)
    if tls:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls[0], tls[1])
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    print(f"listening {httpd.server_address[1]}", flush=True)
    httpd.serve_forever()
