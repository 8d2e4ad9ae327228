#!/usr/bin/env python3
"""Fault runs for cluster mode (docs/REPLICATION.md, "Cluster mode"), the longer companion of
Tests/integration/test_cluster.py:

    python3 tools/cluster_faults.py --banyan .build/debug/banyan [--rounds 10] [--seed N]
        [--ttl 3] [--faults kill,pause,etcd] [--history history.jsonl]

Three `banyan serve --cluster` nodes and one etcd (Debian's etcd-server) on loopback, under a
temporary directory. A writer thread appends one keyed event at a time with `replicas=1` to
whichever node leads (following redirects), recording every attempt in the history file: start
and end times, the node, the answer, the id. Each round, at a random moment (the seed is printed),
one fault from --faults hits the leader or etcd:
- kill: `kill -9` the leader; restarted (same data directory and URL) once another node leads;
- pause: `SIGSTOP` the leader for 1.5 ttl, then `SIGCONT`;
- etcd: `kill -9` etcd for 1.5 ttl, then start it again on its data directory.
A round's unavailability is the longest time between two acknowledged writes from the fault on
(the leader may go on acknowledging for up to half a ttl before it steps down, so it is not the
time from the fault to the next acknowledgement).

Then the checker reads the final log of every node (after they converge) and the history:
every acknowledged write is in the log, with its id and key, on every node; no key holds two ids;
no id is acknowledged twice for two keys; each acknowledged write lies in an epoch (between two
`banyan.epoch` events) that the node which acknowledged it led, so no node acknowledged outside
its term; the nodes' exports are byte-identical and `banyan verify` finds every store clean. Exit status 1 when a
check fails. Printed: rounds, writes acknowledged and refused, writes lost (must be 0), and the
unavailability by fault (min / median / max).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer.common import Processes, free_port, log, percentile, wait_until  # noqa: E402


class Cluster:
    def __init__(self, banyan: str, root: str, ttl: int, procs: Processes) -> None:
        self.banyan, self.root, self.ttl, self.procs = banyan, root, ttl, procs
        etcd = shutil.which("etcd")
        if not etcd:
            sys.exit("etcd not found: install Debian's etcd-server (tools/setup-debian.sh --tests does)")
        self.etcd_port, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        self.etcd_argv = [etcd, "--name", "f", "--data-dir", os.path.join(root, "etcd"), "--listen-client-urls", self.etcd_url,
                          "--advertise-client-urls", self.etcd_url, "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                          "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}", "--initial-cluster", f"f=http://127.0.0.1:{peer}"]
        self.start_etcd()
        self.ports = [free_port() for _ in range(3)]
        self.nodes: dict[str, subprocess.Popen] = {}
        for port in self.ports:
            self.start_node(port)

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def start_etcd(self) -> None:
        self.etcd = self.procs.start("etcd", self.etcd_argv, os.path.join(self.root, "etcd.log"))
        wait_until(lambda: requests.get(self.etcd_url + "/health", timeout=1).json().get("health") == "true", 30, "etcd", self.etcd)

    def start_node(self, port: int) -> None:
        argv = [self.banyan, "serve", "--data-dir", os.path.join(self.root, f"n{port}"), "--port", str(port), "--grpc-port", "0", "--cluster", "f",
                "--etcd", self.etcd_url, "--lease-ttl-seconds", str(self.ttl)]
        self.nodes[self.url(port)] = self.procs.start(f"n{port}", argv, os.path.join(self.root, f"n{port}.log"))
        wait_until(lambda: requests.get(self.url(port) + "/healthz", timeout=1).ok, 30, f"node {port}")

    def leader(self) -> str | None:
        try:
            key = base64.b64encode(b"/banyan/f/leader").decode()
            kvs = requests.post(self.etcd_url + "/v3/kv/range", json={"key": key}, timeout=1).json().get("kvs", [])
            url = json.loads(base64.b64decode(kvs[0]["value"]))["url"] if kvs else None
            if url and requests.get(url + "/v1/status", timeout=1).json()["role"] == "leader":
                return url
        except (requests.RequestException, ValueError, KeyError):
            pass
        return None


class Writer(threading.Thread):
    """Appends one keyed event at a time, with replicas=1, to the leader; records each attempt. A
    request times out after 1 s (then the leader is looked up again), so a stalled leader costs
    the writer a second, not the length of the stall."""

    def __init__(self, cluster: Cluster, history) -> None:
        super().__init__(daemon=True)
        self.cluster, self.history = cluster, history
        self.stop = threading.Event()
        self.acked: dict[str, int] = {}
        self.acked_by: dict[str, str] = {}
        self.refused = 0
        self.last_ack = 0.0
        self.last_ack_node: str | None = None
        self.ack_times: list[float] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        n = 0
        target = None
        while not self.stop.is_set():
            target = target or self.cluster.leader()
            if target is None:
                time.sleep(0.05)
                continue
            key = f"w{n}"
            n += 1
            start = time.time()
            entry = {"op": "append", "key": key, "node": target, "start": start}
            try:
                r = requests.post(target + "/v1/events?replicas=1", json=[{"type": "fault.write", "key": key}], timeout=1, allow_redirects=False)
                entry.update(status=r.status_code, end=time.time())
                if r.status_code == 200:
                    entry["id"] = r.json()["results"][0]["id"]
                    with self.lock:
                        self.acked[key] = entry["id"]
                        self.acked_by[key] = target
                        self.last_ack, self.last_ack_node = entry["end"], target
                        self.ack_times.append(entry["end"])
                else:
                    self.refused += 1
                    target = None
            except requests.RequestException as e:
                entry.update(status=0, error=type(e).__name__, end=time.time())
                self.refused += 1
                target = None
            self.history.write(json.dumps(entry) + "\n")


def log_of(url: str) -> list[tuple[int, str, str | None, str | None]]:
    """(id, type, key, leader): `leader` is the URL a `banyan.epoch` event names."""
    out, after = [], 0
    while True:
        page = requests.get(url + "/v1/events", params={"after": after, "limit": 10000}, timeout=30).json()
        out += [(e["id"], e["type"], e.get("key"), (e.get("payload") or {}).get("leader") if e["type"] == "banyan.epoch" else None)
                for e in page["events"]]
        if page["next"] <= after or page["next"] >= page["last_id"]:
            return out
        after = page["next"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--banyan", required=True)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--ttl", type=int, default=3)
    ap.add_argument("--faults", default="kill,pause,etcd")
    ap.add_argument("--history", default=None, help="where to write the history (default: in the run's directory)")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    rng = random.Random(seed)
    faults = args.faults.split(",")
    root = tempfile.mkdtemp(prefix="cluster-faults-", dir=args.workdir)
    history_path = args.history or os.path.join(root, "history.jsonl")
    log(f"seed {seed}; run directory {root}; history {history_path}")
    procs = Processes()
    failures: list[str] = []
    rounds: list[tuple[str, float]] = []
    try:
        cluster = Cluster(args.banyan, root, args.ttl, procs)
        wait_until(lambda: cluster.leader() is not None, 30, "a first leader")
        with open(history_path, "w") as history:
            writer = Writer(cluster, history)
            writer.start()
            for rnd in range(args.rounds):
                time.sleep(rng.uniform(1.0, 3.0))
                fault = rng.choice(faults)
                leader = cluster.leader()
                if leader is None:
                    wait_until(lambda: cluster.leader() is not None, 30, "a leader before the round")
                    leader = cluster.leader()
                at = time.time()
                rounds.append((fault, at))
                history.write(json.dumps({"op": "fault", "fault": fault, "node": leader, "start": at}) + "\n")
                log(f"round {rnd + 1}: {fault} ({leader})")
                if fault == "kill":
                    proc = cluster.nodes[leader]
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(10)
                    procs.procs = [p for p in procs.procs if p[1] is not proc]
                elif fault == "pause":
                    cluster.nodes[leader].send_signal(signal.SIGSTOP)
                    time.sleep(1.5 * args.ttl)
                    cluster.nodes[leader].send_signal(signal.SIGCONT)
                else:
                    cluster.etcd.send_signal(signal.SIGKILL)
                    cluster.etcd.wait(10)
                    procs.procs = [p for p in procs.procs if p[1] is not cluster.etcd]
                    time.sleep(1.5 * args.ttl)
                    cluster.start_etcd()
                resumed = time.time()
                wait_until(lambda: writer.last_ack > resumed, 60, f"a write acknowledged after round {rnd + 1}")
                log(f"  writes acknowledged again, by {writer.last_ack_node}")
                if fault == "kill":
                    cluster.start_node(int(leader.rsplit(":", 1)[1]))
            time.sleep(1)
            writer.stop.set()
            writer.join(10)
        unavailable: dict[str, list[float]] = {}
        acks = sorted(writer.ack_times)
        for n, (fault, at) in enumerate(rounds):
            until = rounds[n + 1][1] if n + 1 < len(rounds) else float("inf")
            window = [t for t in acks if t < at][-1:] + [t for t in acks if at <= t < until]
            gaps = [b - a for a, b in zip(window, window[1:])]
            unavailable.setdefault(fault, []).append(max(gaps) if gaps else float("nan"))
        # Converged: every node holds the same log.
        urls = list(cluster.nodes)
        wait_until(lambda: len({tuple(log_of(u)) for u in urls}) == 1, 60, "the nodes' logs to converge")
        final = log_of(urls[0])
        by_key: dict[str, list[int]] = {}
        led_by: dict[int, str | None] = {}  # id -> the leader of the epoch it lies in
        leader_now = None
        for i, type_, key, leader in final:
            if type_ == "banyan.epoch":
                leader_now = leader
            led_by[i] = leader_now
            if key:
                by_key.setdefault(key, []).append(i)
        lost = [(k, i) for k, i in writer.acked.items() if by_key.get(k) != [i]]
        twice = {k: ids for k, ids in by_key.items() if len(ids) > 1}
        ids = list(writer.acked.values())
        if lost:
            failures.append(f"{len(lost)} acknowledged writes lost or moved, e.g. {lost[:5]}")
        if twice:
            failures.append(f"keys with two ids: {list(twice.items())[:5]}")
        if len(ids) != len(set(ids)):
            failures.append("an id was acknowledged for two keys")
        outside = [(k, i, writer.acked_by[k], led_by.get(i)) for k, i in writer.acked.items() if led_by.get(i) != writer.acked_by[k]]
        if outside:
            failures.append(f"{len(outside)} writes acknowledged by a node outside its term, e.g. {outside[:5]}")
        exports = set()
        for port in cluster.ports:
            data = os.path.join(root, f"n{port}")
            out = data + ".export.jsonl"
            subprocess.run([args.banyan, "export", "--data-dir", data, "--output", out], check=True, capture_output=True)
            with open(out, "rb") as f:
                exports.add(f.read())
            if subprocess.run([args.banyan, "verify", "--data-dir", data], capture_output=True).returncode != 0:
                failures.append(f"banyan verify found problems in {data}")
        if len(exports) != 1:
            failures.append("the nodes' exports differ")
        print(json.dumps({
            "seed": seed, "rounds": args.rounds, "ttl_s": args.ttl, "faults": faults, "writes_acknowledged": len(writer.acked),
            "writes_refused_or_failed": writer.refused, "writes_lost": len(lost), "final_log_events": len(final),
            "unavailable_s": {f: {"rounds": len(v), "min": round(min(v), 2), "median": round(percentile(v, 0.5), 2), "max": round(max(v), 2)}
                              for f, v in unavailable.items()},
            "history": history_path, "checks": "passed" if not failures else failures,
        }), flush=True)
    finally:
        procs.stop_all()
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
