#!/usr/bin/env bash
# Benchmark: AWS API calls per terminated instance, and scan wall time, on a simulated fleet
# loaded into moto (the integration test tests/aws_moto.rs at a larger size). Target on 1,000
# instances: ≤ 1.1 calls per instance. At this size each instance's metrics are cut to its
# final samples (moto's GetMetricData is too slow on full series; call counts do not depend on
# the number of points) and verdicts are not checked (the 60-instance test run does that).
# Usage: benches/aws_calls.sh [INSTANCES] (default 1000).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
if [ ! -x .venv/bin/moto_server ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
fi
# moto answers a 500-query GetMetricData over ~150,000 datapoints in minutes, not
# milliseconds: give its calls room (these are emulator limits, not epitaph's).
export EPITAPH_AWS__ATTEMPT_TIMEOUT=1200s EPITAPH_AWS__CALL_TIMEOUT=3600s EPITAPH_SCAN__FETCH_TIMEOUT=3600s
EPITAPH_MOTO_SERVER="$PWD/.venv/bin/moto_server" EPITAPH_AWS_INSTANCES="$N" \
  cargo test --release --test aws_moto scan_against_moto -- --nocapture 2>&1 \
  | grep -E "^(BENCH|verdicts correct)|test result"
