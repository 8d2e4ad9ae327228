#!/usr/bin/env python3
"""Side-by-side peer comparison: Banyan next to Redis Streams, PostgreSQL and SQLite, on the same
machine and the same workload, each figure with its ratio to Banyan's.

    python3 tools/peer_compare.py                       # ingest and queries, 200,000 events
    python3 tools/peer_compare.py --only query --events 1000000
    python3 tools/peer_compare.py --only ingest --connections 8 --seconds-max 30 --keep

Workload: tools/gen_dag.py generates the dataset once (--events, --seed; the seed is printed),
with a picks file of ids worth querying and their reference answers. Event ids are the file's
line number + 1 in every system (Banyan's genesis is id 1), parents by id, so every system
stores the same graph and every answer is checked against the picks.

Ingest (each run starts empty; events/s, the median of --repeat rounds; no idempotency keys
unless the row says so):
  Banyan          banyan serve --fsync group, POST /v1/events?durability=sync, JSON arrays of
                  1, 100 and 1,000 events; last_id and edges must move by exactly what was sent.
                  Banyan assigns ids in commit order and checks that parents exist, so with
                  batches in flight on several connections a parent younger than the in-flight
                  window (2 x --connections batches) is sent as the id one window earlier (same
                  parent count, same edge count; see peer/banyan.py safe_parents). The query-phase load goes
                  over one connection in order and keeps the file's graph exactly.
  Redis Streams   redis-server 7, appendonly yes, appendfsync everysec: pipelined XADDs.
  PostgreSQL      default settings (fsync, synchronous_commit on): COPY (1,000 per transaction)
                  and multi-row INSERT (100 and 1,000 per transaction), indexes built first.
  SQLite          WAL, synchronous=FULL (and NORMAL), batched INSERTs per transaction.
  The server systems get pre-encoded wire bytes (HTTP, RESP, PostgreSQL v3 protocol) over
  --connections raw sockets, one client process each; SQLite runs in this process.
  Client checks: redis-benchmark (C, ships with redis-server) and, when installed, wrk (C)
  send one repeated representative event over the same connections; a second table gives
  the CPU each side used per run (client processes, server process tree). Both tell whether
  a figure is the server's or the Python client's.
CelestialTree's own API (with --celestialtree-bin PATH, a binary of the real CelestialTree server
built elsewhere from its public source; skipped without one): the CelestialTree server (in memory)
and `banyan serve --fsync group` on fresh stores, alternated, --repeat rounds:
  /emit under wrk -t2 -c64 (tools/wrk/emit_parents.lua), no parents and one random existing
  parent (after 1,000 events); /emit pipelined on one connection, 64 requests unanswered, the
  whole dataset with its real parents, every answered id checked; then on those loaded servers
  the medians of GET /provenance/{id} and /descendants/{id} in both views over 20 picks each
  (deep events with 2,000-10,000 ancestors and recent ones with 10-1,000 for provenance; events
  with 10-1,000 descendants, looked for over the whole log in steps, for descendants; counted
  with Banyan's query API, trees of at most 100,000 nodes), every tree checked equal between the
  two servers.
Queries (after loading the whole dataset; p50 and min of several runs after a warm-up):
  count of ancestors of the deep pick (~10k), of descendants of the early pick, hops of a
  shortest path early -> tip, count of ancestors of the tip. Banyan: POST /v1/query;
  PostgreSQL: recursive CTEs and a plpgsql BFS; SQLite: recursive CTEs and the same BFS.

The script installs what is missing (apt-get: redis-server, postgresql, sqlite3), starts every
server itself on 127.0.0.1 on free ports in a temporary directory, and stops exactly the
processes it started when it ends (also on Ctrl-C or an error). The Banyan binary is not built
here: `swift build -c release --product banyan` first. Every phase is bounded by --seconds-max
and by its event count. Markdown goes to stdout, progress to stderr. Exit status 1 when an
answer differs from the reference (or on a setup error).

Only the Python 3.11 standard library.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peer import banyan, celestialtree, postgres, redis_streams, sqlite  # noqa: E402
from peer.common import Processes, cpu_pressure, file_identity, fmt_ms, fmt_rate, log, percentile, run_info  # noqa: E402
from peer.dataset import Dataset, generate  # noqa: E402
from peer.runner import RunResult  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Row:
    workload: str
    system: str
    value: Optional[float]          # None: no figure (timeout)
    unit: str
    higher_is_better: bool          # events/s: yes; latency: no
    is_reference: bool = False      # the Banyan row the workload's ratios divide by
    cpu: Optional[RunResult] = None


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--banyan", default=os.path.join(REPO, ".build", "release", "banyan"),
                    help="the banyan binary (default: .build/release/banyan in the repository)")
    ap.add_argument("--only", choices=("ingest", "query", "celestialtree"), help="run one phase only")
    ap.add_argument("--celestialtree-bin", help="a CelestialTree server binary (built elsewhere from its public source): "
                                                "adds the CelestialTree API phase")
    ap.add_argument("--events", type=int, default=200_000, help="events in the dataset (default 200,000)")
    ap.add_argument("--seed", type=int, default=7, help="gen_dag seed (default 7)")
    ap.add_argument("--connections", type=int, default=4, help="client connections/processes per server (default 4)")
    ap.add_argument("--seconds-max", type=float, default=60.0,
                    help="time bound of each ingest run and of each query's runs (default 60)")
    ap.add_argument("--load-seconds-max", type=float, default=600.0,
                    help="time bound of loading the whole dataset for the queries (default 600)")
    ap.add_argument("--single-events", type=int, default=20_000,
                    help="events sent in the one-event-per-request runs, which are bound by round trips "
                         "and fsyncs (default 20,000; the figure is a rate)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds of the ingest runs; each figure is the median round (default 3)")
    ap.add_argument("--runs", type=int, default=7, help="timed runs per query after one warm-up (default 7)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directory (dataset, server logs, the query-phase stores; "
                         "each ingest run's data is deleted after its checks)")
    args = ap.parse_args()
    if not 1_000 <= args.events <= 10_000_000:
        ap.error("--events must be 1000...10000000")
    if not 1 <= args.connections <= 64:
        ap.error("--connections must be 1...64")
    if not 1 <= args.seconds_max <= 3600 or not 1 <= args.load_seconds_max <= 7200:
        ap.error("--seconds-max must be 1...3600 and --load-seconds-max 1...7200")
    if not 1 <= args.runs <= 1000 or not 1 <= args.repeat <= 100:
        ap.error("--runs must be 1...1000 and --repeat 1...100")
    args.single_events = max(1, min(args.single_events, args.events))
    if args.only == "celestialtree" and not args.celestialtree_bin:
        ap.error("--only celestialtree needs --celestialtree-bin")
    if args.celestialtree_bin and not os.access(args.celestialtree_bin, os.X_OK):
        ap.error(f"not an executable: {args.celestialtree_bin}")
    return args


# --------------------------------------------------------------------------- setup


def ensure_installed(need_redis: bool) -> None:
    """apt-get installs only what is missing. A service the package may start is never used:
    this script starts its own servers, on free ports, in its own directories."""
    missing = []
    if need_redis and not shutil.which("redis-server"):
        missing.append("redis-server")
    if not postgres.bin_dir():
        missing.append("postgresql")
    if not shutil.which("sqlite3"):
        missing.append("sqlite3")
    if not missing:
        return
    log(f"installing {' '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", *missing]
    if subprocess.run(cmd, env=env, stdout=sys.stderr).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, stdout=sys.stderr, check=True)
        subprocess.run(cmd, env=env, stdout=sys.stderr, check=True)


def redis_binary() -> str:
    path = shutil.which("redis-server")
    if not path:
        raise RuntimeError("redis-server is still missing after apt-get")
    return path


# --------------------------------------------------------------------------- ingest


@dataclass
class Case:
    """One ingest configuration: encoded once (lazily, outside the clock), run once per round."""
    workload: str
    system: str
    reference: bool
    group: str                                  # "banyan", "redis", "postgres", "sqlite"
    prepare: Callable[[], object]
    run: Callable[[object, str], RunResult]     # (prepared, run label) -> result
    prepared: object = None


def ingest_cases(args, ds: Dataset, procs: Processes, root: str, pg: postgres.Server) -> list[Case]:
    c, smax, events = args.connections, args.seconds_max, ds.events
    single = events[:args.single_events]
    w1 = f"ingest, 1 event/request (first {len(single):,} events)"
    w100 = "ingest, 100 events/request or transaction"
    w1000 = "ingest, 1,000 events/request or transaction"
    cases: list[Case] = []
    for workload, part, size in ((w1, single, 1), (w100, events, 100), (w1000, events, 1000)):
        cases.append(Case(workload, f"Banyan (HTTP, durability=sync, {c} conns)", True, "banyan",
                          lambda part=part, size=size: banyan.encode_jobs(part, size, c, keyed=False, exact=False),
                          lambda prep, label: banyan.ingest(procs, args.banyan, root, label, prep, c, smax)[0]))
    cases.append(Case(w1000, "Banyan with idempotency keys (informational)", False, "banyan",
                      lambda: banyan.encode_jobs(events, 1000, c, keyed=True, exact=False),
                      lambda prep, label: banyan.ingest(procs, args.banyan, root, label, prep, c, smax)[0]))
    rbin = redis_binary()
    for workload, part, size in ((w1, single, 1), (w100, events, 100), (w1000, events, 1000)):
        cases.append(Case(workload, f"Redis Streams (XADD pipeline, AOF everysec, {c} conns)", False, "redis",
                          lambda part=part, size=size: redis_streams.encode_jobs(part, size),
                          lambda prep, label: redis_streams.ingest(procs, rbin, root, label, prep, c, smax)))
    # Client checks: C load generators against the same servers, one repeated representative
    # event. Far above the Python client's figure would mean that figure is the client's.
    sample = events[len(events) // 2]
    cases.append(Case(w1, f"Redis Streams via redis-benchmark (C client, {c} conns; client check)", False, "redis",
                      lambda: None, lambda prep, label: redis_streams.benchmark_c(procs, rbin, root, label, sample,
                                                                                  len(single), 1, c, smax)))
    cases.append(Case(w100, f"Redis Streams via redis-benchmark -P 100 (C client, {c} conns; client check)", False, "redis",
                      lambda: None, lambda prep, label: redis_streams.benchmark_c(procs, rbin, root, label, sample,
                                                                                  len(events), 100, c, smax)))
    if shutil.which("wrk"):
        cases.append(Case(w1, f"Banyan via wrk (C client, {c} conns, parents [1]; client check)", False, "banyan",
                          lambda: None, lambda prep, label: banyan.wrk_check(procs, args.banyan, root, label, sample,
                                                                             c, min(10.0, smax))))
    for workload, size, method, name in ((w100, 100, "insert", "multi-row INSERT"), (w1000, 1000, "insert", "multi-row INSERT"),
                                         (w1000, 1000, "copy", "COPY")):
        cases.append(Case(workload, f"PostgreSQL {name} ({c} conns)", False, "postgres",
                          lambda size=size, method=method: postgres.encode_jobs(events, size, method),
                          lambda prep, label: postgres.ingest(pg, label, prep, c, smax)))
    for workload, size, sync in ((w100, 100, "FULL"), (w1000, 1000, "FULL"), (w1000, 1000, "NORMAL")):
        cases.append(Case(workload, f"SQLite (WAL, synchronous={sync}, 1 writer)", False, "sqlite",
                          lambda size=size: sqlite.encode(events, size),
                          lambda prep, label, sync=sync: sqlite.ingest(root, label, prep, sync, smax)))
    return cases


def ingest_phase(args, ds: Dataset, procs: Processes, root: str, pg: postgres.Server) -> list[Row]:
    """--repeat rounds; each round runs every case once, system after system, so a change in
    the machine's background load lands on every system rather than on one. Each figure is
    the median round."""
    cases = ingest_cases(args, ds, procs, root, pg)
    results: list[list[RunResult]] = [[] for _ in cases]
    for rnd in range(args.repeat):
        log(f"ingest round {rnd + 1}/{args.repeat}")
        for i, case in enumerate(cases):
            if case.group == "postgres" and pg.proc is None:
                pg.start()  # up only while PostgreSQL is measured
            if case.prepared is None:
                case.prepared = case.prepare()
            label = f"r{rnd + 1}-{i}"
            result = case.run(case.prepared, label)
            results[i].append(result)
            log(f"{case.system} [{case.workload}]: {result.rate:,.0f} events/s"
                + ("" if result.complete else f" (stopped by --seconds-max after {result.events:,} events)"))
            if case.group == "postgres" and (i + 1 == len(cases) or cases[i + 1].group != "postgres"):
                pg.stop()
    for case in cases:
        case.prepared = None  # the encoded requests are large; free them before the queries
    rows = []
    for case, runs in zip(cases, results, strict=True):
        ordered = sorted(runs, key=lambda r: r.rate)
        median = ordered[len(ordered) // 2]
        unit = "events/s" if len(runs) == 1 else \
            f"events/s (median of {len(runs)}: {ordered[0].rate:,.0f} to {ordered[-1].rate:,.0f})"
        system = case.system if all(r.complete for r in runs) else \
            f"{case.system} (time-bound: {min(r.events for r in runs):,} events)"
        rows.append(Row(case.workload, system, median.rate, unit, True, case.reference, median))
    return rows


# --------------------------------------------------------------------------- queries


class Mismatch(Exception):
    pass


def measure(label: str, fn: Callable[[], Optional[int]], expected: int, runs: int,
            seconds_max: float) -> Optional[tuple[float, float, int]]:
    """One warm-up, then up to `runs` timed runs while the time bound lasts (at least one).
    Every answer must equal the reference. (p50 ms, min ms, runs), or None on a timeout."""
    started = time.monotonic()
    try:
        t = time.perf_counter()
        got = fn()
        warm = time.perf_counter() - t
        if got != expected:
            raise Mismatch(f"{label}: answered {got}, the reference is {expected}")
        times = []
        while len(times) < runs and (not times or time.monotonic() - started < seconds_max):
            t = time.perf_counter()
            got = fn()
            times.append(time.perf_counter() - t)
            if got != expected:
                raise Mismatch(f"{label}: answered {got}, the reference is {expected}")
    except TimeoutError as e:
        log(f"{label}: past the time bound ({e})")
        return None
    p50, mn = percentile(times, 0.5) * 1e3, min(times) * 1e3
    log(f"{label}: {got} (= reference), warm-up {warm * 1e3:.1f} ms, p50 {p50:.2f} ms, min {mn:.2f} ms, {len(times)} runs")
    return p50, mn, len(times)


def query_forms(p: dict) -> list[tuple[str, str, tuple, int]]:
    deep, tip, early = p["deep"]["id"], p["tip"]["id"], p["early"]["id"]
    return [
        (f"count(ancestors({deep})) = {p['deep']['ancestors']:,}", "ancestors", (deep,), p["deep"]["ancestors"]),
        (f"count(descendants({early})) = {p['early']['descendants']:,}", "descendants", (early,), p["early"]["descendants"]),
        (f"shortest path({early}, {tip}) = {p['path_early_tip_hops']} hops", "path_hops", (early, tip), p["path_early_tip_hops"]),
        (f"count(ancestors({tip})) = {p['tip']['ancestors']:,}", "ancestors", (tip,), p["tip"]["ancestors"]),
    ]


def run_queries(system: str, client, forms, args, rows: list[Row], ref: bool, mismatches: list[str]) -> None:
    for workload, method, qargs, expected in forms:
        label = f"{system} {workload}"
        try:
            res = measure(label, lambda m=method, a=qargs: getattr(client, m)(*a), expected, args.runs, args.seconds_max)
        except Mismatch as e:
            log(f"MISMATCH: {e}")
            mismatches.append(str(e))
            rows.append(Row("query " + workload, system, None, "MISMATCH", False, ref))
            continue
        if res is None:
            rows.append(Row("query " + workload, system, None, f"timeout (> {args.seconds_max:g} s)", False, ref))
        else:
            p50, mn, n = res
            rows.append(Row("query " + workload, system, p50, f"ms p50 (min {fmt_ms(mn)}, {n} runs)", False, ref))


def query_phase(args, ds: Dataset, procs: Processes, root: str, pg: postgres.Server, mismatches: list[str]) -> list[Row]:
    forms = query_forms(ds.picks)
    rows: list[Row] = []
    load_w = f"load for the queries ({len(ds.events):,} events)"
    lmax = args.load_seconds_max

    log("queries: Banyan (loading in order over one connection, so ids are the file's)")
    prepared = banyan.encode_jobs(ds.events, 1000, 1, keyed=False, exact=True)
    result, server = banyan.ingest(procs, args.banyan, root, "query", prepared, 1, lmax, exact=True, keep_server=True)
    del prepared
    rows.append(Row(load_w, "Banyan (1 conn, batches of 1,000 in order, ids checked)", result.rate, "events/s",
                    True, True, result))
    try:
        if result.complete:
            client = banyan.QueryClient(server.port, args.seconds_max)
            run_queries("Banyan (POST /v1/query)", client, forms, args, rows, True, mismatches)
            client.close()
    finally:
        server.stop()

    log("queries: PostgreSQL")
    pg.start()
    try:
        result = postgres.load(pg, ds.events, args.connections, lmax)
        rows.append(Row(load_w, f"PostgreSQL COPY ({args.connections} conns, then ANALYZE)", result.rate, "events/s",
                        True, False, result))
        if result.complete:
            client = postgres.QueryClient(pg, args.seconds_max)
            run_queries("PostgreSQL (recursive CTE; BFS in plpgsql)", client, forms, args, rows, False, mismatches)
            client.close()
    finally:
        pg.stop()

    log("queries: SQLite")
    path = os.path.join(root, "sqlite-query.db")
    result = sqlite.ingest(root, "load for queries", sqlite.encode(ds.events, 1000), "FULL", lmax, path=path)
    rows.append(Row(load_w, "SQLite (WAL, synchronous=FULL, batches of 1,000)", result.rate, "events/s", True, False, result))
    if result.complete:
        con = sqlite.open_db(path, "FULL")
        con.execute("ANALYZE")
        con.close()
        client = sqlite.QueryClient(path, args.seconds_max)
        run_queries("SQLite (recursive CTE; BFS per level)", client, forms, args, rows, False, mismatches)
        client.close()
    return rows


def celestialtree_phase(args, ds: Dataset, procs: Processes, root: str, mismatches: list[str]) -> list[Row]:
    """CelestialTree's routes on the real CelestialTree server and on Banyan (see the docstring)."""
    systems = {
        "CelestialTree": lambda label: celestialtree.celestialtree(procs, args.celestialtree_bin, root, label),
        "Banyan": lambda label: celestialtree.banyan(procs, args.banyan, root, label),
    }
    names = {"CelestialTree": "CelestialTree (in memory)", "Banyan": "Banyan (--fsync group)"}
    rows: list[Row] = []

    def rounds(workload: str, unit: str, higher: bool, run) -> dict:
        """Each system once per round, the order alternating; the median round per system."""
        figures: dict[str, list] = {name: [] for name in systems}
        for r in range(args.repeat):
            for name in (list(systems) if r % 2 == 0 else list(reversed(systems))):
                figures[name].append(run(name, f"ct-{len(rows)}-{r}-{name}"))
                log(f"{workload}, round {r + 1}: {name} {figures[name][-1]}")
        for name, values in figures.items():
            values.sort(key=lambda v: v[0])
            value, cores = values[len(values) // 2]
            rows.append(Row(workload, f"{names[name]}, server {cores:.2f} cores", value, unit, higher, name == "Banyan"))
        return figures

    preload = [e for e in ds.events if e.id <= 1000]
    for parent_max, what in ((0, "no parents"), (1000, "1 random existing parent")):
        def wrk_run(name: str, label: str) -> tuple[float, float]:
            server = systems[name](label)
            try:
                if parent_max:
                    celestialtree.pipelined_emit(server, preload, 64, args.seconds_max)
                return celestialtree.wrk_emit(server, 10, parent_max)
            finally:
                server.stop()
        rounds(f"POST /emit, wrk -t2 -c64, {what}", "requests/s", True, wrk_run)

    loaded: dict[str, celestialtree.Server] = {}

    def pipelined_run(name: str, label: str) -> tuple[float, float]:
        if name in loaded:
            loaded.pop(name).stop()
        server = systems[name](label)
        rate, client_cpu, cores = celestialtree.pipelined_emit(server, ds.events, 64, args.load_seconds_max)
        log(f"pipelined {name}: client CPU {client_cpu:.1f} s for {len(ds.events):,} requests")
        loaded[name] = server
        return rate, cores
    rounds(f"POST /emit pipelined on 1 connection (64 unanswered), all {len(ds.events):,} events, real parents",
           "requests/s", True, pipelined_run)

    try:
        ct, by = loaded["CelestialTree"], loaded["Banyan"]
        n = len(ds.events) + 1
        deep = ds.picks["deep"]["id"]
        kinds = [
            ("provenance", "deep", celestialtree.picks(ct, by, "provenance", range(deep, 1, -7), 20, 2_000, 10_000)),
            ("provenance", "recent", celestialtree.picks(ct, by, "provenance", range(n, 1, -1), 20, 10, 1_000)),
            ("descendants", "spread", celestialtree.picks(ct, by, "descendants", range(2, n, max(1, n // 2_000)), 20, 10, 1_000)),
        ]
        for probe, which, ids in kinds:
            for view in ("", "?view=meta"):
                paths = [f"/{probe}/{x}{view}" for x in ids]
                answers = {}
                for name in (["CelestialTree", "Banyan"] if len(rows) % 2 == 0 else ["Banyan", "CelestialTree"]):
                    ms, answers[name] = celestialtree.latency_ms(loaded[name], paths, 5)
                    rows.append(Row(f"GET /{probe}/{{id}}{view or ' (struct)'}, {len(ids)} {which} events",
                                    names[name], ms, "ms", False, name == "Banyan"))
                for path, a, b in zip(paths, answers["CelestialTree"], answers["Banyan"]):
                    if not celestialtree.same_trees(a, b):
                        mismatches.append(f"{path}: the trees differ between CelestialTree and Banyan")
    finally:
        for server in loaded.values():
            server.stop()
    return rows


# --------------------------------------------------------------------------- output


def ratio(row: Row, ref: Optional[Row]) -> str:
    if row.value is None or ref is None or ref.value in (None, 0):
        return "n/a"
    if row is ref:
        return "1.00 (reference)"
    return f"{row.value / ref.value:.2f}"


def print_report(args, ds: Dataset, info: dict, versions: dict, rows: list[Row], elapsed: float) -> None:
    n_edges = sum(len(e.parents) for e in ds.events)
    print("## Banyan peer comparison\n")
    print(f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']}, kernel {info['kernel']}; "
          f"data in {info['fs']}")
    print(f"- background load: load average {info['loadavg']} at start, {'%.2f %.2f %.2f' % os.getloadavg()} at the end; "
          f"CPU pressure (tasks waiting for a CPU, avg60) {info['pressure']} at start, {cpu_pressure()} at the end")
    print("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"- workload: `tools/gen_dag.py --events {len(ds.events)} --seed {ds.seed}`: {len(ds.events):,} events, "
          f"{n_edges:,} edges; picks {ds.picks['deep']['id']} (deep), {ds.picks['early']['id']} (early), "
          f"{ds.picks['tip']['id']} (tip)")
    print(f"- client: this script over loopback, {args.connections} connections (one process each) per server, "
          f"requests encoded before the clock starts; SQLite in process")
    print("- ratio to Banyan: ingest = system events/s / Banyan events/s in the same workload (>1: the peer is faster); "
          "latency = system latency / Banyan latency (>1: Banyan is faster)\n")
    print("| workload | system | figure | unit | ratio to Banyan |")
    print("|---|---|---:|---|---:|")
    refs = {r.workload: r for r in rows if r.is_reference}
    order = list(dict.fromkeys(r.workload for r in rows))  # workloads in order of appearance
    rows = sorted(rows, key=lambda r: (order.index(r.workload), not r.is_reference))
    for r in rows:
        fig = "-" if r.value is None else (fmt_rate(r.value) if r.higher_is_better else fmt_ms(r.value))
        print(f"| {r.workload} | {r.system} | {fig} | {r.unit} | {ratio(r, refs.get(r.workload))} |")
    cpu_rows = [r for r in rows if r.cpu is not None]
    if cpu_rows:
        print("\nCPU used during each ingest or load run (cores busy on average over the run; the machine has "
              f"{info['nproc']}): a client far from saturation with a busy server means the figure is the server's.\n")
        print("| workload | system | client cores | server cores | events | seconds |")
        print("|---|---|---:|---:|---:|---:|")
        for r in cpu_rows:
            cl = "in process" if r.cpu.client_cores == 0 and "SQLite" in r.system else f"{r.cpu.client_cores:.2f}"
            print(f"| {r.workload} | {r.system} | {cl} | {r.cpu.server_cores:.2f} | {r.cpu.events:,} | {r.cpu.seconds:.2f} |")
    print(f"\nTotal time {elapsed:.0f} s.")


# --------------------------------------------------------------------------- main


def main() -> int:
    args = parse_args()
    if not (os.path.isfile(args.banyan) and os.access(args.banyan, os.X_OK)):
        print(f"peer_compare: no banyan binary at {args.banyan}; build it first:\n"
              f"    swift build -c release --product banyan", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print("peer_compare: run as root (it installs packages and runs PostgreSQL as the postgres user)", file=sys.stderr)
        return 1
    started = time.monotonic()
    main_pid = os.getpid()

    def on_sigterm(signum, frame):
        # In this process SIGTERM ends the run like Ctrl-C, through the finally below that stops
        # the servers; a forked client process (which inherits the handler) just exits.
        if os.getpid() != main_pid:
            os._exit(143)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    procs = Processes()
    root = tempfile.mkdtemp(prefix="peer-compare-")
    os.chmod(root, 0o755)  # the postgres user must reach its data directory inside
    mismatches: list[str] = []
    try:
        info = run_info(root)
        ensure_installed(need_redis=args.only in (None, "ingest"))
        bindir = postgres.bin_dir()
        if not bindir:
            raise RuntimeError("PostgreSQL is still missing after apt-get")
        versions = {"Banyan": "?", "PostgreSQL": postgres.version(bindir), "SQLite": sqlite.version()}
        if args.only in (None, "ingest"):
            versions["Redis"] = redis_streams.version(redis_binary())
        if args.celestialtree_bin:
            versions["CelestialTree"] = f"{args.celestialtree_bin}, {file_identity(args.celestialtree_bin)}"
        # Run a private copy: a rebuild of .build/release/banyan during the run (another
        # shell's swift build) must not mix two builds in one comparison.
        binary = os.path.join(root, "banyan")
        shutil.copy2(args.banyan, binary)
        versions_note = f"{args.banyan}, {file_identity(binary)}"
        args.banyan = binary
        probe = banyan.Server(procs, args.banyan, root, "version")
        versions["Banyan"] = f"{probe.version()} ({versions_note})"
        probe.stop()
        log(f"machine {info}; versions {versions}; temp dir {root}")
        ds = generate(REPO, root, args.events, args.seed)
        pg = postgres.Server(procs, bindir, root)
        rows: list[Row] = []
        if args.only in (None, "ingest"):
            rows += ingest_phase(args, ds, procs, root, pg)
        if args.only not in ("ingest", "celestialtree"):
            rows += query_phase(args, ds, procs, root, pg, mismatches)
        if args.celestialtree_bin and args.only in (None, "celestialtree"):
            rows += celestialtree_phase(args, ds, procs, root, mismatches)
        print_report(args, ds, info, versions, rows, time.monotonic() - started)
    except KeyboardInterrupt:
        log("interrupted; stopping the servers this run started")
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if mismatches:
        print("\nMISMATCH: answers differ from the reference:\n" + "\n".join(f"- {m}" for m in mismatches))
        log(f"{len(mismatches)} answer(s) differ from the reference")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
