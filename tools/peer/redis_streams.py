"""Redis Streams: redis-server with the append-only file (appendfsync everysec), XADD per event
into one stream, pipelined."""

from __future__ import annotations

import os
import shutil
import subprocess

from . import runner
from .common import Processes, free_port, log, wait_until
from .dataset import Event, batches
from .wire import RESPConn, resp_command

NAME = "Redis Streams"
STREAM = b"events"


class Server:
    def __init__(self, procs: Processes, binary: str, root: str, label: str):
        self.procs = procs
        self.dir = os.path.join(root, f"redis-{label}")
        os.makedirs(self.dir)
        self.port = free_port()
        # AOF on, fsync once a second (the durability the comparison asks for); RDB snapshots
        # off so a background save's fork does not land inside a measurement.
        self.proc = procs.start(NAME, [binary, "--port", str(self.port), "--bind", "127.0.0.1",
                                       "--dir", self.dir, "--appendonly", "yes", "--appendfsync", "everysec",
                                       "--save", "", "--daemonize", "no", "--protected-mode", "no",
                                       "--logfile", ""], self.dir + ".log")
        wait_until(self._ping, 30, "redis-server", self.proc)

    def _ping(self) -> bool:
        c = RESPConn(self.port, timeout=5)
        try:
            return c.call(b"PING") == b"+PONG\r\n"
        finally:
            c.close()

    def xlen(self) -> int:
        c = RESPConn(self.port, timeout=30)
        try:
            return int(c.call(b"XLEN", STREAM)[1:])
        finally:
            c.close()

    def stop(self) -> None:
        self.procs.stop(self.proc)


def version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    return out.split(" v=")[1].split()[0] if " v=" in out else out.strip()


def xadd(e: Event) -> bytes:
    """XADD events * with the event's fields; the stream entry id is Redis's own, the event id a
    field (several connections append concurrently, so explicit ids would collide on order)."""
    return resp_command(b"XADD", STREAM, b"*",
                        b"id", str(e.id).encode(), b"type", e.type.encode(), b"ts", str(e.ts).encode(),
                        b"stream", e.stream.encode(), b"message", e.message.encode(),
                        b"payload", e.payload.encode(), b"parents", ",".join(map(str, e.parents)).encode())


def encode_jobs(events: list[Event], size: int) -> list[runner.Job]:
    return [runner.Job(b, b"".join(xadd(e) for e in part), len(part), None)
            for b, part in enumerate(batches(events, size))]


def send(conn: RESPConn, job: runner.Job) -> None:
    conn.pipeline_bulk(job.data, job.events)


def ingest(procs: Processes, binary: str, root: str, label: str, jobs: list[runner.Job],
           conns: int, seconds_max: float) -> runner.RunResult:
    """One measured run of encode_jobs() output into a fresh server; XLEN must equal what was
    acknowledged. The append-only file is deleted afterwards (the log is kept)."""
    server = Server(procs, binary, root, label)
    try:
        result = runner.run(f"redis {label}", runner.round_robin(jobs, conns), lambda: RESPConn(server.port),
                            send, seconds_max, server.proc.pid)
        n = server.xlen()
        if n != result.events:
            raise RuntimeError(f"redis {label}: XLEN {n:,}, {result.events:,} events acknowledged")
        log(f"redis {label}: XLEN {n:,} = acknowledged")
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)
    return result


def benchmark_c(procs: Processes, binary: str, root: str, label: str, e: Event, requests: int, pipeline: int,
                conns: int, seconds_max: float) -> runner.RunResult:
    """Client check: redis-benchmark (Redis's own C client, installed with redis-server) sends
    the same XADD (one representative event, repeated) over the same number of connections.
    If it gets much more than the Python client, the Python figure is the client's."""
    bench = shutil.which("redis-benchmark") or os.path.join(os.path.dirname(binary), "redis-benchmark")
    server = Server(procs, binary, root, label)
    try:
        argv = [bench, "-p", str(server.port), "-c", str(conns), "-n", str(requests), "-P", str(pipeline), "-q",
                "XADD", STREAM.decode(), "*", "id", str(e.id), "type", e.type, "ts", str(e.ts), "stream", e.stream,
                "message", e.message, "payload", e.payload, "parents", ",".join(map(str, e.parents))]
        out, seconds, client, srv = runner.timed_child(argv, server.proc.pid, seconds_max)
        n = server.xlen()
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)
    if n != requests:
        raise RuntimeError(f"redis-benchmark {label}: XLEN {n:,}, {requests:,} requests sent ({out[-300:]!r})")
    log(f"redis-benchmark {label}: {n / seconds:,.0f} XADD/s")
    return runner.RunResult(n, seconds, client, srv, True)
