#!/usr/bin/env bash
# Pages at a million rows (issue 23): a release `zns-batch serve` over a
# ledger of 100 campaigns, one of them 1,000,000 rows, then
#   1. GET / (the campaigns page) and GET /campaigns/big (its page), -n
#      times each, one after the other on one connection: p50 / p99
#      (target p50 ≤ 50 ms);
#   2. GET /campaigns/big/check, the Check page of the 1M-row upload (its
#      counts and its plan): p50 / p99 (target ≤ 1 s);
#   3. a 1M-row .xlsx (scripts/make-big-xlsx.py) imported by
#      `run --dry-run`: wall time and peak RSS (/usr/bin/time -v).
# With --sent the big campaign's rows are then marked sent, one send every
# 10 ms from 3 hours ago (one SQL UPDATE: the state database's triggers
# count them as they count the writer's marks; sending 1M through the
# embedded sandbox takes most of an hour on a loaded 2-core machine), so
# its page draws a full delivery chart; --callbacks N (default 100,000) of
# its messages then get an eSMS delivery callback (SendStatus=5: received)
# through serve's webhook before the pages are timed; /metrics and
# /api/v1/campaigns are timed too.
# The big campaign is a generated CSV imported by `run --dry-run` (the
# import as an upload does it; its time is printed too); the small ones
# are the sample file, every tenth sent through the embedded sandbox.
#
#   scripts/bench-pages.sh                      1M rows, 100 campaigns
#   scripts/bench-pages.sh --rows 200000 -n 20  other sizes
#   scripts/bench-pages.sh --smoke              seconds: 2,000 rows, 5 campaigns, no xlsx
#   scripts/bench-pages.sh --bin OTHER/zns-batch --no-build   another build (before/after)
#   scripts/bench-pages.sh --sent --no-xlsx     the 1M rows sent, 100k callbacks
#
# Options: --rows N, --campaigns N, -n N (requests per page, default 50),
# --check-n N (Check page requests, default 10), --no-xlsx, --bin PATH,
# --sent, --callbacks N, --smoke, --no-build, --debug (checks the script; figures mean nothing),
# --keep. Exit 1 if a page fails; a missed target is printed, not an error.
# Needs: cargo, python3 (and its xlsxwriter for step 3, else it is skipped).
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh" bench-pages

ROWS=1000000
CAMPAIGNS=100
REQS=50
CHECK_REQS=10
XLSX=1
OTHER_BIN=""
SENT=0
CALLBACKS=100000
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) ROWS="$2"; shift ;;
        --campaigns) CAMPAIGNS="$2"; shift ;;
        -n) REQS="$2"; shift ;;
        --check-n) CHECK_REQS="$2"; shift ;;
        --no-xlsx) XLSX=0 ;;
        --bin) OTHER_BIN="$2"; shift ;;
        --sent) SENT=1 ;;
        --callbacks) CALLBACKS="$2"; shift ;;
        --smoke) ROWS=2000; CAMPAIGNS=5; REQS=5; CHECK_REQS=2; XLSX=0; CALLBACKS=500 ;;
        *) bench_opt "$1" ;;
    esac
    shift
done

if [ -n "$OTHER_BIN" ]; then
    BIN=$OTHER_BIN
    [ -x "$BIN" ] || { echo "bench-pages: no binary at $BIN" >&2; exit 2; }
else
    bench_bin
fi
bench_workdir
STATE="$WORK/state.sqlite"

bench_csv "$WORK/big.csv" "$ROWS"

echo "bench-pages: importing a $ROWS-row campaign (run --dry-run)"
start=$(date +%s.%N)
"$BIN" --state "$STATE" run "$WORK/big.csv" --campaign big --template-id 246810 --dry-run --json \
    >"$WORK/big.json" 2>"$WORK/big.err" \
    || { echo "bench-pages: the import failed:" >&2; tail "$WORK/big.err" >&2; exit 1; }
end=$(date +%s.%N)
python3 - "$WORK/big.json" "$start" "$end" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
print(f"  import {plan.get('import_secs') or 0:.2f} s (whole dry run {float(sys.argv[3]) - float(sys.argv[2]):.2f} s), "
      f"{plan['rows']} rows, {plan['messages_to_send']} to send")
PY
if [ "$SENT" = 1 ]; then
    python3 - "$STATE" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA cache_size = -262144")  # 256 MB: the indexes stay in memory
t0 = time.time()
start_ms = int(t0 * 1000) - 3 * 3600 * 1000
with db:
    n = db.execute(
        "UPDATE rows SET state = 'sent', msg_id = 'bench-' || id, sent_ms = ?1 + line * 10, "
        "updated_ms = ?1 + line * 10, attempts = 1 "
        "WHERE campaign_id = (SELECT id FROM campaigns WHERE name = 'big') AND state = 'pending'",
        (start_ms,)).rowcount
print(f"  {n} rows marked sent in {time.time() - t0:.1f} s")
PY
fi

echo "bench-pages: $(( CAMPAIGNS - 1 )) small campaigns beside it"
for i in $(seq 2 "$CAMPAIGNS"); do
    if [ $(( i % 10 )) = 0 ]; then send=(--rate 100000); else send=(--dry-run); fi
    "$BIN" --state "$STATE" run samples/billing-notice.csv --campaign "small-$i" \
        --template-id 246810 "${send[@]}" >/dev/null 2>"$WORK/small.err" \
        || { echo "bench-pages: campaign small-$i failed:" >&2; tail "$WORK/small.err" >&2; exit 1; }
done

# The path token of the webhooks is made up per run; it never reaches the output.
ZNS_WEBHOOK_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
export ZNS_WEBHOOK_TOKEN
bench_serve
if [ "$SENT" = 1 ] && [ "$CALLBACKS" -gt 0 ]; then
    echo "bench-pages: $CALLBACKS eSMS delivery callbacks for the big campaign's messages"
    python3 - "$STATE" "$BASE" "$CALLBACKS" <<'PY'
import http.client, sqlite3, sys, threading, time, os
from urllib.parse import quote, urlparse
state, base, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
token = os.environ["ZNS_WEBHOOK_TOKEN"]
ids = [r[0] for r in sqlite3.connect(f"file:{state}?mode=ro", uri=True).execute(
    "SELECT r.msg_id FROM rows r JOIN campaigns c ON c.id = r.campaign_id "
    "WHERE c.name = 'big' AND r.msg_id IS NOT NULL ORDER BY r.id LIMIT ?", (n,))]
u = urlparse(base)
bad = []
def worker(part):
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    for m in part:
        conn.request("GET", f"/webhooks/esms/{token}?SMSID={quote(m)}&SendStatus=5&SendSuccess=1&SendFailed=0")
        r = conn.getresponse(); r.read()
        if r.status != 200:
            bad.append(r.status)
t0 = time.time()
threads = [threading.Thread(target=worker, args=(ids[i::8],)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
if bad:
    sys.exit(f"bench-pages: {len(bad)} callbacks refused ({bad[0]})")
print(f"  {len(ids)} callbacks stored in {time.time() - t0:.1f} s")
PY
fi
echo "bench-pages: $PROFILE serve at $BASE (pid $SERVE_PID), $REQS requests a page, $CHECK_REQS of the Check page"
python3 - "$BASE" "$REQS" "$CHECK_REQS" "$SENT" <<'PY'
import http.client, statistics, sys, time
from urllib.parse import urlparse

base, n, check_n, sent = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
u = urlparse(base)
assert u.hostname in ("127.0.0.1", "localhost"), "loopback only"
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)

def get(path):
    t = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    ms = (time.perf_counter() - t) * 1000
    if r.status != 200:
        sys.exit(f"bench-pages: GET {path} answered {r.status}: {body[:300]!r}")
    return ms, body

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

pages = [
    ("campaigns page   GET /", "/", n, 50),
    ("campaign page    GET /campaigns/big", "/campaigns/big", n, 50),
    ("Check page       GET /campaigns/big/check", "/campaigns/big/check", check_n, 1000),
]
if sent:
    # No target of their own: a scrape and the API's list, timed alike.
    pages += [("metrics          GET /metrics", "/metrics", n, 50),
              ("API list         GET /api/v1/campaigns", "/api/v1/campaigns", n, 50)]
for label, path, reps, target in pages:
    _, body = get(path)  # warm: the first request opens connections
    assert b"big" in body, f"{path}: the page does not name the campaign"
    times = [get(path)[0] for _ in range(reps)]
    p50, p99 = statistics.median(times), pct(times, 99)
    verdict = "met" if p50 <= target else "MISSED"
    print(f"  {label:45s} p50 {p50:8.1f} ms  p99 {p99:8.1f} ms  (n={reps}; target p50 ≤ {target} ms: {verdict})")
PY

if [ "$XLSX" = 1 ]; then
    if python3 -c 'import xlsxwriter' 2>/dev/null; then
        echo "bench-pages: a $ROWS-row .xlsx imported by run --dry-run"
        python3 scripts/make-big-xlsx.py "$WORK/big.xlsx" "$ROWS"
        /usr/bin/time -v "$BIN" --state "$WORK/xlsx.sqlite" run "$WORK/big.xlsx" --campaign big-xlsx \
            --template-id 246810 --dry-run --provider sandbox >/dev/null 2>"$WORK/xlsx.err" \
            || { echo "bench-pages: the .xlsx import failed:" >&2; tail "$WORK/xlsx.err" >&2; exit 1; }
        python3 - "$WORK/xlsx.err" "$WORK/big.xlsx" <<'PY'
import os, re, sys
text = open(sys.argv[1]).read()
wall = re.search(r"Elapsed \(wall clock\) time.*: (.*)", text).group(1)
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
print(f"  .xlsx ({os.path.getsize(sys.argv[2]) / 1e6:.1f} MB) import: wall {wall}, peak RSS {rss / 1024:.1f} MB")
PY
    else
        echo "bench-pages: no python3 xlsxwriter: the .xlsx step is skipped (pip install xlsxwriter)"
    fi
fi
