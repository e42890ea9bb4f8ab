# Shared by the bench scripts (sourced, not run): the binary, a work dir
# cleaned at exit, the stores (SQLite files, or PostgreSQL databases with
# --pg), and a loopback serve. Sourced as
# `. "$(dirname "$0")/lib.sh" NAME` (NAME: the script's, for messages); it
# sets strict mode and runs from the repo root.
set -euo pipefail
NAME=$1
cd "$(dirname "$0")/.."
ROOT=$(pwd)

BUILD=1
PROFILE=release
KEEP=0
PG=""

# bench_opt ARG: the options every bench script takes (the caller's own are
# matched before it); help prints the script's header comment.
bench_opt() {
    case "$1" in
        --no-build) BUILD=0 ;;
        --debug) PROFILE=debug ;;
        --keep) KEEP=1 ;;
        --pg) echo "$NAME: --pg wants a URL (--pg postgres://USER@HOST:PORT/DB)" >&2; exit 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "$NAME: unknown option $1" >&2; exit 2 ;;
    esac
}

# bench_bin: build the $PROFILE binary (unless BUILD=0); sets BIN.
bench_bin() {
    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    if [ "$BUILD" = 1 ]; then
        if [ "$PROFILE" = release ]; then cargo build --release --locked --quiet; else cargo build --locked --quiet; fi
    fi
    BIN="$target/$PROFILE/zns-batch"
    [ -x "$BIN" ] || { echo "$NAME: no binary at $BIN" >&2; exit 2; }
}

# bench_workdir: a fresh temp dir in WORK; at exit serve is stopped and
# the dir removed (kept with KEEP=1).
bench_workdir() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/zns-$NAME.XXXXXX")
    SERVE_PID=""
    trap bench_cleanup EXIT
}
bench_cleanup() {
    [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null || true
    [ "$KEEP" = 1 ] && echo "kept $WORK" || rm -rf "$WORK"
    bench_drop_states
}

# ---- the stores: SQLite files in $WORK, or fresh PostgreSQL databases ----------
# bench_pg URL (the scripts' --pg URL): every store the script makes is a
# new database on that server (the role needs CREATEDB), so each run starts
# empty as a new SQLite file does. The URL may hold a password: it is never
# printed.
bench_pg() {
    case "${1:-}" in
        postgres://*|postgresql://*) ;;
        *) echo "$NAME: --pg wants a postgres:// URL" >&2; exit 2 ;;
    esac
    PG=$1
    PSQL=$(command -v psql || ls -d /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -1 || true)
    [ -n "$PSQL" ] && [ -x "$PSQL" ] || { echo "$NAME: --pg needs psql (apt-get install postgresql-client)" >&2; exit 2; }
    "$PSQL" -Atq -d "$PG" -c 'SELECT 1' >/dev/null || { echo "$NAME: the --pg server did not answer" >&2; exit 2; }
}

# bench_state NAME: prints the --state of a fresh, empty store: $WORK/NAME.sqlite,
# or with --pg a new database zns_bench_<pid>_NAME (dropped at exit unless --keep).
bench_state() {
    if [ -z "$PG" ]; then echo "$WORK/$1.sqlite"; return; fi
    local db="zns_bench_$$_${1//[^a-zA-Z0-9]/_}"
    PGOPTIONS='-c client_min_messages=warning' "$PSQL" -Atq -d "$PG" \
        -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
    python3 - "$PG" "$db" <<'PY'
import sys, urllib.parse as u
url = u.urlsplit(sys.argv[1])
print(u.urlunsplit(url._replace(path="/" + sys.argv[2])))
PY
}

# bench_drop_states: drop this run's databases (nothing to do for SQLite:
# the files go with $WORK).
bench_drop_states() {
    [ -n "$PG" ] && [ "$KEEP" = 0 ] || return 0
    local db
    for db in $("$PSQL" -Atq -d "$PG" -c "SELECT datname FROM pg_database WHERE datname LIKE 'zns\_bench\_$$\_%'" 2>/dev/null); do
        "$PSQL" -Atq -d "$PG" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
}

# bench_sql STATE SQL: the rows of a query on a store, one a line, columns
# separated by a space (sqlite3 for a file, psql for a URL).
bench_sql() {
    case "$1" in
        postgres://*|postgresql://*) "$PSQL" -Atq -F ' ' -d "$1" -c "$2" ;;
        *) python3 -c 'import sqlite3, sys
for row in sqlite3.connect(sys.argv[1]).execute(sys.argv[2]): print(*row)' "$1" "$2" ;;
    esac
}

# bench_serve: `serve` on 127.0.0.1:0 from $WORK (so its zns-batch.toml
# applies) on the store $STATE (default $WORK/state.sqlite), without a
# sign-in token; sets SERVE_PID and BASE.
bench_serve() {
    (cd "$WORK" && exec env -u ZNS_SERVE_TOKEN "$BIN" --state "${STATE:-$WORK/state.sqlite}" serve --listen 127.0.0.1:0 \
        >"$WORK/serve.out" 2>"$WORK/serve.err") &
    SERVE_PID=$!
    for _ in $(seq 1 200); do
        grep -q '^listening on ' "$WORK/serve.out" 2>/dev/null && break
        sleep 0.05
    done
    BASE=$(sed -n 's/^listening on //p' "$WORK/serve.out" | head -1)
    [ -n "$BASE" ] || { echo "$NAME: serve did not start:" >&2; cat "$WORK/serve.err" >&2; exit 1; }
}

# bench_csv PATH ROWS: a billing-notice CSV of ROWS distinct rows (the
# columns of samples/billing-notice.csv and its template).
bench_csv() {
    python3 - "$1" "$2" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w", encoding="utf-8") as f:
    f.write("phone,customer_name,invoice_no,amount,due_date,service\n")
    for i in range(n):
        f.write(f"09{i % 100000000:08d},Nguyễn Văn An,HD{i:09d},\"{100 + i % 900}.000 đ\",30/11/2026,Điện sinh hoạt\n")
PY
}
