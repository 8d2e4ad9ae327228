#!/usr/bin/env python3
"""Pipelined `POST /emit` on one connection, with and without pipelining in the server.

Starts `banyan serve` on a fresh store with `--pipeline-depth-max 1` and with the default (64) in
turn, --rounds times, and sends --events emits over one connection keeping --depth unanswered,
each naming one random earlier event as parent (ids predicted: answers must come in order), then
the same binary's `/emit` under `wrk -t2 -c64 -s tools/wrk/emit.lua` (no pipelining, which must
not lose). Prints requests/s per round.

    python3 tools/pipelined_emit.py --banyan .build/release/banyan --rounds 2
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer import celestialtree, common  # noqa: E402
from peer.dataset import Event  # noqa: E402

WRK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wrk", "emit.lua")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--banyan", default=".build/release/banyan")
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    common.LOG_PREFIX = "pipelined_emit"
    rng = random.Random(args.seed)
    common.log(f"seed {args.seed}")
    events = [Event(i, "t", 0, "", "", "{}", (rng.randrange(1, i),)) for i in range(2, args.events + 2)]
    root = tempfile.mkdtemp(prefix="pipelined-emit-")
    procs = common.Processes()
    try:
        for r in range(args.rounds):
            for depth in ((1, 64) if r % 2 == 0 else (64, 1)):
                label = f"r{r}-d{depth}"
                data = os.path.join(root, label)
                server = celestialtree.Server(procs, "Banyan", lambda port: [
                    args.banyan, "serve", "--data-dir", data, "--port", str(port), "--grpc-port", "0", "--log-level", "warning",
                    "--pipeline-depth-max", str(depth)], root, label)
                try:
                    rate, client_cpu, cores = celestialtree.pipelined_emit(server, events, args.depth, 600)
                    out = subprocess.run(["wrk", "-t2", "-c64", "-d8s", "-s", WRK, server.url + "/emit"],
                                         capture_output=True, text=True, timeout=120).stdout
                    wrk = re.search(r"Requests/sec:\s+([\d.]+)", out)
                    print(f"round {r + 1} --pipeline-depth-max {depth}: pipelined {rate:,.0f} requests/s "
                          f"(server {cores:.2f} cores, client CPU {client_cpu:.1f} s); "
                          f"wrk {float(wrk.group(1)) if wrk else float('nan'):,.0f} requests/s", flush=True)
                finally:
                    server.stop()
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
