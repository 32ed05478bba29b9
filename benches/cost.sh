#!/usr/bin/env bash
# Benchmark: how the cost of `epitaph scan` grows with the fleet (issue 15) — full scans at
# several sizes, and the re-scans a scheduled run makes: nothing new, and 1 % new.
#
# For each size N (simulated: `epitaph simulate --instances N --asgs ASGS --seed SEED`, file
# backends, SQLite state), medians of RUNS runs of:
#   full      — `scan` on a fresh state (the config's window, every termination new);
#   rescan0   — the same exports scanned again on the state `full` left: the next window, from
#               the watermark (minus `scan.overlap`) to `scan.until` — nothing new to analyse;
#   rescan1   — a state holding a scan up to T (`scan --until T`, T the time by which 99 % of
#               the window's terminations started, from the activity exports), then the timed
#               scan of the rest: the watermark (minus overlap) to `scan.until`, ~1 % new.
# Wall time and peak RSS from `/usr/bin/time -f "%e %M"`. State: the SQLite file after the full
# scan (plus its -wal, if any) per instance analysed, and the same after `VACUUM INTO`.
# Accuracy against truth.json as benches/scan_fleet.sh computes it (full scan), and the
# deployments after the 1 % re-scan (judged from the store, so they must not change).
# Reference measured in the same run on the same files: parse_floor, the Python script of
# scan_fleet.sh that only parses every JSON/CSV export. Derived: consecutive sizes' time ratios
# (issue 15: 100k ≤ 3.5× 30k), re-scan against 0.5 s / 100 MB, state against 3 KB/instance.
#
# With BASE_BIN set (e.g. the binary before a change), every step is also run with it in the
# same run, alternated with EPITAPH_BIN, each on its own state: a third table gives the
# ratios new / base, and whether the two scans' JSON (instances, deployments, next_deaths, the
# summary without durations, call counts and `reused`) is identical — full scan, re-scan with
# nothing new and 1 % re-scan.
#
# Usage: benches/cost.sh [SIZE...] (default 10000 30000 100000)
# Env: EPITAPH_BIN (a built binary; default: build release here), BASE_BIN (optional), ASGS
#      (12), SEED (1), RUNS (3, sizes below 100,000), RUNS_LARGE (1, sizes from 100,000),
#      TMPDIR (scratch).
# Writes the markdown tables to stdout, progress to stderr. Every file it writes lives in one
# `mktemp -d`, removed at exit; each size's exports are deleted before the next size.
set -euo pipefail
# Binaries named relative to where the script was started.
[ -z "${EPITAPH_BIN:-}" ] || EPITAPH_BIN=$(realpath "$EPITAPH_BIN")
[ -z "${BASE_BIN:-}" ] || BASE_BIN=$(realpath "$BASE_BIN")
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 30000 100000)
ASGS=${ASGS:-12}
SEED=${SEED:-1}
RUNS=${RUNS:-3}
RUNS_LARGE=${RUNS_LARGE:-1}
LARGE=100000
# Scratch space one size needs, per termination: ~14 KB of exports, two state files (the
# full scan's, then the 99 % snapshot and its working copy) at up to ~10 KB each, plus margin.
BYTES_PER_TERMINATION=50000
# With BASE_BIN: its state and its 99 % snapshot as well.
BASE_BYTES_PER_TERMINATION=20000

if [ -n "${EPITAPH_BIN:-}" ]; then
  bin=$EPITAPH_BIN
  [ -x "$bin" ] || { echo "EPITAPH_BIN=$bin is not an executable" >&2; exit 2; }
else
  cargo build --release --quiet
  bin=$PWD/target/release/epitaph
fi
base_bin=${BASE_BIN:-}
[ -z "$base_bin" ] || [ -x "$base_bin" ] || { echo "BASE_BIN=$base_bin is not an executable" >&2; exit 2; }
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
calc() { awk "BEGIN { print $1 }"; }
log() { printf '[cost %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# timed OUT_JSON ARGS...: runs the binary under /usr/bin/time; sets $w (s) and $m (KB).
timed() {
  local out=$1; shift
  local exe=${use_bin:-$bin}
  if ! /usr/bin/time -f "%e %M" -o "$work/time" "$exe" "$@" > "$out" 2> "$work/stderr"; then
    echo "failed: $exe $*" >&2; cat "$work/stderr" >&2; cat "$work/time" >&2; exit 1
  fi
  read -r w m < <(tail -n 1 "$work/time")
}

parse_floor() {
  python3 benches/parse_floor.py "$1"
}

# cut_time DIR: the start time by which 99 % of the configured window's terminations started
# (the same rule as the scan: StartTime in [scan.since, scan.until), not failed or cancelled),
# and how many start at or after it.
cut_time() {
  python3 - "$1" <<'PY'
import json, os, re, sys
from datetime import datetime, timezone
root = sys.argv[1]
toml = open(os.path.join(root, "epitaph.toml")).read()
def field(key):
    return re.search(rf'^{key}\s*=\s*"([^"]+)"', toml, re.M).group(1)
def instant(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(timezone.utc)
since, until = instant(field("since")), instant(field("until"))
times = []
for name in sorted(os.listdir(os.path.join(root, "activities"))):
    doc = json.load(open(os.path.join(root, "activities", name)))
    for a in doc["Activities"] if isinstance(doc, dict) else doc:
        if not a.get("Description", "").lower().startswith("terminating"):
            continue
        if a.get("StatusCode") in ("Failed", "Cancelled"):
            continue
        t = instant(a["StartTime"])
        if since <= t < until:
            times.append(t)
times.sort()
k = len(times) * 99 // 100
cut = times[k]
print(cut.strftime("%Y-%m-%dT%H:%M:%SZ"), sum(1 for t in times if t >= cut.replace(microsecond=0)))
PY
}

# accuracy SCAN_JSON TRUTH_JSON: instances and deployments right, as scan_fleet.sh counts them.
accuracy() {
  python3 - "$1" "$2" <<'PY'
import json, sys
scan = json.load(open(sys.argv[1])); truth = json.load(open(sys.argv[2]))
ok = sum(1 for i in scan["instances"] if truth["instances"][i["instance_id"]] == i["verdict"])
dep = sum(1 for d in scan["deployments"] if truth["deployments"].get(d["deployment"]) == d["verdict"])
print(f"{ok:,} / {len(scan['instances']):,}|{dep} / {len(truth['deployments'])}")
PY
}

# same A_JSON B_JSON: "identical", or which parts of two scans' answers differ (durations and
# call counts left out).
same() {
  python3 - "$1" "$2" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
# `reused` says how an answer was reached (kept from the previous run), not what it is.
volatile = {"duration_ms", "api_calls", "api_calls_per_instance", "reused"}
diff = [k for k in ("window", "instances", "deployments", "next_deaths") if a.get(k) != b.get(k)]
sa, sb = a.get("summary", {}), b.get("summary", {})
diff += [f"summary.{k}" for k in sorted(set(sa) | set(sb)) if k not in volatile and sa.get(k) != sb.get(k)]
print("identical" if not diff else "differ: " + ", ".join(diff))
PY
}

# summary SCAN_JSON KEY...: fields of the scan's summary, space-separated.
summary() {
  python3 - "$@" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print(" ".join(str(s[k]) for k in sys.argv[2:]))
PY
}

# state DB: "bytes wal_bytes freelist_pages vacuumed_bytes" of a closed SQLite state.
state() {
  python3 - "$1" "$work/vacuumed.db" <<'PY'
import os, sqlite3, sys
db, dst = sys.argv[1], sys.argv[2]
wal = os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0
size = os.path.getsize(db)
c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
free = c.execute("pragma freelist_count").fetchone()[0]
if os.path.exists(dst):
    os.remove(dst)
c.execute("vacuum into ?", (dst,))
c.close()
print(size, wal, free, os.path.getsize(dst))
os.remove(dst)
PY
}

thousands() { echo "$1" | sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta'; }
fmt_mb() { calc "$1 / 1024" | awk '{printf "%.0f MB", $1}'; }

full_rows=(); rescan_rows=(); base_rows=(); skipped=(); prev_n=; prev_full=; prev_parse=; ratios=(); targets=()
started=$(now)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for n in "${sizes[@]}"; do
  runs=$RUNS; [ "$n" -ge "$LARGE" ] && runs=$RUNS_LARGE
  avail_kb=$(df -Pk "$work" | awk 'NR==2 {print $4}')
  per_termination=$BYTES_PER_TERMINATION
  [ -z "$base_bin" ] || per_termination=$((per_termination + BASE_BYTES_PER_TERMINATION))
  need_kb=$((n * per_termination / 1024))
  if [ "$avail_kb" -lt "$need_kb" ]; then
    note="$(thousands "$n"): skipped — $((avail_kb >> 10)) MB free in $work, ~$((need_kb >> 10)) MB needed (set TMPDIR)"
    log "$note"; skipped+=("- $note"); continue
  fi
  dir=$work/fleet-$n
  log "simulate $n terminations"
  t0=$(now)
  "$bin" simulate --out "$dir" --instances "$n" --asgs "$ASGS" --seed "$SEED" > /dev/null 2> "$work/stderr" \
    || { echo "simulate --instances $n failed:" >&2; cat "$work/stderr" >&2; exit 1; }
  log "simulated in $(calc "$(now) - $t0") s"
  inputs=("$dir"/activities "$dir"/logs "$dir"/metrics "$dir"/inventory)
  bytes=$(du -sb "${inputs[@]}" | awk '{s+=$1} END {print s}')
  find "${inputs[@]}" -type f -exec cat {} + > /dev/null  # warm the page cache
  cfg=$dir/epitaph.toml
  db=$dir/epitaph.db
  # The base binary's own state beside it (the same config otherwise).
  bcfg=$dir/base.toml
  bdb=$dir/base.db
  sed 's/^path = "epitaph.db"$/path = "base.db"/' "$cfg" > "$bcfg"
  grep -q '^path = "base.db"$' "$bcfg" || { echo "no state path to redirect in $cfg" >&2; exit 1; }

  parse=(); fw=(); fm=(); r0w=(); r0m=(); r1w=(); r1m=()
  bfw=(); bfm=(); br0w=(); br0m=(); br1w=(); br1m=()
  for i in $(seq "$runs"); do
    log "$n: run $i/$runs: parse floor"
    t0=$(now); parse_floor "$dir"; t1=$(now)
    parse+=("$(calc "$t1 - $t0")")
    log "$n: run $i/$runs: full scan"
    rm -f "$db" "$db"-wal "$db"-shm
    timed "$work/full.json" --config "$cfg" --format json scan
    fw+=("$w"); fm+=("$m")
    # The state as the (last) full scan left it, before the re-scan adds to it.
    [ "$i" -lt "$runs" ] || read -r st_bytes st_wal st_free st_vac <<< "$(state "$db")"
    log "$n: run $i/$runs: re-scan, nothing new"
    timed "$work/rescan0.json" --config "$cfg" --format json scan
    r0w+=("$w"); r0m+=("$m")
    if [ -n "$base_bin" ]; then
      log "$n: run $i/$runs: base binary: full scan, re-scan"
      rm -f "$bdb" "$bdb"-wal "$bdb"-shm
      use_bin=$base_bin timed "$work/base-full.json" --config "$bcfg" --format json scan
      bfw+=("$w"); bfm+=("$m")
      [ "$i" -lt "$runs" ] || read -r bst_bytes bst_wal _ _ <<< "$(state "$bdb")"
      use_bin=$base_bin timed "$work/base-rescan0.json" --config "$bcfg" --format json scan
      br0w+=("$w"); br0m+=("$m")
    fi
  done
  read -r analysed <<< "$(summary "$work/full.json" analysed)"
  read -r r0_disc r0_new r0_complete <<< "$(summary "$work/rescan0.json" discovered analysed complete)"
  r0_reused=$(python3 -c 'import json,sys; print(", ".join(json.load(open(sys.argv[1]))["summary"].get("reused", [])) or "nothing")' "$work/rescan0.json")
  [ "$r0_complete" = True ] || log "warning: the re-scan with nothing new was not complete"
  IFS='|' read -r acc_inst acc_dep <<< "$(accuracy "$work/full.json" "$dir/truth.json")"
  wal_after_rescan=0; [ ! -e "$db"-wal ] || wal_after_rescan=$(stat -c %s "$db"-wal)
  [ "$wal_after_rescan" -eq 0 ] || log "$n: the re-scan left a $wal_after_rescan-byte WAL beside the state"
  rm -f "$db" "$db"-wal "$db"-shm
  if [ -n "$base_bin" ]; then
    same_full=$(same "$work/full.json" "$work/base-full.json")
    same_r0=$(same "$work/rescan0.json" "$work/base-rescan0.json")
    read -r b_analysed <<< "$(summary "$work/base-full.json" analysed)"
    rm -f "$bdb" "$bdb"-wal "$bdb"-shm
  fi

  read -r cut tail_n <<< "$(cut_time "$dir")"
  log "$n: state up to $cut (99 %; $tail_n terminations from it on)"
  timed "$work/upto.json" --config "$cfg" --format json scan --until "$cut"
  cp "$db" "$work/snapshot.db"
  [ ! -e "$db"-wal ] || cp "$db"-wal "$work/snapshot.db-wal"
  if [ -n "$base_bin" ]; then
    use_bin=$base_bin timed "$work/base-upto.json" --config "$bcfg" --format json scan --until "$cut"
    cp "$bdb" "$work/base-snapshot.db"
    [ ! -e "$bdb"-wal ] || cp "$bdb"-wal "$work/base-snapshot.db-wal"
  fi
  for i in $(seq "$runs"); do
    log "$n: run $i/$runs: re-scan, 1 % new"
    rm -f "$db" "$db"-wal "$db"-shm
    cp "$work/snapshot.db" "$db"
    [ ! -e "$work/snapshot.db-wal" ] || cp "$work/snapshot.db-wal" "$db"-wal
    timed "$work/rescan1.json" --config "$cfg" --format json scan
    r1w+=("$w"); r1m+=("$m")
    if [ -n "$base_bin" ]; then
      log "$n: run $i/$runs: base binary: re-scan, 1 % new"
      rm -f "$bdb" "$bdb"-wal "$bdb"-shm
      cp "$work/base-snapshot.db" "$bdb"
      [ ! -e "$work/base-snapshot.db-wal" ] || cp "$work/base-snapshot.db-wal" "$bdb"-wal
      use_bin=$base_bin timed "$work/base-rescan1.json" --config "$bcfg" --format json scan
      br1w+=("$w"); br1m+=("$m")
    fi
  done
  read -r r1_disc r1_new r1_cached <<< "$(summary "$work/rescan1.json" discovered analysed cached)"
  IFS='|' read -r _ r1_dep <<< "$(accuracy "$work/rescan1.json" "$dir/truth.json")"
  [ -z "$base_bin" ] || same_r1=$(same "$work/rescan1.json" "$work/base-rescan1.json")
  rm -rf "$dir" "$work"/snapshot.db* "$work"/base-snapshot.db*

  parse_m=$(printf '%s\n' "${parse[@]}" | median)
  fw_m=$(printf '%s\n' "${fw[@]}" | median); fm_m=$(printf '%s\n' "${fm[@]}" | median)
  r0w_m=$(printf '%s\n' "${r0w[@]}" | median); r0m_m=$(printf '%s\n' "${r0m[@]}" | median)
  r1w_m=$(printf '%s\n' "${r1w[@]}" | median); r1m_m=$(printf '%s\n' "${r1m[@]}" | median)
  per=$(calc "($st_bytes + $st_wal) / $analysed / 1024")
  per_vac=$(calc "$st_vac / $analysed / 1024")
  full_rows+=("$(printf '| %s | %.0f MB | %s | %.2f s | **%.2f s** (%.2f×) | %s | %.0f MB: **%.1f KB**/instance (WAL %s B, %s free pages) | %.1f KB | %s | %s |' \
    "$(thousands "$n")" "$(calc "$bytes / 1048576")" "$runs" "$parse_m" "$fw_m" "$(calc "$fw_m / $parse_m")" \
    "$(fmt_mb "$fm_m")" "$(calc "$st_bytes / 1048576")" "$per" "$st_wal" "$st_free" "$per_vac" "$acc_inst" "$acc_dep")")
  rescan_rows+=("$(printf '| %s | %s | **%.2f s**, %s (%s discovered, %s analysed; reused: %s) | **%.2f s**, %s (%s discovered: %s new, %s cached; from %s on) | %s |' \
    "$(thousands "$n")" "$runs" "$r0w_m" "$(fmt_mb "$r0m_m")" "$r0_disc" "$r0_new" "$r0_reused" \
    "$r1w_m" "$(fmt_mb "$r1m_m")" "$r1_disc" "$r1_new" "$r1_cached" "$cut" "$r1_dep")")
  if [ -n "$base_bin" ]; then
    bfw_m=$(printf '%s\n' "${bfw[@]}" | median); bfm_m=$(printf '%s\n' "${bfm[@]}" | median)
    br0w_m=$(printf '%s\n' "${br0w[@]}" | median); br0m_m=$(printf '%s\n' "${br0m[@]}" | median)
    br1w_m=$(printf '%s\n' "${br1w[@]}" | median); br1m_m=$(printf '%s\n' "${br1m[@]}" | median)
    bper=$(calc "($bst_bytes + $bst_wal) / $b_analysed / 1024")
    base_rows+=("$(printf '| %s | %.2f / %.2f s (**%.2f×**), %s / %s | %.2f / %.2f s (**%.2f×**), %s / %s | %.2f / %.2f s (**%.2f×**), %s / %s | %.1f / %.1f KB | %s | %s | %s |' \
      "$(thousands "$n")" "$fw_m" "$bfw_m" "$(calc "$fw_m / $bfw_m")" "$(fmt_mb "$fm_m")" "$(fmt_mb "$bfm_m")" \
      "$r0w_m" "$br0w_m" "$(calc "$r0w_m / $br0w_m")" "$(fmt_mb "$r0m_m")" "$(fmt_mb "$br0m_m")" \
      "$r1w_m" "$br1w_m" "$(calc "$r1w_m / $br1w_m")" "$(fmt_mb "$r1m_m")" "$(fmt_mb "$br1m_m")" \
      "$per" "$bper" "$same_full" "$same_r0" "$same_r1")")
    printf '%s\n' "${base_rows[-1]}" >&2
  fi
  if [ -n "$prev_n" ]; then
    ratios+=("$(printf -- '- %s → %s terminations (%.2f×): full scan **%.2f×** the time, parse floor %.2f×' \
      "$(thousands "$prev_n")" "$(thousands "$n")" "$(calc "$n / $prev_n")" \
      "$(calc "$fw_m / $prev_full")" "$(calc "$parse_m / $prev_parse")")")
  fi
  if [ "$n" -eq "$LARGE" ]; then
    targets+=("$(printf -- '- re-scan, nothing new, at %s: %.2f s (target ≤ 0.5 s: %s), %s (target ≤ 100 MB: %s)' \
      "$(thousands "$n")" "$r0w_m" "$(awk "BEGIN{print ($r0w_m <= 0.5) ? \"met\" : \"not met\"}")" \
      "$(fmt_mb "$r0m_m")" "$(awk "BEGIN{print ($r0m_m <= 102400) ? \"met\" : \"not met\"}")")")
    targets+=("$(printf -- '- full scan at %s: peak RSS %s (target ≤ 1 GB: %s)' "$(thousands "$n")" \
      "$(fmt_mb "$fm_m")" "$(awk "BEGIN{print ($fm_m <= 1048576) ? \"met\" : \"not met\"}")")")
    [ "$prev_n" != 30000 ] || targets+=("$(printf -- '- full scan 100,000 / 30,000: %.2f× (target ≤ 3.5×: %s)' \
      "$(calc "$fw_m / $prev_full")" "$(awk "BEGIN{print ($fw_m / $prev_full <= 3.5) ? \"met\" : \"not met\"}")")")
  fi
  targets+=("$(printf -- '- state at %s: %.1f KB per instance (target ≤ 3 KB: %s)' "$(thousands "$n")" "$per" \
    "$(awk "BEGIN{print ($per <= 3) ? \"met\" : \"not met\"}")")")
  prev_n=$n; prev_full=$fw_m; prev_parse=$parse_m
  printf '%s\n' "${full_rows[-1]}" "${rescan_rows[-1]}" >&2
  log "$n done: full ${fw_m} s, re-scan ${r0w_m} s, 1 % ${r1w_m} s"
done

cat <<EOF
Binary \`$bin\` (sha256 $(sha256sum "$bin" | cut -c1-12); script at $commit), $ASGS groups, seed $SEED, $(nproc) core(s), finished $(date -u +%Y-%m-%dT%H:%MZ); the whole run took $(calc "$(now) - $started" | awk '{printf "%.0f", $1}') s; load average $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end.

| terminations | exports | runs | parse floor | full scan (÷ parse floor) | full-scan peak RSS | state after the full scan | after VACUUM | instances right | deployments right |
|---|---|---|---|---|---|---|---|---|---|
$(printf '%s\n' "${full_rows[@]}")

| terminations | runs | re-scan, nothing new: wall, peak RSS | re-scan, 1 % new: wall, peak RSS | deployments right after the 1 % re-scan |
|---|---|---|---|---|
$(printf '%s\n' "${rescan_rows[@]}")
$([ -z "$base_bin" ] || printf '\nAgainst BASE_BIN `%s` (sha256 %s) in the same run, alternated (new / base):\n\n| terminations | full scan: wall, peak RSS | re-scan, nothing new | re-scan, 1 %% new | state per instance | full scan output | nothing-new re-scan output | 1 %% re-scan output |\n|---|---|---|---|---|---|---|---|\n%s\n' "$base_bin" "$(sha256sum "$base_bin" | cut -c1-12)" "$(printf '%s\n' "${base_rows[@]}")")

Growth:
$([ ${#ratios[@]} -gt 0 ] && printf '%s\n' "${ratios[@]}" || echo "- one size only")

Targets of issue 15:
$(printf '%s\n' "${targets[@]}")
$([ ${#skipped[@]} -eq 0 ] || { printf '\nNot measured:\n'; printf '%s\n' "${skipped[@]}"; })
EOF
