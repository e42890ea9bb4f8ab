#!/usr/bin/env bash
# zns-batch benchmark: import, end-to-end throughput against a raw load
# generator, latency-bound throughput, memory, and resume latency.
#
#   scripts/bench.sh            full run (10k / 100k / 1M rows), ~10 minutes
#   scripts/bench.sh --smoke    10k rows everywhere, ~1 minute
#   scripts/bench.sh --pg URL   the same with every store a fresh database on the
#                               PostgreSQL server at URL (the role may CREATE DATABASE)
#
# Options: --nginx (figures 2c/2d alone: the runs against the cheapest
#          provider, first run and rerun), --out FILE (also write the result table as Markdown),
#          --keep (keep target/bench/ afterwards), --no-build,
#          --debug (the debug build: checks the script and the results, the
#          figures mean nothing; CI runs --smoke --debug, sharing the tests'
#          build instead of compiling everything a third time).
# Everything runs on this machine: a standalone sandbox on 127.0.0.1 (an
# ephemeral port), the release binary, wrk as the raw load generator, and
# nginx answering the eTelecom protocol with fixed JSON: the cheapest provider
# there can be, so that runner ÷ wrk measures the client alone.
# Needs: cargo, python3, and wrk + nginx + GNU time (installed from Debian if
# missing; the smoke run goes on without wrk or nginx, saying so).
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh" bench

MODE=full
OUT=""
KEEP=0
BUILD=1
PROFILE=release
ONLY_NGINX=0
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) MODE=smoke ;;
        --out) OUT="$2"; shift ;;
        --keep) KEEP=1 ;;
        --no-build) BUILD=0 ;;
        --debug) PROFILE=debug ;;
        --pg) bench_pg "${2:-}"; shift ;;
        --nginx) ONLY_NGINX=1 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "bench: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$MODE" = smoke ]; then
    SIZES="10000"; E2E_ROWS=10000; BIG=10000; LAT_ROWS=5000; WRK_SECS=2
else
    SIZES="10000 100000 1000000"; E2E_ROWS=100000; BIG=1000000; LAT_ROWS=10000; WRK_SECS=10
fi
CONC=64          # --concurrency for the runner, -c for wrk
LATENCY_MS=50
LEFT=10          # rows left open for the resume figure

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK="$TARGET_DIR/bench"
BIN="$TARGET_DIR/$PROFILE/zns-batch"
SANDBOX_PID=""
NGINX_PID=""
cleanup() {
    if [ -n "$SANDBOX_PID" ]; then kill -INT "$SANDBOX_PID" 2>/dev/null || true; wait "$SANDBOX_PID" 2>/dev/null || true; fi
    if [ -n "$NGINX_PID" ]; then kill -QUIT "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; fi
    if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; fi
    bench_drop_states
}
trap cleanup EXIT

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# ---- tools ------------------------------------------------------------------
# try_install PKG: install a Debian package (as root, or through sudo).
try_install() {
    local pkg=$1 sudo=""
    command -v apt-get >/dev/null || return 1
    [ "$(id -u)" = 0 ] || sudo="sudo"
    say "installing $pkg (Debian)"
    $sudo apt-get install -y -qq "$pkg" >/dev/null 2>&1 \
        || { $sudo apt-get update -qq >/dev/null 2>&1 && $sudo apt-get install -y -qq "$pkg" >/dev/null 2>&1; }
}
command -v curl >/dev/null || try_install curl || die "curl is missing and could not be installed"
[ -x /usr/bin/time ] || try_install time || die "GNU time (/usr/bin/time) is missing and could not be installed"
# wrk is the raw load generator. The full benchmark needs it; the smoke
# version (CI) still checks everything else without it, saying so.
HAVE_WRK=1
if ! command -v wrk >/dev/null && ! try_install wrk; then
    [ "$MODE" = smoke ] || die "wrk is missing and could not be installed (apt-get install wrk)"
    say "wrk could not be installed: the raw req/s column is skipped in this smoke run"
    HAVE_WRK=0
fi
# nginx is the cheapest provider (fixed JSON replies); like wrk, the smoke
# run goes on without it.
HAVE_NGINX=1
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$NGINX" ] && ! { try_install nginx-light || try_install nginx; }; then
    [ "$MODE" = smoke ] || die "nginx is missing and could not be installed (apt-get install nginx)"
    say "nginx could not be installed: the runs against the cheapest provider are skipped"
    HAVE_NGINX=0
fi
[ "$HAVE_NGINX" = 0 ] || [ -x "$NGINX" ] || NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v python3 >/dev/null || die "python3 is needed to read the JSON summaries"

if [ "$BUILD" = 1 ] && [ "$PROFILE" = release ]; then
    say "cargo build --release"
    cargo build --release --locked --quiet
elif [ "$BUILD" = 1 ]; then
    say "cargo build (debug: the figures below are not performance figures)"
    cargo build --locked --quiet
fi
[ -x "$BIN" ] || die "no release binary at $BIN"

rm -rf "$WORK"
mkdir -p "$WORK"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -n "$PG" ]; then
    STORE="PostgreSQL $("$PSQL" -Atq -d "$PG" -c 'SHOW server_version') (fsync $("$PSQL" -Atq -d "$PG" -c 'SHOW fsync'), a fresh database per store)"
else
    STORE="SQLite files"
fi

# ---- helpers ------------------------------------------------------------------
# json FILE EXPR: evaluate a Python expression over the parsed JSON `d`.
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
# calc EXPR: arithmetic in Python.
calc() { python3 -c "from math import nan; print($1)"; }
# verdict COND: met / MISSED / n/a (a figure that could not be measured).
verdict() {
    case "$1" in *nan*) echo "n/a"; return ;; esac
    if python3 -c "import sys; sys.exit(0 if ($1) else 1)"; then echo "met"; else echo "MISSED"; fi
}
machine() {
    echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(rustc --version | cut -d' ' -f1-2)"
}

# gen_csv N FILE: N recipients, Vietnamese template values, phones in the
# formats people really type. Row i is the same phone in every file, so a
# smaller file's phones are a subset of a bigger one's.
gen_csv() {
    awk -v n="$1" 'BEGIN {
        split("Nguyễn Trần Lê Phạm Hoàng Huỳnh Phan Vũ Võ Đặng Bùi Đỗ Hồ Ngô Dương Lý", ho, " ");
        split("Văn Thị Hữu Gia Quốc Minh Thanh Ngọc Đức Thu", dem, " ");
        split("An Bình Châu Dũng Hà Linh Phương Quân Trang Yến Khánh Tâm Hưng Thảo", ten, " ");
        split("Điện sinh hoạt|Nước sạch|Internet cáp quang|Truyền hình|Phí quản lý chung cư", svc, "|");
        split("90 91 93 94 96 97 98 32 35 37 70 77 79 81 83 86 88 56", pre, " ");
        print "phone,customer_name,invoice_no,amount,due_date,service";
        for (i = 0; i < n; i++) {
            p = pre[i % 18 + 1];
            d = sprintf("%07d", (int(i / 18) * 7919 + 104729) % 10000000);
            f = i % 4;
            if (f == 0) phone = "0" p d;
            else if (f == 1) phone = "+84 " p substr(d, 1, 1) " " substr(d, 2, 3) " " substr(d, 5, 3);
            else if (f == 2) phone = "84" p d;
            else phone = "0" p substr(d, 1, 1) "." substr(d, 2, 3) "." substr(d, 5, 3);
            amount = (i * 7919) % 4900 + 100;
            printf "%s,%s %s %s,HD2611%08d,\"%d.000 đ\",30/11/2026,%s\n", phone, ho[i % 16 + 1], dem[i % 10 + 1], ten[i % 14 + 1], i, amount, svc[i % 5 + 1];
        }
    }' > "$2"
}

start_sandbox() {
    local log="$WORK/sandbox.out"
    "$BIN" sandbox --listen 127.0.0.1:0 "$@" >"$log" 2>"$WORK/sandbox.err" &
    SANDBOX_PID=$!
    for _ in $(seq 100); do
        grep -q '^listening on' "$log" 2>/dev/null && break
        sleep 0.05
    done
    ADDR=$(sed -n 's#^listening on http://##p' "$log")
    [ -n "$ADDR" ] || die "the sandbox did not start: $(cat "$WORK/sandbox.err")"
    BASE="http://$ADDR/v1/shop"
}
stop_sandbox() {
    kill -INT "$SANDBOX_PID" 2>/dev/null || true
    wait "$SANDBOX_PID" 2>/dev/null || true
    SANDBOX_PID=""
}
control() { curl -sf -X POST -H 'Content-Type: application/json' -d "$1" "http://$ADDR/__sandbox/control" >/dev/null; }
stats() { curl -sf "http://$ADDR/__sandbox/stats?detail=false" >"$1"; }
sandbox_cpu() { awk '{print ($14 + $15) / 100}' "/proc/$SANDBOX_PID/stat"; }

SEND_FLAGS() { echo --provider sandbox --base-url "$BASE" --api-key sandbox-key --oa-id 1; }

# timed NAME STATE ARGS...: the release binary under GNU time, with its JSON
# summary in NAME.json, stderr in NAME.err, GNU time's report in NAME.time.
timed() {
    local name=$1 state=$2; shift 2
    local rc=0
    /usr/bin/time -v -o "$WORK/$name.time" "$BIN" --state "$state" --json -q "$@" \
        >"$WORK/$name.json" 2>"$WORK/$name.err" || rc=$?
    echo "$rc"
}
peak_mb() { awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$WORK/$1.time"; }
wall_s() {
    awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, a, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + a[i]; printf "%.3f", s}' "$WORK/$1.time"
}

# wrk_send TAG URL JOURNEY_ID KEY: wrk posting SendZNSJourney with the body
# the runner sends (same fields, same order, a row's template values), a fresh
# tracking id per request (every request is a new message, as the runner's),
# at the runner's concurrency. Prints req/s, or nan without wrk.
wrk_send() {
    local tag=$1 url=$2 jid=$3 key=$4
    if [ "$HAVE_WRK" = 0 ]; then echo "nan"; return; fi
    cat >"$WORK/send-$tag.lua" <<EOF
local n = 0
wrk.method = "POST"
wrk.headers["Accept"] = "application/json"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
wrk.headers["User-Agent"] = "zns-batch/bench"
request = function()
  n = n + 1
  local body = '{"oa_id":"1","journey_id":"$jid","phone":"84987000001","template_id":246810,'
    .. '"template_data":{"customer_name":"Nguyễn Văn An","invoice_no":"HD261100000001","amount":"277.000 đ",'
    .. '"due_date":"30/11/2026","service":"Điện sinh hoạt"},"tracking_id":"zb$tag-' .. n .. '"}'
  return wrk.format(nil, nil, nil, body)
end
EOF
    wrk -t1 -c"$CONC" -d"${WRK_SECS}s" -s "$WORK/send-$tag.lua" "$url" >"$WORK/wrk-$tag.txt"
    grep -q 'Non-2xx' "$WORK/wrk-$tag.txt" && die "wrk saw errors: $(cat "$WORK/wrk-$tag.txt")"
    awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk-$tag.txt"
}

# raw_rps TAG: wrk against the sandbox's SendZNSJourney (a journey of its own).
raw_rps() {
    local tag=$1
    if [ "$HAVE_WRK" = 0 ]; then echo "nan"; return; fi
    local j jid
    j=$(curl -sf -X POST -H 'Authorization: Bearer sandbox-key' -H 'Content-Type: application/json' \
        -d '{"oa_id":"1","phone":"84987000001","token_type":"token_logistics_7"}' "$BASE.Zalo/CreateJourney")
    jid=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["journey_id"])' "$j")
    wrk_send "$tag" "$BASE.Zalo/SendZNSJourney" "$jid" sandbox-key
}

# ---- the cheapest provider: nginx with fixed eTelecom replies ---------------------
# One worker, keep-alive without a request limit (nginx closes a connection
# after 1000 requests by default, which would make both clients reconnect),
# no access log; request bodies are read and dropped.
NGINX_JID=2000001
start_nginx() {
    local dir="$WORK/nginx" port
    mkdir -p "$dir/logs"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    local at="2026-11-29T00:00:00Z"
    local journey="{\"id\":\"1000001\",\"journey_id\":\"$NGINX_JID\",\"journey_token\":\"bench-token\",\"expired_at\":\"2030-01-01T00:00:00Z\",\"oa_id\":\"1\",\"phone\":\"84987000001\",\"status\":\"P\",\"is_charged\":true,\"error_code\":0,\"error_message\":\"\",\"created_at\":\"$at\",\"updated_at\":\"$at\"}"
    local message="{\"id\":\"3000001\",\"msg_id\":\"bench0000000000000001\",\"oa_id\":\"1\",\"journey_id\":\"$NGINX_JID\",\"phone\":\"84987000001\",\"template_id\":\"246810\",\"tracking_id\":\"\",\"msg_type\":\"journey\",\"type\":\"journey\",\"is_charged\":true,\"fee_main\":200,\"fee_token\":0,\"sent_time\":\"$at\",\"delivery_status\":\"unknown\",\"status\":\"P\",\"error_code\":0,\"error_message\":\"\",\"created_at\":\"$at\",\"updated_at\":\"$at\"}"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_buffer_size 64k;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    default_type application/json;
    server {
        listen 127.0.0.1:$port;
        location ~ \.Zalo/CreateJourney\$ { return 200 '$journey'; }
        location ~ \.Zalo/GetJourney\$ { return 200 '$journey'; }
        location ~ \.Zalo/SendZNSJourney\$ { return 200 '$message'; }
        location ~ \.Zalo/GetMessage\$ { return 200 '$message'; }
        location / { return 404 '{"code":"bad_route","msg":"no such method"}'; }
    }
}
EOF
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" 2>"$dir/logs/stderr" &
    NGINX_PID=$!
    NGINX_BASE="http://127.0.0.1:$port/v1/shop"
    for _ in $(seq 100); do
        curl -sf -X POST -d '{}' "$NGINX_BASE.Zalo/GetJourney" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    die "nginx did not start: $(cat "$dir/logs/stderr" "$dir/logs/error.log" 2>/dev/null)"
}
stop_nginx() {
    kill -QUIT "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=""
}

# ---- the data ---------------------------------------------------------------------
DATA_SIZES="$SIZES $E2E_ROWS $LAT_ROWS"
[ "$ONLY_NGINX" = 0 ] || DATA_SIZES=$E2E_ROWS
for n in $DATA_SIZES; do
    [ -f "$WORK/rows-$n.csv" ] || { say "generating rows-$n.csv"; gen_csv "$n" "$WORK/rows-$n.csv"; }
done

# ---- 2c/2d. the same against the cheapest provider (nginx, fixed replies) -------
# The provider costs next to nothing here, so runner ÷ wrk is the client's
# own cost per request against a raw load generator's.
NG_FIRST_RPS=nan; NG_FIRST_RAW=nan; NG_REUSE_RPS=nan; NG_REUSE_RAW=nan
if [ "$HAVE_NGINX" = 1 ]; then
    start_nginx
    say "nginx (fixed eTelecom replies) on ${NGINX_BASE#http://}"
    NG_STATE=$(bench_state nginx)
    ng_run() {
        local name=$1 campaign=$2 rc
        rc=$(timed "$name" "$NG_STATE" run "$WORK/rows-$E2E_ROWS.csv" --campaign "$campaign" --template-id 246810 \
            --provider etelecom --base-url "$NGINX_BASE" --api-key bench-key --oa-id 1 --concurrency "$CONC")
        [ "$rc" = 0 ] || die "$name: exit $rc: $(tail -5 "$WORK/$name.err")"
        [ "$(json "$WORK/$name.json" 'd["counts"]["sent"]')" = "$E2E_ROWS" ] || die "$name: not every row was sent"
        json "$WORK/$name.json" 'round(d["this_run"]["requests"] / d["this_run"]["send_secs"])'
    }
    say "nginx, first run: $E2E_ROWS rows, tokens created, --concurrency $CONC"
    NG_FIRST_RPS=$(ng_run ng-first ng-first)
    NG_FIRST_CPU=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {print u + s}' "$WORK/ng-first.time")
    say "raw: wrk -t1 -c$CONC -d${WRK_SECS}s on nginx's SendZNSJourney"
    NG_FIRST_RAW=$(wrk_send ng-first "$NGINX_BASE.Zalo/SendZNSJourney" "$NGINX_JID" bench-key)
    say "nginx, rerun to the same phones: tokens reused"
    NG_REUSE_RPS=$(ng_run ng-rerun ng-rerun)
    NG_REUSE_CPU=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {print u + s}' "$WORK/ng-rerun.time")
    [ "$(json "$WORK/ng-rerun.json" 'd["this_run"]["tokens_created"]')" = 0 ] || die "the nginx rerun bought tokens; it should reuse them all"
    NG_FIRST_REQ=$(json "$WORK/ng-first.json" 'd["this_run"]["requests"]')
    NG_REUSE_REQ=$(json "$WORK/ng-rerun.json" 'd["this_run"]["requests"]')
    NG_REUSE_RAW=$(wrk_send ng-rerun "$NGINX_BASE.Zalo/SendZNSJourney" "$NGINX_JID" bench-key)
    stop_nginx
fi
NG_FIRST_RATIO=$(calc "round($NG_FIRST_RPS / $NG_FIRST_RAW, 2)")
NG_REUSE_RATIO=$(calc "round($NG_REUSE_RPS / $NG_REUSE_RAW, 2)")

if [ "$ONLY_NGINX" = 1 ]; then
    [ "$HAVE_NGINX" = 1 ] || die "--nginx needs nginx"
    table=$(cat <<EOF
| # | figure | result | target | |
|---|---|---|---|---|
| 2c | cheapest provider (nginx, fixed eTelecom replies), first run ($E2E_ROWS rows), c=$CONC | runner $NG_FIRST_RPS req/s · wrk $NG_FIRST_RAW req/s · ratio **$NG_FIRST_RATIO** | ≥ 0.4 | $(verdict "$NG_FIRST_RATIO >= 0.4") |
| 2d | cheapest provider, rerun (tokens reused), c=$CONC | runner $NG_REUSE_RPS req/s · wrk $NG_REUSE_RAW req/s · ratio **$NG_REUSE_RATIO** | ≥ 0.5 | $(verdict "$NG_REUSE_RATIO >= 0.5") |
EOF
)
    notes=$(cat <<EOF
- mode: $MODE, $PROFILE build, figures 2c/2d alone; store: $STORE; machine: $(machine); load average before $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg)
- whole commands: first run $(wall_s ng-first) s, rerun $(wall_s ng-rerun) s (import + tokens + sends); runner CPU per request (import included): $(calc "'%.0f µs first run, %.0f µs rerun' % ($NG_FIRST_CPU / $NG_FIRST_REQ * 1e6, $NG_REUSE_CPU / $NG_REUSE_REQ * 1e6)")
EOF
)
    printf '\n%s\n\n%s\n' "$table" "$notes"
    [ -z "$OUT" ] || printf '%s\n\n%s\n' "$table" "$notes" >"$OUT"
    exit 0
fi

start_sandbox
say "sandbox on $ADDR (zero latency)"

# ---- 1. import ------------------------------------------------------------------
say "import: $BIG rows (run --dry-run: hash, parse, normalise, insert, plan)"
rc=$(timed import "$(bench_state import)" run "$WORK/rows-$BIG.csv" --campaign import --template-id 246810 --dry-run)
[ "$rc" = 0 ] || die "import failed ($rc): $(cat "$WORK/import.err")"
[ "$(json "$WORK/import.json" 'd["accepted"]')" = "$BIG" ] || die "import accepted $(json "$WORK/import.json" 'd["accepted"]') of $BIG rows"
# The import alone (the plan's queries after it are not import); the whole
# command's wall time beside it.
IMPORT_S=$(json "$WORK/import.json" 'round(d["import_secs"], 3)')
IMPORT_WALL=$(wall_s import)
IMPORT_RPS=$(calc "round($BIG / $IMPORT_S)")
IMPORT_MB=$(peak_mb import)

# ---- 2. end-to-end throughput vs raw ---------------------------------------------
E2E_STATE=$(bench_state e2e)
e2e() {
    local name=$1 campaign=$2
    local rc
    rc=$(timed "$name" "$E2E_STATE" run "$WORK/rows-$E2E_ROWS.csv" --campaign "$campaign" --template-id 246810 \
        $(SEND_FLAGS) --concurrency "$CONC")
    [ "$rc" = 0 ] || die "$name: exit $rc: $(tail -5 "$WORK/$name.err")"
    [ "$(json "$WORK/$name.json" 'd["counts"]["sent"]')" = "$E2E_ROWS" ] || die "$name: not every row was sent"
    json "$WORK/$name.json" 'round(d["this_run"]["requests"] / d["this_run"]["send_secs"])'
}
say "end-to-end, first run: $E2E_ROWS rows, tokens created, --concurrency $CONC"
cpu0=$(sandbox_cpu)
FIRST_RPS=$(e2e e2e-first first)
FIRST_SB_CPU=$(calc "round($(sandbox_cpu) - $cpu0, 2)")
FIRST_TOKENS=$(json "$WORK/e2e-first.json" 'd["this_run"]["tokens_created"]')
say "raw: wrk -t1 -c$CONC -d${WRK_SECS}s on SendZNSJourney"
FIRST_RAW=$(raw_rps first)
say "end-to-end, rerun to the same phones: tokens reused"
REUSE_RPS=$(e2e e2e-rerun rerun)
REUSE_REUSED=$(json "$WORK/e2e-rerun.json" 'd["this_run"]["tokens_reused"]')
REUSE_CREATED=$(json "$WORK/e2e-rerun.json" 'd["this_run"]["tokens_created"]')
[ "$REUSE_CREATED" = 0 ] || die "the rerun bought $REUSE_CREATED tokens; it should reuse them all"
REUSE_RAW=$(raw_rps rerun)
FIRST_RATIO=$(calc "round($FIRST_RPS / $FIRST_RAW, 2)")
REUSE_RATIO=$(calc "round($REUSE_RPS / $REUSE_RAW, 2)")

# ---- 3. latency-bound ----------------------------------------------------------------
say "latency-bound: sandbox latency ${LATENCY_MS} ms, --concurrency $CONC, tokens cached ($LAT_ROWS rows)"
control "{\"latency_ms\": $LATENCY_MS}"
rc=$(timed latency "$E2E_STATE" run "$WORK/rows-$LAT_ROWS.csv" --campaign latency --template-id 246810 \
    $(SEND_FLAGS) --concurrency "$CONC")
[ "$rc" = 0 ] || die "latency run: exit $rc: $(tail -5 "$WORK/latency.err")"
[ "$(json "$WORK/latency.json" 'd["this_run"]["tokens_created"]')" = 0 ] || die "latency run bought tokens"
LAT_MPS=$(json "$WORK/latency.json" 'round(d["this_run"]["sent"] / d["this_run"]["send_secs"])')
say "raw at the same latency: wrk -t1 -c$CONC -d${WRK_SECS}s (the ceiling this sandbox allows)"
LAT_RAW=$(raw_rps latency)
LITTLE=$(calc "round($CONC / ($LATENCY_MS / 1000))")
LAT_RATIO=$(calc "round($LAT_MPS / $LITTLE, 3)")
control '{"latency_ms": 0}'
stop_sandbox

# ---- 4. memory, and 5. resume -----------------------------------------------------------
# A fresh sandbox; each size a full `run` (import + tokens + sends) on a
# fresh state. The biggest leaves $LEFT rows open (our daily quota) for the
# resume figure.
start_sandbox
declare -A MEM RUN_RPS MEM_STATE
for n in $SIZES; do
    quota=()
    [ "$n" = "$BIG" ] && quota=(--daily-quota $((n - LEFT)))
    say "memory: full run of $n rows${quota:+ (daily quota $((n - LEFT)): $LEFT rows left for the resume)}"
    MEM_STATE[$n]=$(bench_state "mem-$n")
    rc=$(timed "mem-$n" "${MEM_STATE[$n]}" run "$WORK/rows-$n.csv" --campaign "mem-$n" --template-id 246810 \
        $(SEND_FLAGS) --concurrency "$CONC" "${quota[@]}")
    want=0
    [ "$n" = "$BIG" ] && want=3
    [ "$rc" = "$want" ] || die "memory run $n: exit $rc (wanted $want): $(tail -5 "$WORK/mem-$n.err")"
    MEM[$n]=$(peak_mb "mem-$n")
    RUN_RPS[$n]=$(json "$WORK/mem-$n.json" 'round(d["this_run"]["requests"] / d["this_run"]["send_secs"])')
done
open=$(json "$WORK/mem-$BIG.json" 'd["counts"]["pending"] + d["counts"]["token_ready"] + d["counts"]["in_flight"]')
[ "$open" = "$LEFT" ] || die "the $BIG-row run left $open rows open, wanted $LEFT"

say "resume: $BIG-row campaign with $LEFT rows left"
t0=$(date +%s.%N)
rc=0
ZNS_LOG=zns_batch=debug "$BIN" --state "${MEM_STATE[$BIG]}" --json resume "mem-$BIG" \
    --daily-quota $((BIG * 2)) $(SEND_FLAGS) --concurrency "$CONC" >"$WORK/resume.json" 2>"$WORK/resume.err" || rc=$?
t1=$(date +%s.%N)
[ "$rc" = 0 ] || die "resume: exit $rc: $(tail -5 "$WORK/resume.err")"
[ "$(json "$WORK/resume.json" 'd["this_run"]["sent"]')" = "$LEFT" ] || die "resume sent $(json "$WORK/resume.json" 'd["this_run"]["sent"]') rows, wanted $LEFT"
FIRST_SEND=$(python3 - "$WORK/resume.err" "$t0" <<'EOF'
import re, sys, datetime
t0 = float(sys.argv[2])
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z\s+DEBUG.*\bsent\b", line)
    if m:
        t = datetime.datetime.fromisoformat(m.group(1)[:26]).replace(tzinfo=datetime.timezone.utc).timestamp()
        print(round(t - t0, 3))
        break
else:
    print("nan")
EOF
)
RESUME_TOTAL=$(calc "round($t1 - $t0, 3)")
stats "$WORK/stats.json"
stop_sandbox

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the table ------------------------------------------------------------------------
mem_list=""
for n in $SIZES; do mem_list="$mem_list ${MEM[$n]} MB ($n)"; done
# Flat: past the first size (where the page caches are still filling), the
# peak must not grow with the file.
mem_peak=$(for n in $SIZES; do echo "${MEM[$n]}"; done | sort -n | tail -1)
mem_mid=${MEM[$(echo "$SIZES" | awk '{print (NF > 1) ? $(NF - 1) : $NF}')]}

table=$(cat <<EOF
| # | figure | result | target | |
|---|---|---|---|---|
| 1 | import, $BIG rows (CSV → store, \`run --dry-run\`) | $IMPORT_RPS rows/s ($IMPORT_S s; whole dry run $IMPORT_WALL s), peak RSS $IMPORT_MB MB | ≥ 300000 rows/s, ≤ 64 MB | $(verdict "$IMPORT_RPS >= 300000 and $IMPORT_MB <= 64") |
| 2a | end-to-end, first run ($E2E_ROWS rows, $FIRST_TOKENS tokens bought), c=$CONC | runner $FIRST_RPS req/s · wrk $FIRST_RAW req/s · ratio **$FIRST_RATIO** | — (the sandbox's own CPU dominates; see 2c) | |
| 2b | end-to-end, rerun ($REUSE_REUSED tokens reused), c=$CONC | runner $REUSE_RPS req/s · wrk $REUSE_RAW req/s · ratio **$REUSE_RATIO** | — (see 2d) | |
| 2c | cheapest provider (nginx, fixed eTelecom replies), first run ($E2E_ROWS rows), c=$CONC | runner $NG_FIRST_RPS req/s · wrk $NG_FIRST_RAW req/s · ratio **$NG_FIRST_RATIO** | ≥ 0.4 | $(verdict "$NG_FIRST_RATIO >= 0.4") |
| 2d | cheapest provider, rerun (tokens reused), c=$CONC | runner $NG_REUSE_RPS req/s · wrk $NG_REUSE_RAW req/s · ratio **$NG_REUSE_RATIO** | ≥ 0.5 | $(verdict "$NG_REUSE_RATIO >= 0.5") |
| 3 | latency-bound: L=${LATENCY_MS} ms, C=$CONC, tokens cached ($LAT_ROWS rows) | $LAT_MPS msg/s vs C/L = $LITTLE · ratio **$LAT_RATIO** (wrk at the same latency: $LAT_RAW req/s) | ≥ 0.95 | $(verdict "$LAT_RATIO >= 0.95") |
| 4 | peak RSS of a full \`run\` (import + send) |$mem_list | ≤ 64 MB at 1M, flat | $(verdict "$mem_peak <= 64 and ${MEM[$BIG]} <= $mem_mid * 1.25 + 4") |
| 5 | resume, $BIG-row campaign, $LEFT rows left | first send after **$FIRST_SEND s** (whole resume $RESUME_TOTAL s) | ≤ 1 s | $(verdict "$FIRST_SEND <= 1") |
EOF
)
notes=$(cat <<EOF
- mode: $MODE, $PROFILE build; store: $STORE; machine: $(machine); load average before $LOAD_BEFORE, after $LOAD_AFTER
- runner req/s = (token + send calls) / send-phase seconds from the run's JSON summary; every \`in_flight\` and token write committed before its request leaves
- full-run throughput (first runs, zero latency):$(for n in $SIZES; do printf ' %s req/s (%s rows);' "${RUN_RPS[$n]}" "$n"; done)
- runner CPU per request against nginx (whole command, import included): $(if [ "$HAVE_NGINX" = 1 ]; then calc "'%.0f µs first run, %.0f µs rerun' % ($NG_FIRST_CPU / $NG_FIRST_REQ * 1e6, $NG_REUSE_CPU / $NG_REUSE_REQ * 1e6)"; else echo "n/a (no nginx)"; fi)
- sandbox CPU during the first end-to-end run: $FIRST_SB_CPU s; sandbox totals at the end: $(json "$WORK/stats.json" '"accepted %d, duplicates absorbed %d, tokens %d" % (d["accepted"], d["duplicates_absorbed"], d["tokens_created"])')
EOF
)
printf '\n%s\n\n%s\n' "$table" "$notes"
if [ -n "$OUT" ]; then
    printf '%s\n\n%s\n' "$table" "$notes" >"$OUT"
fi
