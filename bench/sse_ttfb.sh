#!/usr/bin/env bash
# SSE time to first byte added by Warden's LLM gateway (issue 13 goal: under 1 ms), one run:
# a streaming chat completion (OpenAI chunk format) from a local fake provider, direct vs
# through Warden (token check, Cedar llm_call decision, budget reservation, SSE masking,
# audit), alternating request by request. Reports median and p99 of the time from sending
# the request to the first `data:` byte, and of the whole stream. Writes
# bench/results/sse-<date>.txt.
#
#   bench/sse_ttfb.sh [REQUESTS]     # default 500 per path
#   WARDEN_BIN=/path/to/warden bench/sse_ttfb.sh
#
# The provider (Python stdlib, one thread per connection, keep-alive) answers each request
# with 5 events 2 ms apart then [DONE]. Needs python3 and target/release/warden (rebuilt by
# cargo when WARDEN_BIN is not set). Every process it starts is stopped on exit.
set -euo pipefail

REQUESTS="${1:-${REQUESTS:-500}}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WARDEN="${WARDEN_BIN:-$ROOT/target/release/warden}"
RESULTS_DIR="$ROOT/bench/results"
OUT="$RESULTS_DIR/sse-$(date -u +%Y%m%d-%H%M%S).txt"

log() { printf '[sse_ttfb.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
if [ -z "${WARDEN_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release -p warden) >&2
fi

TMP="$(mktemp -d /tmp/warden-ssebench.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() {
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on port $1"
}

UP_PORT="$(free_port)"
python3 - "$UP_PORT" <<'PY' &
import json, socket, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Provider(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_POST(self):
        # Events are written one by one: without NODELAY, Nagle would hold each behind the
        # previous one's ACK, which the receiver delays (40 ms), and time that instead.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        def chunk(s):
            b = s.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))
            self.wfile.flush()
        for i in range(5):
            ev = {"id": "c", "object": "chat.completion.chunk", "model": "small", "choices": [{"index": 0, "delta": {"content": f"part {i} "}, "finish_reason": None}]}
            chunk(f"data: {json.dumps(ev)}\n\n")
            time.sleep(0.002)
        chunk('data: {"id": "c", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}\n\n')
        chunk("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Provider).serve_forever()
PY
PIDS+=($!)
wait_port "$UP_PORT"

W_PG="$(free_port)"; W_ADMIN="$(free_port)"; W_HTTP="$(free_port)"
mkdir -p "$TMP/warden"
cat >"$TMP/warden/policy.cedar" <<'EOF'
@id("bench-models")
permit(principal, action == Warden::Action::"llm_call", resource in Warden::Target::"ai") when { context.model == "small" };
EOF
cat >"$TMP/warden/warden.toml" <<EOF
data_dir = "data"
[listen]
postgres = "127.0.0.1:$W_PG"
admin = "127.0.0.1:$W_ADMIN"
http = "127.0.0.1:$W_HTTP"
[policy]
files = ["policy.cedar"]
[[http.targets]]
name = "ai"
kind = "llm"
upstream = "http://127.0.0.1:$UP_PORT"
auth = { bearer_env = "AI_KEY" }
[http.targets.models.small]
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
EOF
export AI_KEY=bench-provider-key
W="$WARDEN --config $TMP/warden/warden.toml"
$W agent create bench-bot --owner bench@example.com >/dev/null
TOKEN="$($W token issue --agent bench-bot --node agent --ttl 2h | tail -n 1)"
WARDEN_LOG=warn $W serve 2>"$TMP/warden/stderr.log" &
PIDS+=($!)
wait_port "$W_HTTP"

python3 - "$REQUESTS" "$UP_PORT" "$W_HTTP" "$TOKEN" >"$TMP/results" <<'PY'
import json, socket, statistics, sys, time

n, up, gw, token = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
body = json.dumps({"model": "small", "stream": True, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}).encode()

class Conn:
    def __init__(self, port, path, auth):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.req = (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                    f"authorization: Bearer {auth}\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body
    def once(self):
        t0 = time.perf_counter()
        self.s.sendall(self.req)
        buf, first = b"", None
        while not buf.endswith(b"0\r\n\r\n"):
            d = self.s.recv(65536)
            if not d:
                raise SystemExit("connection closed")
            buf += d
            if first is None and b"data:" in buf:
                first = time.perf_counter()
        assert b" 200 " in buf.split(b"\r\n", 1)[0], buf[:200]
        return (first - t0) * 1e3, (time.perf_counter() - t0) * 1e3

direct = Conn(up, "/v1/chat/completions", "bench-provider-key")
warden = Conn(gw, "/ai/v1/chat/completions", token)
for c in (direct, warden):
    for _ in range(20):
        c.once()
res = {"direct": [], "warden": []}
for _ in range(n):
    res["direct"].append(direct.once())
    res["warden"].append(warden.once())
def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]
for k in ("direct", "warden"):
    ttfb = [a for a, _ in res[k]]; total = [b for _, b in res[k]]
    print(f"{k:7} first byte median {statistics.median(ttfb):.3f} ms  p99 {q(ttfb, 0.99):.3f} ms   whole stream median {statistics.median(total):.3f} ms")
d = statistics.median(a for a, _ in res["warden"]) - statistics.median(a for a, _ in res["direct"])
p = q([a for a, _ in res["warden"]], 0.99) - q([a for a, _ in res["direct"]], 0.99)
print(f"added   first byte median {d:.3f} ms  p99 {p:.3f} ms   (goal: median under 1 ms)")
PY
{
    echo "# bench/sse_ttfb.sh $(date -u +%Y%m%d-%H%M%S) (UTC), $(nproc) cores, rev $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "requests per path: $REQUESTS"
    cat "$TMP/results"
} | tee /dev/stderr >"$OUT.tmp"
mkdir -p "$RESULTS_DIR" && mv "$OUT.tmp" "$OUT"
