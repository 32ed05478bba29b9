#!/usr/bin/env bash
# The prometheus metrics backend on a large simulated fleet: `epitaph simulate` writes a fleet
# (default 2,000 terminated instances in 12 groups); its memory series are loaded into a real
# Prometheus (Debian's 2.42: `promtool tsdb create-blocks-from openmetrics`, then the server on
# 127.0.0.1); the same fleet is scanned with the file backend and with the prometheus backend,
# each with a fresh state, in the same run. Prints both scan times, the calls made, and
# whether every instance and deployment got the same verdict.
# Usage: bash benches/backends.sh [INSTANCES]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-2000}"
WORK="$(mktemp -d)"
PROM_PID=""
cleanup() { [ -n "$PROM_PID" ] && kill "$PROM_PID" 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
cargo build --release --quiet
BIN="$PWD/target/release/epitaph"
"$BIN" simulate --out "$WORK/fleet" --seed 1 --asgs 12 --instances "$N" >/dev/null 2>&1

# Memory series → OpenMetrics (seconds, each series in time order, # EOF).
python3 - "$WORK/fleet/metrics" "$WORK/data.om" <<'PY'
import csv, glob, json, sys
src, out = sys.argv[1], sys.argv[2]
series = {}
def add(labels, t, v):
    series.setdefault(labels, []).append((int(t), v))
from datetime import datetime
for path in glob.glob(src + "/*.csv"):
    asg = path.rsplit("/", 1)[1][:-4]
    for row in csv.DictReader(open(path)):
        t = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")).timestamp()
        add((row["instance_id"], asg), t, row["value"])
for path in glob.glob(src + "/*.prometheus.json"):
    for r in json.load(open(path))["data"]["result"]:
        m = r["metric"]
        for t, v in r["values"]:
            add((m["instance_id"], m.get("asg", "")), t, v)
with open(out, "w") as f:
    f.write("# TYPE mem_used_percent gauge\n")
    for (iid, asg), pts in sorted(series.items()):
        for t, v in sorted(pts):
            f.write(f'mem_used_percent{{instance_id="{iid}",asg="{asg}"}} {v} {t}\n')
    f.write("# EOF\n")
print(f"{len(series)} series, {sum(len(p) for p in series.values())} samples", file=sys.stderr)
PY
promtool tsdb create-blocks-from openmetrics "$WORK/data.om" "$WORK/tsdb" >/dev/null
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
printf 'global:\n  scrape_interval: 1m\n' > "$WORK/prometheus.yml"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --storage.tsdb.retention.time=100y --web.listen-address="127.0.0.1:$PORT" >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
for _ in $(seq 1 600); do
  curl -fsS "http://127.0.0.1:$PORT/-/ready" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/-/ready" >/dev/null

cp "$WORK/fleet/epitaph.toml" "$WORK/fleet/prometheus.toml"
python3 - "$WORK/fleet/prometheus.toml" "$PORT" <<'PY'
import sys
p, port = sys.argv[1], sys.argv[2]
s = open(p).read().replace('path = "epitaph.db"', 'path = "prometheus.db"')
start = s.index("[sources.metrics]")
s = s[:start] + f'''[sources.metrics]
kind = "prometheus"
unit = "percent"

[sources.metrics.prometheus]
url = "http://127.0.0.1:{port}"
query = "mem_used_percent{{{{instance_matcher}}}}"
'''
open(p, "w").write(s)
PY
scan() { # config → prints seconds; the report in $WORK/<name>.json
  local name="$1"
  local s e
  s=$(date +%s.%N)
  "$BIN" --config "$WORK/fleet/$name.toml" --format json scan > "$WORK/$name.json" 2>"$WORK/$name.err" || true
  e=$(date +%s.%N)
  python3 -c "print(f'{$e - $s:.2f}')"
}
FILE_S=$(scan epitaph)
PROM_S=$(scan prometheus)
python3 - "$WORK/epitaph.json" "$WORK/prometheus.json" "$FILE_S" "$PROM_S" <<'PY'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
def verdicts(r):
    v = {i["instance_id"]: i["verdict"] for i in r["instances"]}
    v.update({d["deployment"]: d["verdict"] for d in r["deployments"]})
    return v
va, vb = verdicts(a), verdicts(b)
same = sum(1 for k, v in va.items() if vb.get(k) == v)
calls = b["summary"]["api_calls"]
n = len(b["instances"])
print(f"file backend: {sys.argv[3]} s for {len(a['instances'])} instances")
print(f"prometheus backend: {sys.argv[4]} s for {n} instances; calls {calls} ({sum(calls.values()) / max(n, 1):.3f} per instance)")
print(f"same verdict: {same} of {len(va)} instances and deployments; pending with prometheus: {len(b['summary']['pending'])}")
for k, v in sorted(va.items()):
    if vb.get(k) != v:
        print(f"  {k}: file {v}, prometheus {vb.get(k)}")
PY
