#!/usr/bin/env bash
# serve under many live pages: a release `zns-batch serve` on 127.0.0.1
# with a sent campaign, then
#   1. 500 SSE clients (python3 asyncio, loopback) on that campaign's
#      /events, each reading its progress events; meanwhile the campaign
#      list `GET /api/v1/campaigns` is timed (p50 / p90, target p50 ≤ 200 ms)
#      and serve's peak RSS read from /proc (VmHWM, target ≤ 150 MB);
#   2. the clients close: RSS again (streams and pollers released); steps
#      1-2 run twice, so memory kept per connection would show as growth;
#   3. 1000 slow clients: connections that send half a request and then
#      nothing, held a few seconds; list latency and RSS again.
#
#   scripts/bench-sse.sh                       500 streams, 1000 slow clients, 10k-row campaign
#   scripts/bench-sse.sh -s 200 --slow 300     other sizes
#
# Options: -s N (SSE clients), --slow N (half-open clients), --rows N
# (campaign size), --hold SECS (how long each phase holds, default 5),
# --no-build, --debug (the debug build: checks the script; the figures
# mean nothing), --keep. Exit 1 if a client gets no progress event or
# the list fails; a missed target is printed, not an error.
# Needs: cargo, python3.
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh" bench-sse

STREAMS=500
SLOW=1000
ROWS=10000
HOLD=5
while [ $# -gt 0 ]; do
    case "$1" in
        -s) STREAMS="$2"; shift ;;
        --slow) SLOW="$2"; shift ;;
        --rows) ROWS="$2"; shift ;;
        --hold) HOLD="$2"; shift ;;
        *) bench_opt "$1" ;;
    esac
    shift
done
# Each client is a descriptor here and one in serve.
NEED=$(( STREAMS + SLOW + 256 ))
[ "$(ulimit -n)" -ge "$NEED" ] || ulimit -n "$NEED" 2>/dev/null || {
    echo "bench-sse: needs ulimit -n ≥ $NEED" >&2; exit 2; }

bench_bin
bench_workdir

# A campaign of $ROWS rows sent through the embedded sandbox (so the
# status the pollers and the list read has sent rows and a ledger pass),
# and a small one beside it.
bench_csv "$WORK/rows.csv" "$ROWS"
echo "bench-sse: sending a $ROWS-row campaign through the embedded sandbox"
"$BIN" --state "$WORK/state.sqlite" run "$WORK/rows.csv" --campaign sse \
    --template-id 246810 --rate 100000 --concurrency 64 >"$WORK/run.out" 2>"$WORK/run.err" \
    || { echo "bench-sse: the campaign run failed:" >&2; tail "$WORK/run.err" >&2; exit 1; }
"$BIN" --state "$WORK/state.sqlite" run samples/billing-notice.csv --campaign small \
    --template-id 246810 --rate 100000 >/dev/null 2>&1

printf 'max_event_streams = %d\n' $(( STREAMS + 10 )) >"$WORK/zns-batch.toml"
bench_serve

echo "bench-sse: $STREAMS SSE clients, then $SLOW slow clients, $PROFILE serve at 127.0.0.1 (pid $SERVE_PID)"
python3 - "$BASE" "$SERVE_PID" "$STREAMS" "$SLOW" "$HOLD" <<'PY'
import asyncio, statistics, sys, time
from urllib.parse import urlparse

base, pid, streams, slow, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
u = urlparse(base)
HOST, PORT = u.hostname, u.port
assert HOST in ("127.0.0.1", "localhost"), "loopback only"

def mem():
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = int(v.split()[0])
    return out

def mb(kib):
    return f"{kib / 1024:.1f} MB"

async def get(path):
    """One GET on a fresh connection: (status, body, seconds)."""
    t0 = time.perf_counter()
    r, w = await asyncio.open_connection(HOST, PORT)
    w.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{PORT}\r\nConnection: close\r\n\r\n".encode())
    await w.drain()
    data = await asyncio.wait_for(r.read(), 30)
    w.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body, time.perf_counter() - t0

async def list_latency(n=40):
    """The campaign list, n times one after the other: (p50, p90) in ms."""
    times = []
    for _ in range(n):
        code, _, secs = await get("/api/v1/campaigns")
        if code != 200:
            raise SystemExit(f"bench-sse: the campaign list answered {code}")
        times.append(secs * 1000)
        await asyncio.sleep(0.05)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9) - 1]

async def metric(name):
    _, body, _ = await get("/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0

class Client:
    """One SSE stream: counts its progress events."""
    def __init__(self):
        self.events = 0
        self.first = asyncio.get_running_loop().create_future()

    async def run(self, stop):
        r, w = await asyncio.open_connection(HOST, PORT)
        w.write(f"GET /api/v1/campaigns/sse/events HTTP/1.1\r\nHost: {HOST}:{PORT}\r\nAccept: text/event-stream\r\n\r\n".encode())
        await w.drain()
        status = await r.readline()
        if b" 200 " not in status:
            self.first.set_exception(RuntimeError(status.decode().strip()))
            w.close()
            return
        try:
            while not stop.is_set():
                line = await asyncio.wait_for(r.readline(), 30)
                if not line:
                    break
                if line.startswith(b"event: progress"):
                    self.events += 1
                    if not self.first.done():
                        self.first.set_result(time.perf_counter())
        except asyncio.TimeoutError:
            pass
        finally:
            w.close()

async def sse_round(round_no):
    """Open the SSE clients, time the list, hold, close; RSS after.
    Round 2 repeats round 1: memory kept per connection would show there."""
    stop = asyncio.Event()
    clients = [Client() for _ in range(streams)]
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(c.run(stop)) for c in clients]
    firsts = await asyncio.wait_for(asyncio.gather(*(c.first for c in clients), return_exceptions=True), 60)
    bad = [f for f in firsts if isinstance(f, Exception)]
    if bad:
        raise SystemExit(f"bench-sse: {len(bad)} of {streams} clients got no stream: {bad[0]}")
    all_in = max(firsts) - t0
    pollers = await metric("zns_event_stream_pollers")
    open_streams = await metric("zns_event_streams")
    p50, p90 = await list_latency()
    await asyncio.sleep(hold)
    m = mem()
    events = sum(c.events for c in clients)
    lagging = sum(1 for c in clients if c.events < 2)
    print(f"{f'{streams} SSE clients open (round {round_no})':34} all had their first event within {all_in * 1000:.0f} ms; "
          f"{open_streams:.0f} streams, {pollers:.0f} poller(s); {events} events read, {lagging} clients with < 2")
    print(f"{'campaign list during':34} p50 {p50:.1f} ms, p90 {p90:.1f} ms (target p50 ≤ 200 ms: "
          f"{'met' if p50 <= 200 else 'MISSED'})")
    print(f"{'serve memory with them':34} RSS {mb(m['VmRSS'])}, peak {mb(m['VmHWM'])}, {m['Threads']} threads "
          f"(target peak ≤ 150 MB: {'met' if m['VmHWM'] <= 150 * 1024 else 'MISSED'})")

    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    t_close = time.perf_counter()
    while (await metric("zns_event_stream_pollers")) > 0 or (await metric("zns_event_streams")) > 0:
        if time.perf_counter() - t_close > 15:
            raise SystemExit("bench-sse: streams or pollers still open 15 s after the clients left")
        await asyncio.sleep(0.1)
    gone = time.perf_counter() - t_close
    await asyncio.sleep(1)
    m = mem()
    print(f"{f'clients gone (round {round_no})':34} streams and poller released in {gone * 1000:.0f} ms; RSS {mb(m['VmRSS'])}")


async def main():
    idle = mem()
    p50_0, p90_0 = await list_latency()
    print(f"{'serve idle':34} RSS {mb(idle['VmRSS'])}; list p50 {p50_0:.1f} ms, p90 {p90_0:.1f} ms")

    for round_no in (1, 2):
        await sse_round(round_no)

    # Slow clients: half a request, then nothing.
    conns = []
    for i in range(slow):
        r, w = await asyncio.open_connection(HOST, PORT)
        w.write(f"GET /api/v1/campaigns HTTP/1.1\r\nHost: {HOST}:{PORT}\r\nX-Slow: {i}\r\n".encode())
        conns.append((r, w))
    await asyncio.gather(*(w.drain() for _, w in conns))
    p50, p90 = await list_latency()
    await asyncio.sleep(hold)
    m = mem()
    async def closed(r):
        # serve closed it (a header timeout) if reading gives EOF at once.
        try:
            return await asyncio.wait_for(r.read(1), 0.2) == b""
        except (asyncio.TimeoutError, ConnectionError):
            return False
    still = slow - sum(await asyncio.gather(*(closed(r) for r, _ in conns)))
    print(f"{f'{slow} slow clients held {hold:.0f} s':34} list p50 {p50:.1f} ms, p90 {p90:.1f} ms; "
          f"RSS {mb(m['VmRSS'])}, peak {mb(m['VmHWM'])}; {still} still open")
    for _, w in conns:
        w.close()
    await asyncio.sleep(1)
    m = mem()
    print(f"{'slow clients gone':34} RSS {mb(m['VmRSS'])}, peak over the whole run {mb(m['VmHWM'])}")

asyncio.run(main())
PY
