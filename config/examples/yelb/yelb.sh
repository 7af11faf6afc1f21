#!/usr/bin/env bash
# The Yelb walkthrough's "tasks" on this host: what ECS ran as containers, here as processes on
# 127.0.0.1 at their containers' ports. Nothing resolves the names the apps use (Cloud Map's and
# the internal load balancer's) until weft's aliases carry them (the walkthrough in README.md).
#
#   ./yelb.sh databases   PostgreSQL on 127.0.0.1:5432 (database yelbdatabase, table restaurants)
#                         and Redis on 127.0.0.1:6379
#   ./yelb.sh apps        the app server (appserver.py) on 127.0.0.1:4567 and the UI (nginx) on
#                         127.0.0.1:18080, both configured with the OLD names, as on ECS
#   ./yelb.sh psql ARGS   psql on the real PostgreSQL (not through weft)
#   ./yelb.sh stop        stops everything above
#
# State and logs go to $YELB_STATE (default /tmp/weft-yelb). Needs PostgreSQL, redis-server,
# nginx and python3 with psycopg2 and redis (Debian: postgresql redis-server nginx-light
# python3-psycopg2 python3-redis). As root, PostgreSQL runs as the `postgres` user.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state="${YELB_STATE:-/tmp/weft-yelb}"
mkdir -p "$state"
chmod 755 "$state"

pgbin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
as_pg() { # runs a PostgreSQL program as the postgres user when we are root (initdb refuses root)
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
sql() { psql -X -q -h 127.0.0.1 -p 5432 -U postgres "$@"; }

databases() {
  if [ ! -s "$state/pg/PG_VERSION" ]; then
    install -d -m 700 "$state/pg"
    [ "$(id -u)" = 0 ] && chown postgres "$state/pg"
    as_pg "$pgbin/initdb" -D "$state/pg" -A trust -U postgres >"$state/initdb.log"
  fi
  touch "$state/postgres.log"
  [ "$(id -u)" = 0 ] && chown postgres "$state/postgres.log"
  as_pg "$pgbin/pg_ctl" -D "$state/pg" -l "$state/postgres.log" -w \
    -o "-p 5432 -k $state/pg -c listen_addresses=127.0.0.1" start >/dev/null
  if ! sql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'yelbdatabase'" | grep -q 1; then
    sql -d postgres -c "CREATE DATABASE yelbdatabase"
    sql -d yelbdatabase -c "CREATE TABLE restaurants (name char(30) PRIMARY KEY, count integer NOT NULL);
      INSERT INTO restaurants VALUES ('outback', 0), ('bucadibeppo', 0), ('chipotle', 0), ('ihop', 0);"
  fi
  redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --dir "$state" --pidfile "$state/redis.pid" --logfile "$state/redis.log"
  echo "PostgreSQL on 127.0.0.1:5432, Redis on 127.0.0.1:6379 (state in $state)"
}

apps() {
  # The python3 with the client libraries (on Debian the packages' /usr/bin/python3, which a
  # python3 earlier on PATH, e.g. pyenv's, does not see).
  local py=python3
  if ! python3 -c 'import psycopg2, redis' 2>/dev/null && [ -x /usr/bin/python3 ]; then py=/usr/bin/python3; fi
  # The app server's settings are Yelb's own, with the names it used on ECS.
  APP_PORT=4567 \
  YELB_DB_SERVER=yelb-db.yelb.cloudmap.internal YELB_DB_SERVER_PORT=5432 \
  YELB_REDIS_SERVER=yelb-redis.yelb.cloudmap.internal YELB_REDIS_SERVER_PORT=6379 \
    nohup "$py" "$here/appserver.py" >"$state/appserver.log" 2>&1 &
  echo $! >"$state/appserver.pid"
  # The UI: static page, and /api/ passed to the app server by its old load balancer name.
  mkdir -p "$state/ui"
  echo '<!doctype html><title>Yelb</title><p>Vote: <a href="/api/ihop">ihop</a> <a href="/api/chipotle">chipotle</a>' >"$state/ui/index.html"
  cat >"$state/nginx.conf" <<EOF
worker_processes 1;
pid $state/nginx.pid;
error_log $state/nginx-error.log;
events { worker_connections 256; }
http {
  access_log $state/nginx-access.log;
  client_body_temp_path $state/ui-body;
  server {
    listen 127.0.0.1:18080;
    location / { root $state/ui; }
    location /api/ { proxy_pass http://yelb-appserver.yelb.lb.internal:4567; }
  }
}
EOF
  nginx -e "$state/nginx-error.log" -c "$state/nginx.conf" -p "$state"
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/4567) 2>/dev/null && break
    sleep 0.1
  done
  echo "app server on 127.0.0.1:4567, UI on http://127.0.0.1:18080/ (logs in $state)"
}

stop() {
  [ -s "$state/nginx.pid" ] && kill "$(cat "$state/nginx.pid")" 2>/dev/null || true
  [ -s "$state/appserver.pid" ] && kill "$(cat "$state/appserver.pid")" 2>/dev/null || true
  [ -s "$state/redis.pid" ] && kill "$(cat "$state/redis.pid")" 2>/dev/null || true
  [ -s "$state/pg/postmaster.pid" ] && as_pg "$pgbin/pg_ctl" -D "$state/pg" -m fast -w stop >/dev/null 2>&1 || true
  rm -f "$state"/*.pid
}

case "${1:-}" in
  databases) databases ;;
  apps) apps ;;
  psql) shift; sql -d yelbdatabase "$@" ;;
  stop) stop ;;
  *) echo "usage: $0 databases | apps | psql ARGS | stop" >&2; exit 64 ;;
esac
