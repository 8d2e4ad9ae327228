#!/usr/bin/env python3
"""Independent reference answers for the git/git commit DAG dataset.

This is deliberately *not* Banyan code: it is a small, obviously-correct
in-memory implementation that Banyan's Swift tests (and anybody importing the
dataset into a running server) can compare against.

Input : /work/shared/datasets/git-dag.jsonl.zst (override with --dataset)
Output: one JSON object on stdout, or in --out FILE.

Id mapping: Banyan writes the genesis event as id 1 and then assigns ids in
file order, so dataset line i (1-based) becomes Banyan id i + 1. The output
names events by `key` (commit sha) and `line`, never by Banyan id, so it stays
valid whatever id scheme an importer uses.

Semantics (all counts exclude nothing unless stated):
  ancestors   number of events reachable by following parent edges, excluding self
              (== `git rev-list X | wc -l` - 1)
  descendants number of events reachable by following child edges, excluding self
  roots       sorted keys of the parentless events reachable from the pick
              (Banyan's GET /ancestors/{id} answer, translated to keys; the pick
              itself if it is a root)
  between     events that are descendants of `from` and ancestors of `to`, plus
              `from` and `to` themselves (== `git rev-list --ancestry-path from..to
              | wc -l` + 1, because `from..to` excludes `from`)

Every traversal is iterative (explicit stack) because the DAG is 26,389 edges
deep and recursion would blow Python's stack.

The script checks the dataset against the facts in datasets/README.md and exits
non-zero (status 2) if any differ, so a changed dataset can't silently produce a
different fixture.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
from typing import Iterator

DEFAULT_DATASET = "/work/shared/datasets/git-dag.jsonl.zst"

# Facts published in /work/shared/datasets/README.md.
EXPECTED = {
    "dataset_sha256": "380a5cadebca1ba762afd52a88377f7aa1e663b965b240ca005c76bdb2cb14c2",
    "events": 85_361,
    "edges": 106_911,
    "roots": 9,
    "heads": 6,
    "max_depth": 26_389,
    "commits": 63_861,
    "merges": 21_500,
    "octopus_merges": 37,
    "max_parents": 10,
    "max_children": 110,
}

MASTER_TIP_PREFIX = "1a3e64c6c4a6"  # README: master tip 1a3e64c6c4a6 (v2.55.0-618-g1a3e64c6c4)
FIXED_PICK_LINES = [1, 2, 100, 5000, 42000, 85361]


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def iter_lines(path: str) -> Iterator[str]:
    """Yield decoded JSONL lines; plain .jsonl is read directly."""
    if not path.endswith(".zst"):
        with open(path, encoding="utf-8") as f:
            yield from f
        return
    try:
        import zstandard  # type: ignore
    except ImportError:
        zstandard = None
    if zstandard is not None:
        with open(path, "rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw)
            yield from io.TextIOWrapper(reader, encoding="utf-8")
        return
    # Fallback: the zstd CLI.
    proc = subprocess.Popen(["zstd", "-dc", path], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    yield from io.TextIOWrapper(proc.stdout, encoding="utf-8")
    if proc.wait() != 0:
        raise SystemExit(f"zstd -dc {path} failed with status {proc.returncode}")


class Dag:
    """Events are indexed 0..n-1 in file order (index = line - 1)."""

    def __init__(self, path: str) -> None:
        self.keys: list[str] = []
        self.types: list[str] = []
        self.parents: list[list[int]] = []
        index: dict[str, int] = {}
        for lineno, line in enumerate(iter_lines(path), start=1):
            if not line.strip():
                continue
            rec = json.loads(line)
            key = rec["key"]
            if key in index:
                raise SystemExit(f"line {lineno}: duplicate key {key}")
            ps = []
            for pk in rec["parents"]:
                if pk not in index:
                    # The README promises parents precede children; Banyan's
                    # importer relies on it too.
                    raise SystemExit(f"line {lineno}: parent {pk} not on an earlier line")
                ps.append(index[pk])
            index[key] = len(self.keys)
            self.keys.append(key)
            self.types.append(rec["type"])
            self.parents.append(ps)
        self.index = index
        n = len(self.keys)
        # children in file order == Banyan emit order == id order.
        self.children: list[list[int]] = [[] for _ in range(n)]
        for i, ps in enumerate(self.parents):
            for p in ps:
                self.children[p].append(i)
        # Longest root->event path in edges. File order is a topological order,
        # so one forward pass suffices.
        depth = [0] * n
        for i, ps in enumerate(self.parents):
            if ps:
                depth[i] = 1 + max(depth[p] for p in ps)
        self.depth = depth

    def __len__(self) -> int:
        return len(self.keys)

    def reach(self, start: int, adj: list[list[int]]) -> bytearray:
        """Iterative DFS; returns a membership bytearray including start."""
        seen = bytearray(len(self.keys))
        seen[start] = 1
        stack = [start]
        while stack:
            v = stack.pop()
            for w in adj[v]:
                if not seen[w]:
                    seen[w] = 1
                    stack.append(w)
        return seen

    def key_by_prefix(self, prefix: str) -> int:
        hits = [i for i, k in enumerate(self.keys) if k.startswith(prefix)]
        if len(hits) != 1:
            raise SystemExit(f"key prefix {prefix!r} matches {len(hits)} events, expected 1")
        return hits[0]


def choose_picks(dag: Dag) -> list[tuple[str, int]]:
    """(reason, index) pairs, deterministic given the dataset."""
    n = len(dag)
    picks: list[tuple[str, int]] = [(f"line {l}", l - 1) for l in FIXED_PICK_LINES]
    picks.append(("master tip", dag.key_by_prefix(MASTER_TIP_PREFIX)))
    octopus = [i for i in range(n) if len(dag.parents[i]) > 2]
    picks.append(("first octopus merge", octopus[0]))
    widest = max(octopus, key=lambda i: (len(dag.parents[i]), -i))
    picks.append(("widest octopus merge", widest))
    middle_merge = next(i for i in range(n // 2, n) if len(dag.parents[i]) == 2)
    picks.append(("first 2-parent merge at or after the middle line", middle_merge))
    quarter_merge = next(i for i in range(n // 4, n) if len(dag.parents[i]) == 2)
    picks.append(("first 2-parent merge at or after the quarter line", quarter_merge))
    # Drop duplicates while keeping order (e.g. if a fixed line is also the tip).
    seen: set[int] = set()
    out = []
    for reason, i in picks:
        if i not in seen:
            seen.add(i)
            out.append((reason, i))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=DEFAULT_DATASET)
    ap.add_argument("--out", help="write JSON here instead of stdout")
    args = ap.parse_args()

    sha = sha256_file(args.dataset)
    dag = Dag(args.dataset)
    n = len(dag)

    roots = [i for i in range(n) if not dag.parents[i]]
    heads = [i for i in range(n) if not dag.children[i]]
    edges = sum(len(p) for p in dag.parents)
    facts = {
        "dataset_sha256": sha,
        "events": n,
        "edges": edges,
        "roots": len(roots),
        "heads": len(heads),
        "max_depth": max(dag.depth),
        "commits": sum(1 for t in dag.types if t == "commit"),
        "merges": sum(1 for t in dag.types if t == "merge"),
        "octopus_merges": sum(1 for p in dag.parents if len(p) > 2),
        "max_parents": max(len(p) for p in dag.parents),
        "max_children": max(len(c) for c in dag.children),
    }
    mismatches = [f"{k}: dataset has {facts[k]!r}, README says {v!r}" for k, v in EXPECTED.items() if facts[k] != v]
    # type must agree with the parent count (README: merge iff 2+ parents).
    bad_types = sum(1 for i in range(n) if (dag.types[i] == "merge") != (len(dag.parents[i]) >= 2))
    if bad_types:
        mismatches.append(f"{bad_types} events whose type disagrees with their parent count")

    picks = choose_picks(dag)
    picks_out = []
    anc_cache: dict[int, bytearray] = {}
    desc_cache: dict[int, bytearray] = {}
    for reason, i in picks:
        anc = dag.reach(i, dag.parents)
        desc = dag.reach(i, dag.children)
        anc_cache[i], desc_cache[i] = anc, desc
        picks_out.append({
            "key": dag.keys[i],
            "line": i + 1,
            "why": reason,
            "type": dag.types[i],
            "parents": len(dag.parents[i]),
            "depth": dag.depth[i],
            "ancestors": sum(anc) - 1,
            "descendants": sum(desc) - 1,
            "roots": sorted(dag.keys[r] for r in roots if anc[r]),
        })

    # (from, to) pairs: the first root to the master tip (nearly the whole
    # history), and the quarter-line merge to the middle-line merge (a mid-sized
    # slice). Both must be genuine ancestor/descendant pairs.
    tip = dag.key_by_prefix(MASTER_TIP_PREFIX)
    quarter = next(i for r, i in picks if r.endswith("quarter line"))
    middle = next(i for r, i in picks if r.endswith("middle line"))
    between_out = []
    for a, b in [(0, tip), (quarter, middle)]:
        desc_a = desc_cache.get(a) or dag.reach(a, dag.children)
        anc_b = anc_cache.get(b) or dag.reach(b, dag.parents)
        if not anc_b[a]:
            mismatches.append(f"between pair: line {a + 1} is not an ancestor of line {b + 1}")
            continue
        count = sum(1 for x, y in zip(desc_a, anc_b) if x and y)
        between_out.append({"from": dag.keys[a], "from_line": a + 1,
                            "to": dag.keys[b], "to_line": b + 1, "count": count})

    result = {
        "dataset": os.path.basename(args.dataset),
        "dataset_sha256": sha,
        "id_mapping": "Banyan id = line + 1 (id 1 is the genesis event)",
        "events": n,
        "edges": edges,
        "max_depth": facts["max_depth"],
        "commits": facts["commits"],
        "merges": facts["merges"],
        "octopus_merges": facts["octopus_merges"],
        "roots": sorted(dag.keys[i] for i in roots),
        "heads": sorted(dag.keys[i] for i in heads),
        "picks": picks_out,
        "between": between_out,
    }
    text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    if args.out and mismatches:
        # Never leave a fixture behind that disagrees with the README.
        print(f"git_dag_reference: not writing {args.out}", file=sys.stderr)
    elif args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)

    if mismatches:
        for m in mismatches:
            print(f"git_dag_reference: MISMATCH {m}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
