#!/usr/bin/env python3
"""What fetching a whole query answer page by page costs, at several page sizes.

Starts `banyan serve` on a store holding the git/git dataset (imported into a temporary
directory unless --data-dir names one that has it), then for each page size follows `next`
from the first page to the last over one keep-alive connection, alternating page sizes within
each round. Every walk is checked: the ids are distinct and as many as `count(...)` of the same
query says. Each walk's first page runs the query; later pages take the answer the server kept. Prints one Markdown table: per page size,
pages, median and range of the whole walk's time, and the server's CPU per walk.

    python3 tools/query_paging.py                                  # descendants(2), 100/1000/10000
    python3 tools/query_paging.py --query 'ancestors(82462)' --page-sizes 100,1000 --rounds 5

The client decodes each page with json.loads, as a real client would; its own CPU is printed
next to the server's so a reader can see which side the figure measures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer import common  # noqa: E402
from peer.banyan import dataset_server  # noqa: E402
from peer.wire import HTTPConn, http_request  # noqa: E402

DATASET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "datasets", "git-dag.jsonl.zst")


def walk(conn: HTTPConn, query: str, page_size: int) -> tuple[list[int], int]:
    """Every result id of `query`, following `next`; and the number of pages."""
    ids: list[int] = []
    cursor = None
    pages = 0
    while True:
        body = {"query": query, "page_size": page_size}
        if cursor:
            body["cursor"] = cursor
        status, raw = conn.roundtrip(http_request("POST", "/v1/query", json.dumps(body).encode()))
        answer = json.loads(raw)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {answer}")
        if answer.get("truncated"):
            raise RuntimeError(f"truncated: {answer['stats']}")
        ids.extend(r["id"] for r in answer["results"])
        pages += 1
        cursor = answer["next"]
        if cursor is None:
            return ids, pages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--banyan", default=".build/release/banyan")
    ap.add_argument("--data-dir", help="a store holding the git/git dataset (default: import into a temporary one)")
    ap.add_argument("--dataset", default=DATASET)
    ap.add_argument("--query", default="descendants(2)")
    ap.add_argument("--page-sizes", default="100,1000,10000")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    common.LOG_PREFIX = "query_paging"
    sizes = [int(s) for s in args.page_sizes.split(",")]
    root = tempfile.mkdtemp(prefix="query-paging-")
    procs = common.Processes()
    try:
        server = dataset_server(procs, args.banyan, args.data_dir, args.dataset, root)
        conn = HTTPConn(server.port, timeout=300)
        status, raw = conn.roundtrip(http_request("POST", "/v1/query", json.dumps({"query": f"count({args.query})"}).encode()))
        expected = json.loads(raw)["count"]
        common.log(f"{args.query}: {expected} results; server {server.version()}")
        times: dict[int, list[float]] = {s: [] for s in sizes}
        cpu: dict[int, list[float]] = {s: [] for s in sizes}
        client_cpu: dict[int, list[float]] = {s: [] for s in sizes}
        pages: dict[int, int] = {}
        for r in range(args.rounds):
            order = sizes if r % 2 == 0 else list(reversed(sizes))
            for size in order:
                cpu0, ccpu0, t0 = common.tree_cpu_seconds(server.proc.pid), time.process_time(), time.perf_counter()
                ids, n = walk(conn, args.query, size)
                elapsed = time.perf_counter() - t0
                cpu[size].append(common.tree_cpu_seconds(server.proc.pid) - cpu0)
                client_cpu[size].append(time.process_time() - ccpu0)
                if len(ids) != expected or len(set(ids)) != expected:
                    sys.exit(f"page size {size}: {len(ids)} ids, {len(set(ids))} distinct, expected {expected}")
                times[size].append(elapsed)
                pages[size] = n
                common.log(f"round {r + 1} page size {size}: {n} pages, {elapsed:.3f} s")
        print(f"`{args.query}`, {expected} results, {args.rounds} rounds, load average {os.getloadavg()[0]:.2f}\n")
        print("| page size | pages | whole answer, median (range) | server CPU per walk | client CPU per walk |")
        print("|---|---|---|---|---|")
        for size in sizes:
            t = times[size]
            print(f"| {size:,} | {pages[size]:,} | {statistics.median(t):.3f} s ({min(t):.3f}-{max(t):.3f}) "
                  f"| {statistics.median(cpu[size]):.3f} s | {statistics.median(client_cpu[size]):.3f} s |")
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
