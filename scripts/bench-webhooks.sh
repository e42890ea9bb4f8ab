#!/usr/bin/env bash
# Webhook load: a burst of eSMS delivery callbacks (GET with the query
# string eSMS sends) at a release `zns-batch serve` on 127.0.0.1, by wrk at
# a fixed concurrency. Prints callbacks/s, latency percentiles, and checks
# that every answered callback is in the ledger exactly once.
#
#   scripts/bench-webhooks.sh                 20,000 callbacks, concurrency 64
#   scripts/bench-webhooks.sh -n 5000 -c 16   other sizes
#   scripts/bench-webhooks.sh --pg postgres://postgres@127.0.0.1:5432/postgres
#                                             the same on a fresh PostgreSQL database
#
# Options: -n N (callbacks), -c N (connections), --pg URL (a server where the
# script may create a database), --no-build, --debug (the debug build:
# checks the script; the figures mean nothing), --keep.
# Every callback names a distinct SMSID, so each is a new event; serve
# commits them durably (synchronous=FULL: the WAL is fsynced before the
# 2xx), the callbacks that arrive during one commit sharing the next
# (group commit; the script prints callbacks per commit from /metrics).
# They match no campaign (stored unmatched), which costs the same lookup
# as a match. Target: ≥ 5,000 callbacks/s at -c 64 (printed, not enforced);
# exit 1 if an answered callback is missing from the ledger or stored twice.
# Needs: cargo, wrk, python3.
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh" bench-webhooks

N=20000
CONNS=64
while [ $# -gt 0 ]; do
    case "$1" in
        -n) N="$2"; shift ;;
        -c) CONNS="$2"; shift ;;
        --pg) bench_pg "${2:-}"; shift ;;
        *) bench_opt "$1" ;;
    esac
    shift
done
command -v wrk >/dev/null || { echo "bench-webhooks: needs wrk (apt-get install wrk)" >&2; exit 2; }

bench_bin
bench_workdir

# The path token is made up per run; it never reaches the output.
ZNS_WEBHOOK_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
export ZNS_WEBHOOK_TOKEN
STATE=$(bench_state state)
bench_serve

THREADS=4
[ "$CONNS" -lt "$THREADS" ] && THREADS=$CONNS
PER_THREAD=$(( (N + THREADS - 1) / THREADS ))
cat >"$WORK/esms.lua" <<LUA
-- One eSMS callback per request, each with its own SMSID; a thread stops
-- after its share, so the burst is N callbacks in all.
local counter = 0
local threads = {}
function setup(thread)
    thread:set("tid", #threads + 1)
    table.insert(threads, thread)
end
function init(args)
    limit = $PER_THREAD
    sent = 0
    done_count = 0
end
function request()
    sent = sent + 1
    local id = string.format("bench%02d%08d", tid, sent)
    local path = "/webhooks/esms/$ZNS_WEBHOOK_TOKEN?SMSID=" .. id ..
        "&SendStatus=5&SendSuccess=1&SendFailed=0&RequestId=r-" .. id ..
        "&partnerids=" .. id .. "&error_info=%7B%22error%22%3A0%2C%22message%22%3A%22Success%22%7D" ..
        "&oaid=4318226164000000001&tempid=246810&phonenumber=84912345678&TypeId=27"
    return wrk.format("GET", path)
end
function response(status, headers, body)
    done_count = done_count + 1
    if done_count >= limit then wrk.thread:stop() end
end
function done(summary, latency, requests)
    local secs = summary.duration / 1e6
    local bad = summary.errors.status + summary.errors.connect + summary.errors.read +
        summary.errors.write + summary.errors.timeout
    io.write(string.format("RESULT requests=%d secs=%.3f rate=%.0f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f errors=%d\n",
        summary.requests, secs, summary.requests / secs,
        latency:percentile(50) / 1000, latency:percentile(90) / 1000,
        latency:percentile(99) / 1000, latency.max / 1000, bad))
end
LUA

echo "bench-webhooks: $N eSMS callbacks, $CONNS connections, $PROFILE serve at 127.0.0.1"
# wrk runs for its whole -d even when every thread has stopped: interrupt it
# (it then prints its summary) once the ledger holds the burst.
wrk -t"$THREADS" -c"$CONNS" -d300s --timeout 10s -s "$WORK/esms.lua" "$BASE" >"$WORK/wrk.out" 2>&1 &
WRK_PID=$!
deadline=$((SECONDS + 300))
while [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.5
    got=$(bench_sql "$STATE" "SELECT COUNT(*) FROM delivery_events" 2>/dev/null || echo 0)
    [ "${got:-0}" -ge "$N" ] && break
done
sleep 0.3
kill -INT "$WRK_PID" 2>/dev/null || true
wait "$WRK_PID" || true
RESULT=$(grep '^RESULT ' "$WORK/wrk.out" || true)
[ -n "$RESULT" ] || { cat "$WORK/wrk.out" >&2; exit 1; }

# wrk may have a few requests in flight when a thread stops: count what it
# says was answered against what the ledger holds.
# Absorbed per second, first commit to last (wrk's own clock includes the wait).
STORED=$(bench_sql "$STATE" "SELECT COUNT(*), COUNT(DISTINCT msg_id), COALESCE(MAX(received_ms) - MIN(received_ms), 0)
    FROM delivery_events WHERE provider = 'esms'" | awk '{m = ($3 > 1) ? $3 : 1; printf "%d %d %.0f\n", $1, $2, $1 * 1000 / m}')
read -r TOTAL DISTINCT RATE <<<"$STORED"
# Transactions that stored them (no token set: /metrics is open on loopback).
COMMITS=$(python3 - "$BASE" <<'PY'
import sys, urllib.request
body = urllib.request.urlopen(sys.argv[1] + "/metrics", timeout=10).read().decode()
print(next((l.split()[1] for l in body.splitlines() if l.startswith("zns_webhook_commits_total ")), "0"))
PY
)
if [ -n "$PG" ]; then
    SYNC="PostgreSQL: fsync $(bench_sql "$STATE" "SHOW fsync"), synchronous_commit $(bench_sql "$STATE" "SHOW synchronous_commit")"
else
    SYNC="synchronous=FULL, journal $(bench_sql "$STATE" "PRAGMA journal_mode")"
fi
eval "$(echo "$RESULT" | sed 's/^RESULT //' | tr ' ' '\n' | sed 's/^/W_/')"
printf '%-22s %s\n' "callbacks answered" "$W_requests (errors: $W_errors)" \
    "in the ledger" "$TOTAL events, $DISTINCT distinct (each once)" \
    "callbacks/s" "$RATE (committed, first to last; target ≥ 5000 at c=64: $([ "$RATE" -ge 5000 ] && echo met || echo MISSED))" \
    "commits (fsyncs)" "$COMMITS, $(python3 -c "print(f'{$TOTAL / max($COMMITS, 1):.1f}')") callbacks each ($SYNC)" \
    "latency p50 / p90" "$W_p50_ms / $W_p90_ms ms" \
    "latency p99 / max" "$W_p99_ms / $W_max_ms ms"
if [ "$TOTAL" != "$DISTINCT" ] || [ "$TOTAL" -lt "$(( W_requests - W_errors ))" ]; then
    echo "bench-webhooks: the ledger does not hold every answered callback once" >&2
    exit 1
fi
