#!/usr/bin/env bash
# wrk through Warden's HTTP gateway vs direct vs nginx as a reverse proxy, same upstream, one
# run each: requests per second and p99 latency, and the ratios. Writes
# bench/results/http-<date>.txt.
#
#   bench/http.sh [SECONDS]                 # default 15 s per setup
#   CONNS=64 THREADS=2 bench/http.sh 30
#   WARDEN_BIN=/path/to/warden bench/http.sh
#
# The upstream is an nginx serving one small JSON document (with a card number in it, so
# Warden's masking has work to do). Setups:
#   direct  wrk -> upstream nginx
#   nginx   wrk -> nginx reverse proxy (proxy_pass, keepalive upstream pool) -> upstream
#   warden  wrk -> warden serve (token auth, path normalization, Cedar decision, audit
#           record per request, JSON masking) -> upstream
# Needs: wrk and nginx (apt-get install -y wrk nginx-light), target/release/warden (built if
# missing). Every process it starts is stopped on exit; the temp dir is removed.
set -euo pipefail

SECS="${1:-${SECS:-15}}"
CONNS="${CONNS:-32}"
THREADS="${THREADS:-2}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WARDEN="${WARDEN_BIN:-$ROOT/target/release/warden}"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
RESULTS_DIR="$ROOT/bench/results"
STAMP="$(date -u +%Y%m%d-%H%M%S)"
OUT="$RESULTS_DIR/http-$STAMP.txt"

log() { printf '[http.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v wrk >/dev/null || die "wrk not found (apt-get install -y wrk)"
[ -x "$NGINX" ] || die "nginx not found (apt-get install -y nginx-light)"
if [ ! -x "$WARDEN" ]; then
    log "building target/release/warden"
    (cd "$ROOT" && cargo build --release -p warden) >&2
fi

TMP="$(mktemp -d /tmp/warden-httpbench.XXXXXX)"
chmod 755 "$TMP"
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

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    die "nothing listens on port $1"
}

UP_PORT="$(free_port)"
PROXY_PORT="$(free_port)"
BODY='{"id":1,"name":"Ada Lovelace","email_opt_in":false,"card":"4111 1111 1111 1111","orders":[{"id":10,"total":"12.50"},{"id":11,"total":"7.00"}]}'

# One nginx: the upstream server block and the reverse-proxy server block, separate ports.
mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream backend { server 127.0.0.1:$UP_PORT; keepalive 128; }
    server {
        listen 127.0.0.1:$UP_PORT;
        location / { default_type application/json; return 200 '$BODY'; }
    }
    server {
        listen 127.0.0.1:$PROXY_PORT;
        location /api/ {
            proxy_pass http://backend/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer upstream-secret";
        }
    }
}
EOF
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" 2>"$TMP/nginx/logs/stderr.log" &
PIDS+=($!)
wait_port "$UP_PORT"
wait_port "$PROXY_PORT"

# Warden with one HTTP target over the same upstream, policy and audit on.
W_HTTP="$(free_port)"; W_PG="$(free_port)"; W_ADMIN="$(free_port)"
mkdir -p "$TMP/warden"
cat >"$TMP/warden/policy.cedar" <<'EOF'
@id("bench-reader-gets")
permit(principal, action == Warden::Action::"http_request", resource is Warden::Route in Warden::Target::"api")
when { context.node == "reader" && resource.method == "GET" && resource.path like "/customers/*" };
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
name = "api"
kind = "http"
upstream = "http://127.0.0.1:$UP_PORT"
auth = { bearer_env = "BENCH_UPSTREAM_TOKEN" }
EOF
export BENCH_UPSTREAM_TOKEN=upstream-secret
W="$WARDEN --config $TMP/warden/warden.toml"
$W agent create bench-bot --owner bench@example.com >/dev/null
TOKEN="$($W token issue --agent bench-bot --node reader --ttl 2h)"
WARDEN_LOG=warn $W serve 2>"$TMP/warden/stderr.log" &
PIDS+=($!)
WARDEN_PID=$!
wait_port "$W_HTTP"

# Sanity: each setup answers 200 and Warden masks the card.
curl -fsS "http://127.0.0.1:$UP_PORT/customers/1" >/dev/null
curl -fsS "http://127.0.0.1:$PROXY_PORT/api/customers/1" >/dev/null
W_BODY="$(curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$W_HTTP/api/customers/1")"
case "$W_BODY" in *4111*) die "warden did not mask the card: $W_BODY" ;; esac

run() { # name url [header...]
    local name="$1" url="$2"; shift 2
    local args=()
    for h in "$@"; do args+=(-H "$h"); done
    log "$name: wrk -t$THREADS -c$CONNS -d${SECS}s $url"
    wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency "${args[@]}" "$url" >"$TMP/$name.wrk"
    sed "s/^/[wrk $name] /" "$TMP/$name.wrk" | grep -E "Requests/sec|errors|Non-2xx|Latency " >&2 || true
    local rps p99 non2xx
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$TMP/$name.wrk")"
    p99="$(awk '$1 == "99%" {print $2}' "$TMP/$name.wrk")"
    non2xx="$(awk '/Non-2xx/ {print $5}' "$TMP/$name.wrk")"
    printf '%s %s %s %s\n' "$name" "$rps" "$p99" "${non2xx:-0}" >>"$TMP/results"
}

to_ms() { # wrk latency ("812.00us", "1.23ms", "2.00s") -> milliseconds
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}

: >"$TMP/results"
run direct "http://127.0.0.1:$UP_PORT/customers/1"
run nginx "http://127.0.0.1:$PROXY_PORT/api/customers/1"
run warden "http://127.0.0.1:$W_HTTP/api/customers/1" "Authorization: Bearer $TOKEN"
W_RSS_KB="$(awk '/VmHWM/ {print $2}' "/proc/$WARDEN_PID/status" 2>/dev/null || echo '?')"

mkdir -p "$RESULTS_DIR"
{
    echo "# bench/http.sh $STAMP: wrk -t$THREADS -c$CONNS -d${SECS}s, one run per setup, $(nproc) cores shared"
    echo "# warden: $("$WARDEN" --version 2>/dev/null || echo "$WARDEN") rev $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
    printf '%-8s %12s %10s %8s\n' setup rps p99_ms non2xx
    while read -r name rps p99 non2xx; do
        printf '%-8s %12s %10s %8s\n' "$name" "$rps" "$(to_ms "$p99")" "$non2xx"
    done <"$TMP/results"
    d_rps="$(awk '$1=="direct"{print $2}' "$TMP/results")"
    n_rps="$(awk '$1=="nginx"{print $2}' "$TMP/results")"
    w_rps="$(awk '$1=="warden"{print $2}' "$TMP/results")"
    n_p99="$(to_ms "$(awk '$1=="nginx"{print $3}' "$TMP/results")")"
    w_p99="$(to_ms "$(awk '$1=="warden"{print $3}' "$TMP/results")")"
    d_p99="$(to_ms "$(awk '$1=="direct"{print $3}' "$TMP/results")")"
    awk -v d="$d_rps" -v n="$n_rps" -v w="$w_rps" -v dp="$d_p99" -v np="$n_p99" -v wp="$w_p99" 'BEGIN {
        printf "warden/nginx rps: %.2f   warden/direct rps: %.2f   nginx/direct rps: %.2f\n", w/n, w/d, n/d
        printf "p99 added over direct: warden %.3f ms, nginx %.3f ms\n", wp-dp, np-dp
    }'
    echo "warden peak RSS: ${W_RSS_KB} kB"
} | tee "$OUT"
log "results in $OUT"
