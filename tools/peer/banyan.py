"""Banyan: `banyan serve` on a fresh data directory, POST /v1/events, POST /v1/query."""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import os
import re
import shutil
import subprocess
import sys
from typing import Optional, Sequence

from . import runner
from .common import Processes, free_port, log, wait_until
from .dataset import Event, batches
from .wire import HTTPConn, WireError, http_request

NAME = "Banyan"
MIN_EXISTING = 128  # ids that must exist before batches overlap (more than any event's parents)


class Server:
    def __init__(self, procs: Processes, binary: str, root: str, label: str, extra: Sequence[str] = ()):
        """`extra`: more `banyan serve` flags, e.g. ("--follow", leader.url) for a follower."""
        self.procs, self.binary = procs, binary
        self.dir = os.path.join(root, f"banyan-{label}")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = procs.start(NAME, [binary, "serve", "--data-dir", self.dir, "--port", str(self.port), "--grpc-port", "0",
                                       "--fsync", "group", "--log-level", "warning", *extra],
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


def dataset_server(procs: Processes, binary: str, data_dir: Optional[str], dataset: str, root: str) -> Server:
    """`banyan serve` on a store holding `dataset`: `data_dir` when given (named banyan-<label>),
    else a store imported into `root` first."""
    if not data_dir:
        data_dir = os.path.join(root, "banyan-dataset")
        log(f"importing {dataset} into {data_dir}")
        subprocess.run([binary, "import", dataset, "--data-dir", data_dir], check=True, stdout=subprocess.DEVNULL)
    # Server() appends "banyan-<label>" to its root: give it the store's parent and label.
    parent, name = os.path.split(os.path.abspath(data_dir))
    server = Server(procs, binary, parent, name.removeprefix("banyan-"))
    if server.dir != os.path.abspath(data_dir):
        procs.stop(server.proc)
        sys.exit("--data-dir must be named banyan-<something>")
    return server


def _js(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def event_key(e: Event, order: str = "ascending") -> str:
    """The idempotency key of event `e`: "e0000000001" and so on (`ascending`: ids, sequence
    numbers, time-ordered job ids), or 40 hex digits that follow no order (`random`: commit SHAs,
    UUIDs); the same for the same event in every run."""
    if order == "random":
        return hashlib.sha1(b"banyan-key-%d" % e.id).hexdigest()
    return f"e{e.id - 1:010d}"


def _event_head(e: Event, keyed: bool, key_order: str = "ascending") -> str:
    """Everything of the event's JSON before its parent ids. Banyan's API has no `ts` field
    (the server stamps the time), so ts is the one column the peers store and Banyan does not."""
    key = f'"key":"{event_key(e, key_order)}",' if keyed else ""
    return (f'{{{key}"type":{_js(e.type)},"stream":{_js(e.stream)},"message":{_js(e.message)},'
            f'"payload":{e.payload},"parents":[')


def window(conns: int) -> int:
    """Batches that may be unacknowledged when the next one is sent. Twice the connections:
    with exactly one per connection, a connection whose answer came in a later commit group
    would hold all the others up (group commit acknowledges batches out of round-robin order)."""
    return 2 * conns


def gates(n_batches: int, size: int, conns: int) -> tuple[list[int], int]:
    """gate[b]: batches 0..gate[b]-1 must be acknowledged before batch b is sent. The first
    `serial` batches (until MIN_EXISTING events exist) go one at a time, each alone on the
    wire, so their ids are exactly the file's; after that batches overlap within window()."""
    serial = math.ceil(MIN_EXISTING / size)
    w = window(conns)
    return [b if b <= serial else max(serial, b - w + 1) for b in range(n_batches)], serial


def safe_parents(parents: tuple[int, ...], bound: int, shift: int) -> list[int]:
    """Parents for a batch sent while other batches may still be in flight: ids up to `bound`
    certainly exist whatever the commit order, and are kept; a younger parent (same batch or a
    batch in flight, whose id depends on the commit order) becomes the id `shift` (the window,
    in events) earlier, made
    distinct from the event's other parents, so the event keeps its number of parents and the
    store its number of edges."""
    if bound <= len(parents):
        raise ValueError(f"{len(parents)} parents cannot be made distinct ids up to {bound}")
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


def encode_jobs(events: list[Event], size: int, conns: int, keyed: bool, exact: bool,
                path: str = "/v1/events?durability=sync",
                key_order: str = "ascending") -> tuple[list[runner.Job], Optional[list[int]], int]:
    """Pre-encoded POST /v1/events requests, the gates, and the number of edges they carry.
    A batch that is alone on the wire (exact=True: one connection, in order; otherwise the
    first, serial batches) commits right after the previous one, so its ids are the file's
    (line + 1) and its parents are sent as they are; its answer is checked to start at the
    expected id. Overlapping batches get safe_parents(). `path`: the request target (e.g. with
    &replicas=1). `key_order`: event_key()'s."""
    out, parts = [], batches(events, size)
    gate, serial = (None, len(parts)) if exact else gates(len(parts), size, conns)
    edges = 0
    for b, part in enumerate(parts):
        alone = b < serial
        bound = 0 if alone else 1 + gate[b] * size
        items = []
        for e in part:
            ps = e.parents if alone or not e.parents else safe_parents(e.parents, bound, window(conns) * size)
            edges += len(ps)
            items.append(_event_head(e, keyed, key_order) + ",".join(map(str, ps)) + "]}")
        body = ("[" + ",".join(items) + "]").encode()
        out.append(runner.Job(b, http_request("POST", path, body), len(part),
                              part[0].id if alone else 0))
    return out, gate, edges


def send(conn: HTTPConn, job: runner.Job) -> None:
    status, body = conn.roundtrip(job.data)
    check_answer(job, status, body)


def check_answer(job: runner.Job, status: int, body: bytes) -> None:
    """Raises WireError unless `body` is a durable 200 answer with one id per event of `job`
    (and, when the job says so, the ids it must start at)."""
    if status != 200:
        raise WireError(f"HTTP {status}: {body[:300]!r}")
    if body.count(b'{"id":') != job.events or b'"durable":true' not in body:
        raise WireError(f"unexpected answer for {job.events} events: {body[:200]!r}")
    if job.check and not body.startswith(b'{"results":[{"id":%d}' % job.check):
        raise WireError(f"batch {job.batch} was given ids {body[:60]!r}, expected to start at {job.check}")


def ingest(procs: Processes, binary: str, root: str, label: str, prepared, conns: int,
           seconds_max: float, exact: bool = False, keep_server: bool = False):
    """One measured ingest of encode_jobs() output into a fresh store; checks that last_id
    and edges moved by exactly what was acknowledged. Returns (result, server or None); the
    store is deleted after the run unless the server is kept (for the queries)."""
    jobs, gate, edges = prepared
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
    shutil.rmtree(server.dir, ignore_errors=True)
    return result, None


def wrk_check(procs: Processes, binary: str, root: str, label: str, e: Event, conns: int,
              seconds: float) -> Optional[runner.RunResult]:
    """Client check: wrk (a C HTTP load generator, used when installed) posts one
    representative event per request, parents [1] (a repeated body needs no ordering), over
    the same number of connections. None when wrk is not installed."""
    wrk = shutil.which("wrk")
    if not wrk:
        return None
    server = Server(procs, binary, root, label)
    script = server.dir + ".lua"
    body = "[" + _event_head(e, False) + "1]}]"
    with open(script, "w") as f:
        f.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\n')
    try:
        before = server.status()["last_id"]
        out, wall, client, srv = runner.timed_child(
            [wrk, "-t", "1", "-c", str(conns), "-d", f"{max(1, int(seconds))}s", "-s", script,
             f"http://127.0.0.1:{server.port}/v1/events?durability=sync"], server.proc.pid, seconds)
        stored = server.status()["last_id"] - before
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)
    if re.search(r"Non-2xx", out) or not re.search(r"Requests/sec", out):
        raise RuntimeError(f"wrk {label}: errors or no summary: {out[-500:]}")
    # wrk's own duration excludes its start-up; stored events over its -d seconds is the rate.
    rate_s = max(1, int(seconds))
    log(f"wrk {label}: {stored:,} events stored in {rate_s} s ({stored / rate_s:,.0f}/s)")
    return runner.RunResult(stored, float(rate_s), client * wall / rate_s, srv * wall / rate_s, True)


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
