"""The parse floor of the scan benchmarks (benches/scan_fleet.sh, benches/cost.sh): parse every
JSON, JSON-lines and CSV export of a simulated fleet, judging nothing — what any scan of the
same files pays at least. Usage: python3 benches/parse_floor.py FLEET_DIR"""
import csv, json, os, sys

root = sys.argv[1]
for sub in ("activities", "logs", "metrics", "inventory"):
    for name in sorted(os.listdir(os.path.join(root, sub))):
        path = os.path.join(root, sub, name)
        if name.endswith(".jsonl"):
            with open(path) as f:
                for line in f:
                    json.loads(line)
        elif name.endswith(".csv"):
            with open(path) as f:
                for row in csv.reader(f):
                    pass
        else:
            with open(path) as f:
                json.load(f)
