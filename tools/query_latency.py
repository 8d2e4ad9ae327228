#!/usr/bin/env python3
"""Query latency on a store, in process: runs each query form through
`banyan query --repeat-count N` (one warm-up, then N timed runs inside one process, so start-up
and the read-only open are not counted) and prints a Markdown table of min/p50/p90/p99 in ms.
Where a picks file (tools/gen_dag.py --picks) gives reference counts, each count is checked.

    python3 tools/query_latency.py --data-dir /tmp/dag1m --picks /tmp/dag-1m.picks.json
    python3 tools/query_latency.py --data-dir /tmp/git --git      # the git/git dataset's picks
"""

import argparse
import json
import re
import subprocess
import sys

# git/git dataset (docs/OPERATIONS.md, Tests/EventLogTests/Fixtures/git-dag-reference.json):
# 82462 is the master tip, 2 the root commit's event, 5001 a shallow pick.
GIT = {
    "deep": {"id": 5001, "ancestors": 4999},
    "tip": {"id": 82462, "ancestors": 81965},
    "early": {"id": 2, "descendants": 79831},
    "between": {"from": 2, "to": 82462, "count": 79136},
    "path": {"from": 2, "to": 82462},
    "filter": 'type = "merge"',
}


def forms(p):
    deep, tip, early = p["deep"]["id"], p["tip"]["id"], p["early"]["id"]
    between = p.get("between") or {"from": early, "to": deep, "count": p.get("between_early_deep")}
    path = p.get("path") or {"from": early, "to": tip}
    where = p.get("filter", 'type = "task.failed" or payload.attempt > 1')
    return [
        (f"count(ancestors({deep}))", p["deep"].get("ancestors")),
        (f"ancestors({deep}) limit 100", None),
        (f"count(ancestors({tip}))", p["tip"].get("ancestors")),
        (f"count(descendants({early}))", p["early"].get("descendants")),
        (f"count(descendants({early}, depth <= 3))", None),
        (f"count(between({between['from']}, {between['to']}))", between.get("count")),
        (f"path({path['from']}, {path['to']})", None),
        (f"paths({early}, {deep}) limit 5", None),
        (f"count(ancestors({deep}) where {where})", None),
        (f"count(roots(ancestors({deep})))", None),
    ]


def run(banyan, data_dir, query, repeat, timeout):
    proc = subprocess.run(
        [banyan, "query", "--data-dir", data_dir, "--repeat-count", str(repeat), "--seconds", str(timeout), query],
        capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        sys.exit(f"query failed: {query}\n{proc.stderr}")
    m = re.search(r"min ([\d.]+) p50 ([\d.]+) p90 ([\d.]+) p99 ([\d.]+) max ([\d.]+); visited (\d+)", proc.stderr)
    if not m:
        sys.exit(f"no timing line for {query}: {proc.stderr}")
    if "truncated" in proc.stderr:
        sys.exit(f"truncated: {query}: {proc.stderr}")
    return proc.stdout.strip(), [float(x) for x in m.groups()[:5]], int(m.group(6))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--picks", help="picks JSON from tools/gen_dag.py")
    ap.add_argument("--git", action="store_true", help="use the git/git dataset picks")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--banyan", default=".build/release/banyan")
    args = ap.parse_args()
    if not 1 <= args.repeat <= 10_000:
        ap.error("--repeat must be 1...10000")
    if args.git == bool(args.picks):
        ap.error("give exactly one of --picks and --git")
    p = GIT if args.git else json.load(open(args.picks))
    print("| query | result | visited | min ms | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    failures = 0
    for query, expected in forms(p):
        out, (mn, p50, p90, p99, _), visited = run(args.banyan, args.data_dir, query, args.repeat, 60)
        if query.startswith("path("):
            result = f"{out.count('->')} hops"
            want = p.get("path_early_tip_hops")
            if want is not None and out.count("->") != want:
                print(f"MISMATCH {query}: {out.count('->')} hops, reference {want}", file=sys.stderr)
                failures += 1
        elif query.startswith("paths("):
            result = f"{len(out.splitlines())} paths"
        elif query.startswith("ancestors("):
            result = f"{len(out.splitlines())} events"
        else:
            result = out
            if expected is not None and int(out) != expected:
                print(f"MISMATCH {query}: {out}, reference {expected}", file=sys.stderr)
                failures += 1
        print(f"| `{query}` | {result} | {visited} | {mn:.2f} | {p50:.2f} | {p90:.2f} | {p99:.2f} |", flush=True)
    if failures:
        sys.exit(f"{failures} counts disagree with the reference")


if __name__ == "__main__":
    main()
