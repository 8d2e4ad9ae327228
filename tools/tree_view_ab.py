#!/usr/bin/env python3
"""CelestialTree tree views (`/provenance`, `/descendants`, struct and `?view=meta`) of several
Banyan builds on one store, alternated, optionally beside the real CelestialTree server.

Loads tools/gen_dag.py's DAG once through the first build (and CelestialTree, when given, which
also picks the events: as tools/peer_compare.py does), then serves the same store with each build
in turn for --rounds rounds, reversing the order every round, and prints each view's median
latency over the rounds with the range (warm: each pick's first request is left out), then the
first requests alone (each server starts with its caches empty; earlier views of the same round
may have read some of the same events), then each build's ratio to CelestialTree, which is
measured in every round too (first or last in the round's order, kept running between its
turns), so a ratio compares measurements taken minutes apart, not a whole run apart.

    python3 tools/tree_view_ab.py --celestialtree-bin PATH base=/tmp/banyan-a new=.build/release/banyan
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer import celestialtree as C, dataset  # noqa: E402
from peer.common import Processes  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spread(xs: list[float]) -> str:
    """Median and range."""
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("builds", nargs="+", help="LABEL=PATH of a banyan binary, two or more")
    ap.add_argument("--celestialtree-bin", required=True,
                    help="a CelestialTree server binary built elsewhere from its public source (it chooses the picks)")
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    builds = dict(b.split("=", 1) for b in args.builds)
    if len(builds) < 2 or not 1 <= args.rounds <= 50 or not 1_000 <= args.events <= 2_000_000:
        ap.error("two or more LABEL=PATH builds, --rounds 1..50, --events 1000..2000000")
    names = list(builds)
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="tree-ab-") as root:
        try:
            ds = dataset.generate(REPO, root, args.events, args.seed)
            ct = C.celestialtree(procs, args.celestialtree_bin, root, "ct")
            by = C.banyan(procs, builds[names[0]], root, "store")
            for server in (ct, by):
                C.pipelined_emit(server, ds.events, 64, 1_800)
            n, deep = len(ds.events) + 1, ds.picks["deep"]["id"]
            kinds = [("provenance", "deep", C.picks(ct, by, "provenance", range(deep, 1, -7), 20, 2_000, 10_000)),
                     ("provenance", "recent", C.picks(ct, by, "provenance", range(n, 1, -1), 20, 10, 1_000)),
                     ("descendants", "spread", C.picks(ct, by, "descendants", range(2, n, max(1, n // 2_000)), 20, 10, 1_000))]
            by.stop()
            paths = {(p, w, v): [f"/{p}/{x}{v}" for x in ids] for p, w, ids in kinds for v in ("", "?view=meta")}
            ms: dict = {k: {"CelestialTree": []} for k in paths}
            # Each pick's first request after a build's server started, per view: the caches
            # (RocksDB's block cache, TreeMetaCache) start empty, but the picks and views asked
            # before it in the round may have filled them with some of its events.
            firsts: dict = {k: {} for k in paths}
            for r in range(args.rounds):
                # CelestialTree (kept running, idle between its turns) in every round too, so that
                # each round's ratios compare servers measured minutes apart, not a whole run apart.
                for name in (["CelestialTree"] + names if r % 2 == 0 else names[::-1] + ["CelestialTree"]):
                    if name == "CelestialTree":
                        for k, ps in paths.items():
                            ms[k][name].append(C.latency_ms(ct, ps, 5)[0])
                        continue
                    server = C.banyan(procs, builds[name], root, "store")  # the same store each time
                    try:
                        for k, ps in paths.items():
                            first: list[float] = []
                            ms[k].setdefault(name, []).append(C.latency_ms(server, ps, 5, first)[0])
                            firsts[k].setdefault(name, []).append(statistics.median(first))
                    finally:
                        server.stop()
            print(f"| view | {' | '.join(['CelestialTree'] + names)} |")
            print("|---|" + "---:|" * (len(names) + 1))
            for (p, w, v), row in ms.items():
                cells = [spread(x) for x in row.values()]
                print(f"| /{p}/{{id}}{v or ' (struct)'}, {len(paths[(p, w, v)])} {w} events, ms | {' | '.join(cells)} |")
            print(f"\nFirst request of each pick after the server started (median over picks; median and range over rounds), ms:\n")
            print(f"| view | {' | '.join(names)} |")
            print("|---|" + "---:|" * len(names))
            for (p, w, v), row in firsts.items():
                cells = [spread(x) for x in row.values()]
                print(f"| /{p}/{{id}}{v or ' (struct)'}, {len(paths[(p, w, v)])} {w} events | {' | '.join(cells)} |")
            print("\nCelestialTree's latency over each build's, per round (above 1: the build is faster); median and range over rounds:\n")
            print(f"| view | {' | '.join(names)} |")
            print("|---|" + "---:|" * len(names))
            for (p, w, v), row in ms.items():
                cells = [spread([c / b for c, b in zip(row["CelestialTree"], row[name])]).replace(" (", "× (") for name in names]
                print(f"| /{p}/{{id}}{v or ' (struct)'}, {len(paths[(p, w, v)])} {w} events | {' | '.join(cells)} |")
        finally:
            procs.stop_all()


if __name__ == "__main__":
    main()
