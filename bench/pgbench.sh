#!/usr/bin/env bash
# pgbench select-only (-S -M extended, 16 clients) in one run against
#   (a) PostgreSQL directly, (b) pgbouncer in session mode, (c) Warden (policy + audit on),
# alternating the three setups for ROUNDS rounds, then prints the mean TPS of each and the
# ratios, and writes them to bench/results/pgbench-<date>.txt.
#
#   bench/pgbench.sh [SECONDS]          # default 20 s per run
#   ROUNDS=3 CLIENTS=16 THREADS=2 bench/pgbench.sh 30
#   PROFILE=1 bench/pgbench.sh          # + one extra, uncounted warden run under `perf record`;
#                                       #   report in bench/results/perf-<date>.txt
#
# Needs: PostgreSQL on PGHOST_DIRECT:PGPORT_DIRECT (default 127.0.0.1:5432, trust for
# `postgres`) with a database `test`; pgbench; pgbouncer (Debian's /usr/sbin/pgbouncer);
# target/release/warden (built if missing; WARDEN_BIN=path [WARDEN_REV=commit] to use another
# build). Every process it starts is stopped on exit. Env: SECS ROUNDS CLIENTS THREADS
# PGHOST_DIRECT PGPORT_DIRECT PG_SUPERUSER PGBOUNCER PROFILE PERF_FREQ PERF_GRAPH PERF_DATA
# WARDEN_CONFIG_TEMPLATE (a quickstart-shaped warden.toml matching an older WARDEN_BIN).
set -euo pipefail

SECS="${1:-${SECS:-20}}"
ROUNDS="${ROUNDS:-2}"
CLIENTS="${CLIENTS:-16}"
THREADS="${THREADS:-2}"
PG_HOST="${PGHOST_DIRECT:-127.0.0.1}"
PG_PORT="${PGPORT_DIRECT:-5432}"
PG_SUPERUSER="${PG_SUPERUSER:-postgres}"
DB=test

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WARDEN="${WARDEN_BIN:-$ROOT/target/release/warden}"
PGBOUNCER="${PGBOUNCER:-$(command -v pgbouncer || echo /usr/sbin/pgbouncer)}"
RESULTS_DIR="$ROOT/bench/results"
STAMP="$(date -u +%Y%m%d-%H%M%S)"
OUT="$RESULTS_DIR/pgbench-$STAMP.txt"

# PG* variables from the caller's shell would leak into every setup: start clean.
unset PGHOST PGPORT PGUSER PGPASSWORD PGOPTIONS PGDATABASE PGSERVICE

log() { printf '[pgbench.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v pgbench >/dev/null || die "pgbench not found (apt-get install postgresql-client)"
[ -x "$PGBOUNCER" ] || die "pgbouncer not found (apt-get install pgbouncer)"
if [ ! -x "$WARDEN" ]; then
    log "building target/release/warden"
    (cd "$ROOT" && cargo build --release -p warden) >&2
fi

TMP="$(mktemp -d /tmp/warden-pgbench.XXXXXX)"
chmod 755 "$TMP"
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
    if [ "$rc" -ne 0 ]; then
        log "failed (exit $rc); logs:"
        for f in "$TMP"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() { # host port pid name
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
        kill -0 "$3" 2>/dev/null || die "$4 exited during startup"
        sleep 0.1
    done
    die "$4 did not listen on $1:$2"
}

# --- pgbench tables, once -------------------------------------------------------------
if ! psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_SUPERUSER" -d "$DB" -Atqc \
        "select 1 from pgbench_accounts limit 1" >/dev/null 2>&1; then
    log "initializing pgbench tables in $DB (scale 1)"
    pgbench -i -s 1 -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_SUPERUSER" "$DB" >&2
fi
# pgbench's own pre-run vacuum is a maintenance command a read-only node may not run: do it
# here once and run every setup with -n, so all three measure the same thing.
psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_SUPERUSER" -d "$DB" -qc \
    "vacuum analyze pgbench_branches, pgbench_tellers, pgbench_accounts, pgbench_history" >&2

# --- pgbouncer (session mode) ---------------------------------------------------------
BOUNCER_PORT="$(free_port)"
mkdir -p "$TMP/pgbouncer"
cat >"$TMP/pgbouncer/userlist.txt" <<EOF
"$PG_SUPERUSER" ""
EOF
cat >"$TMP/pgbouncer/pgbouncer.ini" <<EOF
[databases]
$DB = host=$PG_HOST port=$PG_PORT dbname=$DB user=$PG_SUPERUSER

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $TMP/pgbouncer/userlist.txt
pool_mode = session
default_pool_size = $((CLIENTS + 4))
max_client_conn = $((CLIENTS * 4))
max_db_connections = 0
logfile = $TMP/pgbouncer.log
pidfile = $TMP/pgbouncer/pgbouncer.pid
log_connections = 0
log_disconnections = 0
EOF
BOUNCER_CMD=("$PGBOUNCER" "$TMP/pgbouncer/pgbouncer.ini")
if [ "$(id -u)" -eq 0 ]; then
    # pgbouncer refuses to run as root.
    chown -R postgres: "$TMP/pgbouncer"
    touch "$TMP/pgbouncer.log" && chown postgres: "$TMP/pgbouncer.log"
    BOUNCER_CMD=(runuser -u postgres -- "${BOUNCER_CMD[@]}")
fi
# exec keeps the pid ours (runuser execs nothing: it forks, so kill reaches pgbouncer via
# the pidfile below as well).
"${BOUNCER_CMD[@]}" >>"$TMP/pgbouncer.stderr.log" 2>&1 &
PIDS+=($!)
wait_port 127.0.0.1 "$BOUNCER_PORT" "$!" pgbouncer
for _ in $(seq 50); do [ -s "$TMP/pgbouncer/pgbouncer.pid" ] && break; sleep 0.1; done
BOUNCER_PID="$(cat "$TMP/pgbouncer/pgbouncer.pid")"
PIDS=("$BOUNCER_PID" "${PIDS[@]}")
log "pgbouncer pid $BOUNCER_PID on 127.0.0.1:$BOUNCER_PORT"

# --- Warden -------------------------------------------------------------------------
WARDEN_PG_PORT="$(free_port)"
WARDEN_ADMIN_PORT="$(free_port)"
mkdir -p "$TMP/warden"
cp "$ROOT/examples/quickstart/policy.cedar" "$TMP/warden/policy.cedar"
sed -e "s|^data_dir = .*|data_dir = \"$TMP/warden/data\"|" \
    -e "s|^postgres = \"127.0.0.1:6543\"|postgres = \"127.0.0.1:$WARDEN_PG_PORT\"|" \
    -e "s|^admin = \"127.0.0.1:8181\"|admin = \"127.0.0.1:$WARDEN_ADMIN_PORT\"|" \
    -e "s|^host = \"127.0.0.1\"|host = \"$PG_HOST\"|" \
    -e "s|^port = 5432|port = $PG_PORT|" \
    "${WARDEN_CONFIG_TEMPLATE:-$ROOT/examples/quickstart/warden.toml}" >"$TMP/warden/warden.toml"
grep -q "127.0.0.1:$WARDEN_PG_PORT" "$TMP/warden/warden.toml" || die "could not rewrite the quickstart config"
WCONF="$TMP/warden/warden.toml"
unset WARDEN_DATA_DIR WARDEN_CONFIG
"$WARDEN" serve --config "$WCONF" >>"$TMP/warden.log" 2>&1 &
WARDEN_PID=$!
PIDS+=("$WARDEN_PID")
wait_port 127.0.0.1 "$WARDEN_PG_PORT" "$WARDEN_PID" warden
log "warden pid $WARDEN_PID on 127.0.0.1:$WARDEN_PG_PORT"
AGENT=pgbench-bot
"$WARDEN" --config "$WCONF" agent create "$AGENT" --owner bench@example.com >/dev/null
TTL_MIN=$(( (SECS * ROUNDS * 3) / 60 + 30 ))
TOKEN="$("$WARDEN" --config "$WCONF" token issue --agent "$AGENT" --node reader --ttl "${TTL_MIN}m" | tail -n 1)"
[ -n "$TOKEN" ] || die "no token"

# --- runs -----------------------------------------------------------------------------
run_pgbench() { # setup round -> sets TPS (and adds to CPU_US[setup])
    local setup=$1 round=$2 logf="$TMP/pgbench-$1-$2.log"
    local -a env_args
    case "$setup" in
        direct)    env_args=(PGHOST="$PG_HOST" PGPORT="$PG_PORT" PGUSER="$PG_SUPERUSER") ;;
        pgbouncer) env_args=(PGHOST=127.0.0.1 PGPORT="$BOUNCER_PORT" PGUSER="$PG_SUPERUSER") ;;
        warden)    env_args=(PGHOST=127.0.0.1 PGPORT="$WARDEN_PG_PORT" PGUSER="$AGENT"
                             PGPASSWORD="$TOKEN" "PGOPTIONS=-c warden.node=reader") ;;
    esac
    local proxy_pid=""
    case "$setup" in pgbouncer) proxy_pid=$BOUNCER_PID ;; warden) proxy_pid=$WARDEN_PID ;; esac
    local t0=0 c0=0
    [ -z "$proxy_pid" ] || { t0="$(cpu_ticks "$proxy_pid")"; c0="$(ctx_switches "$proxy_pid")"; }
    if ! env "${env_args[@]}" pgbench -n -S -M extended -c "$CLIENTS" -j "$THREADS" \
            -T "$SECS" "$DB" >"$logf" 2>&1; then
        log "pgbench via $setup failed:"; tail -n 20 "$logf" >&2; exit 1
    fi
    local failed
    failed="$(awk -F': ' '/number of failed transactions/ {print $2+0}' "$logf")"
    [ "${failed:-0}" = 0 ] || log "warning: $setup round $round: $failed failed transactions"
    if [ -n "$proxy_pid" ]; then
        # CPU the proxy process spent per transaction (all its threads, user + system).
        local t1 txs
        t1="$(cpu_ticks "$proxy_pid")"
        txs="$(awk '/number of transactions actually processed/ {print $NF; exit}' "$logf")"
        txs="${txs#*/}"
        CPU_US[$setup]="$(awk -v a="${CPU_US[$setup]:-0}" -v d="$((t1 - t0))" -v hz="$CLK_TCK" -v n="$txs" \
            'BEGIN {print a + d * 1e6 / hz / n}')"
        CTX[$setup]="$(awk -v a="${CTX[$setup]:-0}" -v d="$(( $(ctx_switches "$proxy_pid") - c0 ))" -v n="$txs" \
            'BEGIN {print a + d / n}')"
    fi
    TPS="$(awk '/^tps = / {printf "%.1f\n", $3; exit}' "$logf")"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Context switches of all the process's threads (voluntary + involuntary).
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}'; }
CLK_TCK="$(getconf CLK_TCK)"
declare -A CPU_US CTX

SETUPS=(direct pgbouncer warden)
declare -A SUM
for s in "${SETUPS[@]}"; do SUM[$s]=0; done
RAW=""
log "$ROUNDS round(s) x ${#SETUPS[@]} setups x ${SECS}s, -c $CLIENTS -j $THREADS"
for r in $(seq "$ROUNDS"); do
    # Rotate the order each round so no setup always runs first (cold) or last.
    order=()
    for i in 0 1 2; do order+=("${SETUPS[$(( (i + r - 1) % 3 ))]}"); done
    for s in "${order[@]}"; do
        run_pgbench "$s" "$r"
        tps=$TPS
        log "round $r $s: $tps tps"
        RAW+="round $r  $(printf '%-9s' "$s") $tps tps"$'\n'
        SUM[$s]="$(awk -v a="${SUM[$s]}" -v b="$tps" 'BEGIN {print a + b}')"
    done
done

# Optional: one more warden run, not counted, sampled with perf (cpu-clock works in VMs
# without hardware counters). Call graphs from DWARF would be large: frame pointers are
# absent in release builds, so only flat self-time is reported plus a caller view.
PERF_TXT=""
if [ "${PROFILE:-0}" = 1 ]; then
    command -v perf >/dev/null || die "PROFILE=1 needs perf (apt-get install linux-perf)"
    log "profile run: perf record on warden pid $WARDEN_PID for ${SECS}s"
    # PERF_GRAPH="--call-graph dwarf,16384" PERF_FREQ=499 gives full user-space call chains.
    read -r -a perf_graph <<<"${PERF_GRAPH:--g}"
    perf record -q -e cpu-clock -F "${PERF_FREQ:-2999}" "${perf_graph[@]}" -p "$WARDEN_PID" -o "$TMP/perf.data" -- sleep "$SECS" >/dev/null 2>&1 &
    PERF_PID=$!
    PIDS+=("$PERF_PID")
    saved="${CPU_US[warden]}" saved_ctx="${CTX[warden]}"
    run_pgbench warden profile
    tps=$TPS
    CPU_US[warden]=$saved CTX[warden]=$saved_ctx
    wait "$PERF_PID" || true
    PERF_TXT="$RESULTS_DIR/perf-$STAMP.txt"
    mkdir -p "$RESULTS_DIR"
    preport() { perf report -i "$TMP/perf.data" --stdio -g none "$@" 2>/dev/null | grep -v '^#' | grep -v '^$' || true; }
    {
        echo "# perf record -e cpu-clock -F ${PERF_FREQ:-2999} ${PERF_GRAPH:--g} -p <warden> during pgbench -S -M extended -c $CLIENTS -T $SECS ($tps tps under perf)"
        echo "# self time by symbol ([k] kernel, [.] user)"
        preport --no-children --sort symbol -F overhead,sym --percent-limit 0.4 | sort -rn | cut -c1-160
        echo
        echo "# self time by shared object"
        preport --no-children --sort dso | head -n 15
        echo
        echo "# self time by thread name"
        preport --no-children --sort comm | head -n 15
        echo
        echo "# inclusive time (self + callees; frame-pointer call graphs, so partial) by symbol"
        preport --children --sort symbol --percent-limit 2 | sort -rn | cut -c1-160
    } >"$PERF_TXT"
    [ -z "${PERF_DATA:-}" ] || cp "$TMP/perf.data" "$PERF_DATA"   # keep it for perf report
    log "profile written to ${PERF_TXT#"$ROOT"/}"
fi

mean() { awk -v s="${SUM[$1]}" -v n="$ROUNDS" 'BEGIN {printf "%.1f", s / n}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
D="$(mean direct)"; B="$(mean pgbouncer)"; W="$(mean warden)"

# Gateway memory after the load (VmRSS now, VmHWM the peak), and its audit volume.
RSS="$(awk '/^VmRSS/ {print $2, $3}' "/proc/$WARDEN_PID/status")"
HWM="$(awk '/^VmHWM/ {print $2, $3}' "/proc/$WARDEN_PID/status")"
BOUNCER_RSS="$(awk '/^VmRSS/ {print $2, $3}' "/proc/$BOUNCER_PID/status" 2>/dev/null || echo "?")"
STORE_SIZE="$(du -sh "$TMP/warden/data" 2>/dev/null | cut -f1)"

mkdir -p "$RESULTS_DIR"
{
    echo "# pgbench -n -S -M extended -c $CLIENTS -j $THREADS -T $SECS, $ROUNDS round(s) alternating"
    echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host:      $(nproc) cpu(s), $(uname -r)"
    echo "postgres:  $(psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_SUPERUSER" -d "$DB" -Atc 'show server_version')"
    echo "pgbouncer: $("$PGBOUNCER" --version 2>&1 | head -n 1)"
    if [ -n "${WARDEN_BIN:-}" ]; then
        echo "warden:    $WARDEN_BIN${WARDEN_REV:+ (built from $WARDEN_REV)}, binary built $(date -u -r "$WARDEN" +%Y-%m-%dT%H:%M:%SZ)"
    else
        echo "warden:    $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet -- crates 2>/dev/null || echo ' (+ uncommitted changes in crates/)'), binary built $(date -u -r "$WARDEN" +%Y-%m-%dT%H:%M:%SZ)"
    fi
    echo
    printf '%s' "$RAW"
    echo
    echo "mean tps:  direct $D   pgbouncer $B   warden $W"
    echo "warden/direct     $(ratio "$W" "$D")"
    echo "warden/pgbouncer  $(ratio "$W" "$B")   (goal >= 0.9)"
    echo "pgbouncer/direct  $(ratio "$B" "$D")"
    echo
    cpu() { awk -v s="${CPU_US[$1]}" -v n="$ROUNDS" 'BEGIN {printf "%.1f", s / n}'; }
    ctx() { awk -v s="${CTX[$1]}" -v n="$ROUNDS" 'BEGIN {printf "%.2f", s / n}'; }
    echo "proxy CPU per transaction (user+sys, all threads): pgbouncer $(cpu pgbouncer) us   warden $(cpu warden) us"
    echo "proxy context switches per transaction:           pgbouncer $(ctx pgbouncer)      warden $(ctx warden)"
    echo "warden RSS after run: $RSS (peak $HWM); pgbouncer RSS: $BOUNCER_RSS; warden data dir: $STORE_SIZE"
    [ -z "$PERF_TXT" ] || echo "profile: ${PERF_TXT#"$ROOT"/}"
} | tee "$OUT"
log "written to ${OUT#"$ROOT"/}"
