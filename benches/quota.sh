#!/usr/bin/env bash
# Benchmark: a scan at the account's API quota, never through it (issue 16).
#
# `epitaph simulate` writes a fleet of INSTANCES terminations; the scan reads its activities
# and metrics from those files and every instance's last words through the `aws` log backend,
# from benches/quota_front.py: a CloudWatch Logs front (JSON 1.1, from an in-memory index of
# the same logs) that enforces a GetLogEvents quota of QUOTA requests/s (a token bucket with
# one second of burst, full at start) and answers beyond it as AWS does — HTTP 400
# ThrottlingException. The limited path is GetLogEvents, one call (or two) per instance; the
# quota is what bounds the scan, so the scan's pace against it is the limiter's measure.
#
# The same fleet is scanned, each against a fresh front and fresh state, with:
#   unlimited   — aws.rate_limits."logs:GetLogEvents" = 0 (no client-side limit: only the
#                 retries with backoff the throttles trigger), the reference;
#   default     — epitaph's default limit (20/s, 80 % of AWS's documented 25/s: headroom for
#                 the account's other users);
#   near-quota  — a limit of NEAR × QUOTA (an account where epitaph may take almost all);
#   at quota    — a limit of exactly QUOTA (no headroom at all: the AIMD's work);
# and the default and near-quota limits again while another user of the account (the front's
# --background) takes OTHER requests per second of the same quota.
# Reported per run: instances analysed / terminated, requests the front saw, the share it
# throttled, accepted GetLogEvents per second between the first and last accepted one, the
# share of the quota the scan used (accepted requests / what the quota admits over that span:
# QUOTA per second plus the one burst), the other user's requests refused, the busiest whole
# second, and the scan's wall time.
#
# Usage: benches/quota.sh [INSTANCES] (default 1000); env QUOTA (25), NEAR (0.95), OTHER (5),
# SEED (1), EPITAPH_BIN (a built binary; default: cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
QUOTA=${QUOTA:-25}
NEAR=${NEAR:-0.95}
OTHER=${OTHER:-5}
SEED=${SEED:-1}
GROUP=/epitaph/bench

if [ -z "${EPITAPH_BIN:-}" ]; then
  cargo build --release --locked --quiet
  EPITAPH_BIN=$PWD/target/release/epitaph
fi
out=$(mktemp -d)
front_pid=
cleanup() {
  if [ -n "$front_pid" ]; then kill "$front_pid" 2>/dev/null || true; fi
  rm -rf "$out"
}
trap cleanup EXIT
"$EPITAPH_BIN" simulate --out "$out" --instances "$N" --seed "$SEED" > /dev/null 2>&1
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_ENDPOINT_URL AWS_SESSION_TOKEN

now() { date +%s.%N; }

# run NAME RATE_LIMITS_LINE [OTHER_USER_RATE]: one scan against a fresh front; prints one JSON
# line of results.
run() {
  local name=$1 limits=$2 other=${3:-0}
  coproc FRONT { exec python3 benches/quota_front.py "$out/logs" "$GROUP" \
    --quota "GetLogEvents=$QUOTA" --quota "DescribeLogGroups=5" --burst-secs 1 \
    --background "GetLogEvents=$other"; }
  front_pid=$FRONT_PID
  local line url
  read -r line <&"${FRONT[0]}"
  url=${line#listening on }
  sed -e '/^\[sources.logs\]/,$d' -e 's/^path = "epitaph.db"/path = "quota.db"/' "$out/epitaph.toml" > "$out/quota.toml"
  cat >> "$out/quota.toml" <<EOF
[sources.logs]
kind = "aws"
log_group = "$GROUP"

[sources.metrics]
kind = "file"
path = "metrics"
unit = "percent"

[aws]
region = "us-east-1"
endpoint_url = "$url"
$limits
EOF
  rm -f "$out"/quota.db*
  local t0 t1
  t0=$(now)
  "$EPITAPH_BIN" --config "$out/quota.toml" --format json scan > "$out/scan.json" 2> "$out/scan.err" || true
  t1=$(now)
  python3 - "$name" "$out/scan.json" "$url/stats" "$QUOTA" "$t0" "$t1" "$other" <<'PY'
import json, sys, urllib.request
name, scan, stats_url, quota, t0, t1, other = sys.argv[1:]
quota = float(quota)
s = json.load(open(scan))["summary"]
stats = json.load(urllib.request.urlopen(stats_url))
st = stats["operations"]
burst = stats["burst"]["GetLogEvents"]
o = stats["other_user"].get("GetLogEvents", {"wanted": 0.0, "refused": 0.0})
g = st.get("GetLogEvents", {"accepted": 0, "throttled": 0, "per_second": {}, "first": 0, "last": 0})
sent = sum(o["accepted"] + o["throttled"] for o in st.values())
throttled = sum(o["throttled"] for o in st.values())
span = (g["last"] or 0) - (g["first"] or 0)
rate = g["accepted"] / span if span > 0 else 0.0
admits = quota * span + burst
peak = max((v[0] for v in g["per_second"].values()), default=0)
print(json.dumps({
    "run": name, "other": float(other), "analysed": s["analysed"], "discovered": s["discovered"],
    "pending": len(s["pending"]), "requests": sent, "throttled": throttled,
    "throttled_pct": 100.0 * throttled / sent if sent else 0.0,
    "gle_accepted": g["accepted"], "gle_throttled": g["throttled"],
    "rate": rate, "of_quota_pct": 100.0 * g["accepted"] / admits if admits else 0.0,
    "peak_second": peak,
    "other_refused_pct": 100.0 * o["refused"] / o["wanted"] if o["wanted"] else None,
    "epitaph_throttled": s.get("api_calls", {}).get("logs:GetLogEvents (throttled)", 0),
    "wall": float(t1) - float(t0),
}))
PY
  kill "$front_pid" 2>/dev/null || true
  wait "$front_pid" 2>/dev/null || true
  front_pid=
}

near=$(awk "BEGIN { print $QUOTA * $NEAR }")
{
  run unlimited 'rate_limits = { "logs:GetLogEvents" = 0 }'
  run "default (20/s)" ''
  run "near-quota ($near/s)" "rate_limits = { \"logs:GetLogEvents\" = $near }"
  run "at quota ($QUOTA/s)" "rate_limits = { \"logs:GetLogEvents\" = $QUOTA }"
  run unlimited 'rate_limits = { "logs:GetLogEvents" = 0 }' "$OTHER"
  run "default (20/s)" '' "$OTHER"
  run "near-quota ($near/s)" "rate_limits = { \"logs:GetLogEvents\" = $near }" "$OTHER"
} > "$out/results.jsonl"

printf 'fleet: %s terminations (seed %s); GetLogEvents quota %s/s (burst 1 s); %s core(s)\n' "$N" "$SEED" "$QUOTA" "$(nproc)"
python3 - "$out/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| limit | other user (refused) | analysed | requests | throttled | GetLogEvents/s (share of quota) | busiest second | wall |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    other = f"{r['other']:g}/s ({r['other_refused_pct']:.0f} %)" if r['other'] else "—"
    print(f"| {r['run']} | {other} | {r['analysed']} / {r['discovered']} ({r['pending']} pending) | {r['requests']} "
          f"| {r['throttled']} ({r['throttled_pct']:.1f} %; epitaph counted {r['epitaph_throttled']}) "
          f"| {r['rate']:.1f} ({r['of_quota_pct']:.0f} %) | {r['peak_second']} | {r['wall']:.1f} s |")
PY
