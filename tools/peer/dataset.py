"""The workload: tools/gen_dag.py output read once into plain tuples, with Banyan's numbering.

Line i of the file (1-based) is event id i + 1 in every system, because a Banyan store starts
with a genesis event (id 1); parents are given by the file as keys "e<line>", translated here to
those ids. So every system stores the same graph and answers can be compared exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import NamedTuple

from .common import log


class Event(NamedTuple):
    id: int
    type: str
    ts: int
    stream: str
    message: str
    payload: str           # compact JSON text, as in the file
    parents: tuple[int, ...]


class Dataset(NamedTuple):
    path: str
    events: list[Event]
    picks: dict
    seed: int


def generate(repo: str, workdir: str, n: int, seed: int) -> Dataset:
    path = os.path.join(workdir, f"dag-{n}-{seed}.jsonl")
    picks_path = path.replace(".jsonl", ".picks.json")
    cmd = [sys.executable, os.path.join(repo, "tools", "gen_dag.py"), "--events", str(n), "--seed", str(seed),
           "-o", path, "--picks", picks_path]
    log(f"generating the dataset: {' '.join(cmd)}")
    started = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(picks_path) as f:
        picks = json.load(f)
    events = read(path)
    if len(events) != n or picks.get("events") != n:
        raise RuntimeError(f"gen_dag wrote {len(events)} events, picks say {picks.get('events')}, asked {n}")
    log(f"dataset: {n:,} events, {sum(len(e.parents) for e in events):,} edges, seed {seed}, "
        f"{os.path.getsize(path) / 1e6:.0f} MB, {time.monotonic() - started:.1f} s; picks {json.dumps(picks)}")
    return Dataset(path, events, picks, seed)


def read(path: str) -> list[Event]:
    events = []
    with open(path) as f:
        for line_no, line in enumerate(f, start=1):
            o = json.loads(line)
            parents = tuple(int(k[1:]) + 1 for k in o.get("parents", ()))  # "e0000000042" -> 43
            events.append(Event(line_no + 1, o["type"], int(o["ts"]), o.get("stream", ""), o.get("message", ""),
                                json.dumps(o.get("payload"), separators=(",", ":"), ensure_ascii=False),
                                parents))
    return events


def batches(events: list[Event], size: int) -> list[list[Event]]:
    return [events[i:i + size] for i in range(0, len(events), size)]
