#!/usr/bin/env python3
"""Peak memory of `banyan serve` while it ingests and answers queries on a large store.

    # the benchmarks issue's 10M check: a 10M-event synthetic DAG, then 1M more over HTTP
    python3 tools/gen_dag.py --events 10000000 --seed 7 -o /tmp/dag-10m.jsonl --picks /tmp/dag-10m.picks.json
    python3 tools/memory_check.py --dataset /tmp/dag-10m.jsonl --picks /tmp/dag-10m.picks.json --events 1000000
    python3 tools/memory_check.py --events 200000              # HTTP ingest only, quick

Starts `banyan serve` (release build) on an empty temporary data directory and a free port, then:
0. with --dataset, first imports that JSONL file with `banyan import` (its RSS is sampled too);
1. ingests --events events over POST /v1/events with tools/load_ingest.py (batches of 1,000,
   4 connections, durability=sync, parents by id);
2. restarts the server on the same store (so the open-time rebuild of the in-memory index is
   measured too) and runs lineage queries over HTTP: ancestors of the newest event and
   descendants of an early one (bounded by the default query budget), roots, a by-type page;
3. samples VmRSS of the server from /proc every 0.2 s throughout, and prints the peak of each
   phase, the store's disk bytes, and whether the peak stayed under --limit-mib (default 1024).

Exit status 1 if the peak passes the limit or a step fails. Stops only the server it started.
Standard library only (plus the `requests` load_ingest.py already uses).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        return 0
    return 0


class Sampler(threading.Thread):
    """Records the peak RSS of one process until stopped."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.last, self.running = pid, 0, 0, True

    def run(self):
        while self.running:
            self.last = rss_kib(self.pid)
            self.peak = max(self.peak, self.last)
            time.sleep(0.2)

    def stop(self):
        self.running = False
        self.join()
        return self.peak


def start_server(banyan, data_dir, port):
    proc = subprocess.Popen([banyan, "serve", "--data-dir", data_dir, "--port", str(port), "--grpc-port", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600  # opening a 10M-event store rebuilds the index: allow time
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"memory_check: server exited: {proc.stderr.read()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("memory_check: server did not come up within 600 s")


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def post(port, path, body, timeout=120):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def get(port, path, timeout=60):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return json.loads(r.read())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000, help="events to ingest over HTTP")
    ap.add_argument("--dataset", help="JSONL to import first (tools/gen_dag.py output)")
    ap.add_argument("--picks", help="gen_dag.py picks for the dataset: query its deep, early and tip events")
    ap.add_argument("--limit-mib", type=int, default=1024)
    ap.add_argument("--seconds-max", type=int, default=1800, help="bound on the ingest phase")
    ap.add_argument("--banyan", default=os.path.join(ROOT, ".build/release/banyan"))
    ap.add_argument("--keep", help="use (and keep) this data directory instead of a temporary one")
    args = ap.parse_args()
    if not 1 <= args.events <= 100_000_000:
        ap.error("--events must be 1...100000000")
    if not os.path.exists(args.banyan):
        sys.exit("memory_check: build first: swift build -c release --product banyan")
    data_dir = args.keep or tempfile.mkdtemp(prefix="banyan-memcheck-")
    port = free_port()
    peaks = {}
    if args.dataset:
        t0 = time.monotonic()
        importer = subprocess.Popen([args.banyan, "import", args.dataset, "--data-dir", data_dir],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        sampler = Sampler(importer.pid)
        sampler.start()
        _, err = importer.communicate()
        peaks["import"] = sampler.stop()
        if importer.returncode != 0:
            sys.exit(f"memory_check: import failed: {err}")
        print(f"memory_check: import took {time.monotonic() - t0:.0f} s: {err.strip().splitlines()[-1]}", file=sys.stderr)
    proc = start_server(args.banyan, data_dir, port)
    try:
        sampler = Sampler(proc.pid)
        sampler.start()
        t0 = time.monotonic()
        load = subprocess.run(
            [sys.executable, os.path.join(ROOT, "tools/load_ingest.py"), "--url", f"http://127.0.0.1:{port}",
             "--events", str(args.events), "--seconds", str(args.seconds_max), "--connections", "4",
             "--batch", "1000", "--durability", "sync", "--parents", "ids"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ingest_seconds = time.monotonic() - t0
        peaks["ingest"] = sampler.stop()
        tail = "\n".join(load.stdout.strip().splitlines()[-4:])
        print(f"memory_check: ingest of {args.events} events took {ingest_seconds:.0f} s\n{tail}", file=sys.stderr)
        if load.returncode != 0:
            sys.exit(f"memory_check: load_ingest failed ({load.returncode})")
        stop_server(proc)

        t0 = time.monotonic()
        proc = start_server(args.banyan, data_dir, port)
        open_seconds = time.monotonic() - t0
        sampler = Sampler(proc.pid)
        sampler.start()
        status = get(port, "/v1/status")
        last = status["last_id"]
        picks = json.load(open(args.picks)) if args.picks else None
        queries = [] if not picks else [
            f"count(ancestors({picks['deep']['id']}))",
            f"count(ancestors({picks['tip']['id']}))",
            f"count(descendants({picks['early']['id']}))",
            f"path({picks['early']['id']}, {picks['tip']['id']})",
        ]
        queries += [
            f"count(ancestors({last}))",
            f"count(descendants({max(2, last // 1000)}))",
            f"count(descendants(2, depth <= 5))",
            f"ancestors({last}) where type = \"load.test\" limit 10",
            f"path({max(2, last - 5000)}, {last})",
        ]
        timings = []
        for q in queries:
            t = time.monotonic()
            answer = post(port, "/v1/query", {"query": q})
            timings.append((q, time.monotonic() - t, answer.get("count"), answer.get("truncated"), answer.get("stats", {}).get("reason")))
        get(port, "/roots")
        peaks["open + queries"] = sampler.stop()
        print(f"memory_check: reopen took {open_seconds:.1f} s; last id {last}; disk {status.get('disk_bytes', 0) / 2**30:.2f} GiB",
              file=sys.stderr)
        for q, seconds, count, truncated, reason in timings:
            print(f"memory_check:   {q}: {seconds * 1000:.0f} ms, count {count}, truncated {truncated} {reason or ''}", file=sys.stderr)
    finally:
        stop_server(proc)
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    print("| phase | peak RSS (MiB) |\n|---|---|")
    for phase, kib in peaks.items():
        print(f"| {phase} | {kib / 1024:.0f} |")
    worst = max(peaks.values()) / 1024
    print(f"\npeak {worst:.0f} MiB, limit {args.limit_mib} MiB: {'OK' if worst < args.limit_mib else 'OVER'}")
    sys.exit(0 if worst < args.limit_mib else 1)


if __name__ == "__main__":
    main()
