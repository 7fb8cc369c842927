#!/usr/bin/env bash
# Fresh machine to a full test run: installs what is missing, builds once, runs the Rust
# suite with nextest (in parallel; tests start their own gateways on ephemeral ports) and
# the Python package's suite against the real gateway and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_build_deps
ensure_postgres
# The SAML tests sign their IdP's assertions with the real xmlsec1 tool.
apt_install xmlsec1

command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
python3 -m pip install -q "mcp<2"
cargo build --workspace --all-targets
cargo nextest run --workspace --no-fail-fast

if [ -d clients/python ]; then
  python3 -m pip install -q -e "clients/python[test]"
  export WARDEN_BIN="$PWD/target/debug/warden"
  python3 -m pytest -q clients/python/tests examples/langgraph-support-agent
fi

# The web console in a real browser (issue 12): screenshots land in target/screenshots/.
ensure_browser
python3 -m pip install -q -r tests/browser/requirements.txt
WARDEN_BIN="$PWD/target/debug/warden" python3 -m pytest -q tests/browser
