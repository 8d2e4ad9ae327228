#!/usr/bin/env python3
"""A/B of batched durable HTTP ingest between banyan binaries, alternated in one run.

    python3 tools/ingest_ab.py --rounds 3 OLD/banyan NEW/banyan [--events 400000]

The machine is shared and noisy, so comparing two builds means running them in turns, minutes
apart at most. Each round starts every binary on a fresh store in turn and ingests the same
pre-encoded batches with peer_compare's raw-socket client (tools/peer: 4 connections, batches of
1,000, durability=sync, the same gating and checks, last_id and edges verified), and prints
events/s with the CPU the server and the client used. The dataset is tools/gen_dag.py's, seed 7,
generated once into --workdir.

`--keys both` also runs every binary with an idempotency key on each event (the keyed path real
producers take), alternated with the unkeyed run, and prints the keyed/unkeyed ratio per round.
`--key-order random` gives those keys no order (40 hex digits, like commit SHAs) instead of
ascending ones ("e0000000001", ...).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer import banyan, dataset  # noqa: E402
from peer.common import Processes  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binaries", nargs="+", help="banyan binaries to compare")
    ap.add_argument("--events", type=int, default=400_000, help="events per run (default 400,000)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds; each runs every binary once (default 2)")
    ap.add_argument("--connections", type=int, default=4, help="client connections (default 4)")
    ap.add_argument("--batch", type=int, default=1000, help="events per request (default 1,000)")
    ap.add_argument("--seconds-max", type=float, default=120, help="time bound of one run (default 120)")
    ap.add_argument("--workdir", default="/tmp/banyan-ingest-ab", help="dataset and stores (default /tmp/banyan-ingest-ab)")
    ap.add_argument("--keys", choices=("off", "on", "both"), default="off", help="idempotency keys on every event (default off)")
    ap.add_argument("--key-order", choices=("ascending", "random"), default="ascending",
                    help="keys in id order or in none (default ascending)")
    args = ap.parse_args()
    if not 1_000 <= args.events <= 10_000_000 or not 1 <= args.rounds <= 20 or not 1 <= args.connections <= 64:
        ap.error("--events 1000..10000000, --rounds 1..20, --connections 1..64")
    if args.key_order != "ascending" and args.keys == "off":
        ap.error("--key-order needs --keys on or both")
    for b in args.binaries:
        if not os.access(b, os.X_OK):
            ap.error(f"not an executable: {b}")
    os.makedirs(args.workdir, exist_ok=True)
    path = os.path.join(args.workdir, f"dag-{args.events}-7.jsonl")
    if os.path.exists(path):
        ds = dataset.Dataset(path, dataset.read(path), {}, 7)
    else:
        ds = dataset.generate(REPO, args.workdir, args.events, 7)
    settings = {"off": [False], "on": [True], "both": [False, True]}[args.keys]
    prepared = {keyed: banyan.encode_jobs(ds.events, args.batch, args.connections, keyed=keyed, exact=False,
                                           key_order=args.key_order) for keyed in settings}
    procs = Processes()
    try:
        for r in range(args.rounds):
            for b in args.binaries:
                rates = {}
                for keyed in (settings if r % 2 == 0 else list(reversed(settings))):
                    label = f"ab{r}{'k' if keyed else ''}"
                    result, _ = banyan.ingest(procs, b, args.workdir, label, prepared[keyed], args.connections, args.seconds_max)
                    rates[keyed] = result.rate
                    print(f"round {r + 1}  {b}{' keyed' if keyed else ''}: {result.rate:,.0f} events/s  "
                          f"server cores {result.server_cores:.2f}  client cores {result.client_cores:.2f}", flush=True)
                if len(rates) == 2:
                    print(f"round {r + 1}  {b}: keyed/unkeyed {rates[True] / rates[False]:.2f}", flush=True)
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
