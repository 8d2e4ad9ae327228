#!/usr/bin/env python3
"""gRPC against HTTP on one `banyan serve` (docs/PERFORMANCE.md, "gRPC and HTTP").

The same C load tool for both transports, h2load (Debian: nghttp2-client): HTTP/1.1 (`--h1`) for
`POST /emit` and `POST /v1/events`, HTTP/2 cleartext for gRPC's `Emit` and `Append`, each request
body encoded once up front. Two workloads:

  emit    one event per request, no parents (CelestialTree's Emit against its /emit)
  batch   1,000 events per request with a small payload, no keys (Append against /v1/events)

Each round runs HTTP then gRPC (then gRPC multiplexed: few connections, many streams each, as
gRPC clients run) on the same server, so ratios are side by side; rounds alternate the order.
h2load cannot read gRPC trailers, so every run is checked by the server's last id instead: the
events stored must be the requests sent times the events per request, so a run of failed calls cannot count.

    tools/grpc_vs_http.py --banyan .build/release/banyan [--rounds 3] [--emits 100000] [--batches 2000]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer.common import free_port  # noqa: E402


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


def bodies(batch: int) -> dict[str, tuple[bytes, list[str], int]]:
    """workload/transport -> (body, headers, events per request)."""
    emit_json = json.dumps({"type": "bench.emit", "parents": []}).encode()
    emit_pb = field(1, b"bench.emit")  # EmitRequest{type}
    events_json = json.dumps([{"type": "bench.batch", "payload": {"i": i, "host": "web-7"}} for i in range(batch)]).encode()
    events_pb = b"".join(
        field(1, field(1, b"bench.batch") + field(5, json.dumps({"i": i, "host": "web-7"}).encode())) for i in range(batch))  # AppendRequest{events}
    http = ["content-type: application/json"]
    grpc = ["content-type: application/grpc", "te: trailers"]
    return {
        "emit/http": (emit_json, http, 1), "emit/grpc": (grpc_frame(emit_pb), grpc, 1),
        "batch/http": (events_json, http, batch), "batch/grpc": (grpc_frame(events_pb), grpc, batch),
    }


def last_id(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=10) as r:
        return json.load(r)["last_id"]


def h2load(url: str, body_path: str, headers: list[str], h1: bool, clients: int, streams: int, requests: int) -> tuple[float, int]:
    cmd = ["h2load", "-c", str(clients), "-m", str(streams), "-t", "1", "-n", str(requests), "-d", body_path]
    for h in headers:
        cmd += ["-H", h]
    if h1:
        cmd.append("--h1")
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=600).stdout
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    if not rate or not done:
        raise SystemExit(f"h2load printed no result:\n{out}")
    if int(done.group(2)) or int(done.group(3)):
        raise SystemExit(f"h2load saw failures:\n{out}")
    return float(rate.group(1)), int(done.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--banyan", required=True, help="banyan binary (a release build)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--emits", type=int, default=100_000, help="requests of each emit run")
    ap.add_argument("--batches", type=int, default=2_000, help="requests of each batch run")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--connections", type=int, default=64, help="HTTP/1.1 connections, one request in flight each")
    ap.add_argument("--workloads", default="emit,batch")
    args = ap.parse_args()
    if not shutil.which("h2load"):
        raise SystemExit("h2load is missing: apt-get install nghttp2-client")
    root = tempfile.mkdtemp(prefix="banyan-grpc-bench-")
    port, grpc_port = free_port(), free_port()
    server = subprocess.Popen(
        [args.banyan, "serve", "--data-dir", os.path.join(root, "data"), "--port", str(port), "--grpc-port", str(grpc_port),
         "--log-level", "warning"], stdout=open(os.path.join(root, "server.log"), "w"), stderr=subprocess.STDOUT)
    try:
        log = os.path.join(root, "server.log")
        for _ in range(400):
            # Both listeners: the gRPC one says so once bound.
            if server.poll() is not None:
                raise SystemExit(f"banyan serve exited:\n{open(log).read()}")
            if "banyan: gRPC on" in open(log).read():
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"banyan serve did not start gRPC in 20 s:\n{open(log).read()}")
        last_id(port)
        paths = {}
        for name, (body, headers, per) in bodies(args.batch).items():
            path = os.path.join(root, name.replace("/", "-") + ".bin")
            with open(path, "wb") as f:
                f.write(body)
            paths[name] = (path, headers, per)
        c = args.connections
        # (label, body key, url, h1, clients, streams per client)
        def runs(workload: str) -> list[tuple[str, str, str, bool, int, int]]:
            http_path = "/emit" if workload == "emit" else "/v1/events"
            method = "celestialtree.v1.CelestialTreeService/Emit" if workload == "emit" else "banyan.v1.Banyan/Append"
            return [
                (f"HTTP/1.1 {http_path}, {c} conns", f"{workload}/http", f"http://127.0.0.1:{port}{http_path}", True, c, 1),
                (f"gRPC {method.split('/')[1]}, {c} conns", f"{workload}/grpc", f"http://127.0.0.1:{grpc_port}/{method}", False, c, 1),
                (f"gRPC {method.split('/')[1]}, 4 conns x {c // 4} streams", f"{workload}/grpc", f"http://127.0.0.1:{grpc_port}/{method}", False, 4, c // 4),
            ]
        results: dict[str, list[float]] = {}
        ratios: dict[str, list[float]] = {}
        for workload in args.workloads.split(","):
            plan = runs(workload)
            for r in range(args.rounds):
                order = plan if r % 2 == 0 else list(reversed(plan))
                this_round = {}
                for label, key, url, h1, clients, streams in order:
                    path, headers, per = paths[key]
                    before = last_id(port)
                    count = args.emits if per == 1 else args.batches
                    rate, succeeded = h2load(url, path, headers, h1, clients, streams, count)
                    stored = last_id(port) - before
                    if stored != succeeded * per or succeeded != count:
                        raise SystemExit(f"{label}: {succeeded} requests answered but {stored} events stored (expected {succeeded * per})")
                    value = rate * per
                    results.setdefault(label, []).append(value)
                    this_round[label] = value
                    print(f"  round {r + 1} {label}: {value:,.0f} {'events' if per > 1 else 'requests'}/s", flush=True)
                base = this_round[plan[0][0]]
                for label, *_ in plan[1:]:
                    ratios.setdefault(label, []).append(this_round[label] / base)
        print("\n| run | median | min–max | ratio to HTTP (median, min–max) |\n|---|---|---|---|")
        for label, values in results.items():
            ratio = ratios.get(label)
            ratio_text = f"{statistics.median(ratio):.2f} ({min(ratio):.2f}–{max(ratio):.2f})" if ratio else "1"
            print(f"| {label} | {statistics.median(values):,.0f}/s | {min(values):,.0f}–{max(values):,.0f} | {ratio_text} |")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
