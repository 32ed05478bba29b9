#!/usr/bin/env bash
# Benchmark: `epitaph scan` of a simulated fleet (file backends, fresh SQLite state each run).
#
# Reports wall time and peak RSS of the scan, its accuracy against truth.json, and two
# references measured in the same run on the same files:
#   io_floor    — `cat` of every input byte to /dev/null (page cache warm): what any scan pays;
#   parse_floor — a Python script that only parses the same JSON/CSV files, judging nothing.
# Ratios are scan / reference. Medians of RUNS runs.
#
# Usage: benches/scan_fleet.sh [INSTANCES] (default 10000); env ASGS (12), SEED (1), RUNS (3).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
ASGS=${ASGS:-12}
SEED=${SEED:-1}
RUNS=${RUNS:-3}

cargo build --release --quiet
bin=$PWD/target/release/epitaph
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bin" simulate --out "$out" --instances "$N" --asgs "$ASGS" --seed "$SEED" 2>/dev/null
inputs=("$out"/activities "$out"/logs "$out"/metrics "$out"/inventory)
bytes=$(du -sb "${inputs[@]}" | awk '{s+=$1} END {print s}')
find "${inputs[@]}" -type f -exec cat {} + > /dev/null  # warm the page cache

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
calc() { awk "BEGIN { print $1 }"; }

io=(); parse=(); wall=(); rss=()
for _ in $(seq "$RUNS"); do
  t0=$(now); find "${inputs[@]}" -type f -exec cat {} + > /dev/null; t1=$(now)
  io+=("$(calc "$t1 - $t0")")
  t0=$(now)
  python3 benches/parse_floor.py "$out"
  t1=$(now)
  parse+=("$(calc "$t1 - $t0")")
  rm -f "$out"/epitaph.db*
  read -r w m < <( { /usr/bin/time -f "%e %M" "$bin" --config "$out/epitaph.toml" --format json scan > "$out/scan.json"; } 2>&1 | tail -n 1 )
  wall+=("$w"); rss+=("$m")
done

io_m=$(printf '%s\n' "${io[@]}" | median)
parse_m=$(printf '%s\n' "${parse[@]}" | median)
wall_m=$(printf '%s\n' "${wall[@]}" | median)
rss_m=$(printf '%s\n' "${rss[@]}" | median)
accuracy=$(python3 - "$out" <<'PY'
import json, sys
root = sys.argv[1]
scan = json.load(open(f"{root}/scan.json")); truth = json.load(open(f"{root}/truth.json"))
ok = sum(1 for i in scan["instances"] if truth["instances"][i["instance_id"]] == i["verdict"])
dep = sum(1 for d in scan["deployments"] if truth["deployments"].get(d["deployment"]) == d["verdict"])
print(f"instances {ok}/{len(scan['instances'])}, deployments {dep}/{len(truth['deployments'])}")
PY
)
printf 'fleet: %s terminations, %s groups, seed %s, %.1f MB of input, %s core(s)\n' "$N" "$ASGS" "$SEED" "$(calc "$bytes / 1048576")" "$(nproc)"
printf 'scan wall time (median of %s):  %.2f s\n' "$RUNS" "$wall_m"
printf 'scan peak RSS:                  %.0f MB\n' "$(calc "$rss_m / 1024")"
printf 'io_floor (cat):                 %.3f s   → scan is %.1fx\n' "$io_m" "$(calc "$wall_m / $io_m")"
printf 'parse_floor (python parse):     %.2f s   → scan is %.2fx\n' "$parse_m" "$(calc "$wall_m / $parse_m")"
printf 'accuracy vs truth.json:         %s\n' "$accuracy"
