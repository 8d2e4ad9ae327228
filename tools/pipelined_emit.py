#!/usr/bin/env python3
"""Pipelined `POST /emit` on one connection, with and without pipelining in the server.

Starts `banyan serve` on a fresh store with `--pipeline-depth-max 1` and with the default (64) in
turn, --rounds times, and sends --events emits over one connection keeping --depth unanswered,
each naming one random earlier event as parent (ids predicted: answers must come in order), then
the same binary's `/emit` under wrk -t2 -c64 for 8 s (peer/celestialtree.wrk_emit, each event
naming parent 1; no pipelining, which must not lose). Prints requests/s per round. With
`--compare emit-path` the two settings are `--emit-on-event-loop false` and `true` instead (the
responder's path for /emit against the event loop's); with `--compare builds --other PATH` the
binaries `--banyan` and `--other`, both with their default settings.

    python3 tools/pipelined_emit.py --banyan .build/release/banyan --rounds 2
    python3 tools/pipelined_emit.py --compare emit-path --rounds 4
    python3 tools/pipelined_emit.py --compare builds --banyan OLD --other NEW --rounds 4
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer import celestialtree, common  # noqa: E402
from peer.dataset import Event  # noqa: E402


# The settings each comparison alternates: (label, serve flags).
VARIANTS = {
    "pipelining": [("--pipeline-depth-max 1", ("--pipeline-depth-max", "1")), ("--pipeline-depth-max 64", ("--pipeline-depth-max", "64"))],
    "emit-path": [("--emit-on-event-loop false", ("--emit-on-event-loop", "false")), ("--emit-on-event-loop true", ("--emit-on-event-loop", "true"))],
}


def commit_groups(server) -> int:
    """The server's `banyan_commit_groups_total`."""
    status, body = server.get("/metrics")
    assert status == 200, status
    match = re.search(rb"^banyan_commit_groups_total (\S+)$", body, re.M)
    return int(float(match.group(1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--banyan", default=".build/release/banyan")
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--compare", choices=sorted(VARIANTS) + ["builds"], default="pipelining",
                    help="what is alternated: pipelining (--pipeline-depth-max 1 and 64), emit-path "
                         "(--emit-on-event-loop false and true), or builds (--banyan against --other, default flags)")
    ap.add_argument("--other", help="with --compare builds: the second binary")
    args = ap.parse_args()
    if args.compare == "builds":
        if not args.other:
            ap.error("--compare builds needs --other")
        variants = [(args.banyan, args.banyan, ()), (args.other, args.other, ())]
    else:
        variants = [(label, args.banyan, flags) for label, flags in VARIANTS[args.compare]]
    common.LOG_PREFIX = "pipelined_emit"
    rng = random.Random(args.seed)
    common.log(f"seed {args.seed}")
    events = [Event(i, "t", 0, "", "", "{}", (rng.randrange(1, i),)) for i in range(2, args.events + 2)]
    root = tempfile.mkdtemp(prefix="pipelined-emit-")
    procs = common.Processes()
    try:
        for r in range(args.rounds):
            for i, (name, binary, flags) in enumerate(variants if r % 2 == 0 else variants[::-1]):
                label = f"r{r}-{i}"
                server = celestialtree.banyan(procs, binary, root, label, flags)
                try:
                    groups = commit_groups(server)
                    rate, client_cpu, cores = celestialtree.pipelined_emit(server, events, args.depth, 600)
                    groups = commit_groups(server) - groups
                    wrk, _ = celestialtree.wrk_emit(server, 8, 1)
                    print(f"round {r + 1} {name}: pipelined {rate:,.0f} requests/s "
                          f"(server {cores:.2f} cores, client CPU {client_cpu:.1f} s, "
                          f"{len(events) / max(groups, 1):.1f} events per commit group); "
                          f"wrk {wrk:,.0f} requests/s", flush=True)
                finally:
                    server.stop()
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
