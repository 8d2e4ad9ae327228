"""CelestialTree's own HTTP API, served by the real CelestialTree server and by Banyan, driven by
the same clients: /emit under wrk (64 connections, with and without a parent), /emit pipelined
on one connection (the whole DAG, parents as real ids), and the lineage trees of /provenance and
/descendants in both views.

The CelestialTree binary is never built here: --celestialtree-bin names one built elsewhere from
its public source (github.com/Mr-xiaotian/CelestialTree). It keeps everything in memory; Banyan
runs with its default durability (`--fsync group`: an emit is answered once it is on disk).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import time

from . import banyan as peer_banyan
from .common import Processes, free_port, log, percentile, tree_cpu_seconds, wait_until
from .dataset import Event

WRK_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "wrk", "emit_parents.lua")


class Server:
    """A CelestialTree-API server on a free port: `celestialtree` or `banyan serve`."""

    def __init__(self, procs: Processes, name: str, argv_for_port, root: str, label: str):
        self.procs, self.name = procs, name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = procs.start(name, argv_for_port(self.port), os.path.join(root, f"{label}.log"))
        wait_until(lambda: self.get("/healthz")[0] == 200, 60, name, self.proc)

    def get(self, path: str) -> tuple[int, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def stop(self) -> None:
        self.procs.stop(self.proc)


def celestialtree(procs: Processes, binary: str, root: str, label: str) -> Server:
    return Server(procs, "CelestialTree", lambda port: [binary, "-host", "127.0.0.1", "-http_port", str(port)], root, label)


def banyan(procs: Processes, binary: str, root: str, label: str, extra: tuple[str, ...] = ()) -> Server:
    """`extra`: more `banyan serve` flags (tools/pipelined_emit.py: --pipeline-depth-max)."""
    data = os.path.join(root, f"banyan-{label}")
    return Server(procs, "Banyan", lambda port: [binary, "serve", "--data-dir", data, "--port", str(port), "--grpc-port", "0",
                                                 "--fsync", "group", "--log-level", "warning", *extra], root, label)


def wrk_emit(server: Server, seconds: int, parent_max: int) -> tuple[float, float]:
    """wrk -t2 -c64 on POST /emit; each event names one random parent in 1..parent_max (none
    when 0). Returns requests/s and the server's cores used."""
    env = dict(os.environ, PARENT_MAX=str(parent_max))
    cpu0, t0 = tree_cpu_seconds(server.proc.pid), time.monotonic()
    out = subprocess.run(["wrk", "-t2", "-c64", f"-d{seconds}s", "-s", WRK_SCRIPT, server.url + "/emit"],
                         capture_output=True, text=True, env=env, timeout=seconds + 60).stdout
    cores = (tree_cpu_seconds(server.proc.pid) - cpu0) / (time.monotonic() - t0)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not m or errors:
        raise RuntimeError(f"wrk on {server.name}: {out}")
    return float(m.group(1)), cores


def emit_bytes(e: Event) -> bytes:
    body = (f'{{"type":{json.dumps(e.type)},"parents":[{",".join(map(str, e.parents))}],'
            f'"message":{json.dumps(e.message)},"payload":{e.payload}}}').encode()
    return (b"POST /emit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


ANSWER = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r]*\r\n(?:[^\r]+\r\n)*?[Cc]ontent-[Ll]ength: (\d+)\r\n(?:[^\r]+\r\n)*\r\n")


def pipelined_emit(server: Server, events: list[Event], depth: int, seconds_max: float) -> tuple[float, float, float]:
    """Sends every event as POST /emit over one connection, keeping `depth` requests unanswered,
    and checks each answer's id is the event's (ids are line + 1 in both servers: genesis is 1).
    Returns requests/s, the client's CPU seconds and the server's cores."""
    requests = [emit_bytes(e) for e in events]
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf, pos, sent, answered = b"", 0, 0, 0
    cpu0, ccpu0, t0 = tree_cpu_seconds(server.proc.pid), time.process_time(), time.perf_counter()
    try:
        while answered < len(events):
            if sent - answered < depth and sent < len(events):
                upto = min(len(events), answered + depth)
                sock.sendall(b"".join(requests[sent:upto]))
                sent = upto
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError(f"{server.name} closed the connection after {answered} answers")
            buf = buf[pos:] + chunk
            pos = 0
            while True:
                m = ANSWER.match(buf, pos)
                if not m or len(buf) < m.end() + int(m.group(2)):
                    break
                body = buf[m.end():m.end() + int(m.group(2))]
                expected = events[answered].id
                if m.group(1) != b"200" or json.loads(body).get("id") != expected:
                    raise RuntimeError(f"{server.name}: answer {answered} was {m.group(1)!r} {body[:200]!r}, expected id {expected}")
                answered += 1
                pos = m.end() + int(m.group(2))
            if time.perf_counter() - t0 > seconds_max:
                raise TimeoutError(f"{server.name}: {answered} answers in {seconds_max} s")
    finally:
        sock.close()
    elapsed = time.perf_counter() - t0
    return len(events) / elapsed, time.process_time() - ccpu0, (tree_cpu_seconds(server.proc.pid) - cpu0) / elapsed


def latency_ms(server: Server, paths: list[str], rounds: int, first: list[float] | None = None) -> tuple[float, list[bytes]]:
    """Median latency of GETs of `paths` (each fetched `rounds` times after one warm-up, answers
    read whole over one keep-alive connection), and the last answer of each path. `first`, when
    given, gets each path's warm-up latency in ms (the first request for it since the server
    started, if none asked for it before)."""
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    times, answers = [], []
    try:
        for path in paths:
            body = b""
            for r in range(rounds + 1):
                t = time.perf_counter()
                c.request("GET", path)
                resp = c.getresponse()
                body = resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{server.name} GET {path}: HTTP {resp.status} {body[:200]!r}")
                if r > 0:
                    times.append(time.perf_counter() - t)
                elif first is not None:
                    first.append((time.perf_counter() - t) * 1000)
            answers.append(body)
    finally:
        c.close()
    return percentile(times, 0.5) * 1000, answers


def tree_ids(tree) -> list:
    """A tree's shape without times: ids, references and links, in order."""
    if isinstance(tree, list):
        return [tree_ids(t) for t in tree]
    links = tree.get("children", tree.get("parents"))
    return [tree["id"], tree["is_ref"], None if links is None else [tree_ids(t) for t in links],
            tree.get("type"), tree.get("message")]


def same_trees(a: bytes, b: bytes) -> bool:
    return tree_ids(json.loads(a)) == tree_ids(json.loads(b))


def picks(ct: Server, banyan: Server, probe: str, candidates, count: int, lo: int, hi: int,
          nodes_max: int = 100_000, scan_max: int = 2_000) -> list[int]:
    """The first `count` of `candidates` (at most `scan_max` looked at) with lo..hi ancestors
    (provenance) or descendants, counted by Banyan's query API, whose tree on CelestialTree's
    struct view holds at most `nodes_max` nodes (Banyan's default tree limit). Counting first
    keeps the probe cheap: CelestialTree builds a whole tree for any id asked."""
    walk = "ancestors" if probe == "provenance" else "descendants"
    counter = peer_banyan.QueryClient(banyan.port, 60)
    count_of = counter.ancestors if probe == "provenance" else counter.descendants
    chosen: list[int] = []
    try:
        for seen, x in enumerate(candidates):
            if seen >= scan_max or len(chosen) == count:
                break
            if not lo <= count_of(x) <= hi:
                continue
            status, body = ct.get(f"/{probe}/{x}")
            if status == 200 and body.count(b'"id"') <= nodes_max:
                chosen.append(x)
    finally:
        counter.close()
    if len(chosen) < count:
        log(f"only {len(chosen)} {probe} picks with {lo}..{hi} {walk} in the ids looked at")
    return chosen
