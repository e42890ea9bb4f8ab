#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the store's tests: data in a temp dir,
# a free port on 127.0.0.1, trust auth (nothing but this machine reaches it).
#   scripts/pg-throwaway.sh          start; prints the URL (export it as ZNS_TEST_PG)
#   scripts/pg-throwaway.sh stop     stop it and remove its data
# The cluster's folder is kept in $PG_THROWAWAY_STATE (default /tmp/zns-pg-throwaway).
set -euo pipefail

STATE=${PG_THROWAWAY_STATE:-/tmp/zns-pg-throwaway}

find_bin() {
    local name=$1
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -V | tail -1 || true)
    if [ -z "$found" ]; then
        echo "pg-throwaway: $name not found (apt-get install -y postgresql)" >&2
        exit 1
    fi
    echo "$found"
}

# initdb refuses to run as root: run the server as `postgres` then.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

PG_CTL=$(find_bin pg_ctl)
INITDB=$(find_bin initdb)

stop() {
    if [ -f "$STATE/data/postmaster.pid" ]; then
        as_owner "$PG_CTL" -D "$STATE/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$STATE"
}

if [ "${1:-start}" = stop ]; then
    stop
    exit 0
fi

stop
mkdir -p "$STATE"
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$STATE"
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_owner "$INITDB" -D "$STATE/data" -U postgres --auth=trust -E UTF8 --locale=C >"$STATE/initdb.log" 2>&1 \
    || { cat "$STATE/initdb.log" >&2; exit 1; }
# Tests create and drop a database each: fsync off (a throwaway cluster).
as_owner "$PG_CTL" -D "$STATE/data" -l "$STATE/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $STATE -c fsync=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null || { cat "$STATE/server.log" >&2; exit 1; }
echo "postgres://postgres@127.0.0.1:$PORT/postgres"
