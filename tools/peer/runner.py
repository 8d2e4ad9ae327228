"""Runs one ingest measurement over several client connections, one process each.

Processes rather than threads so the GIL does not cap the client: on 2 cores the client and
the server share the machine, so the runner also reports how much CPU each side used, which
shows whether a figure is the server's or the client's.

Every request is encoded before the clock starts (the jobs are built in the parent and reach
the workers through fork, without copying); a worker only sends bytes and checks the answer.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import subprocess
import time
from typing import Callable, NamedTuple, Optional, Sequence

from .common import log, tree_cpu_seconds


class Job(NamedTuple):
    batch: int        # index of the batch in file order
    data: bytes       # the pre-encoded request(s)
    events: int       # events it carries
    check: object     # protocol-specific expectation (e.g. the first id the answer must name)


class RunResult(NamedTuple):
    events: int
    seconds: float
    client_cores: float     # CPU seconds of all client processes / wall seconds
    server_cores: float     # CPU seconds of the server's process tree / wall seconds
    complete: bool          # every job was sent (not stopped by the time bound)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def run(label: str, per_connection: Sequence[Sequence[Job]], open_conn: Callable[[], object],
        send: Callable[[object, Job], None], seconds_max: float, server_pid: Optional[int],
        gate: Optional[Sequence[int]] = None) -> RunResult:
    """per_connection[c]: the jobs connection c sends, in order. gate[b], when given: batch b
    may be sent only after batches 0..gate[b]-1 are acknowledged (Banyan's parents must exist
    when the batch commits). Stops at `seconds_max` (requests in flight finish)."""
    ctx = mp.get_context("fork")
    conns = len(per_connection)
    n_batches = 1 + max((j.batch for jobs in per_connection for j in jobs), default=0)
    total = sum(j.events for jobs in per_connection for j in jobs)
    done = ctx.RawArray("b", n_batches)           # batch acknowledged
    acked = ctx.RawArray("q", conns)              # events acknowledged per connection
    finished = ctx.RawArray("d", conns)           # monotonic time of the last answer
    cpu = ctx.RawArray("d", conns)                # client CPU seconds per connection
    abort = ctx.RawValue("b", 0)
    errors = ctx.SimpleQueue()
    barrier = ctx.Barrier(conns + 1)

    def worker(c: int) -> None:
        cpu0 = time.process_time()
        try:
            conn = open_conn()
            barrier.wait(120)
            cpu0 = time.process_time()
            deadline = time.monotonic() + seconds_max
            low = 0  # every batch below `low` is known acknowledged
            for job in per_connection[c]:
                if gate is not None:
                    need, pause = gate[job.batch], 0.00002
                    while low < need:
                        if done[low]:
                            low += 1
                        elif abort.value or time.monotonic() > deadline:
                            return
                        else:
                            # Back off to 1 ms: waits end at the next commit group, and a
                            # tight poll would take CPU from the server on a small machine.
                            time.sleep(pause)
                            pause = min(0.001, pause * 2)
                if abort.value or time.monotonic() > deadline:
                    return
                send(conn, job)
                done[job.batch] = 1
                acked[c] += job.events
                finished[c] = time.monotonic()
        except BaseException as e:  # noqa: BLE001 - reported to the parent, which fails the run
            abort.value = 1
            errors.put(f"{label}: connection {c}: {type(e).__name__}: {e}")
        finally:
            cpu[c] = time.process_time() - cpu0

    procs = [ctx.Process(target=worker, args=(c,), daemon=True, name=f"{label}-{c}") for c in range(conns)]
    for p in procs:
        p.start()
    try:
        barrier.wait(120)
    except Exception:
        for p in procs:
            p.terminate()
        raise RuntimeError(f"{label}: the client connections did not all open") from None
    t0 = time.monotonic()
    cpu_server0 = tree_cpu_seconds(server_pid) if server_pid else 0.0
    hard_stop = t0 + seconds_max + 60
    last_print = t0
    while any(p.is_alive() for p in procs):
        now = time.monotonic()
        if now > hard_stop:
            log(f"{label}: connections still busy {seconds_max + 60:.0f} s after the start; stopping them")
            for p in procs:
                p.terminate()
            break
        if now - last_print >= 5:
            n = sum(acked)
            log(f"{label}: {now - t0:5.1f} s, {n:,}/{total:,} events, {n / (now - t0):,.0f}/s")
            last_print = now
        for p in procs:
            p.join(timeout=0.1)
    cpu_server = (tree_cpu_seconds(server_pid) - cpu_server0) if server_pid else 0.0
    if not errors.empty():
        raise RuntimeError(errors.get())
    events = sum(acked)
    end = max(finished) if events else time.monotonic()
    seconds = max(end - t0, 1e-9)
    return RunResult(events, seconds, sum(cpu) / seconds, cpu_server / seconds, events == total)


def round_robin(jobs: Sequence[Job], conns: int) -> list[list[Job]]:
    """Batch b goes to connection b mod conns: every connection sends its batches in file order."""
    return [list(jobs[c::conns]) for c in range(conns)]


def timed_child(argv: list[str], server_pid: Optional[int], seconds_max: float) -> tuple[str, float, float, float]:
    """Runs a C load client to the end (killed past seconds_max + 30 s); its output, wall
    seconds, its CPU (cores) and the server's (cores)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0 = tree_cpu_seconds(server_pid) if server_pid else 0.0
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds_max + 30)
    seconds = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server = (tree_cpu_seconds(server_pid) - cpu0) if server_pid else 0.0
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr[-500:]}")
    client = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / seconds
    return proc.stdout, seconds, client, server / seconds
