#!/usr/bin/env bash
# Installs what a fresh machine lacks for building and testing Warden, and starts the local
# PostgreSQL if it is not running. Idempotent; sourced by quickstart.sh and test.sh.
set -euo pipefail

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: installing ${missing[*]}" >&2
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_build_deps() {
  # pg_query generates its bindings with bindgen, which needs libclang.
  # samael (SAML signatures) links libxmlsec1 and libxml2, found through pkg-config.
  apt_install libclang-dev postgresql-client libxmlsec1-dev libxml2-dev pkg-config
}

ensure_postgres() {
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "setup: starting the local PostgreSQL" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
    for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
  fi
  pg_isready -h 127.0.0.1 -p 5432 >/dev/null
}

ensure_browser() {
  # The console's browser tests drive Debian's chromium through Playwright (never
  # `playwright install`, which downloads a browser build).
  apt_install chromium
}
