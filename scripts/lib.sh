# Shared by the bench scripts (sourced, not run): the binary, a work dir
# cleaned at exit, and a loopback serve. Sourced as
# `. "$(dirname "$0")/lib.sh" NAME` (NAME: the script's, for messages); it
# sets strict mode and runs from the repo root.
set -euo pipefail
NAME=$1
cd "$(dirname "$0")/.."
ROOT=$(pwd)

BUILD=1
PROFILE=release
KEEP=0

# bench_opt ARG: the options every bench script takes (the caller's own are
# matched before it); help prints the script's header comment.
bench_opt() {
    case "$1" in
        --no-build) BUILD=0 ;;
        --debug) PROFILE=debug ;;
        --keep) KEEP=1 ;;
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
}

# bench_serve: `serve` on 127.0.0.1:0 from $WORK (so its zns-batch.toml
# applies), without a sign-in token; sets SERVE_PID and BASE.
bench_serve() {
    (cd "$WORK" && exec env -u ZNS_SERVE_TOKEN "$BIN" --state "$WORK/state.sqlite" serve --listen 127.0.0.1:0 \
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
