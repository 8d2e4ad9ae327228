#!/usr/bin/env python3
"""Workflow engine figures for docs/PERFORMANCE.md ("Workflows").

    python3 tools/workflow_bench.py --banyan .build/release/banyan [--runs 200] [--levels 5] [--width 10]
        [--rounds 3] [--recovery-runs 10000]

One `banyan serve` (default --fsync group: every event durable before it is acknowledged) and one
`banyan workflow engine` against it, on loopback, data under --workdir (a disk, not tmpfs).

1. Throughput: --runs runs of a "ladder" of no-op tasks (`kind: swift, function: noop`): --levels
   levels of --width tasks, each task needing every task of the level before. The requests are
   appended in batches of 1,000 (as `banyan workflow run` records them), then the clock runs
   until the log holds every run's `workflow.run.completed`. Reported: tasks/s, events/s, and the
   engine's and the server's CPU seconds. Repeated --rounds times.
2. Scheduling latency, by the server's timestamps: for each task of level 2 and up, from the last
   completion of the level before (its needs satisfied) to its `started` event (p50, p99, max),
   and to its `scheduled` event. Reported for the throughput rounds (a saturated engine: the
   latency is mostly waiting for a task permit) and for --latency-runs runs driven one at a time
   (an engine with nothing else to do).
3. Recovery: --recovery-runs runs of `a: noop` then `b: wait_for_signal approval`; once every `b`
   has started, the engine is killed with SIGKILL and every run's approval is recorded (in
   batches); then a new engine with the same --engine-id starts (so it takes over its own claims
   at once rather than after the heartbeat ttl), and the clock runs from its start until every
   run has completed: the new engine reads the unfinished runs from the log, rebuilds each, finds
   its approval and completes the task and the run.
4. Several engines (--engines 1,2,3): the throughput of 1 with 1, 2 and 3 engine processes
   sharing the runs (run claims), the counts taken in turn and then in reverse turn each round.
   With --engines-sleep S each task is the program `sleep S` instead of a no-op: work that waits
   (on a network, a disk, another service), where each engine's --max-concurrent-tasks, not the
   CPU, bounds what it completes per second.
5. Starts through the REST API (--api-seconds S): wrk (tools/wrk/workflow_starts.lua, 2 threads,
   --api-clients connections) for S seconds of `POST /v1/workflows/ladder1/runs`, each with a new
   Idempotency-Key, to the API of an engine started with --listen (which also drives the runs it
   starts, a one-task no-op workflow, unless --api-engine-args "--max-concurrent-runs 1").
6. Takeover (--takeover-runs N): two engines with --heartbeat-ttl --takeover-ttl share N runs
   whose task sleeps 10 minutes; the engine holding more is killed with SIGKILL; reported: the
   time from the kill to the first and to the last of its runs' takeover claims (server times).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer.common import Processes, file_identity, free_port, log, percentile, run_info, tree_cpu_seconds, wait_until  # noqa: E402


def fnv(text: str) -> str:
    h = 0xcbf29ce484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def ladder(levels: int, width: int, sleep: float = 0, name: str = "ladder") -> str:
    """No-op tasks; with `sleep`, each task is the program `sleep <sleep>` (work that waits)."""
    lines = [f"name: {name}", "tasks:"]
    work = "kind: swift, function: noop" if not sleep else f'kind: shell, run: ["sleep", "{sleep}"]'
    for level in range(levels):
        for i in range(width):
            needs = "" if level == 0 else ", needs: [" + ", ".join(f"l{level - 1}t{j}" for j in range(width)) + "]"
            lines.append(f"  - {{id: l{level}t{i}, {work}{needs}}}")
    return "\n".join(lines) + "\n"


RECOVERY = "name: approval\ntasks:\n  - {id: a, kind: swift, function: noop}\n  - {id: b, kind: wait_for_signal, signal: approval, needs: [a]}\n"


def request(run: str, workflow: str, definition: str) -> dict:
    return {"type": "workflow.run.requested", "key": f"run/{run}/requested", "stream": f"job_events:{run}", "parent_keys": [],
            "payload": {"run": run, "workflow": workflow, "version": fnv(definition), "definition": definition, "inputs": {}}}


def submit(url: str, runs: list[str], workflow: str, definition: str) -> None:
    s = requests.Session()
    for i in range(0, len(runs), 1000):
        r = s.post(url + "/v1/events", json=[request(run, workflow, definition) for run in runs[i:i + 1000]], timeout=60)
        r.raise_for_status()


class TypeCounter:
    """Counts events of one type as the log grows (a cursor over GET /v1/events?type=)."""

    def __init__(self, url: str, type_: str, after: int = 0):
        self.url, self.type, self.after, self.count = url, type_, after, 0
        self.s = requests.Session()

    def poll(self) -> int:
        while True:
            page = self.s.get(self.url + "/v1/events", params={"after": self.after, "limit": 10000, "type": self.type}, timeout=60).json()
            self.count += len(page["events"])
            if page["next"] <= self.after:
                return self.count
            self.after = page["next"]
            if page["next"] >= page["last_id"]:
                return self.count


def events_of(url: str, type_: str, after: int) -> list[dict]:
    out, s = [], requests.Session()
    while True:
        page = s.get(url + "/v1/events", params={"after": after, "limit": 10000, "type": type_}, timeout=60).json()
        out += page["events"]
        if page["next"] <= after or page["next"] >= page["last_id"]:
            return out
        after = page["next"]


def last_id(url: str) -> int:
    return requests.get(url + "/v1/events", params={"after": 0, "limit": 1}, timeout=10).json()["last_id"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--banyan", required=True)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--levels", type=int, default=5)
    ap.add_argument("--width", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--recovery-runs", type=int, default=10000)
    ap.add_argument("--latency-runs", type=int, default=20)
    ap.add_argument("--max-concurrent-tasks", type=int, default=64, help="the engine's default")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--engines", default="", help="e.g. 1,2,3: section 4")
    ap.add_argument("--engines-sleep", type=float, default=0,
                    help="section 4 with tasks that wait: each task runs `sleep S` (a program), so each engine's --max-concurrent-tasks bounds it, not the CPU")
    ap.add_argument("--api-seconds", type=int, default=0, help="section 5: seconds of wrk per round")
    ap.add_argument("--api-clients", type=int, default=16, help="wrk connections")
    ap.add_argument("--api-engine-args", default="", help="more arguments for the API's engine, e.g. '--max-concurrent-runs 1' to measure starts with (almost) no driving beside them")
    ap.add_argument("--takeover-runs", type=int, default=0)
    ap.add_argument("--takeover-ttl", default="5s")
    args = ap.parse_args()

    root = tempfile.mkdtemp(prefix="workflow-bench-", dir=args.workdir)
    procs = Processes()
    try:
        info = run_info(root)
        print(json.dumps({"machine": info, "banyan": file_identity(args.banyan)}))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = procs.start("server", [args.banyan, "serve", "--data-dir", os.path.join(root, "data"), "--port", str(port), "--grpc-port", "0"], os.path.join(root, "server.log"))
        wait_until(lambda: requests.get(url + "/healthz", timeout=1).ok, 30, "the server", server)

        def engine(name: str, *extra: str):
            return procs.start(name, [args.banyan, "workflow", "engine", "--server", url, "--max-concurrent-tasks", str(args.max_concurrent_tasks), *extra],
                               os.path.join(root, f"{name}.log"))

        eng = engine("engine")
        time.sleep(1)
        definition = ladder(args.levels, args.width)
        tasks_per_run = args.levels * args.width
        def latencies(runs: list[str], start_id: int) -> tuple[list[float], list[float]]:
            completed = {e["key"].rsplit("/attempt/", 1)[0]: e["time_unix_nano"] for e in events_of(url, "workflow.task.completed", start_id)}
            started = {e["key"].rsplit("/attempt/", 1)[0]: e["time_unix_nano"] for e in events_of(url, "workflow.task.started", start_id) if "/attempt/1/" in e["key"]}
            scheduled = {e["key"].rsplit("/attempt/", 1)[0]: e["time_unix_nano"] for e in events_of(url, "workflow.task.scheduled", start_id)}
            to_started, to_scheduled = [], []
            for run in runs:
                for level in range(1, args.levels):
                    ready = max(completed[f"run/{run}/task/l{level - 1}t{j}"] for j in range(args.width))
                    for i in range(args.width):
                        task = f"run/{run}/task/l{level}t{i}"
                        to_started.append((started[task] - ready) / 1e6)
                        to_scheduled.append((scheduled[task] - ready) / 1e6)
            return to_started, to_scheduled

        def summary(values: list[float]) -> dict:
            return {"p50": round(percentile(values, 0.5), 2), "p99": round(percentile(values, 0.99), 2), "max": round(max(values), 2)}

        for rnd in range(args.rounds):
            runs = [f"b{rnd}r{i}" for i in range(args.runs)]
            start_id = last_id(url)
            counter = TypeCounter(url, "workflow.run.completed", start_id)
            cpu_engine, cpu_server = tree_cpu_seconds(eng.pid), tree_cpu_seconds(server.pid)
            t0 = time.monotonic()
            submit(url, runs, "ladder", definition)
            while counter.poll() < len(runs):
                time.sleep(0.02)
            elapsed = time.monotonic() - t0
            cpu_engine, cpu_server = tree_cpu_seconds(eng.pid) - cpu_engine, tree_cpu_seconds(server.pid) - cpu_server
            events = last_id(url) - start_id
            to_started, to_scheduled = latencies(runs, start_id)
            print(json.dumps({
                "round": rnd + 1, "runs": len(runs), "tasks": len(runs) * tasks_per_run, "seconds": round(elapsed, 2),
                "tasks_per_s": round(len(runs) * tasks_per_run / elapsed), "events_per_s": round(events / elapsed),
                "cpu_s_engine": round(cpu_engine, 1), "cpu_s_server": round(cpu_server, 1),
                "needs_to_started_ms": summary(to_started), "needs_to_scheduled_ms": summary(to_scheduled),
            }), flush=True)

        if args.latency_runs:
            runs = [f"lat{i}" for i in range(args.latency_runs)]
            start_id = last_id(url)
            counter = TypeCounter(url, "workflow.run.completed", start_id)
            for n, run in enumerate(runs):
                submit(url, [run], "ladder", definition)
                while counter.poll() < n + 1:
                    time.sleep(0.005)
            to_started, to_scheduled = latencies(runs, start_id)
            print(json.dumps({"latency_runs": len(runs), "one_run_at_a_time": True,
                              "needs_to_started_ms": summary(to_started), "needs_to_scheduled_ms": summary(to_scheduled)}), flush=True)

        if args.recovery_runs:
            procs.stop(eng)
            eng = engine("engine-recovery", "--max-concurrent-runs", str(args.recovery_runs), "--engine-id", "bench-recovery")
            runs = [f"approve{i}" for i in range(args.recovery_runs)]
            start_id = last_id(url)
            waits = TypeCounter(url, "workflow.task.started", start_id)
            submit(url, runs, "approval", RECOVERY)
            while waits.poll() < 2 * len(runs):
                time.sleep(0.2)
            eng.send_signal(signal.SIGKILL)
            eng.wait(10)
            procs.procs = [p for p in procs.procs if p[1] is not eng]
            s = requests.Session()
            version = fnv(RECOVERY)
            for i in range(0, len(runs), 1000):
                batch = [{"type": "workflow.run.signaled", "key": f"run/{run}/signal/approval", "stream": f"job_events:{run}", "parent_keys": [f"run/{run}/requested"],
                          "payload": {"run": run, "workflow": "approval", "version": version, "signal": "approval", "payload": {"by": "bench"}}} for run in runs[i:i + 1000]]
                s.post(url + "/v1/events", json=batch, timeout=60).raise_for_status()
            log(f"{len(runs)} runs wait for approval; engine killed; approvals recorded")
            counter = TypeCounter(url, "workflow.run.completed", start_id)
            assert counter.poll() == 0, "no run completed before the restart"
            t0 = time.monotonic()
            eng = engine("engine-restarted", "--max-concurrent-runs", str(args.recovery_runs), "--engine-id", "bench-recovery")
            while counter.poll() < len(runs):
                time.sleep(0.05)
            elapsed = time.monotonic() - t0
            failed = TypeCounter(url, "workflow.task.failed", start_id).poll()
            print(json.dumps({"recovery_runs": len(runs), "seconds_to_all_completed": round(elapsed, 2), "failed_attempts": failed}), flush=True)

        if args.engines or args.api_seconds or args.takeover_runs:
            procs.stop(eng)

        if args.engines:
            counts = [int(n) for n in args.engines.split(",")]
            engines_name = "sleepy" if args.engines_sleep else "ladder"
            engines_definition = ladder(args.levels, args.width, args.engines_sleep, engines_name)
            for rnd in range(args.rounds):
                for n in (counts if rnd % 2 == 0 else list(reversed(counts))):
                    # A short ttl: the previous group's engines must be seen gone before the
                    # runs are spread (a gone engine still "alive" would get its share 1 s late).
                    time.sleep(4)
                    group = [engine(f"e{n}x{rnd}n{i}", "--engine-id", f"e{n}x{rnd}n{i}", "--heartbeat-ttl", "3s") for i in range(n)]
                    wait_until(lambda: len({e["payload"]["engine"] for e in events_of(url, "workflow.engine.alive", 0)} & {f"e{n}x{rnd}n{i}" for i in range(n)}) == n,
                               30, "the engines' heartbeats")
                    time.sleep(1.5)  # each engine reads the others' heartbeats every second
                    runs = [f"m{n}x{rnd}r{i}" for i in range(args.runs)]
                    start_id = last_id(url)
                    counter = TypeCounter(url, "workflow.run.completed", start_id)
                    t0 = time.monotonic()
                    submit(url, runs, engines_name, engines_definition)
                    while counter.poll() < len(runs):
                        time.sleep(0.02)
                    elapsed = time.monotonic() - t0
                    held = {}
                    for e in events_of(url, "workflow.run.claimed", start_id):
                        held[e["payload"]["engine"]] = held.get(e["payload"]["engine"], 0) + 1
                    print(json.dumps({"engines": n, "round": rnd + 1, "runs": len(runs), "task_sleep_s": args.engines_sleep,
                                      "max_concurrent_tasks": args.max_concurrent_tasks, "tasks_per_s": round(len(runs) * tasks_per_run / elapsed),
                                      "seconds": round(elapsed, 2), "runs_claimed": sorted(held.values())}), flush=True)
                    for e in group:
                        procs.stop(e)

        if args.api_seconds:
            api_port = free_port()
            api = f"http://127.0.0.1:{api_port}"
            front = engine("api-engine", "--listen", f"127.0.0.1:{api_port}", *args.api_engine_args.split())
            wait_until(lambda: requests.get(api + "/healthz", timeout=1).ok, 30, "the engine's API", front)
            requests.post(api + "/v1/workflows", data=b"name: ladder1\ntasks:\n  - {id: t, kind: swift, function: noop}\n",
                          headers={"Content-Type": "application/yaml"}, timeout=10).raise_for_status()
            script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wrk", "workflow_starts.lua")
            for rnd in range(args.rounds):
                start_id = last_id(url)
                # wrk (not a Python client): the client must not be what is measured.
                out = subprocess.run(["wrk", "-t2", f"-c{args.api_clients}", f"-d{args.api_seconds}s", "-s", script, api + "/v1/workflows/ladder1/runs"],
                                     capture_output=True, text=True, env=dict(os.environ, WRK_ROUND=str(rnd)), timeout=args.api_seconds + 60)
                rate = next((line.split()[1] for line in out.stdout.splitlines() if line.startswith("Requests/sec:")), "?")
                latency = next((line.split()[1:3] for line in out.stdout.splitlines() if line.strip().startswith("Latency")), ["?", "?"])
                started = len(events_of(url, "workflow.run.requested", start_id))
                print(json.dumps({"api_starts_per_s": rate, "round": rnd + 1, "connections": args.api_clients, "latency_avg": latency[0],
                                  "runs_requested": started, "bad_answers": out.stderr.count("unexpected status")}), flush=True)
            procs.stop(front)

        if args.takeover_runs:
            sleeper = "name: sleeper\ntasks:\n  - {id: nap, kind: sleep, duration: 10m}\n"
            pair = [engine(f"t{i}", "--engine-id", f"t{i}", "--heartbeat-ttl", args.takeover_ttl) for i in range(2)]
            wait_until(lambda: {"t0", "t1"} <= {e["payload"]["engine"] for e in events_of(url, "workflow.engine.alive", 0)}, 30, "both engines")
            time.sleep(1.5)
            runs = [f"nap{i}" for i in range(args.takeover_runs)]
            start_id = last_id(url)
            submit(url, runs, "sleeper", sleeper)
            naps = TypeCounter(url, "workflow.task.started", start_id)
            while naps.poll() < len(runs):
                time.sleep(0.1)
            def holders() -> dict:
                latest = {}
                for e in events_of(url, "workflow.run.claimed", start_id):
                    if e["payload"]["claim"] >= latest.get(e["payload"]["run"], (0, ""))[0]:
                        latest[e["payload"]["run"]] = (e["payload"]["claim"], e["payload"]["engine"])
                counts = {"t0": 0, "t1": 0}
                for _, engine_id in latest.values():
                    counts[engine_id] = counts.get(engine_id, 0) + 1
                return counts
            held = holders()
            victim = max(held, key=held.get)
            proc = pair[int(victim[1])]
            killed = time.time_ns()
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            procs.procs = [p for p in procs.procs if p[1] is not proc]

            def taken() -> list[int]:
                return sorted(e["time_unix_nano"] for e in events_of(url, "workflow.run.claimed", start_id)
                              if e["payload"].get("takeover_of") == victim and e["time_unix_nano"] >= killed)
            wait_until(lambda: len(taken()) >= held[victim], 120, "every run of the killed engine to be taken over")
            times = taken()
            print(json.dumps({"takeover_runs": held[victim], "heartbeat_ttl": args.takeover_ttl,
                              "first_takeover_s": round((times[0] - killed) / 1e9, 2), "last_takeover_s": round((times[-1] - killed) / 1e9, 2)}), flush=True)
    finally:
        procs.stop_all()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
