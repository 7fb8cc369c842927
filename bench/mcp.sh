#!/usr/bin/env bash
# Added latency per MCP tools/call through Warden vs direct, median and p99, one run.
# Writes bench/results/mcp-<date>.txt.
#
#   bench/mcp.sh [CALLS]            # default 2000 calls per path
#   WARDEN_BIN=/path/to/warden bench/mcp.sh
#
# Upstream: the FastMCP server of the tests (crates/warden/tests/mcp_fixtures/server.py,
# streamable HTTP, answers as SSE). Client: raw JSON-RPC over one keep-alive httpx
# connection per path, one session each (initialize, notifications/initialized,
# tools/list), then CALLS x `tools/call lookup` (its result carries a card number, so
# Warden masks text and structuredContent), alternating direct and Warden call by call so
# both see the same upstream load. Warden does per call: token check, JSON-RPC parse,
# pin check, Cedar decision on the arguments (cached), forward, SSE parse, masking,
# durable audit record.
# Needs: python3 with the mcp package (python3 -m pip install "mcp<2"), target/release/warden
# (rebuilt by cargo if stale). Every process it starts is stopped on exit.
set -euo pipefail

CALLS="${1:-${CALLS:-2000}}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WARDEN="${WARDEN_BIN:-$ROOT/target/release/warden}"
RESULTS_DIR="$ROOT/bench/results"
STAMP="$(date -u +%Y%m%d-%H%M%S)"
OUT="$RESULTS_DIR/mcp-$STAMP.txt"

log() { printf '[mcp.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

python3 -c 'import mcp.server.fastmcp, httpx' 2>/dev/null || die "python3 -m pip install 'mcp<2'"
if [ -z "${WARDEN_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release -p warden) >&2
fi

TMP="$(mktemp -d "${BENCH_TMP:-/tmp}/warden-mcpbench.XXXXXX")"
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

export SHOP_MCP_TOKEN=bench-upstream-token
UP_PORT="$(free_port)"
python3 "$ROOT/crates/warden/tests/mcp_fixtures/server.py" "$UP_PORT" 2>"$TMP/server.log" &
PIDS+=($!)
wait_port "$UP_PORT"

W_PG="$(free_port)"; W_ADMIN="$(free_port)"; W_HTTP="$(free_port)"
mkdir -p "$TMP/warden"
cat >"$TMP/warden/policy.cedar" <<'EOF'
@id("bench-lookup")
permit(principal, action == Warden::Action::"mcp_tool_call", resource == Warden::Tool::"shop/lookup")
when { context.node == "reader" && context.arguments has customer_id && context.arguments.customer_id < 1000000 };
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
name = "shop"
kind = "mcp"
upstream = "http://127.0.0.1:$UP_PORT"
auth = { bearer_env = "SHOP_MCP_TOKEN" }
EOF
W="$WARDEN --config $TMP/warden/warden.toml"
$W agent create bench-bot --owner bench@example.com >/dev/null
TOKEN="$($W token issue --agent bench-bot --node reader --ttl 2h)"
WARDEN_LOG=warn $W serve 2>"$TMP/warden/stderr.log" &
PIDS+=($!)
wait_port "$W_HTTP"

python3 - "$CALLS" "http://127.0.0.1:$UP_PORT/mcp" "http://127.0.0.1:$W_HTTP/shop/mcp" "$TOKEN" >"$TMP/results" <<'PY'
import json, statistics, sys, time
import httpx

calls, direct_url, warden_url, token = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ACCEPT = "application/json, text/event-stream"

def messages(r):
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        return [json.loads(l[5:]) for l in r.text.splitlines() if l.startswith("data:") and l[5:].strip()]
    return [r.json()] if r.content else []

class Session:
    def __init__(self, url, headers):
        self.url, self.c, self.h, self.n = url, httpx.Client(timeout=30), dict(headers, accept=ACCEPT), 0
        r = self.rpc("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}})
        self.h["mcp-session-id"] = self.last.headers["mcp-session-id"]
        self.h["mcp-protocol-version"] = "2025-06-18"
        self.c.post(self.url, headers=self.h, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.rpc("tools/list", {})
    def rpc(self, method, params):
        self.n += 1
        self.last = self.c.post(self.url, headers=self.h, json={"jsonrpc": "2.0", "id": self.n, "method": method, "params": params})
        m = [m for m in messages(self.last) if m.get("id") == self.n]
        assert m and "result" in m[0], (self.last.status_code, self.last.text)
        return m[0]["result"]

direct = Session(direct_url, {"authorization": "Bearer bench-upstream-token"})
warden = Session(warden_url, {"authorization": f"Bearer {token}", "x-warden-node": "reader"})
res = warden.rpc("tools/call", {"name": "lookup", "arguments": {"customer_id": 1}})
assert "4111" not in json.dumps(res), res
for _ in range(50):
    direct.rpc("tools/call", {"name": "lookup", "arguments": {"customer_id": 1}})
    warden.rpc("tools/call", {"name": "lookup", "arguments": {"customer_id": 1}})
td, tw = [], []
for i in range(calls):
    for s, out in ((direct, td), (warden, tw)) if i % 2 == 0 else ((warden, tw), (direct, td)):
        t0 = time.perf_counter()
        s.rpc("tools/call", {"name": "lookup", "arguments": {"customer_id": i % 1000}})
        out.append((time.perf_counter() - t0) * 1000)
def q(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(p * len(v)))]
d50, d99, w50, w99 = statistics.median(td), q(td, 0.99), statistics.median(tw), q(tw, 0.99)
print(f"calls per path: {calls}")
print(f"direct  median {d50:.3f} ms  p99 {d99:.3f} ms")
print(f"warden  median {w50:.3f} ms  p99 {w99:.3f} ms")
print(f"added   median {w50 - d50:.3f} ms  p99 {w99 - d99:.3f} ms")
PY

mkdir -p "$RESULTS_DIR"
{
    echo "# bench/mcp.sh $STAMP (UTC), $(nproc) cores"
    echo "# warden rev $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'), mcp $(python3 -c 'import importlib.metadata as m; print(m.version("mcp"))')"
    cat "$TMP/results"
} | tee "$OUT"
