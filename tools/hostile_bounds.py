#!/usr/bin/env python3
"""The hardening issue's resource cases against a banyan binary: response bytes, time and server
memory of the queries that used to answer gigabytes, and CPU and /healthz under descriptor
exhaustion. Prints one line per case; compare builds by running it with each.

    python3 tools/hostile_bounds.py .build/release/banyan [--layers 50000] [--fat 400]

Cases:
- a "ladder" store (events 2k and 2k+1 both have parents [2k-2, 2k-1]) of --layers layers:
  `paths(2, top) limit 3000` with the largest budget, `limit 1000` with the default one, and
  `page_size` 10;
- --fat events of 1 MB payload: one `events where type = "fat"` page with payloads, page_size
  10,000, with and without `time_max_ms: 1`;
- ulimit -n 256 and 400 idle connections: server CPU over 5 s and /healthz latency.
Stores go to a temporary directory, removed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, binary: str, data: str, nofile: int | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None
        self.proc = subprocess.Popen([binary, "serve", "--data-dir", data, "--port", str(self.port), "--grpc-port", "0"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=limit)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                requests.get(self.url + "/healthz", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise SystemExit("server did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def query(srv: Server, body: dict) -> str:
    started = time.time()
    r = requests.post(srv.url + "/v1/query", json=body, timeout=600)
    took = time.time() - started
    answer = r.json()
    items = answer.get("paths", answer.get("results", []))
    return (f"{json.dumps(body)}: {r.status_code}, {len(r.content) / 1e6:.1f} MB in {took:.2f} s, {len(items)} items, "
            f"truncated {answer.get('truncated')}, next {'yes' if answer.get('next') else 'no'}; "
            f"server RSS peak {status_kb(srv.proc.pid, 'VmHWM') // 1024} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--layers", type=int, default=50_000)
    ap.add_argument("--fat", type=int, default=400)
    args = ap.parse_args()
    if not 2 <= args.layers <= 1_000_000 or not 1 <= args.fat <= 10_000:
        ap.error("--layers 2..1000000, --fat 1..10000")
    work = tempfile.mkdtemp(prefix="hostile-bounds-")
    try:
        srv = Server(args.binary, os.path.join(work, "ladder"))
        batch = [{"type": "rung", "parents": [1]}, {"type": "rung", "parents": [1]}]
        for layer in range(2, args.layers + 1):
            batch += [{"type": "rung", "parents": [2 * layer - 2, 2 * layer - 1]}] * 2
            if len(batch) >= 10_000 or layer == args.layers:
                requests.post(srv.url + "/v1/events", json=batch, timeout=600).raise_for_status()
                batch = []
        top = 2 * args.layers + 1
        print(f"ladder: {args.layers} layers, events 2..{top}")
        print(query(srv, {"query": f"paths(2, {top}) limit 3000", "budget": {"nodes_max": 10_000_000, "time_max_ms": 30_000}}))
        print(query(srv, {"query": f"paths(2, {top}) limit 1000"}))
        print(query(srv, {"query": f"paths(2, {top}) limit 1000", "page_size": 10}))
        srv.stop()

        srv = Server(args.binary, os.path.join(work, "fat"))
        fat = "x" * 1_000_000
        for start in range(0, args.fat, 10):
            n = min(10, args.fat - start)
            requests.post(srv.url + "/v1/events", json=[{"type": "fat", "payload": fat}] * n, timeout=600).raise_for_status()
        print(f"fat: {args.fat} events of 1 MB")
        body = {"query": 'events where type = "fat"', "include": ["payload"], "page_size": 10_000}
        print(query(srv, body))
        print(query(srv, {**body, "budget": {"time_max_ms": 1}}))
        srv.stop()

        srv = Server(args.binary, os.path.join(work, "fds"), nofile=256)
        socks = []
        for _ in range(400):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", srv.port))
            except BlockingIOError:
                pass
            socks.append(s)
        time.sleep(1)
        before = cpu_seconds(srv.proc.pid)
        time.sleep(5)
        spent = cpu_seconds(srv.proc.pid) - before
        try:
            started = time.time()
            code = requests.get(srv.url + "/healthz", timeout=5).status_code
            health = f"{code} in {(time.time() - started) * 1000:.0f} ms"
        except requests.RequestException as e:
            health = f"no answer ({type(e).__name__})"
        print(f"ulimit -n 256, 400 idle connections: server CPU {spent:.2f} s in 5 s, /healthz {health}, "
              f"{len(os.listdir(f'/proc/{srv.proc.pid}/fd'))} descriptors open")
        for s in socks:
            s.close()
        srv.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
