#!/usr/bin/env python3
"""A quota-enforcing CloudWatch Logs front for benches/quota.sh (Python standard library only).

It answers the log calls epitaph's `aws` log backend makes (`sources.logs.stream_lookup =
"name"`: GetLogEvents read backwards, DescribeLogGroups when a stream is missing) in the
JSON 1.1 shapes of the CloudWatch Logs API reference, from a compact in-memory index of a
simulated fleet's log exports (`epitaph simulate`'s logs/ folder: JSON lines and
filter-log-events files) — moto is far too slow to carry a 1,000-instance scan at the quota.

Every operation has a quota as AWS enforces one per account and region: a token bucket of
RATE requests per second holding at most RATE × BURST_SECS tokens (full at start). A request
without a token is answered as AWS answers it: HTTP 400 with
`{"__type":"ThrottlingException","message":"Rate exceeded"}` and `x-amzn-ErrorType`.
`--background OP=RATE` plays another user of the account (a dashboard, an agent): from the
first request on, a thread sends RATE requests of the operation per second, evenly spaced,
into the same bucket; the ones that find no token are counted as the other user's refusals.
Requests are counted per operation and per whole second since the first one (accepted and
throttled), and `GET /stats` returns the counts as JSON.

Usage: quota_front.py LOGS_DIR LOG_GROUP --quota OP=RATE [--quota ...] [--burst-secs S]
       [--background OP=RATE ...]
Prints `listening on http://127.0.0.1:PORT` once it accepts connections.
"""

import argparse
import json
import os
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# GetLogEvents returns at most this many events per page (the API reference's bound).
MAX_EVENTS_PER_PAGE = 10000


def parse_ts(v):
    """Milliseconds since the epoch from a number (ms) or an RFC 3339 text."""
    if isinstance(v, (int, float)):
        return int(v)
    return int(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1000)


def load_index(folder):
    """instance (stream name) → [(timestamp ms, message)], oldest first."""
    index = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(".jsonl"):
            with open(path) as f:
                for line in f:
                    if line.strip():
                        e = json.loads(line)
                        index.setdefault(e["instance_id"], []).append(
                            (parse_ts(e["timestamp"]), e["message"])
                        )
        elif name.endswith(".json"):
            with open(path) as f:
                doc = json.load(f)
            for e in doc.get("events", []):
                index.setdefault(e["logStreamName"], []).append(
                    (parse_ts(e["timestamp"]), e["message"])
                )
    for events in index.values():
        events.sort(key=lambda e: e[0])
    return index


class Quota:
    """One operation's token bucket, and what it let through and refused."""

    def __init__(self, rate, burst_secs, background=0.0):
        self.rate = rate
        self.background = background
        self.cap = max(rate * burst_secs, 1.0)
        self.tokens = self.cap
        self.at = None
        # The other user's requests, and those that found no token.
        self.other_wanted = 0
        self.other_refused = 0

    def take(self, now):
        if self.at is None:
            self.at = now
        self.tokens = min(self.cap, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Front:
    def __init__(self, index, group, quotas, burst_secs, background):
        self.index = index
        self.group = group
        self.quotas = {
            op: Quota(r, burst_secs, background.get(op, 0.0)) for op, r in quotas.items()
        }
        self.lock = threading.Lock()
        self.start = None
        # op → {"accepted": n, "throttled": n, "per_second": {second: [accepted, throttled]},
        #       "first": t, "last": t} (seconds since the first request of any operation)
        self.stats = {}

    def other_user(self, q):
        """The other user's steady requests into `q`, until the process ends."""
        gap = 1.0 / q.background
        due = time.monotonic()
        while True:
            due += gap
            time.sleep(max(0.0, due - time.monotonic()))
            with self.lock:
                q.other_wanted += 1
                if not q.take(time.monotonic()):
                    q.other_refused += 1

    def admit(self, op):
        """Whether the quota lets this request of `op` through (and count it)."""
        now = time.monotonic()
        with self.lock:
            if self.start is None:
                self.start = now
                for q in self.quotas.values():
                    if q.background > 0:
                        threading.Thread(target=self.other_user, args=(q,), daemon=True).start()
            q = self.quotas.get(op)
            ok = q.take(now) if q else True
            s = self.stats.setdefault(
                op, {"accepted": 0, "throttled": 0, "per_second": {}, "first": None, "last": None}
            )
            t = now - self.start
            sec = s["per_second"].setdefault(int(t), [0, 0])
            if ok:
                s["accepted"] += 1
                sec[0] += 1
                if s["first"] is None:
                    s["first"] = t
                s["last"] = t
            else:
                s["throttled"] += 1
                sec[1] += 1
            return ok

    def snapshot(self):
        with self.lock:
            return {
                "quotas": {op: q.rate for op, q in self.quotas.items()},
                "burst": {op: q.cap for op, q in self.quotas.items()},
                "other_user": {
                    op: {"wanted": q.other_wanted, "refused": q.other_refused}
                    for op, q in self.quotas.items()
                    if q.background
                },
                "operations": json.loads(json.dumps(self.stats)),
            }

    def get_log_events(self, req):
        """One page backwards (or forwards with startFromHead) of a stream, ending before
        endTime. Tokens are `b/<index>` / `f/<index>`; at the start of the stream the backward
        token comes back unchanged, as the API reference documents."""
        if req.get("logGroupName") != self.group or req.get("logStreamName") not in self.index:
            return 400, "ResourceNotFoundException", "The specified log stream does not exist."
        events = self.index[req["logStreamName"]]
        end = req.get("endTime")
        start = req.get("startTime")
        window = [
            e for e in events if (end is None or e[0] < end) and (start is None or e[0] >= start)
        ]
        limit = min(int(req.get("limit") or MAX_EVENTS_PER_PAGE), MAX_EVENTS_PER_PAGE)
        token = req.get("nextToken")
        head = bool(req.get("startFromHead"))
        if token:
            pos = int(token.split("/", 1)[1])
        else:
            pos = 0 if head else len(window)
        if head:
            page_from, page_to = pos, min(len(window), pos + limit)
        else:
            page_from, page_to = max(0, pos - limit), pos
        page = window[page_from:page_to]
        body = {
            "events": [
                {"timestamp": ts, "message": msg, "ingestionTime": ts + 500} for ts, msg in page
            ],
            "nextBackwardToken": f"b/{page_from}",
            "nextForwardToken": f"f/{page_to}",
        }
        return 200, None, body

    def describe_log_groups(self, req):
        prefix = req.get("logGroupNamePrefix") or ""
        groups = [self.group] if self.group.startswith(prefix) else []
        return 200, None, {
            "logGroups": [
                {"logGroupName": g, "arn": f"arn:aws:logs:us-east-1:123456789012:log-group:{g}:*"}
                for g in groups
            ]
        }


def handler(front):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def send(self, status, body, error_type=None):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", "0f1e2d3c-0000-4000-8000-000000000000")
            if error_type:
                self.send_header("x-amzn-ErrorType", error_type)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/stats":
                return self.send(200, front.snapshot())
            self.send(404, {"message": "not found"})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            target = self.headers.get("X-Amz-Target", "")
            op = target.rsplit(".", 1)[-1]
            if not front.admit(op):
                return self.send(
                    400,
                    {"__type": "ThrottlingException", "message": "Rate exceeded"},
                    "ThrottlingException",
                )
            req = json.loads(body or b"{}")
            if op == "GetLogEvents":
                status, err, out = front.get_log_events(req)
            elif op == "DescribeLogGroups":
                status, err, out = front.describe_log_groups(req)
            else:
                status, err, out = 400, "UnknownOperationException", f"{op} is not served here"
            if err:
                return self.send(status, {"__type": err, "message": out}, err)
            self.send(status, out)

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("logs")
    p.add_argument("group")
    p.add_argument("--quota", action="append", default=[], help="OP=RATE (requests per second)")
    p.add_argument("--burst-secs", type=float, default=1.0)
    p.add_argument("--background", action="append", default=[], help="OP=RATE another user takes")
    a = p.parse_args()
    quotas, background = {}, {}
    for q in a.quota:
        op, rate = q.split("=", 1)
        quotas[op] = float(rate)
    for q in a.background:
        op, rate = q.split("=", 1)
        background[op] = float(rate)
    index = load_index(a.logs)
    if not index:
        sys.exit(f"{a.logs}: no log events found")
    front = Front(index, a.group, quotas, a.burst_secs, background)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(front))
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
