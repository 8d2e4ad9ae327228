#!/usr/bin/env python3
"""Seeded synthetic causal DAG in the dataset's JSONL format (one event per line: key, type, ts,
stream, message, payload, parents by key), for benchmarks and the query latency figures.

Shape: up to --jobs workflow runs are active at once, interleaved like real traffic. Each run is a
chain of phases; a phase is either one task (scheduled -> started -> completed/failed/retried) or
a fan-out of 2-6 parallel tasks joined by one merge event. A new run is usually triggered by an
event of another recent run (a cross-job parent), and some tasks consume an artifact of another
run (a second cross-job parent). Every --checkpoint-every events a checkpoint event merges the
previous checkpoint with the artifacts of the runs finished since, and runs are often triggered
by the latest checkpoint: a backbone like git's mainline, so late events have most of history
as ancestors and early events most of it as descendants. About 20 event types; payloads of about
150 bytes.

    python3 tools/gen_dag.py --events 1000000 --seed 7 -o /tmp/dag-1m.jsonl --picks /tmp/dag-1m.picks.json

--picks writes ids worth measuring (the generator numbers events 1..N in file order, which is
the id order after `banyan import` into a store whose genesis is id 1, so ids are shifted by one;
the picks file already accounts for that): an event with about 10,000 ancestors, the last event,
an early event with many descendants, and their path and between counts computed by plain BFS
here, independently of Banyan.
"""

import argparse
import json
import random
import subprocess
import sys
import time
from collections import deque

TYPES_TASK_END = ["task.completed", "task.completed", "task.completed", "task.completed", "task.failed", "task.retried"]
NOTES = ["cache.hit", "cache.miss", "log.note", "heartbeat", "timer.fired", "signal.received"]
WORKERS = [f"worker-{i:02d}" for i in range(24)]


def job_events(rng, trigger):
    """Yields (type, parents, cross) for one run; parents are indexes into the run's own events
    (-1: the trigger from another run); cross asks the caller for one more parent from a recent
    event of another run."""
    yield ("job.started", [-1] if trigger else [], False)
    yield ("input.received", [0], False)
    last = 1
    n = 2
    for _ in range(rng.randint(3, 12)):
        if rng.random() < 0.35:
            yield ("phase.fanout", [last], False)
            fan = n
            n += 1
            ends = []
            for _ in range(rng.randint(2, 6)):
                yield ("task.scheduled", [fan], False)
                yield ("task.started", [n], rng.random() < 0.05)
                yield (rng.choice(TYPES_TASK_END), [n + 1], False)
                ends.append(n + 2)
                n += 3
            yield ("phase.joined", ends, False)
            last = n
            n += 1
        else:
            yield ("task.scheduled", [last], False)
            yield ("task.started", [n], rng.random() < 0.05)
            end = rng.choice(TYPES_TASK_END)
            yield (end, [n + 1], False)
            n += 3
            last = n - 1
            if rng.random() < 0.3:
                yield (rng.choice(NOTES), [last], False)
                last = n
                n += 1
            if end == "task.failed" and rng.random() < 0.5:
                yield ("task.error", [last], False)
                last = n
                n += 1
    yield ("artifact.produced", [last], False)
    yield ("job.failed" if rng.random() < 0.1 else "job.completed", [n], False)


def generate(events, jobs, seed, out, progress, checkpoint_every):
    rng = random.Random(seed)
    start_ns = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
    active = []  # [generator, job name, local ids list]
    recent = deque(maxlen=5_000)  # ids of recent events, for cross-job parents
    parents_of = [None]  # index = id (1-based in file order); kept for --picks
    job_seq = 0
    t = start_ns
    checkpoint = None
    artifacts = []  # artifact.produced ids since the last checkpoint
    def next_event():
        """The next event of a random active run, starting runs to keep --jobs active."""
        nonlocal job_seq
        while True:
            while len(active) < jobs:
                job_seq += 1
                name = f"job_{job_seq:07d}"
                draw = rng.random()
                if checkpoint is not None and draw < 0.3:
                    trigger = checkpoint
                elif recent and draw < 0.8:
                    trigger = recent[rng.randrange(len(recent))]
                else:
                    trigger = None
                active.append([job_events(rng, trigger), name, [], trigger])
            slot = rng.randrange(len(active))
            run = active[slot]
            try:
                return run, next(run[0])
            except StopIteration:
                active[slot] = active[-1]
                active.pop()

    for i in range(1, events + 1):
        if i % checkpoint_every == 0:
            parents = ([checkpoint] if checkpoint else []) + artifacts[-63:]
            artifacts = []
            checkpoint = i
            parents_of.append(parents)
            recent.append(i)
            t += rng.randint(1_000_000, 20_000_000)
            keys = ",".join(f'"e{p:010d}"' for p in parents)
            out.write(
                f'{{"key":"e{i:010d}","type":"checkpoint.sealed","ts":{t},"stream":"checkpoints",'
                f'"message":"checkpoint of {len(parents)} lines","payload":{{"runs":{len(parents)},"seq":{i // checkpoint_every}}},"parents":[{keys}]}}\n'
            )
            continue
        run, (etype, local, cross) = next_event()
        parents = [run[3] if p == -1 else run[2][p] for p in local]
        if cross and recent:
            other = recent[rng.randrange(len(recent))]
            if other not in parents:
                parents.append(other)
        run[2].append(i)
        recent.append(i)
        if etype == "artifact.produced":
            artifacts.append(i)
        parents_of.append(parents)
        t += rng.randint(1_000_000, 20_000_000)
        job = run[1]
        attempt = 1 + (rng.random() < 0.1) + (rng.random() < 0.02)
        payload = (
            f'{{"job":"{job}","step":{len(run[2])},"attempt":{attempt},"worker":"{rng.choice(WORKERS)}",'
            f'"duration_ms":{rng.randint(1, 90_000)},"status":"{"error" if etype.endswith(("failed", "error")) else "ok"}",'
            f'"checksum":"{rng.getrandbits(64):016x}","region":"{rng.choice(("eu-west-1", "us-east-2", "ap-south-1"))}"}}'
        )
        keys = ",".join(f'"e{p:010d}"' for p in parents)
        out.write(
            f'{{"key":"e{i:010d}","type":"{etype}","ts":{t},"stream":"job_events:{job}",'
            f'"message":"{etype} in {job}","payload":{payload},"parents":[{keys}]}}\n'
        )
        if progress and i % 200_000 == 0:
            print(f"gen_dag: {i} events", file=sys.stderr, flush=True)
    return parents_of


def bfs(adjacency, start, stop_after=None):
    seen = {start}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in adjacency[node]:
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
                if stop_after is not None and len(seen) > stop_after:
                    return seen
    seen.discard(start)
    return seen


def shortest_path_len(children, a, b):
    prev = {a: None}
    queue = deque([a])
    while queue:
        node = queue.popleft()
        if node == b:
            hops = 0
            while prev[node] is not None:
                node = prev[node]
                hops += 1
            return hops
        for c in children[node]:
            if c <= b and c not in prev:
                prev[c] = node
                queue.append(c)
    return None


def picks(parents_of, checkpoint_every, target=10_000):
    n = len(parents_of) - 1
    children = [[] for _ in range(n + 1)]
    for child in range(1, n + 1):
        for p in parents_of[child]:
            children[p].append(child)
    parents = [p or [] for p in parents_of]
    # Bisection over the checkpoints (their ancestor counts grow with id) for one with about
    # `target` ancestors; the last event when there is no checkpoint.
    candidates = list(range(checkpoint_every, n + 1, checkpoint_every)) or [n]
    lo, hi = 0, len(candidates) - 1
    best = (None, None)
    while lo <= hi:
        mid = (lo + hi) // 2
        count = len(bfs(parents, candidates[mid], stop_after=target * 4))
        if best[0] is None or abs(count - target) < abs(best[1] - target):
            best = (candidates[mid], count)
        if count < target:
            lo = mid + 1
        else:
            hi = mid - 1
    deep, deep_count = best
    deep_count = len(bfs(parents, deep))
    tip = n
    tip_ancestors = len(bfs(parents, tip))
    early = next(i for i in range(1, n + 1) if len(children[i]) > 0 and not parents[i])
    early_desc = bfs(children, early)
    deep_anc = bfs(parents, deep)
    between = len(early_desc & deep_anc) + 2 if deep in early_desc else 0
    hops = shortest_path_len(children, early, tip)
    shift = 1  # genesis takes id 1 in the imported store
    return {
        "events": n,
        "deep": {"id": deep + shift, "ancestors": deep_count},
        "tip": {"id": tip + shift, "ancestors": tip_ancestors},
        "early": {"id": early + shift, "descendants": len(early_desc)},
        "between_early_deep": between,
        "path_early_tip_hops": hops,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--jobs", type=int, default=64, help="workflow runs active at once")
    ap.add_argument("--seed", type=int, default=None, help="random seed (printed; default: from the clock)")
    ap.add_argument("--checkpoint-every", type=int, default=2_000, help="events between checkpoint merges")
    ap.add_argument("-o", "--output", default="-", help="file to write ('-' for stdout; a .zst name compresses with zstd)")
    ap.add_argument("--picks", help="write ids worth measuring, with reference counts, to this JSON file")
    args = ap.parse_args()
    if not 1 <= args.events <= 100_000_000:
        ap.error("--events must be 1...100000000")
    if not 2 <= args.checkpoint_every <= 100_000_000:
        ap.error("--checkpoint-every must be 2...100000000")
    if not 1 <= args.jobs <= 100_000:
        ap.error("--jobs must be 1...100000")
    seed = args.seed if args.seed is not None else time.time_ns() % 1_000_000_007
    print(f"gen_dag: seed {seed}, {args.events} events, {args.jobs} concurrent jobs", file=sys.stderr, flush=True)
    started = time.monotonic()
    if args.output == "-":
        parents_of = generate(args.events, args.jobs, seed, sys.stdout, progress=True, checkpoint_every=args.checkpoint_every)
    elif args.output.endswith(".zst"):
        with open(args.output, "wb") as f:
            proc = subprocess.Popen(["zstd", "-q", "-3", "-c"], stdin=subprocess.PIPE, stdout=f, text=True)
            parents_of = generate(args.events, args.jobs, seed, proc.stdin, progress=True, checkpoint_every=args.checkpoint_every)
            proc.stdin.close()
            if proc.wait() != 0:
                sys.exit("gen_dag: zstd failed")
    else:
        with open(args.output, "w", buffering=1 << 20) as f:
            parents_of = generate(args.events, args.jobs, seed, f, progress=True, checkpoint_every=args.checkpoint_every)
    print(f"gen_dag: wrote {args.events} events in {time.monotonic() - started:.1f} s", file=sys.stderr)
    if args.picks:
        p = picks(parents_of, args.checkpoint_every)
        p["seed"] = seed
        with open(args.picks, "w") as f:
            json.dump(p, f, indent=2)
        print(f"gen_dag: picks {json.dumps(p)}", file=sys.stderr)


if __name__ == "__main__":
    main()
