#!/usr/bin/env bash
# Time from a SCIM deactivation (PATCH /scim/v2/Users/{id} {"active": false}) of an agent's
# owner to the agent's live PostgreSQL session receiving its error, over RUNS (default 20)
# runs; prints median and max. Goal < 1 s, aim 100 ms. The gateway polls the store's
# revocation epoch every 200 ms, so expect roughly 0-200 ms plus the PATCH itself.
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, database test), like the test suite.
# The measurement is the ignored test bench_scim_deprovision_to_session_error in
# crates/warden/tests/identity.rs, run against a real `warden serve` process.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUNS="${RUNS:-20}"
cargo test ${CARGO_PROFILE:+--profile "$CARGO_PROFILE"} -p warden --test identity -- --ignored --nocapture --exact bench_scim_deprovision_to_session_error 2>&1 \
  | grep -E '^scim_deprovision:|panicked|error' || { echo "benchmark failed" >&2; exit 1; }
