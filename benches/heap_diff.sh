#!/usr/bin/env bash
# `epitaph heap diff` against memlab (the reference heap-diff tool, from npm) on the same three
# V8 heap snapshots of one Node.js process, measured in one run: wall time, peak RSS, and the
# top leak suspect each names. The process holds a large stable heap (the snapshot's bulk)
# and leaks `LeakedRequest` objects through a Map between the snapshots.
# Usage: bash benches/heap_diff.sh [BACKGROUND_OBJECTS]   (default 1,500,000: ≥ 200 MB snapshots)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1500000}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
TOOLS="${EPITAPH_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/epitaph-test-tools}/memlab2"
if [ ! -x "$TOOLS/node_modules/.bin/memlab" ]; then
  mkdir -p "$TOOLS"
  npm install --silent --prefix "$TOOLS" 'memlab@2' >/dev/null
fi
cargo build --release --quiet
cat > "$WORK/program.js" <<JS
const v8 = require('v8');
class Background { constructor(i) { this.i = i; this.tag = 'bg'; this.next = null; } }
class LeakedRequest { constructor(i) { this.id = i; this.body = 'r'.repeat(64) + i; this.meta = { at: i }; } }
const keep = []; for (let i = 0; i < $N; i++) keep.push(new Background(i));
const cache = new Map();
v8.writeHeapSnapshot('$WORK/baseline.heapsnapshot');
for (let i = 0; i < 20000; i++) cache.set(i, new LeakedRequest(i));
v8.writeHeapSnapshot('$WORK/target.heapsnapshot');
for (let i = 20000; i < 40000; i++) cache.set(i, new LeakedRequest(i));
v8.writeHeapSnapshot('$WORK/final.heapsnapshot');
if (keep.length < 0) console.log(keep.length);
JS
node --max-old-space-size=8192 "$WORK/program.js"
ls -l "$WORK"/*.heapsnapshot | awk '{printf "snapshot %s: %.0f MB\n", $NF, $5/1048576}'
measure() { # label, command… → prints "label: S s, M MB peak"
  local label="$1"; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" > "$WORK/$label.out" 2> "$WORK/$label.err" || true
  read -r secs kb < "$WORK/time"
  echo "$label: ${secs} s, $((kb / 1024)) MB peak RSS"
}
measure epitaph target/release/epitaph --format json heap diff \
  "$WORK/baseline.heapsnapshot" "$WORK/target.heapsnapshot" "$WORK/final.heapsnapshot"
echo "  epitaph's top suspect: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["suspects"][0]["class"] if d["suspects"] else "(none)")' "$WORK/epitaph.out")"
measure memlab node --max-old-space-size=16384 "$TOOLS/node_modules/memlab/bin/memlab.js" find-leaks \
  --baseline "$WORK/baseline.heapsnapshot" --target "$WORK/target.heapsnapshot" --final "$WORK/final.heapsnapshot"
echo "  memlab's first leak trace names: $(grep -o '\[[A-Za-z_][A-Za-z0-9_]*\]' "$WORK/memlab.out" | head -40 | tr '\n' ' ')"
grep -m3 -i "leak" "$WORK/memlab.out" | sed 's/^/  memlab: /' || true
