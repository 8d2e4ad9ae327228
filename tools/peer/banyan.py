"""Banyan: `banyan serve` on a fresh data directory, POST /v1/events, POST /v1/query."""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import time
from typing import Optional

from . import runner
from .common import Processes, free_port, log, wait_until
from .dataset import Event, batches
from .wire import HTTPConn, WireError, http_request

NAME = "Banyan"
MIN_EXISTING = 128  # ids that must exist before batches overlap (more than any event's parents)


class Server:
    def __init__(self, procs: Processes, binary: str, root: str, label: str):
        self.procs, self.binary = procs, binary
        self.dir = os.path.join(root, f"banyan-{label}")
        self.port = free_port()
        self.proc = procs.start(NAME, [binary, "serve", "--data-dir", self.dir, "--port", str(self.port),
                                       "--fsync", "group", "--log-level", "warning"],
                                self.dir + ".log")
        wait_until(lambda: self.get("/healthz")[0] == 200, 60, "banyan serve", self.proc)

    def get(self, path: str) -> tuple[int, dict]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, json.loads(r.read() or b"{}")
        finally:
            c.close()

    def status(self) -> dict:
        code, body = self.get("/v1/status")
        if code != 200:
            raise RuntimeError(f"/v1/status: HTTP {code}")
        return body

    def version(self) -> str:
        return self.get("/version")[1].get("version", "?")

    def stop(self) -> None:
        self.procs.stop(self.proc)


def _js(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _event_head(e: Event, keyed: bool) -> str:
    """Everything of the event's JSON before its parent ids. Banyan's API has no `ts` field
    (the server stamps the time), so ts is the one column the peers store and Banyan does not."""
    key = f'"key":"e{e.id - 1:010d}",' if keyed else ""
    return (f'{{{key}"type":{_js(e.type)},"stream":{_js(e.stream)},"message":{_js(e.message)},'
            f'"payload":{e.payload},"parents":[')


def gates(n_batches: int, size: int, conns: int) -> list[int]:
    """gate[b]: batches 0..gate[b]-1 must be acknowledged before batch b is sent. The first
    batches (until MIN_EXISTING events exist) go one at a time; after that up to `conns`
    batches overlap, one per connection."""
    k = math.ceil(MIN_EXISTING / size)
    return [b if b <= k else max(k, b - conns + 1) for b in range(n_batches)]


def safe_parents(parents: tuple[int, ...], bound: int, shift: int) -> list[int]:
    """Parents for a batch sent while other batches may still be in flight: ids up to `bound`
    certainly exist whatever the commit order, and are kept; a younger parent (same batch or a
    batch in flight, whose id depends on the commit order) becomes the id `shift` earlier, made
    distinct from the event's other parents, so the event keeps its number of parents and the
    store its number of edges."""
    used = {p for p in parents if p <= bound}
    out = []
    for p in parents:
        if p <= bound:
            out.append(p)
            continue
        q = p - shift
        if q < 1 or q > bound:
            q = 1 + (p - 1) % bound
        while q in used:
            q = q - 1 if q > 1 else bound
        used.add(q)
        out.append(q)
    return out


def encode_jobs(events: list[Event], size: int, conns: int, keyed: bool, exact: bool) -> tuple[list[runner.Job], Optional[list[int]], int]:
    """Pre-encoded POST /v1/events requests, the gates, and the number of edges they carry.
    exact=True (one connection, in order): every batch commits right after the previous one,
    so ids are the file's (line + 1) and parents are sent as they are; each answer is checked
    to start at the expected id."""
    out, parts = [], batches(events, size)
    gate = None if exact else gates(len(parts), size, conns)
    edges = 0
    target = b"/v1/events?durability=sync"
    for b, part in enumerate(parts):
        items = []
        bound = 1 + gate[b] * size if gate else 0
        for e in part:
            ps = e.parents if exact or not e.parents else safe_parents(e.parents, bound, conns * size)
            edges += len(ps)
            items.append(_event_head(e, keyed) + ",".join(map(str, ps)) + "]}")
        body = ("[" + ",".join(items) + "]").encode()
        req = http_request("POST", target.decode(), body)
        out.append(runner.Job(b, req, len(part), part[0].id if exact else 0))
    return out, gate, edges


def send(conn: HTTPConn, job: runner.Job) -> None:
    status, body = conn.roundtrip(job.data)
    if status != 200:
        raise WireError(f"HTTP {status}: {body[:300]!r}")
    if body.count(b'{"id":') != job.events or b'"durable":true' not in body:
        raise WireError(f"unexpected answer for {job.events} events: {body[:200]!r}")
    if job.check and not body.startswith(b'{"results":[{"id":%d}' % job.check):
        raise WireError(f"batch {job.batch} was given ids {body[:60]!r}, expected to start at {job.check}")


def ingest(procs: Processes, binary: str, root: str, label: str, events: list[Event], size: int,
           conns: int, seconds_max: float, keyed: bool = False, exact: bool = False,
           keep_server: bool = False):
    """One measured ingest into a fresh store; checks last_id and edges moved by exactly what
    was acknowledged. Returns (result, server or None)."""
    jobs, gate, edges = encode_jobs(events, size, conns, keyed, exact)
    server = Server(procs, binary, root, label)
    try:
        before = server.status()
        per_conn = [jobs] if exact else runner.round_robin(jobs, conns)
        result = runner.run(f"banyan {label}", per_conn, lambda: HTTPConn(server.port), send,
                            seconds_max, server.proc.pid, gate)
        after = server.status()
        moved = after["last_id"] - before["last_id"]
        if moved != result.events:
            raise RuntimeError(f"banyan {label}: last_id moved by {moved:,}, {result.events:,} events acknowledged")
        if result.complete and after["edges"] - before["edges"] != edges:
            raise RuntimeError(f"banyan {label}: edges moved by {after['edges'] - before['edges']:,}, sent {edges:,}")
        log(f"banyan {label}: last_id {before['last_id']:,} -> {after['last_id']:,} (+{moved:,} = acknowledged), "
            f"edges +{after['edges'] - before['edges']:,}")
    except BaseException:
        server.stop()
        raise
    if keep_server:
        return result, server
    server.stop()
    return result, None


# --------------------------------------------------------------------------- queries


class QueryClient:
    """POST /v1/query over one keep-alive connection; latency is measured around the request,
    the answer and its JSON decoding, like the SQL clients' fetch."""

    def __init__(self, port: int, seconds_max: float):
        self.conn = HTTPConn(port, timeout=seconds_max + 30)
        self.budget = {"nodes_max": 10_000_000, "time_max_ms": int(min(30.0, seconds_max) * 1000)}

    def _run(self, text: str) -> dict:
        body = json.dumps({"query": text, "budget": self.budget}).encode()
        status, raw = self.conn.roundtrip(http_request("POST", "/v1/query", body))
        answer = json.loads(raw)
        if status != 200:
            raise RuntimeError(f"banyan query {text!r}: HTTP {status} {answer}")
        if answer.get("truncated"):
            raise TimeoutError(f"banyan query {text!r} truncated: {answer.get('stats', {}).get('reason')}")
        return answer

    def ancestors(self, x: int) -> int:
        return self._run(f"count(ancestors({x}))")["count"]

    def descendants(self, x: int) -> int:
        return self._run(f"count(descendants({x}))")["count"]

    def path_hops(self, a: int, b: int) -> Optional[int]:
        paths = self._run(f"path({a}, {b})")["paths"]
        return len(paths[0]) - 1 if paths else None

    def close(self) -> None:
        self.conn.close()
