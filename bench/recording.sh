#!/usr/bin/env bash
# Cost of session recording (issue 12): pgbench select-only (-S -M extended) through Warden
# with [recording] default = off, metadata and full, three gateways side by side, rotated
# for ROUNDS rounds in one run; prints mean TPS per level and the ratios to `off`, and writes
# them to bench/results/recording-<date>.txt. Goals: metadata costs <= 5%, full <= 15%.
#
#   bench/recording.sh [SECONDS]          # default 15 s per run
#   ROUNDS=3 CLIENTS=16 THREADS=2 bench/recording.sh 20
#
# Needs: PostgreSQL on PGHOST_DIRECT:PGPORT_DIRECT (default 127.0.0.1:5432, trust for
# `postgres`) with a database `test`; pgbench; target/release/warden (built if missing;
# WARDEN_BIN=path to use another build). Every process it starts is stopped on exit.
set -euo pipefail

SECS="${1:-${SECS:-15}}"
ROUNDS="${ROUNDS:-2}"
CLIENTS="${CLIENTS:-16}"
THREADS="${THREADS:-2}"
PG_HOST="${PGHOST_DIRECT:-127.0.0.1}"
PG_PORT="${PGPORT_DIRECT:-5432}"
PG_SUPERUSER="${PG_SUPERUSER:-postgres}"
DB=test
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WARDEN="${WARDEN_BIN:-$ROOT/target/release/warden}"
RESULTS_DIR="$ROOT/bench/results"
STAMP="$(date -u +%Y%m%d-%H%M%S)"
OUT="$RESULTS_DIR/recording-$STAMP.txt"
unset PGHOST PGPORT PGUSER PGPASSWORD PGOPTIONS PGDATABASE PGSERVICE WARDEN_DATA_DIR WARDEN_CONFIG

log() { printf '[recording.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
command -v pgbench >/dev/null || die "pgbench not found (apt-get install postgresql-client)"
if [ ! -x "$WARDEN" ]; then
    log "building target/release/warden"
    (cd "$ROOT" && cargo build --release -p warden) >&2
fi

TMP="$(mktemp -d /tmp/warden-recbench.XXXXXX)"
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    if [ "$rc" -ne 0 ]; then
        for f in "$TMP"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || die "warden exited during startup"
        sleep 0.1
    done
    die "warden did not listen on $1"
}

if ! psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_SUPERUSER" -d "$DB" -Atqc "select 1 from pgbench_accounts limit 1" >/dev/null 2>&1; then
    log "initializing pgbench tables in $DB (scale 1)"
    pgbench -i -s 1 -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_SUPERUSER" "$DB" >&2
fi
psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_SUPERUSER" -d "$DB" -qc "vacuum analyze pgbench_branches, pgbench_tellers, pgbench_accounts, pgbench_history" >&2

LEVELS=(off metadata full)
declare -A PORT TOKEN PID CONF SUM CPU_TICKS TXS
# Gateway CPU per transaction (utime + stime of the warden process over the run): on a
# shared machine far steadier than TPS, so it is reported next to the TPS ratios.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK="$(getconf CLK_TCK)"
TTL_MIN=$(( (SECS * ROUNDS * 3) / 60 + 30 ))
for level in "${LEVELS[@]}"; do
    d="$TMP/$level"; mkdir -p "$d"
    cp "$ROOT/examples/quickstart/policy.cedar" "$d/policy.cedar"
    PORT[$level]="$(free_port)"
    sed -e "s|^data_dir = .*|data_dir = \"$d/data\"|" \
        -e "s|^postgres = \"127.0.0.1:6543\"|postgres = \"127.0.0.1:${PORT[$level]}\"|" \
        -e "s|^admin = \"127.0.0.1:8181\"|admin = \"127.0.0.1:$(free_port)\"|" \
        -e "s|^host = \"127.0.0.1\"|host = \"$PG_HOST\"|" \
        -e "s|^port = 5432|port = $PG_PORT|" \
        "$ROOT/examples/quickstart/warden.toml" >"$d/warden.toml"
    printf '\n[recording]\ndefault = "%s"\n' "$level" >>"$d/warden.toml"
    CONF[$level]="$d/warden.toml"
    "$WARDEN" serve --config "${CONF[$level]}" >>"$TMP/warden-$level.log" 2>&1 &
    PID[$level]=$!
    PIDS+=("${PID[$level]}")
    wait_port "${PORT[$level]}" "${PID[$level]}"
    "$WARDEN" --config "${CONF[$level]}" agent create pgbench-bot --owner bench@example.com >/dev/null
    TOKEN[$level]="$("$WARDEN" --config "${CONF[$level]}" token issue --agent pgbench-bot --node reader --ttl "${TTL_MIN}m" | tail -n 1)"
    SUM[$level]=0; CPU_TICKS[$level]=0; TXS[$level]=0
    log "warden ($level) pid ${PID[$level]} on 127.0.0.1:${PORT[$level]}"
done

RAW=""
log "$ROUNDS round(s) x ${#LEVELS[@]} levels x ${SECS}s, -c $CLIENTS -j $THREADS"
for r in $(seq "$ROUNDS"); do
    for i in 0 1 2; do
        level="${LEVELS[$(( (i + r - 1) % 3 ))]}"
        logf="$TMP/pgbench-$level-$r.log"
        t0="$(cpu_ticks "${PID[$level]}")"
        env PGHOST=127.0.0.1 PGPORT="${PORT[$level]}" PGUSER=pgbench-bot PGPASSWORD="${TOKEN[$level]}" "PGOPTIONS=-c warden.node=reader" \
            pgbench -n -S -M extended -c "$CLIENTS" -j "$THREADS" -T "$SECS" "$DB" >"$logf" 2>&1 || { tail -n 20 "$logf" >&2; die "pgbench via $level failed"; }
        tps="$(awk '/^tps = / {printf "%.1f\n", $3; exit}' "$logf")"
        CPU_TICKS[$level]=$(( ${CPU_TICKS[$level]} + $(cpu_ticks "${PID[$level]}") - t0 ))
        txs="$(awk '/number of transactions actually processed/ {print $NF; exit}' "$logf")"
        TXS[$level]=$(( ${TXS[$level]} + ${txs#*/} ))
        log "round $r $level: $tps tps"
        RAW+="round $r  $(printf '%-9s' "$level") $tps tps"$'\n'
        SUM[$level]="$(awk -v a="${SUM[$level]}" -v b="$tps" 'BEGIN {print a + b}')"
    done
done

# What was recorded (sanity: the levels really differ).
sleep 1
STORED=""
for level in "${LEVELS[@]}"; do
    n="$("$WARDEN" --config "${CONF[$level]}" sessions list --json --limit 1000 | python3 -c 'import json,sys; l=json.load(sys.stdin); print(sum(s["statements"] for s in l), sum(s["bytes"] for s in l))')"
    STORED+="$(printf '%-9s' "$level") statements recorded / compressed bytes: $n"$'\n'
done

mean() { awk -v s="${SUM[$1]}" -v n="$ROUNDS" 'BEGIN {printf "%.1f", s / n}'; }
OFF="$(mean off)"
REPORT="$(
    echo "# bench/recording.sh $(date -u +%FT%TZ) rev $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "# pgbench -n -S -M extended -c $CLIENTS -j $THREADS -T $SECS, $ROUNDS rounds rotated; $(nproc) cores shared by pgbench, PostgreSQL and the gateways"
    printf '%s' "$RAW"
    for level in "${LEVELS[@]}"; do
        m="$(mean "$level")"
        printf '%-9s mean %8s tps   ratio to off %s\n' "$level" "$m" "$(awk -v a="$m" -v b="$OFF" 'BEGIN {printf "%.3f (cost %.1f%%)", a / b, (1 - a / b) * 100}')"
    done
    cpu_us() { awk -v t="${CPU_TICKS[$1]}" -v hz="$CLK_TCK" -v n="${TXS[$1]}" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}'; }
    OFF_CPU="$(cpu_us off)"
    for level in "${LEVELS[@]}"; do
        c="$(cpu_us "$level")"
        printf '%-9s warden CPU %6s us/tx   vs off %s\n' "$level" "$c" "$(awk -v a="$c" -v b="$OFF_CPU" 'BEGIN {printf "%+.1f%%", (a / b - 1) * 100}')"
    done
    printf '%s' "$STORED"
)"
mkdir -p "$RESULTS_DIR"
echo "$REPORT" | tee "$OUT"
