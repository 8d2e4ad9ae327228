#!/usr/bin/env python3
"""Replication benchmark: Banyan leader/follower figures next to PostgreSQL 15 streaming
replication, measured side by side in one run, printed as a Markdown report.

    swift build -c release --product banyan          # first; this script never builds
    sudo python3 tools/replication_bench.py --quick  # smoke run of all four figures (~2 min)
    sudo python3 tools/replication_bench.py          # full run (10-20 min)
    sudo python3 tools/replication_bench.py --only catchup,lag --rounds 5

Figures (docs/REPLICATION.md; the targets come from the replication issue):
  1 catchup   Follower catch-up from empty on a --events (1,000,000) event log. Each round:
              a fresh leader is filled with batched durable ingest (POST /v1/events
              ?durability=sync, batches of --batch over --connections connections, no
              follower attached): that is the leader's own ingest rate. Then a follower starts
              on an empty data directory (`banyan serve --follow`) and the clock runs from its
              spawn until its applied_id (GET /v1/status, polled every --poll-ms) equals the
              leader's last_id. Events/s applied, and its ratio to the leader's ingest rate
              (target >= 2x). The rate after start-up (from the first status answer) is shown too.
              Every process shares every core, so the leader's shipping takes CPU from its
              follower; --pin gives each node a core of its own instead (the leader on CPU 0, the
              follower, client and script on CPU 1), as two one-core machines would.
  2 lag       Follower lag under a steady offered load: the client sends replicas=0 durable
              batches on a fixed schedule (--offered-rate events/s over all connections, each
              batch at its slot; late slots are sent at once, so the achieved rate is what the
              leader sustains up to the offered one) for --lag-seconds per round. The first
              rate (100,000/s) is the target's; the default also runs 50,000/s, informational:
              a rate the leader cannot sustain with a follower attached measures queueing on an
              overloaded leader as much as replication.
              Lag in ms: for every acknowledged batch, its last id X and the moment the client
              read the ack go to a pool of watcher threads, each with a keep-alive connection to
              the follower, which ask GET /v1/events/X?min_id=X (the follower answers once it has
              applied X: a server-side wait woken by the apply, no polling); lag = answer time
              minus ack time (an upper bound: it includes one loopback round trip and the
              hand-over to a watcher, whose delay is reported). Lag in ids: every --poll-ms,
              leader last_id (read before and after, averaged) minus follower applied_id.
              Target p99 < 50 ms.
  3 replicas  Batched ingest with replicas=1 against replicas=0 on the same leader with one
              follower attached: the same pre-encoded bodies, connections and client,
              alternated A/B/A/B for --rounds rounds of --ab-events events each; each round's
              events/s and batch latency, and the median ratio (target >= 80%).
              Every replicas=1 answer must say "replicas" >= 1.
  4 postgres  The same against PostgreSQL 15 streaming replication on loopback: a primary and
              a hot standby (pg_basebackup -R), synchronous_commit=remote_apply with the
              standby in synchronous_standby_names (checked in pg_stat_replication). Per round:
              Banyan replicas=1 on a fresh leader + follower, then PostgreSQL COPY and
              multi-row INSERT (1,000 rows per transaction, as peer_compare.py encodes them)
              into freshly created tables, the same --workload-events events and connections.
              Replica visibility: for sampled acknowledged batches a watcher polls the replica
              for the batch's last row (PostgreSQL: SELECT on the standby by primary key;
              Banyan: GET /v1/events/X on the follower, 404 until it is there), the same way on
              both; the time from ack to the first answer that has it. Target Banyan replicas=1
              >= 2x PostgreSQL sync replication (COPY, the faster of the two) at batch 1000.

Fairness: durability on each side. Banyan runs `--fsync group` on every node (the default), the
client asks durability=sync (each ack follows an fsync on the leader); replicas=1 acks after the
follower reports the batch synced on its disk (it applies, syncs, then reports with its next
pull). PostgreSQL runs its defaults (fsync on, full_page_writes on) with
synchronous_commit=remote_apply: a commit returns after the standby flushed and applied its WAL.
So on both sides an ack means durable on two disks and visible on the replica. Neither side runs
idempotency keys. Tables get their indexes before loading (the edges table with two indexes,
events with its primary key), as in peer_compare.py; Banyan maintains its own indexes.

Workload and client: the events are tools/gen_dag.py's synthetic DAG (--seed 7), the same
events for Banyan and PostgreSQL, encoded before the clock starts by tools/peer (banyan.encode_jobs:
JSON arrays of --batch events with parents by id, kept safe while batches overlap;
postgres.encode_jobs: COPY or multi-row INSERT). They are sent over --connections raw
keep-alive sockets, one client process each (tools/peer/runner.py), so the Python client costs
little CPU; figure 1's fill and figure 4 start on empty stores with peer_compare's ordering
gates; figures 2 and 3 replay the first --workload-events events' bodies on a store that already
holds them (every parent exists). The report gives the CPU each side used per run (client:
its processes and this script's threads, by resource.getrusage; servers: utime+stime of each
server's process tree from /proc/<pid>/stat), the cores other processes on the machine took
(/proc/stat), and says which side was the limit. The measuring threads (ack hand-over, watchers,
samplers) run at nice -10, and Python's cyclic GC is off while a run is measured, so neither a
busy machine nor a collection over the dataset's objects is counted as replication lag.

The script must run as root, like peer_compare.py: it installs PostgreSQL with apt-get when it
is missing and runs it as the postgres user. It starts every server itself on 127.0.0.1 on free
ports in a temporary directory (put TMPDIR on a disk: fsync on tmpfs costs nothing), stops
exactly the processes it started (also on Ctrl-C or SIGTERM) and deletes the directory
(--keep keeps it). Markdown goes to stdout, progress to stderr. Exit status 1 when a correctness
check fails (follower last_id different from the leader's after a phase, a replicas=1 answer
with fewer replicas, standby row counts different from the primary's) or on a setup error.

Standard library only (the PostgreSQL client is tools/peer/wire.py's).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import multiprocessing as mp
import os
import queue
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peer import banyan, common, postgres, runner  # noqa: E402
from peer.common import Processes, cpu_pressure, file_identity, log, run_info, tree_cpu_seconds  # noqa: E402
from peer.dataset import Event, generate  # noqa: E402
from peer.wire import HTTPConn, PGConn, WireError, http_request  # noqa: E402
from peer_compare import ensure_installed  # noqa: E402

common.LOG_PREFIX = "replication_bench"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = ("catchup", "lag", "replicas", "postgres")
ID_AT = re.compile(rb'\{"id":(\d+)')
REPLICAS_AT = re.compile(rb'"replicas":(\d+)')


# --------------------------------------------------------------------------- arguments


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--banyan", default=os.path.join(REPO, ".build", "release", "banyan"),
                    help="the banyan binary (default .build/release/banyan; build it with "
                         "`swift build -c release --product banyan`)")
    ap.add_argument("--only", action="append", default=None, metavar="FIGURE",
                    help="run only these figures: catchup, lag, replicas, postgres (repeatable or comma list)")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes for a smoke run: 50,000-event catch-up, 20,000-event workload, "
                         "2 rounds, 4 s of lag (explicit options still win)")
    ap.add_argument("--events", type=int, default=None, help="events of the catch-up log (default 1,000,000)")
    ap.add_argument("--workload-events", type=int, default=None,
                    help="events of the lag, replicas and postgres workload (the dataset's first N; default 200,000)")
    ap.add_argument("--ab-events", type=int, default=None,
                    help="events per replicas=0/replicas=1 run (default 400,000: the workload twice)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of every figure (default 3)")
    ap.add_argument("--connections", type=int, default=4, help="client connections, one process each (default 4)")
    ap.add_argument("--batch", type=int, default=1000, help="events per request or transaction (default 1,000)")
    ap.add_argument("--offered-rate", default="100000,50000",
                    help="events/s the client offers in the lag figure; a comma list runs each rate for --rounds "
                         "rounds. The first is the figure checked against the target, the others are informational "
                         "(default 100000,50000: the second shows the lag when the leader is not near its limit)")
    ap.add_argument("--lag-seconds", type=float, default=None, help="seconds of load per lag round (default 10)")
    ap.add_argument("--poll-ms", type=float, default=50.0,
                    help="interval of the status polls (catch-up end, lag in ids; default 50)")
    ap.add_argument("--watchers", type=int, default=16,
                    help="watcher threads that time when a replica has an acknowledged batch (default 16)")
    ap.add_argument("--seconds-max", type=float, default=180.0, help="time bound of each ingest run (default 180)")
    ap.add_argument("--catchup-timeout", type=float, default=900.0, help="time bound of one catch-up (default 900)")
    ap.add_argument("--seed", type=int, default=7, help="gen_dag seed (default 7)")
    ap.add_argument("--pin", action="store_true",
                    help="with --only catchup: give each node a core of its own, as on two one-core machines: "
                         "the leader on CPU 0; the follower, the client and this script on CPU 1 (default: "
                         "everything shares every core, so the leader's shipping takes CPU from its follower)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (stores, server logs)")
    a = ap.parse_args(argv)
    quick = a.quick
    a.events = a.events or (50_000 if quick else 1_000_000)
    a.workload_events = a.workload_events or (20_000 if quick else 200_000)
    a.rounds = a.rounds or (2 if quick else 3)
    a.lag_seconds = a.lag_seconds or (4.0 if quick else 10.0)
    a.ab_events = a.ab_events or 2 * a.workload_events
    only: list[str] = []
    for item in a.only or list(FIGURES):
        for name in item.split(","):
            name = name.strip()
            if name not in FIGURES:
                ap.error(f"--only takes {', '.join(FIGURES)}, not {name!r}")
            if name not in only:
                only.append(name)
    a.only = [f for f in FIGURES if f in only]
    if not 1_000 <= a.events <= 20_000_000 or not 1_000 <= a.workload_events <= 5_000_000:
        ap.error("--events must be 1000...20000000 and --workload-events 1000...5000000")
    if not 1 <= a.connections <= 64 or not 1 <= a.batch <= 10_000 or not 1 <= a.rounds <= 50:
        ap.error("--connections must be 1...64, --batch 1...10000, --rounds 1...50")
    try:
        a.offered_rates = [float(x) for x in str(a.offered_rate).split(",") if x.strip()]
    except ValueError:
        ap.error(f"--offered-rate takes events/s or a comma list of them, not {a.offered_rate!r}")
    a.offered_rate = a.offered_rates[0] if a.offered_rates else 0
    if min(a.offered_rates, default=0) <= 0 or a.lag_seconds <= 0 or a.poll_ms <= 0 or a.watchers < 1 or a.ab_events < a.batch:
        ap.error("--offered-rate, --lag-seconds, --poll-ms must be > 0, --watchers >= 1, --ab-events >= --batch")
    if a.pin and (a.only != ["catchup"] or not {0, 1} <= os.sched_getaffinity(0)):
        ap.error("--pin takes --only catchup and needs CPUs 0 and 1")
    if "catchup" in a.only and a.workload_events > a.events:
        a.workload_events = a.events
    return a


# --------------------------------------------------------------------------- small helpers


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); nan when empty."""
    s = sorted(values)
    if not s:
        return float("nan")
    return s[max(0, min(len(s) - 1, math.ceil(q * len(s)) - 1))]


def spread(values: list[float], fmt: Callable[[float], str]) -> str:
    """'median (min-max over n)'."""
    v = [x for x in values if x == x]
    if not v:
        return "n/a"
    if len(v) == 1:
        return fmt(v[0])
    return f"{fmt(statistics.median(v))} (range {fmt(min(v))} to {fmt(max(v))}, n={len(v)})"


def rate(x: float) -> str:
    return f"{x:,.0f}"


def ms(x: float) -> str:
    if x != x:
        return "n/a"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def ratio(x: float) -> str:
    return f"{x:.2f}x"


def git_commit(path: str) -> str:
    d = path if os.path.isdir(path) else os.path.dirname(os.path.realpath(path))
    try:
        top = subprocess.run(["git", "-C", d, "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             check=True).stdout.strip()
        head = subprocess.run(["git", "-C", top, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", top, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return f"{head}{' + uncommitted changes' if dirty else ''} ({top})"
    except (subprocess.CalledProcessError, OSError):
        return "unknown (not in a git work tree)"


def replication_counters(port: int) -> dict[str, float]:
    """The leader's banyan_replication_{bytes,groups}_total{direction="shipped"} from /metrics."""
    out: dict[str, float] = {}
    try:
        conn = HTTPConn(port, timeout=30)
        status, body = conn.roundtrip(http_request("GET", "/metrics"))
        conn.close()
    except (OSError, WireError):
        return out
    for line in body.decode("utf-8", "replace").splitlines():
        for name, key in (("banyan_replication_bytes_total", "bytes"), ("banyan_replication_groups_total", "groups")):
            if line.startswith(name + "{") and 'direction="shipped"' in line:
                try:
                    out[key] = float(line.rsplit(" ", 1)[1])
                except (ValueError, IndexError):
                    pass
    return out


class StatusConn:
    """GET /v1/status over one keep-alive connection (reconnects once on a closed socket)."""

    def __init__(self, port: int):
        self.port = port
        self.conn = HTTPConn(port, timeout=30)
        self.req = http_request("GET", "/v1/status")

    def get(self) -> dict:
        try:
            status, body = self.conn.roundtrip(self.req)
        except (OSError, WireError):
            self.conn.close()
            self.conn = HTTPConn(self.port, timeout=30)
            status, body = self.conn.roundtrip(self.req)
        if status != 200:
            raise RuntimeError(f"/v1/status on port {self.port}: HTTP {status} {body[:200]!r}")
        return json.loads(body)

    def close(self) -> None:
        self.conn.close()


def machine_ticks() -> tuple[int, int, int]:
    """(busy, steal, total) clock ticks of all CPUs since boot, from the first line of
    /proc/stat: every process on the machine, not only this run's."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0, 0
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return user + nice + system + irq + softirq, steal, sum(v)


@dataclass
class CPU:
    """CPU seconds used over one measured run, as cores (seconds / wall seconds), and how busy
    the whole machine was (all processes, and the hypervisor's steal)."""
    client: float
    servers: dict[str, float]
    seconds: float
    machine_busy: float = float("nan")   # share of all CPUs busy, any process
    steal: float = float("nan")          # share of all CPUs taken by the hypervisor

    @staticmethod
    def measure(pids: dict[str, int]) -> Callable[[float], "CPU"]:
        """Starts a measurement; call the result with the run's wall seconds to end it.
        Client: this process (its threads) and its reaped children (the client processes)."""
        s0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        srv0 = {k: tree_cpu_seconds(p) for k, p in pids.items()}
        m0 = machine_ticks()
        t0 = time.monotonic()

        def end(seconds: Optional[float] = None) -> CPU:
            wall = seconds if seconds else time.monotonic() - t0
            s1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            client = (s1.ru_utime + s1.ru_stime - s0.ru_utime - s0.ru_stime
                      + c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)
            # The same wall for every side: the span from the start to now (the run itself
            # plus forking the client processes and the tail), so the shares stay comparable.
            span = time.monotonic() - t0
            m1 = machine_ticks()
            total = m1[2] - m0[2]
            return CPU(client / span, {k: (tree_cpu_seconds(p) - srv0[k]) / span for k, p in pids.items()}, wall,
                       (m1[0] - m0[0]) / total if total > 0 else float("nan"),
                       (m1[1] - m0[1]) / total if total > 0 else float("nan"))
        return end


@dataclass
class RunRow:
    figure: str
    label: str
    events: int
    seconds: float
    cpu: CPU
    paced: Optional[float] = None      # offered events/s when the client paces itself

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def others(self) -> float:
        """Cores used by processes this run did not start (another build, say)."""
        servers = sum(self.cpu.servers.values())
        return max(0.0, self.cpu.machine_busy * self.nproc - self.cpu.client - servers)

    nproc = os.cpu_count() or 1

    def limit(self) -> str:
        servers = sum(self.cpu.servers.values())
        busy = self.cpu.machine_busy + (self.cpu.steal if self.cpu.steal == self.cpu.steal else 0)
        if self.paced is not None and self.rate >= 0.97 * self.paced:
            return "the offered rate (paced client)"
        share = self.cpu.client / servers if servers > 0 else float("inf")
        if share >= 0.6:
            return "CLIENT"
        if share >= 0.25:
            return f"client and server share the CPU (client {share:.0%} of the servers')"
        if busy >= 0.85:
            shared = f"; other processes took {self.others:.2f} cores" if self.others >= 0.2 else ""
            return f"server, CPU-bound (client {share:.0%} of the servers'{shared})"
        return f"server, latency-bound: CPU not saturated (client {share:.0%} of the servers')"


# --------------------------------------------------------------------------- acknowledgements


def prioritize() -> None:
    """Runs the calling thread at nice -10 (Linux: nice is per thread). The measuring threads
    (ack hand-over, watchers, samplers) use little CPU, but on a small, busy machine a wait for
    a CPU would be counted as replication lag; the servers and the client processes keep
    their normal priority."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)
    except OSError:
        pass



class Acks:
    """Every acknowledged batch of one run: client processes put (sent, acked, last id, events,
    replicas) on a pipe (created before they fork); a thread here drains it, keeps the records
    and hands each one to `on_ack` (the watchers). time.monotonic() is CLOCK_MONOTONIC, the
    same clock in every process."""

    def __init__(self, on_ack: Optional[Callable[[tuple], None]] = None):
        self.q = mp.get_context("fork").SimpleQueue()
        self.records: list[tuple] = []
        self.on_ack = on_ack
        self.thread = threading.Thread(target=self._drain, name="acks", daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        prioritize()
        while True:
            item = self.q.get()
            if item is None:
                return
            self.records.append(item)
            if self.on_ack is not None:
                self.on_ack(item)

    def close(self) -> None:
        self.q.put(None)
        self.thread.join(timeout=30)


def banyan_send(acks: Acks, replicas: int, pace_dt: Optional[float]) -> Callable:
    """The client's send for Banyan (runs in the forked client processes): the pre-encoded
    request, the answer checked (status, one id per event, durable, the first id on a fresh
    store, "replicas" >= the number asked), the ack recorded. pace_dt: seconds between batch
    slots over all connections (batch b is due at base + b * pace_dt)."""
    state: dict[str, float] = {}

    def send(conn: HTTPConn, job: runner.Job) -> None:
        if pace_dt:
            if "base" not in state:
                state["base"] = time.monotonic() - job.batch * pace_dt
            wait = state["base"] + job.batch * pace_dt - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        t0 = time.monotonic()
        status, body = conn.roundtrip(job.data)
        t1 = time.monotonic()
        banyan.check_answer(job, status, body)
        last = int(ID_AT.match(body, body.rfind(b'{"id":')).group(1))
        got = -1
        if replicas:
            k = body.rfind(b'"replicas":')
            got = int(REPLICAS_AT.match(body, k).group(1)) if k >= 0 else 0
            if got < replicas:
                raise WireError(f"asked for replicas={replicas}, the answer says {got}: {body[-200:]!r}")
        acks.q.put((t0, t1, last, job.events, got))
    return send


def pg_send(acks: Acks, last_ids: list[int]) -> Callable:
    def send(conn: PGConn, job: runner.Job) -> None:
        t0 = time.monotonic()
        postgres.send(conn, job)
        acks.q.put((t0, time.monotonic(), last_ids[job.batch], job.events, -1))
    return send


def replay(jobs: list[runner.Job], n_batches: int) -> list[runner.Job]:
    """`n_batches` jobs cycling through `jobs` (same bytes, no copy), numbered in send order,
    without first-id checks: for a store that already holds every parent they name."""
    return [runner.Job(b, jobs[b % len(jobs)].data, jobs[b % len(jobs)].events, 0) for b in range(n_batches)]


# --------------------------------------------------------------------------- visibility watchers


class Watchers:
    """Threads that time when a replica has an acknowledged batch's last id. `probe_factory()`
    gives each thread its probe: probe(x) -> True once the replica has x (may block)."""

    def __init__(self, probe_factory: Callable[[], Callable[[int], bool]], threads: int, every: int = 1):
        self.q: queue.Queue = queue.Queue()
        self.lags: list[float] = []         # ack -> seen, seconds
        self.delays: list[float] = []       # ack -> watcher started asking
        self.first_try: list[bool] = []
        self.errors: list[str] = []
        self.every, self.n = every, 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(probe_factory,), daemon=True, name=f"watch-{i}")
                        for i in range(threads)]
        for t in self.threads:
            t.start()

    def on_ack(self, item: tuple) -> None:
        self.n += 1
        if self.n % self.every == 0:
            self.q.put((item[2], item[1]))

    def _run(self, probe_factory) -> None:
        prioritize()
        try:
            probe = probe_factory()
        except Exception as e:  # noqa: BLE001
            with self.lock:
                self.errors.append(f"watcher: {type(e).__name__}: {e}")
            return
        while True:
            item = self.q.get()
            if item is None:
                return
            x, t_ack = item
            t_start = time.monotonic()
            tries = 0
            try:
                deadline = t_start + 30
                while True:
                    tries += 1
                    if probe(x):
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"id {x} not on the replica 30 s after its ack")
            except Exception as e:  # noqa: BLE001
                with self.lock:
                    self.errors.append(f"watcher: {type(e).__name__}: {e}")
                continue
            t_seen = time.monotonic()
            with self.lock:
                self.lags.append(t_seen - t_ack)
                self.delays.append(t_start - t_ack)
                self.first_try.append(tries == 1)

    def close(self) -> None:
        for _ in self.threads:
            self.q.put(None)
        for t in self.threads:
            t.join(timeout=60)


def banyan_wait_probe(port: int) -> Callable[[], Callable[[int], bool]]:
    """GET /v1/events/X?min_id=X on the follower: answered once it has applied X (503 after
    --read-wait-ms without it: asked again)."""
    def factory():
        conn = HTTPConn(port, timeout=30)

        def probe(x: int) -> bool:
            status, body = conn.roundtrip(http_request("GET", f"/v1/events/{x}?min_id={x}"))
            if status == 200:
                return True
            if status == 503:
                return False
            raise WireError(f"GET /v1/events/{x}?min_id={x}: HTTP {status} {body[:200]!r}")
        return probe
    return factory


def banyan_poll_probe(port: int) -> Callable[[], Callable[[int], bool]]:
    """GET /v1/events/X on the follower, 404 until it has X: the same as the SELECT on a standby."""
    def factory():
        conn = HTTPConn(port, timeout=30)

        def probe(x: int) -> bool:
            status, body = conn.roundtrip(http_request("GET", f"/v1/events/{x}"))
            if status == 200:
                return True
            if status == 404:
                return False
            raise WireError(f"GET /v1/events/{x}: HTTP {status} {body[:200]!r}")
        return probe
    return factory


def pg_poll_probe(port: int) -> Callable[[], Callable[[int], bool]]:
    def factory():
        conn = PGConn(port, timeout=30)

        def probe(x: int) -> bool:
            return bool(conn.query(f"SELECT 1 FROM events WHERE id = {x}"))
        return probe
    return factory


class IdLagSampler:
    """Every interval: leader last_id (before and after, averaged) minus follower applied_id;
    and the leader's own view (followers[0].lag_ids, from the follower's last report)."""

    def __init__(self, leader_port: int, follower_port: int, interval: float):
        self.samples: list[tuple[float, float, int]] = []   # (time, measured lag, leader's view)
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, args=(leader_port, follower_port, interval),
                                       daemon=True, name="id-lag")
        self.thread.start()

    def _run(self, lp: int, fp: int, interval: float) -> None:
        prioritize()
        try:
            leader, follower = StatusConn(lp), StatusConn(fp)
        except OSError as e:
            self.errors.append(str(e))
            return
        nxt = time.monotonic()
        while not self.stop.is_set():
            try:
                a = leader.get()
                f = follower.get()
                b = leader.get()
                view = max((x.get("lag_ids", 0) for x in b.get("followers", [])), default=-1)
                applied = f.get("applied_id", f["last_id"])
                self.samples.append((time.monotonic(), max(0.0, (a["last_id"] + b["last_id"]) / 2 - applied), view))
            except (OSError, WireError, RuntimeError, ValueError, KeyError) as e:
                self.errors.append(f"{type(e).__name__}: {e}")
            nxt += interval
            self.stop.wait(max(0.0, nxt - time.monotonic()))
        leader.close()
        follower.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


# --------------------------------------------------------------------------- the bench


@dataclass
class Results:
    catchup: list[dict] = field(default_factory=list)
    lag: list[dict] = field(default_factory=list)
    ab: list[dict] = field(default_factory=list)
    pg: list[dict] = field(default_factory=list)
    runs: list[RunRow] = field(default_factory=list)
    checks: list[tuple[bool, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Bench:
    def __init__(self, args: argparse.Namespace, procs: Processes, root: str, events: list[Event]):
        self.args, self.procs, self.root, self.events = args, procs, root, events
        self.res = Results()
        self.nproc = os.cpu_count() or 1
        self.workload = events[:args.workload_events]
        self._enc: dict[str, tuple] = {}
        self.labels = 0

    # ---- plumbing

    def check(self, ok: bool, what: str) -> None:
        self.res.checks.append((ok, what))
        log(("check OK: " if ok else "CHECK FAILED: ") + what)

    def label(self, name: str) -> str:
        self.labels += 1
        return f"{self.labels:02d}-{name}"

    def encoded(self, key: str, replicas: Optional[int]) -> tuple:
        """The workload encoded once per request target (replicas=N or none)."""
        if key not in self._enc:
            path = "/v1/events?durability=sync" + ("" if replicas is None else f"&replicas={replicas}")
            t = time.monotonic()
            self._enc[key] = banyan.encode_jobs(self.workload, self.args.batch, self.args.connections,
                                                keyed=False, exact=False, path=path)
            log(f"encoded {len(self.workload):,} events for {path} in {time.monotonic() - t:.1f} s")
        return self._enc[key]

    def leader(self, name: str) -> banyan.Server:
        return banyan.Server(self.procs, self.args.banyan, self.root, self.label(name))

    def follower(self, leader: banyan.Server, name: str) -> banyan.Server:
        return banyan.Server(self.procs, self.args.banyan, self.root, self.label(name), extra=("--follow", leader.url))

    def drop(self, *servers: banyan.Server) -> None:
        for s in servers:
            s.stop()
            shutil.rmtree(s.dir, ignore_errors=True)

    def ingest(self, figure: str, label: str, per_conn: list[list[runner.Job]], open_conn, send_factory,
               pids: dict[str, int], gate=None, seconds_max: Optional[float] = None, paced: Optional[float] = None,
               on_ack=None) -> tuple[runner.RunResult, RunRow, Acks]:
        acks = Acks(on_ack)
        send = send_factory(acks)
        # No cyclic garbage collection while measuring: a full collection over the dataset's
        # millions of objects holds the GIL for hundreds of ms, which the watchers would count as lag.
        gc.collect()
        gc.freeze()
        gc.disable()
        end = CPU.measure(pids)
        try:
            result = runner.run(label, per_conn, open_conn, send, seconds_max or self.args.seconds_max,
                                next(iter(pids.values())), gate)
        finally:
            acks.close()
            gc.enable()
        row = RunRow(figure, label, result.events, result.seconds, end(result.seconds), paced)
        self.res.runs.append(row)
        log(f"{label}: {result.events:,} events in {result.seconds:.2f} s = {result.rate:,.0f}/s; client "
            f"{row.cpu.client:.2f} cores, " + ", ".join(f"{k} {v:.2f}" for k, v in row.cpu.servers.items()))
        return result, row, acks

    def caught_up(self, leader: banyan.Server, follower: banyan.Server, what: str, timeout: float = 120) -> int:
        """Waits (the leader idle) until the follower's last_id equals the leader's; checks it."""
        ls, fs = StatusConn(leader.port), StatusConn(follower.port)
        try:
            deadline = time.monotonic() + timeout
            while True:
                last = ls.get()["last_id"]
                f = fs.get()
                if f["last_id"] == last or time.monotonic() > deadline:
                    break
                time.sleep(self.args.poll_ms / 1000)
            self.check(f["last_id"] == last and f.get("applied_id", f["last_id"]) == last,
                       f"{what}: follower last_id {f['last_id']:,} (applied_id {f.get('applied_id')}) = leader last_id {last:,}")
            return last
        finally:
            ls.close()
            fs.close()

    def fill(self, leader: banyan.Server, events: list[Event], label: str, figure: str,
             pids: Optional[dict[str, int]] = None) -> RunRow:
        """Fresh-store ingest of `events` (gated, first ids checked), replicas=0; the encoding
        is kept for the next round."""
        key = f"fill-{len(events)}"
        if key not in self._enc:
            t = time.monotonic()
            self._enc[key] = banyan.encode_jobs(events, self.args.batch, self.args.connections, keyed=False, exact=False)
            log(f"encoded {len(events):,} events in {time.monotonic() - t:.1f} s")
        jobs, gate, _ = self._enc[key]
        before = leader.status()["last_id"]
        result, row, _ = self.ingest(figure, label, runner.round_robin(jobs, self.args.connections),
                                     lambda: HTTPConn(leader.port), lambda a: banyan_send(a, 0, None),
                                     pids or {"leader": leader.proc.pid}, gate)
        after = leader.status()["last_id"]
        self.check(result.complete and after - before == result.events == len(events),
                   f"{label}: leader last_id moved by {after - before:,} = {result.events:,} acknowledged of {len(events):,}")
        return row

    # ---- figure 1

    def catchup(self, keep_last: bool) -> Optional[tuple[banyan.Server, banyan.Server]]:
        if not self.args.pin:
            return self._catchup(keep_last)
        # _catchup moves this script between CPU 0 and 1; afterwards it gets every CPU back.
        cpus = os.sched_getaffinity(0)
        try:
            return self._catchup(keep_last)
        finally:
            os.sched_setaffinity(0, cpus)

    def _catchup(self, keep_last: bool) -> Optional[tuple[banyan.Server, banyan.Server]]:
        a = self.args
        kept = None
        for rnd in range(1, a.rounds + 1):
            log(f"catch-up round {rnd}/{a.rounds}: filling a fresh leader with {a.events:,} events")
            # --pin: a process inherits the CPUs of the thread that starts it (sched_setaffinity
            # with pid 0 sets this, the main, thread's; no other thread of this script runs yet).
            # The leader starts on CPU 0, everything after it (the follower, the client's
            # processes) on CPU 1. Each server then also sizes its thread pools for one core.
            if a.pin:
                os.sched_setaffinity(0, {0})
            leader = self.leader(f"catchup-leader-r{rnd}")
            if a.pin:
                os.sched_setaffinity(0, {1})
            fill = self.fill(leader, self.events, f"catch-up r{rnd}: leader ingest (no follower)", "catchup")
            last = leader.status()["last_id"]
            poll = a.poll_ms / 1000
            pids = {"leader": leader.proc.pid}
            end = CPU.measure(pids)
            t0 = time.monotonic()
            follower = self.follower(leader, f"catchup-follower-r{rnd}")  # returns once /healthz answers
            pids_f = follower.proc.pid
            f0 = tree_cpu_seconds(pids_f)
            conn = StatusConn(follower.port)
            first: Optional[tuple[float, int]] = None
            applied = 0
            while True:
                st = conn.get()
                now = time.monotonic()
                applied = st.get("applied_id", st["last_id"])
                if first is None:
                    first = (now, applied)
                if applied >= last or now - t0 > a.catchup_timeout:
                    break
                time.sleep(max(0.0, poll - (time.monotonic() - now)))
            t1 = time.monotonic()
            conn.close()
            cpu = end(t1 - t0)
            cpu.servers["follower"] = (tree_cpu_seconds(pids_f) - f0) / (t1 - t0)
            row = RunRow("catchup", f"catch-up r{rnd}: follower from empty", applied, t1 - t0, cpu)
            self.res.runs.append(row)
            done = applied >= last
            self.check(done, f"catch-up r{rnd}: follower reached the leader's last_id {last:,} "
                             f"within {a.catchup_timeout:.0f} s (applied {applied:,})")
            self.caught_up(leader, follower, f"catch-up r{rnd}")
            after_start = (applied - first[1]) / (t1 - first[0]) if first and t1 > first[0] else float("nan")
            shipped = replication_counters(leader.port)
            rec = {"mb": shipped.get("bytes", float("nan")) / 1e6, "groups": shipped.get("groups", float("nan")),
                   "round": rnd, "events": last, "leader_rate": fill.rate, "seconds": t1 - t0,
                   "startup": first[0] - t0 if first else float("nan"), "rate": applied / (t1 - t0),
                   "rate_after_start": after_start, "ratio": (applied / (t1 - t0)) / fill.rate}
            self.res.catchup.append(rec)
            log(f"catch-up r{rnd}: {applied:,} events in {t1 - t0:.2f} s = {rec['rate']:,.0f}/s applied "
                f"({rec['ratio']:.2f}x the leader's {fill.rate:,.0f}/s)")
            if keep_last and rnd == a.rounds:
                kept = (leader, follower)
            else:
                self.drop(follower, leader)
        self._enc.pop(f"fill-{len(self.events)}", None)  # large; not needed any more
        return kept

    # ---- main pair for figures 2 and 3

    def main_pair(self) -> tuple[banyan.Server, banyan.Server]:
        leader = self.leader("leader")
        follower = self.follower(leader, "follower")
        log(f"pre-filling the leader with the {len(self.workload):,}-event workload (the follower attached)")
        self.fill(leader, self.workload, "pre-fill (replicas=0, follower attached)", "prefill",
                  {"leader": leader.proc.pid, "follower": follower.proc.pid})
        self.caught_up(leader, follower, "pre-fill")
        return leader, follower

    # ---- figure 2

    def lag(self, leader: banyan.Server, follower: banyan.Server) -> None:
        a = self.args
        jobs, _, _ = self.encoded("r0", 0)
        for offered in a.offered_rates:
            self._lag_rate(leader, follower, jobs, offered)

    def _lag_rate(self, leader: banyan.Server, follower: banyan.Server, jobs: list[runner.Job], offered: float) -> None:
        a = self.args
        dt = a.batch / offered
        n_batches = math.ceil(offered * a.lag_seconds / a.batch) + a.connections
        for rnd in range(1, a.rounds + 1):
            label = f"lag r{rnd}: offered {offered:,.0f}/s, replicas=0"
            log(f"{label}, {a.lag_seconds:g} s")
            watchers = Watchers(banyan_wait_probe(follower.port), a.watchers)
            sampler = IdLagSampler(leader.port, follower.port, a.poll_ms / 1000)
            try:
                result, row, acks = self.ingest(
                    "lag", label, runner.round_robin(replay(jobs, n_batches), a.connections),
                    lambda: HTTPConn(leader.port), lambda q: banyan_send(q, 0, dt),
                    {"leader": leader.proc.pid, "follower": follower.proc.pid},
                    seconds_max=a.lag_seconds, paced=offered, on_ack=watchers.on_ack)
            finally:
                sampler.close()
            watchers.close()
            recs = acks.records
            t_first = min(r[0] for r in recs) if recs else 0
            t_last = max(r[1] for r in recs) if recs else 0
            ids = [s[1] for s in sampler.samples if t_first <= s[0] <= t_last]
            view = [s[2] for s in sampler.samples if t_first <= s[0] <= t_last and s[2] >= 0]
            lat = [r[1] - r[0] for r in recs]
            for e in (watchers.errors + sampler.errors)[:5]:
                log(f"lag r{rnd}: {e}")
            self.check(not watchers.errors and len(watchers.lags) == len(recs),
                       f"lag r{rnd}: the follower had every one of {len(recs):,} acknowledged batches "
                       f"({len(watchers.lags):,} timed, {len(watchers.errors)} errors)")
            rec = {"round": rnd, "offered": offered, "achieved": result.rate, "batches": len(recs),
                   "lag_ms": [x * 1e3 for x in watchers.lags], "delay_ms": [x * 1e3 for x in watchers.delays],
                   "lag_ids": ids, "view_ids": view, "batch_ms": [x * 1e3 for x in lat]}
            self.res.lag.append(rec)
            log(f"lag r{rnd}: achieved {result.rate:,.0f}/s; lag p50 {pct(rec['lag_ms'], .5):.2f} ms, "
                f"p99 {pct(rec['lag_ms'], .99):.2f} ms; ids p50 {pct(ids, .5):,.0f}, p99 {pct(ids, .99):,.0f}")
            self.caught_up(leader, follower, f"lag r{rnd}")

    # ---- figure 3

    def replicas_ab(self, leader: banyan.Server, follower: banyan.Server) -> None:
        a = self.args
        n_batches = max(1, a.ab_events // a.batch)
        pids = {"leader": leader.proc.pid, "follower": follower.proc.pid}
        for rnd in range(1, a.rounds + 1):
            rec: dict = {"round": rnd}
            for n in (0, 1):
                jobs, _, _ = self.encoded(f"r{n}", n)
                label = f"replicas r{rnd}: replicas={n}"
                result, row, acks = self.ingest("replicas", label,
                                                runner.round_robin(replay(jobs, n_batches), a.connections),
                                                lambda: HTTPConn(leader.port), lambda q, n=n: banyan_send(q, n, None), pids)
                lat = sorted((r[1] - r[0]) * 1e3 for r in acks.records)
                rec[f"r{n}"] = {"rate": result.rate, "p50": pct(lat, .5), "p99": pct(lat, .99), "row": row,
                                "complete": result.complete}
                if n == 1:
                    reps = [r[4] for r in acks.records]
                    self.check(len(reps) == n_batches and all(x >= 1 for x in reps),
                               f"{label}: all {len(reps):,} answers say replicas >= 1 (min {min(reps, default=0)})")
                self.caught_up(leader, follower, label)
            rec["ratio"] = rec["r1"]["rate"] / rec["r0"]["rate"]
            self.res.ab.append(rec)
            log(f"replicas r{rnd}: replicas=1 {rec['r1']['rate']:,.0f}/s vs replicas=0 {rec['r0']['rate']:,.0f}/s "
                f"= {rec['ratio']:.0%}")

    # ---- figure 4

    def postgres_phase(self, bindir: str) -> None:
        a = self.args
        pg_jobs = {m: postgres.encode_jobs(self.workload, a.batch, m) for m in ("copy", "insert")}
        size = a.batch
        last_ids = [part[-1].id for part in (self.workload[i:i + size] for i in range(0, len(self.workload), size))]
        primary = postgres.Server(self.procs, bindir, self.root, "pg-primary",
                                  settings=("synchronous_commit=remote_apply",))
        primary.start()
        stby = None
        try:
            stby = postgres.standby(primary, "pg-standby", settings=("cluster_name=standby",))
            stby.start()
            primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'standby'")
            primary.sql("SELECT pg_reload_conf()")
            common.wait_until(lambda: primary.sql("SELECT sync_state, state FROM pg_stat_replication "
                                                  "WHERE application_name = 'standby'") == [["sync", "streaming"]],
                              60, "the standby as synchronous")
            (row,) = primary.sql("SELECT current_setting('synchronous_commit'), current_setting('synchronous_standby_names'), "
                                 "current_setting('fsync'), (SELECT sync_state FROM pg_stat_replication LIMIT 1)")
            self.res.notes.append(f"PostgreSQL primary: synchronous_commit={row[0]}, synchronous_standby_names={row[1]}, "
                                  f"fsync={row[2]}; standby sync_state={row[3]} (hot standby from pg_basebackup -R)")
            self.check(row[0] == "remote_apply" and row[3] == "sync",
                       f"PostgreSQL: synchronous_commit={row[0]}, the standby's sync_state={row[3]}")
            for rnd in range(1, a.rounds + 1):
                rec: dict = {"round": rnd}
                # Banyan replicas=1, a fresh pair.
                leader = self.leader(f"pg-cmp-leader-r{rnd}")
                follower = self.follower(leader, f"pg-cmp-follower-r{rnd}")
                try:
                    jobs, gate, _ = self.encoded("r1", 1)
                    watchers = Watchers(banyan_poll_probe(follower.port), max(4, a.watchers // 2))
                    label = f"postgres r{rnd}: Banyan replicas=1"
                    result, row_b, acks = self.ingest("postgres", label, runner.round_robin(jobs, a.connections),
                                                      lambda: HTTPConn(leader.port), lambda q: banyan_send(q, 1, None),
                                                      {"leader": leader.proc.pid, "follower": follower.proc.pid},
                                                      gate, on_ack=watchers.on_ack)
                    watchers.close()
                    reps = [r[4] for r in acks.records]
                    self.check(result.complete and all(x >= 1 for x in reps),
                               f"{label}: all {len(reps):,} answers say replicas >= 1, every batch sent")
                    self.caught_up(leader, follower, label)
                    rec["banyan"] = self._vis(label, result, watchers, acks)
                finally:
                    self.drop(follower, leader)
                for method in ("copy", "insert"):
                    primary.reset()
                    stby.sql("CHECKPOINT")
                    watchers = Watchers(pg_poll_probe(stby.port), max(4, a.watchers // 2))
                    label = f"postgres r{rnd}: PostgreSQL {method.upper()} remote_apply"
                    result, row_p, acks = self.ingest("postgres", label,
                                                      runner.round_robin(pg_jobs[method], a.connections),
                                                      lambda: primary.connect(), lambda q: pg_send(q, last_ids),
                                                      {"primary": primary.proc.pid, "standby": stby.proc.pid},
                                                      on_ack=watchers.on_ack)
                    watchers.close()
                    (p_events, p_edges), (s_events, s_edges) = primary.counts(), stby.counts()
                    self.check(p_events == s_events == result.events and p_edges == s_edges,
                               f"{label}: standby rows {s_events:,} events / {s_edges:,} edges = primary "
                               f"{p_events:,} / {p_edges:,}; acknowledged {result.events:,}")
                    rec[method] = self._vis(label, result, watchers, acks)
                rec["ratio"] = rec["banyan"]["rate"] / rec["copy"]["rate"]
                rec["ratio_insert"] = rec["banyan"]["rate"] / rec["insert"]["rate"]
                self.res.pg.append(rec)
                log(f"postgres r{rnd}: Banyan replicas=1 {rec['banyan']['rate']:,.0f}/s, PostgreSQL COPY "
                    f"{rec['copy']['rate']:,.0f}/s, INSERT {rec['insert']['rate']:,.0f}/s")
        finally:
            if stby is not None:
                stby.stop()
            primary.stop()

    def _vis(self, label: str, result: runner.RunResult, w: Watchers, acks: Acks) -> dict:
        for e in w.errors[:5]:
            log(f"{label}: visibility: {e}")
        self.check(not w.errors and len(w.lags) == len(acks.records),
                   f"{label}: the replica had every one of {len(acks.records):,} acknowledged batches "
                   f"({len(w.lags):,} timed, {len(w.errors)} errors)")
        lat = [(r[1] - r[0]) * 1e3 for r in acks.records]
        return {"rate": result.rate, "complete": result.complete, "vis_ms": [x * 1e3 for x in w.lags],
                "first_try": sum(w.first_try) / len(w.first_try) if w.first_try else float("nan"),
                "delay_ms": [x * 1e3 for x in w.delays], "p50": pct(lat, .5), "p99": pct(lat, .99)}


# --------------------------------------------------------------------------- report


def report(args, bench: Bench, info: dict, versions: dict, elapsed: float, argv: list[str]) -> None:
    r = bench.res
    out: list[str] = []
    p = out.append
    p("## Banyan replication benchmark\n")
    p(f"- command: `{' '.join(shlex.quote(x) for x in argv)}`")
    p(f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}; total time {elapsed:.0f} s")
    p(f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']}, kernel {info['kernel']}; data in {info['fs']}")
    p(f"- load average at start {info['loadavg']}, at end {'%.2f %.2f %.2f' % os.getloadavg()}; CPU pressure "
      f"(avg60) {info['pressure']} at start, {cpu_pressure()} at end")
    p(f"- banyan binary: {versions['banyan']}")
    p(f"- git: tools from {versions['git_tools']}; binary's checkout {versions['git_binary']}")
    if "postgres" in versions:
        p(f"- PostgreSQL: {versions['postgres']}")
    p(f"- workload: tools/gen_dag.py --seed {args.seed}, {len(bench.events):,} events; figures 2-4 use the first "
      f"{len(bench.workload):,}; batches of {args.batch:,}; {args.connections} client connections (one process each), "
      f"requests pre-encoded; Banyan `--fsync group`, `durability=sync`; no idempotency keys")
    p(f"- figures: {', '.join(args.only)}; rounds {args.rounds}")
    for n in r.notes:
        p(f"- {n}")

    p("\n### Summary against the targets\n")
    p("| figure | result (median of rounds) | target | met |")
    p("|---|---|---|---|")
    if r.catchup:
        med = statistics.median(x["ratio"] for x in r.catchup)
        p(f"| 1. follower catch-up from empty, {r.catchup[0]['events']:,} events | "
          f"{rate(statistics.median(x['rate'] for x in r.catchup))} events/s applied = {ratio(med)} the leader's ingest "
          f"({rate(statistics.median(x['leader_rate'] for x in r.catchup))}/s) | >= 2x | {'yes' if med >= 2 else 'NO'} |")
    for k, offered in enumerate(args.offered_rates if r.lag else []):
        recs = [x for x in r.lag if x["offered"] == offered]
        pooled = [x for rec in recs for x in rec["lag_ms"]]
        p99 = pct(pooled, .99)
        ids = [x for rec in recs for x in rec["lag_ids"]]
        p(f"| 2. follower lag at {rate(offered)}/s offered (achieved "
          f"{rate(statistics.median(x['achieved'] for x in recs))}/s){'' if k == 0 else ', informational'} | "
          f"p50 {ms(pct(pooled, .5))} ms, p99 {ms(p99)} ms; ids p50 {rate(pct(ids, .5))}, p99 {rate(pct(ids, .99))} "
          f"(all rounds pooled) | p99 < 50 ms | {'yes' if p99 < 50 else 'NO'}{'' if k == 0 else ' (not the target rate)'} |")
    if r.ab:
        med = statistics.median(x["ratio"] for x in r.ab)
        p(f"| 3. ingest replicas=1 / replicas=0, same leader, 1 follower | {med:.0%} "
          f"({rate(statistics.median(x['r1']['rate'] for x in r.ab))} vs "
          f"{rate(statistics.median(x['r0']['rate'] for x in r.ab))} events/s) | >= 80% | {'yes' if med >= .8 else 'NO'} |")
    if r.pg:
        med = statistics.median(x["ratio"] for x in r.pg)
        p(f"| 4. Banyan replicas=1 / PostgreSQL sync replication (remote_apply, COPY), batch {args.batch:,} | "
          f"{ratio(med)} ({rate(statistics.median(x['banyan']['rate'] for x in r.pg))} vs "
          f"{rate(statistics.median(x['copy']['rate'] for x in r.pg))} events/s; against multi-row INSERT "
          f"{ratio(statistics.median(x['ratio_insert'] for x in r.pg))}) | >= 2x | {'yes' if med >= 2 else 'NO'} |")

    if r.catchup:
        p("\n### 1. Follower catch-up from empty\n")
        p("Leader: a fresh store filled by the client (no follower attached). Follower: spawned on an empty data "
          "directory once the fill is done; the clock runs from its spawn until its applied_id equals the leader's "
          f"last_id (GET /v1/status every {args.poll_ms:g} ms)."
          + (" Pinned (--pin): the leader on CPU 0; the follower, the client and this script on CPU 1." if args.pin
             else " Every process shares every core.") + "\n")
        p("| round | events | leader ingest events/s | catch-up s | applied events/s (from spawn) | after start-up | "
          "start-up s | shipped MB (MB/s) | groups shipped | ratio to leader |")
        p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for x in r.catchup:
            p(f"| {x['round']} | {x['events']:,} | {rate(x['leader_rate'])} | {x['seconds']:.2f} | {rate(x['rate'])} | "
              f"{rate(x['rate_after_start'])} | {x['startup']:.2f} | {x['mb']:,.0f} ({x['mb'] / x['seconds']:,.0f}) | "
              f"{x['groups']:,.0f} | {ratio(x['ratio'])} |")
        p(f"\nMedian ratio {spread([x['ratio'] for x in r.catchup], ratio)}; applied "
          f"{spread([x['rate'] for x in r.catchup], rate)} events/s; leader {spread([x['leader_rate'] for x in r.catchup], rate)}.")

    if r.lag:
        p("\n### 2. Follower lag under steady load\n")
        p(f"The client offers {' and '.join(rate(x) for x in args.offered_rates)} events/s (a batch slot every "
          f"{' and '.join(f'{args.batch / x * 1e3:.2f}' for x in args.offered_rates)} ms over {args.connections} "
          f"connections; replicas=0, durability=sync) for {args.lag_seconds:g} s per round. A rate the leader cannot "
          "sustain (achieved below offered) measures an overloaded leader: batches queue on it and the follower shares "
          "its CPU. Lag ms: "
          "every acknowledged batch's last id, from the ack at the client until GET /v1/events/X?min_id=X on the follower "
          "answered (an upper bound: one loopback round trip included). Hand-over: ack until a watcher asked. Lag ids: "
          f"leader last_id minus follower applied_id every {args.poll_ms:g} ms; 'leader's view': followers[].lag_ids in "
          "the leader's /v1/status (as of the follower's last pull report).\n")
        p("| round | offered events/s | achieved events/s | batches timed | lag ms p50 | p99 | max | hand-over p99 ms | lag ids p50 | p99 | max | "
          "leader's view ids p50 / p99 | batch ack ms p50 / p99 |")
        p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
        for x in r.lag:
            L, I, V = x["lag_ms"], x["lag_ids"], x["view_ids"]
            p(f"| {x['round']} | {rate(x['offered'])} | {rate(x['achieved'])} | {len(L):,} | {ms(pct(L, .5))} | {ms(pct(L, .99))} | "
              f"{ms(max(L, default=float('nan')))} | {ms(pct(x['delay_ms'], .99))} | {rate(pct(I, .5))} | {rate(pct(I, .99))} | "
              f"{rate(max(I, default=float('nan')))} | {rate(pct(V, .5))} / {rate(pct(V, .99))} | "
              f"{ms(pct(x['batch_ms'], .5))} / {ms(pct(x['batch_ms'], .99))} |")
        p("")
        for offered in args.offered_rates:
            recs = [x for x in r.lag if x["offered"] == offered]
            p(f"- offered {rate(offered)}/s: per-round p99 lag {spread([pct(x['lag_ms'], .99) for x in recs], ms)} ms; p50 "
              f"{spread([pct(x['lag_ms'], .5) for x in recs], ms)} ms; achieved {spread([x['achieved'] for x in recs], rate)} events/s.")

    if r.ab:
        p("\n### 3. replicas=1 against replicas=0 (same leader, one follower attached)\n")
        p(f"{args.ab_events:,} events per run, the same pre-encoded bodies except the `replicas` parameter, "
          "alternated replicas=0, replicas=1 in every round.\n")
        p("| round | replicas=0 events/s | batch ms p50 / p99 | replicas=1 events/s | batch ms p50 / p99 | ratio |")
        p("|---:|---:|---|---:|---|---:|")
        for x in r.ab:
            a0, a1 = x["r0"], x["r1"]
            p(f"| {x['round']} | {rate(a0['rate'])} | {ms(a0['p50'])} / {ms(a0['p99'])} | {rate(a1['rate'])} | "
              f"{ms(a1['p50'])} / {ms(a1['p99'])} | {x['ratio']:.0%} |")
        p(f"\nMedian ratio {spread([x['ratio'] for x in r.ab], lambda v: f'{v:.0%}')}.")

    if r.pg:
        p("\n### 4. Banyan replicas=1 against PostgreSQL 15 synchronous streaming replication\n")
        p(f"Each run starts empty: a fresh Banyan leader + follower; PostgreSQL tables dropped and re-created (with their "
          f"indexes) on the primary. {len(bench.workload):,} events, batches/transactions of {args.batch:,}, "
          f"{args.connections} connections. Visibility: for every acknowledged batch, a watcher asks the replica for "
          "its last id (Banyan: GET /v1/events/X on the follower; PostgreSQL: SELECT ... WHERE id = X on the standby) "
          "until it is there; ack to first answer that has it (hand-over: ack until the watcher asked; when the first "
          "probe finds the row, the figure is the hand-over plus one query).\n")
        p("| round | system | events/s | batch ms p50 / p99 | visibility ms p50 / p99 / max | hand-over p99 ms | seen at first probe | ratio Banyan / this |")
        p("|---:|---|---:|---|---|---:|---:|---:|")
        for x in r.pg:
            for key, name in (("banyan", "Banyan replicas=1"), ("copy", "PostgreSQL COPY, remote_apply"),
                              ("insert", "PostgreSQL multi-row INSERT, remote_apply")):
                v = x[key]
                rr = "" if key == "banyan" else ratio(x["banyan"]["rate"] / v["rate"])
                p(f"| {x['round']} | {name} | {rate(v['rate'])} | {ms(v['p50'])} / {ms(v['p99'])} | "
                  f"{ms(pct(v['vis_ms'], .5))} / {ms(pct(v['vis_ms'], .99))} / {ms(max(v['vis_ms'], default=float('nan')))} | "
                  f"{ms(pct(v['delay_ms'], .99))} | {v['first_try']:.0%} | {rr} |")
        p(f"\nBanyan / PostgreSQL COPY: {spread([x['ratio'] for x in r.pg], ratio)}; / INSERT: "
          f"{spread([x['ratio_insert'] for x in r.pg], ratio)}.")

    if r.runs:
        p(f"\n### CPU per run (cores busy on average; the machine has {bench.nproc})\n")
        p("Client: the client processes and this script's threads (getrusage). Servers: utime+stime of each server's "
          "process tree (/proc/<pid>/stat). Other processes: cores busy on the machine (/proc/stat) beyond the client's "
          "and the servers' (work this run did not start). Machine busy and steal: all CPUs, any process. 'limit': the "
          "server when the client used under a quarter of the servers' CPU; CPU-bound when the machine (busy + steal) "
          "was at least 85% busy, else latency-bound (fsyncs and round trips per batch in flight); a paced run that "
          "reached its offered rate is limited by the offer.\n")
        p("| run | events | seconds | events/s | client | servers | other processes | machine busy (all) | steal | limit |")
        p("|---|---:|---:|---:|---:|---|---:|---:|---:|---|")
        for row in r.runs:
            srv = ", ".join(f"{k} {v:.2f}" for k, v in row.cpu.servers.items())
            p(f"| {row.label} | {row.events:,} | {row.seconds:.2f} | {rate(row.rate)} | {row.cpu.client:.2f} | {srv} | "
              f"{row.others:.2f} | {row.cpu.machine_busy:.0%} | {row.cpu.steal:.0%} | {row.limit()} |")

    p("\n### Correctness checks\n")
    failed = [c for c in r.checks if not c[0]]
    p(f"{len(r.checks) - len(failed)} of {len(r.checks)} passed.\n")
    for ok, what in r.checks:
        if not ok:
            p(f"- FAILED: {what}")
    for ok, what in r.checks:
        if ok:
            p(f"- ok: {what}")
    print("\n".join(out), flush=True)


# --------------------------------------------------------------------------- main


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if not (os.path.isfile(args.banyan) and os.access(args.banyan, os.X_OK)):
        print(f"replication_bench: no banyan binary at {args.banyan}; build it first:\n"
              f"    swift build -c release --product banyan", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print("replication_bench: run as root (it installs packages and runs PostgreSQL as the postgres user)",
              file=sys.stderr)
        return 1
    started = time.monotonic()
    main_pid = os.getpid()

    def on_sigterm(signum, frame):
        if os.getpid() != main_pid:  # a forked client process
            os._exit(143)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    procs = Processes()
    root = tempfile.mkdtemp(prefix="replication-bench-")
    os.chmod(root, 0o755)  # the postgres user must reach its directories inside
    failed = False
    try:
        info = run_info(root)
        versions = {"git_tools": git_commit(REPO), "git_binary": git_commit(args.banyan)}
        bindir = None
        if "postgres" in args.only:
            ensure_installed(need_redis=False)
            bindir = postgres.bin_dir()
            if not bindir:
                raise RuntimeError("PostgreSQL is still missing after apt-get")
            versions["postgres"] = postgres.version(bindir)
        binary = os.path.join(root, "banyan")
        shutil.copy2(args.banyan, binary)  # a private copy: a rebuild during the run cannot mix builds
        versions["banyan"] = f"{args.banyan}, {file_identity(binary)}"
        args.banyan = binary
        probe = banyan.Server(procs, binary, root, "version")
        versions["banyan"] = f"{probe.version()} ({versions['banyan']})"
        probe.stop()
        shutil.rmtree(probe.dir, ignore_errors=True)
        log(f"machine {info}; versions {versions}; temp dir {root}")
        n = args.events if "catchup" in args.only else args.workload_events
        ds = generate(REPO, root, n, args.seed)
        os.remove(ds.path)
        bench = Bench(args, procs, root, ds.events)
        pair = None
        need_pair = "lag" in args.only or "replicas" in args.only
        if "catchup" in args.only:
            pair = bench.catchup(keep_last=need_pair)
        if need_pair:
            if pair is None:
                pair = bench.main_pair()
            leader, follower = pair
            if "lag" in args.only:
                bench.lag(leader, follower)
            if "replicas" in args.only:
                bench.replicas_ab(leader, follower)
            bench.drop(follower, leader)
        if "postgres" in args.only:
            bench.postgres_phase(bindir)
        report(args, bench, info, versions, time.monotonic() - started, [sys.argv[0], *(argv or sys.argv[1:])])
        failed = any(not ok for ok, _ in bench.res.checks)
    except KeyboardInterrupt:
        log("interrupted; stopping the servers this run started")
        return 130
    finally:
        # Cleanup runs to the end: a second Ctrl-C (or SIGTERM) must not leave servers or files.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop_all()
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
