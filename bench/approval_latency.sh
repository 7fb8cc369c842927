#!/usr/bin/env bash
# Approval latency (issue 10): N held statements in wait mode, each released by an approval;
# reports the delay until the held statement's result reaches the client, median and p99.
#   - from the start of `warden approvals approve` (includes process start-up and its audit write)
#   - from the moment that CLI process has returned
#   - from a direct store vote (what the CLI does, without process start-up)
# Goal: under 50 ms. Needs PostgreSQL on 127.0.0.1:5432 (db test, trust), like the e2e tests.
#
#   bench/approval_latency.sh                 # debug build, N=100
#   N=200 PROFILE=release bench/approval_latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-100}"
profile_args=()
if [[ -n "${PROFILE:-}" ]]; then profile_args=(--profile "$PROFILE"); fi
APPROVAL_BENCH_N="$N" cargo test "${profile_args[@]}" -p warden --test approvals bench_approval_latency \
  -- --ignored --exact --nocapture --test-threads 1 2>&1 | grep -vE '^(running|test |$)|test result'
