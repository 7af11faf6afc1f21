#!/usr/bin/env python3
"""The voting app's API server, written for weft's Yelb walkthrough (no code of Yelb's own).

It makes the calls Yelb's Ruby app server makes, through the same settings:
  GET /api/pageviews      INCR pageviews in Redis, answer the count
  GET /api/getvotes       the votes per restaurant, read from PostgreSQL (JSON list)
  GET /api/<restaurant>   count one vote for it in PostgreSQL, answer its new count
  GET /api/getstats       host name and page views (JSON)
  GET /api/hostname       host name
It reaches PostgreSQL at $YELB_DB_SERVER:$YELB_DB_SERVER_PORT and Redis at
$YELB_REDIS_SERVER:$YELB_REDIS_SERVER_PORT — on ECS the Cloud Map names; under weft the same
names, now client aliases. Listens on 127.0.0.1:$APP_PORT (4567). Needs python3-psycopg2 and
python3-redis (Debian packages of the PostgreSQL and Redis client libraries).
"""
import http.server
import json
import os
import socket
import sys
import threading

import psycopg2
import redis

DB = dict(
    host=os.environ.get("YELB_DB_SERVER", "yelb-db.yelb.cloudmap.internal"),
    port=int(os.environ.get("YELB_DB_SERVER_PORT", "5432")),
    dbname=os.environ.get("YELB_DB_NAME", "yelbdatabase"),
    user=os.environ.get("YELB_DB_USER", "postgres"),
    connect_timeout=5,
)
REDIS = dict(
    host=os.environ.get("YELB_REDIS_SERVER", "yelb-redis.yelb.cloudmap.internal"),
    port=int(os.environ.get("YELB_REDIS_SERVER_PORT", "6379")),
    socket_timeout=5,
)
RESTAURANTS = ("outback", "bucadibeppo", "chipotle", "ihop")

local = threading.local()


def db():
    """One PostgreSQL connection per thread, opened again after a failure."""
    conn = getattr(local, "db", None)
    if conn is None or conn.closed:
        conn = local.db = psycopg2.connect(**DB)
        conn.autocommit = True
    return conn


def query(sql, args=()):
    try:
        with db().cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    except psycopg2.Error:
        local.db = None
        raise


cache = redis.Redis(**REDIS)


class Api(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        path = self.path.split("?")[0].rstrip("/")
        try:
            if path == "/api/pageviews":
                self.answer(200, str(cache.incr("pageviews")))
            elif path == "/api/getvotes":
                rows = query("SELECT name, count FROM restaurants ORDER BY name")
                self.answer(200, json.dumps([{"name": n.strip(), "value": c} for n, c in rows]), "application/json")
            elif path == "/api/getstats":
                views = int(cache.get("pageviews") or 0)
                self.answer(200, json.dumps({"hostname": socket.gethostname(), "pageviews": views}), "application/json")
            elif path == "/api/hostname":
                self.answer(200, socket.gethostname())
            elif path.startswith("/api/") and path[5:] in RESTAURANTS:
                rows = query("UPDATE restaurants SET count = count + 1 WHERE name = %s RETURNING count", (path[5:],))
                self.answer(200, str(rows[0][0]))
            else:
                self.answer(404, "no such path\n")
        except (psycopg2.Error, redis.RedisError) as e:
            self.answer(503, f"backend unavailable: {type(e).__name__}: {e}\n")

    def answer(self, status, body, ctype="text/plain"):
        data = body.encode()
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stderr.write("appserver: " + (fmt % args) + "\n")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


if __name__ == "__main__":
    port = int(os.environ.get("APP_PORT", "4567"))
    print(f"appserver on 127.0.0.1:{port}; PostgreSQL at {DB['host']}:{DB['port']}, Redis at {REDIS['host']}:{REDIS['port']}", flush=True)
    Server(("127.0.0.1", port), Api).serve_forever()
