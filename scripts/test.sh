#!/usr/bin/env bash
# Installs what the test suite needs (idempotent) and runs all of it:
# formatting, lints, unit, property and end-to-end tests (real headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

# A build directory outside the clone keeps fresh clones incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/confer/target}"

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
command -v turnserver >/dev/null 2>&1 || need_apt+=(coturn)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "installing ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
python3 -c 'import openapi_spec_validator' 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check openapi-spec-validator
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast
