#!/usr/bin/env bash
# Masking cost on a wide result (issue 9): 1,000 rows x 10 text columns (one `card_number`
# column under a column rule, two more with card numbers inside text in some rows, the rest
# clean), fetched whole by every transaction of a pgbench custom script, in one run against
#   (a) PostgreSQL directly,
#   (b) Warden with masking off (the quickstart config without its [masking] section),
#   (c) Warden with masking on  (the quickstart config: detectors + *.card_number/*.ssn rules),
# alternating the three setups for ROUNDS rounds; prints mean TPS, the ratios
# masking-on/masking-off (goal >= 0.9) and Warden/direct, and writes them to
# bench/results/masking-<date>.txt.
#
#   bench/masking.sh [SECONDS]                 # default 15 s per run
#   ROUNDS=3 CLIENTS=4 THREADS=2 MODE=extended bench/masking.sh 20
#   DETECT=1 bench/masking.sh                  # + `cargo bench -p warden-mask --bench detect`
#
# Needs: PostgreSQL on PGHOST_DIRECT:PGPORT_DIRECT (default 127.0.0.1:5432, trust for
# `postgres`) with a database `test`; pgbench; target/release/warden (built if missing;
# WARDEN_BIN=path to use another build). Every process it starts is stopped on exit and the
# scratch table is dropped. Env: SECS ROUNDS CLIENTS THREADS MODE PGHOST_DIRECT
# PGPORT_DIRECT PG_SUPERUSER WARDEN_BIN WARDEN_REV (the commit WARDEN_BIN was built from) DETECT.
set -euo pipefail

SECS="${1:-${SECS:-15}}"
ROUNDS="${ROUNDS:-2}"
CLIENTS="${CLIENTS:-4}"
THREADS="${THREADS:-2}"
MODE="${MODE:-extended}"
PG_HOST="${PGHOST_DIRECT:-127.0.0.1}"
PG_PORT="${PGPORT_DIRECT:-5432}"
PG_SUPERUSER="${PG_SUPERUSER:-postgres}"
DB=test

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WARDEN="${WARDEN_BIN:-$ROOT/target/release/warden}"
RESULTS_DIR="$ROOT/bench/results"
STAMP="$(date -u +%Y%m%d-%H%M%S)"
OUT="$RESULTS_DIR/masking-$STAMP.txt"
TABLE="bench_mask_wide_$$"

unset PGHOST PGPORT PGUSER PGPASSWORD PGOPTIONS PGDATABASE PGSERVICE

log() { printf '[masking.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
sql() { psql -X -h "$PG_HOST" -p "$PG_PORT" -U "$PG_SUPERUSER" -d "$DB" -v ON_ERROR_STOP=1 -Atqc "$1"; }

command -v pgbench >/dev/null || die "pgbench not found (apt-get install postgresql-client)"
if [ ! -x "$WARDEN" ]; then
    log "building target/release/warden"
    (cd "$ROOT" && cargo build --release -p warden) >&2
fi

TMP="$(mktemp -d /tmp/warden-masking.XXXXXX)"
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
    sql "DROP TABLE IF EXISTS public.$TABLE" >/dev/null 2>&1 || true
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

# --- the wide table -------------------------------------------------------------------
# c1 card_number: a card in every row (column rule, keep_last4)
# c2 note: a card inside text in every 10th row, else clean prose (detectors)
# c3 memo: a dashed card in every 20th row, else clean
# c4..c10: clean text of 30-70 bytes (detectors run, find nothing)
log "creating public.$TABLE (1000 rows x 10 text columns)"
sql "CREATE TABLE public.$TABLE (
  id int PRIMARY KEY,
  card_number text, note text, memo text, c4 text, c5 text, c6 text, c7 text, c8 text, c9 text, c10 text);
INSERT INTO public.$TABLE
SELECT i,
  '4111 1111 1111 1111',
  CASE WHEN i % 10 = 0 THEN 'customer paid with 5105105105105100 at the desk' ELSE 'customer paid cash at the desk, no receipt' END,
  CASE WHEN i % 20 = 0 THEN 'refund to 4012-8888-8888-1881 approved' ELSE 'refund approved by the shift manager' END,
  'order ' || i || ' shipped via ground ' || md5(i::text),
  'status delivered, signed by front desk staff',
  'warehouse ' || (i % 7) || ' aisle ' || (i % 31) || ' bin ' || (i % 101),
  'the quick brown fox jumps over the lazy dog',
  md5('a' || i) || md5('b' || i),
  'priority normal, region eu-west, tier gold',
  'last updated by the nightly batch job'
FROM generate_series(1, 1000) i;
ANALYZE public.$TABLE;" >/dev/null
RESULT_BYTES="$(sql "SELECT sum(octet_length(t::text)) FROM public.$TABLE t")"

cat >"$TMP/wide.sql" <<EOF
SELECT id, card_number, note, memo, c4, c5, c6, c7, c8, c9, c10 FROM public.$TABLE;
EOF

# --- two Warden instances: masking off and on -------------------------------------------
unset WARDEN_DATA_DIR WARDEN_CONFIG
declare -A WPORT WPID WCONF
AGENT=bench-masking
TTL_MIN=$(( (SECS * ROUNDS * 3) / 60 + 30 ))
start_warden() { # name strip_masking
    local name=$1 dir="$TMP/warden-$1"
    local pg admin
    pg="$(free_port)"; admin="$(free_port)"
    mkdir -p "$dir"
    cp "$ROOT/examples/quickstart/policy.cedar" "$dir/policy.cedar"
    sed -e "s|^data_dir = .*|data_dir = \"$dir/data\"|" \
        -e "s|^postgres = \"127.0.0.1:6543\"|postgres = \"127.0.0.1:$pg\"|" \
        -e "s|^admin = \"127.0.0.1:8181\"|admin = \"127.0.0.1:$admin\"|" \
        -e "s|^host = \"127.0.0.1\"|host = \"$PG_HOST\"|" \
        -e "s|^port = 5432|port = $PG_PORT|" \
        "$ROOT/examples/quickstart/warden.toml" >"$dir/warden.toml"
    if [ "$2" = strip ]; then
        # Everything from the [masking] header to the next section (or the end) goes.
        awk '/^\[masking\]/ {skip=1; next} /^\[/ {skip=0} !skip' "$dir/warden.toml" >"$dir/w.toml"
        mv "$dir/w.toml" "$dir/warden.toml"
        ! grep -q '^\[masking\]' "$dir/warden.toml" || die "could not strip [masking]"
    else
        grep -q '^\[masking\]' "$dir/warden.toml" || die "the quickstart config has no [masking] section"
    fi
    grep -q "127.0.0.1:$pg" "$dir/warden.toml" || die "could not rewrite the quickstart config"
    "$WARDEN" serve --config "$dir/warden.toml" >>"$TMP/warden-$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_port 127.0.0.1 "$pg" "$pid" "warden-$name"
    "$WARDEN" --config "$dir/warden.toml" agent create "$AGENT" --owner bench@example.com >/dev/null
    WPORT[$name]=$pg WPID[$name]=$pid WCONF[$name]="$dir/warden.toml"
    TOKEN[$name]="$("$WARDEN" --config "$dir/warden.toml" token issue --agent "$AGENT" --node reader --ttl "${TTL_MIN}m" | tail -n 1)"
    log "warden-$name pid $pid on 127.0.0.1:$pg"
}
declare -A TOKEN
start_warden off strip
start_warden on keep

# --- sanity: masking on hides the cards, off and direct show them ------------------------
fetch() { # setup -> the result as psql prints it
    case "$1" in
        direct) psql -X -h "$PG_HOST" -p "$PG_PORT" -U "$PG_SUPERUSER" -d "$DB" -Atf "$TMP/wide.sql" ;;
        *) PGPASSWORD="${TOKEN[$1]}" psql -X "host=127.0.0.1 port=${WPORT[$1]} user=$AGENT dbname=$DB options='-c warden.node=reader'" -Atf "$TMP/wide.sql" ;;
    esac
}
for s in direct off on; do
    out="$(fetch "$s")"
    rows="$(printf '%s\n' "$out" | wc -l)"
    cards="$(printf '%s\n' "$out" | grep -cE '4111 1111 1111 1111|5105105105105100|4012-8888-8888-1881' || true)"
    log "sanity $s: $rows rows, $cards rows with a card in clear"
    [ "$rows" = 1000 ] || die "$s returned $rows rows"
    case "$s" in
        on) [ "$cards" = 0 ] || die "masking on let cards through" ;;
        *) [ "$cards" = 1000 ] || die "$s should show every card in clear" ;;
    esac
done

# --- runs -----------------------------------------------------------------------------
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK="$(getconf CLK_TCK)"
declare -A CPU_MS
run_pgbench() { # setup round -> TPS
    local setup=$1 round=$2 logf="$TMP/pgbench-$1-$2.log"
    local -a env_args
    case "$setup" in
        direct) env_args=(PGHOST="$PG_HOST" PGPORT="$PG_PORT" PGUSER="$PG_SUPERUSER") ;;
        *) env_args=(PGHOST=127.0.0.1 PGPORT="${WPORT[$setup]}" PGUSER="$AGENT"
                     PGPASSWORD="${TOKEN[$setup]}" "PGOPTIONS=-c warden.node=reader") ;;
    esac
    local pid="${WPID[$setup]:-}" t0=0
    [ -z "$pid" ] || t0="$(cpu_ticks "$pid")"
    if ! env "${env_args[@]}" pgbench -n -M "$MODE" -f "$TMP/wide.sql" -c "$CLIENTS" -j "$THREADS" \
            -T "$SECS" "$DB" >"$logf" 2>&1; then
        log "pgbench via $setup failed:"; tail -n 20 "$logf" >&2; exit 1
    fi
    local failed
    failed="$(awk -F': ' '/number of failed transactions/ {print $2+0}' "$logf")"
    [ "${failed:-0}" = 0 ] || die "$setup round $round: $failed failed transactions"
    TPS="$(awk '/^tps = / {printf "%.1f\n", $3; exit}' "$logf")"
    if [ -n "$pid" ]; then
        local txs
        txs="$(awk '/number of transactions actually processed/ {print $NF; exit}' "$logf")"
        txs="${txs#*/}"
        CPU_MS[$setup]="$(awk -v a="${CPU_MS[$setup]:-0}" -v d="$(( $(cpu_ticks "$pid") - t0 ))" -v hz="$CLK_TCK" -v n="$txs" \
            'BEGIN {print a + d * 1000 / hz / n}')"
    fi
}

SETUPS=(direct off on)
declare -A SUM
for s in "${SETUPS[@]}"; do SUM[$s]=0; done
RAW=""
log "$ROUNDS round(s) x 3 setups x ${SECS}s, pgbench -M $MODE -c $CLIENTS -j $THREADS, result $RESULT_BYTES bytes of row text"
for r in $(seq "$ROUNDS"); do
    order=()
    for i in 0 1 2; do order+=("${SETUPS[$(( (i + r - 1) % 3 ))]}"); done
    for s in "${order[@]}"; do
        run_pgbench "$s" "$r"
        log "round $r $s: $TPS tps"
        RAW+="round $r  $(printf '%-7s' "$s") $TPS tps"$'\n'
        SUM[$s]="$(awk -v a="${SUM[$s]}" -v b="$TPS" 'BEGIN {print a + b}')"
    done
done

mean() { awk -v s="${SUM[$1]}" -v n="$ROUNDS" 'BEGIN {printf "%.1f", s / n}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
mbs() { awk -v t="$1" -v b="$RESULT_BYTES" 'BEGIN {printf "%.1f", t * b / 1048576}'; }
D="$(mean direct)" OFF="$(mean off)" ON="$(mean on)"
cpu() { awk -v s="${CPU_MS[$1]:-0}" -v n="$ROUNDS" 'BEGIN {printf "%.3f", s / n}'; }

DETECT_TXT=""
if [ "${DETECT:-0}" = 1 ]; then
    log "cargo bench -p warden-mask --bench detect"
    DETECT_TXT="$(cd "$ROOT" && cargo bench -p warden-mask --bench detect 2>&1 | grep -E '^[a-z_0-9/]+ *$|time:|thrpt:' || true)"
fi

mkdir -p "$RESULTS_DIR"
{
    echo "# bench/masking.sh $(date -u +%FT%TZ) warden=$("$WARDEN" --version 2>/dev/null | head -n1 || echo "$WARDEN") rev=${WARDEN_REV:-$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo "?")}"
    echo "# pgbench -n -M $MODE -f wide.sql -c $CLIENTS -j $THREADS -T $SECS, $ROUNDS round(s), order rotated"
    echo "# wide.sql: SELECT id, card_number, note, memo, c4..c10 FROM <1000 rows x 11 cols> ($RESULT_BYTES bytes of row text, ~$(( RESULT_BYTES / 1024 )) KiB per transaction)"
    echo "# nproc=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg)"
    printf '%s' "$RAW"
    echo
    printf '%-28s %10s tps  %8s MiB/s of rows\n' "direct" "$D" "$(mbs "$D")"
    printf '%-28s %10s tps  %8s MiB/s of rows  %s ms warden CPU/tx\n' "warden, masking off" "$OFF" "$(mbs "$OFF")" "$(cpu off)"
    printf '%-28s %10s tps  %8s MiB/s of rows  %s ms warden CPU/tx\n' "warden, masking on" "$ON" "$(mbs "$ON")" "$(cpu on)"
    echo
    echo "masking on / masking off   $(ratio "$ON" "$OFF")   (goal >= 0.9)"
    echo "warden off / direct        $(ratio "$OFF" "$D")"
    echo "warden on  / direct        $(ratio "$ON" "$D")"
    if [ -n "$DETECT_TXT" ]; then
        echo
        echo "# cargo bench -p warden-mask --bench detect"
        echo "$DETECT_TXT"
    fi
} | tee "$OUT"
log "written to ${OUT#"$ROOT"/}"
