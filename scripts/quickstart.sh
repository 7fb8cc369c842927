#!/usr/bin/env bash
# Fresh machine to a running gateway: installs build dependencies, builds, and serves the
# quickstart config (PostgreSQL listener on 127.0.0.1:6543, admin API on 127.0.0.1:8181,
# target "test" = the local test database, SQLite store under examples/quickstart/.warden).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_build_deps
ensure_postgres
cargo build --release --bin warden
exec target/release/warden serve --config examples/quickstart/warden.toml
