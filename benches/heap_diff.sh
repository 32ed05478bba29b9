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
  # memlab pulls puppeteer, whose browser download is not needed to analyse snapshots.
  PUPPETEER_SKIP_DOWNLOAD=1 npm install --silent --prefix "$TOOLS" 'memlab@2' >/dev/null
fi
cargo build --release --quiet
cat > "$WORK/program.js" <<JS
const v8 = require('v8');
class Background { constructor(i) { this.i = i; this.tag = 'bg'; this.next = null; } }
class LeakedRequest { constructor(i) { this.id = i; this.body = 'r'.repeat(64) + i; this.meta = { at: i }; } }
const keep = []; for (let i = 0; i < $N; i++) keep.push(new Background(i));
// Held in a closure's context, as a server's module-level cache is: a top-level variable the
// script no longer reads would be a dead register V8 does not count as a root.
const cache = new Map();
function handle(i) { cache.set(i, new LeakedRequest(i)); }
v8.writeHeapSnapshot('$WORK/baseline.heapsnapshot');
for (let i = 0; i < 20000; i++) handle(i);
v8.writeHeapSnapshot('$WORK/target.heapsnapshot');
for (let i = 20000; i < 40000; i++) handle(i);
v8.writeHeapSnapshot('$WORK/final.heapsnapshot');
if (keep.length < 0) console.log(keep.length, cache.size);
JS
node --max-old-space-size=8192 "$WORK/program.js"
ls -l "$WORK"/*.heapsnapshot | awk '{printf "snapshot %s: %.0f MB\n", $NF, $5/1048576}'
measure() { # label, command… → prints "label: S s, M MB peak"
  local label="$1"; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" > "$WORK/$label.out" 2> "$WORK/$label.err" || true
  read -r secs kb < <(tail -1 "$WORK/time")
  echo "$label: ${secs} s, $((kb / 1024)) MB peak RSS"
}
measure epitaph target/release/epitaph --format json heap diff \
  "$WORK/baseline.heapsnapshot" "$WORK/target.heapsnapshot" "$WORK/final.heapsnapshot"
echo "  epitaph's top suspect: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["suspects"][0]["class"] if d["suspects"] else "(none)")' "$WORK/epitaph.out")"
measure memlab node --max-old-space-size=16384 "$TOOLS/node_modules/memlab/bin/memlab" find-leaks \
  --baseline "$WORK/baseline.heapsnapshot" --target "$WORK/target.heapsnapshot" --final "$WORK/final.heapsnapshot"
# memlab's table of leaked objects by name, most retained first: "│ 0 │ 'LeakedRequest' │ 'object' │ 20000 │ '5.1MB' │".
echo "  memlab's top suspect: $(grep -m1 '│ 0 ' "$WORK/memlab.out" | awk -F"'" '{print $2}')"
