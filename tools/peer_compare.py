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

Ingest (each run starts empty; events/s; no idempotency keys unless the row says so):
  Banyan          banyan serve --fsync group, POST /v1/events?durability=sync, JSON arrays of
                  1, 100 and 1,000 events; last_id and edges must move by exactly what was sent.
  Redis Streams   redis-server 7, appendonly yes, appendfsync everysec: pipelined XADDs.
  PostgreSQL      default settings (fsync, synchronous_commit on): COPY (1,000 per transaction)
                  and multi-row INSERT (100 and 1,000 per transaction), indexes built first.
  SQLite          WAL, synchronous=FULL (and NORMAL), batched INSERTs per transaction.
  The server systems get pre-encoded wire bytes (HTTP, RESP, PostgreSQL v3 protocol) over
  --connections raw sockets, one client process each; SQLite runs in this process.
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

from peer import banyan, postgres, redis_streams, sqlite  # noqa: E402
from peer.common import Processes, fmt_ms, fmt_rate, log, machine, percentile  # noqa: E402
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
    ap.add_argument("--only", choices=("ingest", "query"), help="run one phase only")
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
    ap.add_argument("--runs", type=int, default=7, help="timed runs per query after one warm-up (default 7)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (data, logs)")
    args = ap.parse_args()
    if not 1_000 <= args.events <= 10_000_000:
        ap.error("--events must be 1000...10000000")
    if not 1 <= args.connections <= 64:
        ap.error("--connections must be 1...64")
    if not 1 <= args.seconds_max <= 3600 or not 1 <= args.load_seconds_max <= 7200:
        ap.error("--seconds-max must be 1...3600 and --load-seconds-max 1...7200")
    if not 1 <= args.runs <= 1000:
        ap.error("--runs must be 1...1000")
    args.single_events = max(1, min(args.single_events, args.events))
    return args


# --------------------------------------------------------------------------- setup


def ensure_installed(need_redis: bool) -> None:
    """apt-get installs only what is missing (Debian's packages start no service here: the
    script never uses one anyway, it starts its own servers)."""
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
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if subprocess.run(cmd, env=env, stdout=sys.stderr).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, stdout=sys.stderr, check=True)
        subprocess.run(cmd, env=env, stdout=sys.stderr, check=True)


def redis_binary() -> str:
    path = shutil.which("redis-server")
    if not path:
        raise RuntimeError("redis-server is still missing after apt-get")
    return path


# --------------------------------------------------------------------------- ingest


def ingest_phase(args, ds: Dataset, procs: Processes, root: str, pg: postgres.Server) -> list[Row]:
    c, smax, events = args.connections, args.seconds_max, ds.events
    single = events[:args.single_events]
    w1 = f"ingest, 1 event/request (first {len(single):,} events)"
    w100 = "ingest, 100 events/request or transaction"
    w1000 = "ingest, 1,000 events/request or transaction"
    rows: list[Row] = []
    unit = "events/s"

    def add(workload, system, result: RunResult, ref=False):
        if not result.complete:
            log(f"{system} [{workload}]: stopped by --seconds-max after {result.events:,} events")
        rows.append(Row(workload, system + ("" if result.complete else f" (time-bound: {result.events:,} events)"),
                        result.rate, unit, True, ref, result))
        log(f"{system} [{workload}]: {result.rate:,.0f} events/s")

    b_name = f"Banyan (HTTP, durability=sync, {c} conns)"
    log("ingest: Banyan")
    for workload, part, size in ((w1, single, 1), (w100, events, 100), (w1000, events, 1000)):
        add(workload, b_name, banyan.ingest(procs, args.banyan, root, f"b{size}", part, size, c, smax)[0], ref=True)
    add(w1000, "Banyan with idempotency keys (informational)",
        banyan.ingest(procs, args.banyan, root, "b1000-keys", events, 1000, c, smax, keyed=True)[0])

    log("ingest: Redis Streams")
    rbin = redis_binary()
    r_name = f"Redis Streams (XADD pipeline, AOF everysec, {c} conns)"
    for workload, part, size in ((w1, single, 1), (w100, events, 100), (w1000, events, 1000)):
        add(workload, r_name, redis_streams.ingest(procs, rbin, root, f"b{size}", part, size, c, smax))

    log("ingest: PostgreSQL")
    pg.start()
    try:
        add(w100, f"PostgreSQL multi-row INSERT ({c} conns)", postgres.ingest(pg, "insert 100", events, 100, "insert", c, smax))
        add(w1000, f"PostgreSQL multi-row INSERT ({c} conns)", postgres.ingest(pg, "insert 1000", events, 1000, "insert", c, smax))
        add(w1000, f"PostgreSQL COPY ({c} conns)", postgres.ingest(pg, "copy 1000", events, 1000, "copy", c, smax))
    finally:
        pg.stop()

    log("ingest: SQLite")
    add(w100, "SQLite (WAL, synchronous=FULL, 1 writer)", sqlite.ingest(root, "full 100", events, 100, "FULL", smax))
    add(w1000, "SQLite (WAL, synchronous=FULL, 1 writer)", sqlite.ingest(root, "full 1000", events, 1000, "FULL", smax))
    add(w1000, "SQLite (WAL, synchronous=NORMAL, 1 writer)", sqlite.ingest(root, "normal 1000", events, 1000, "NORMAL", smax))
    return rows


# --------------------------------------------------------------------------- queries


class Mismatch(Exception):
    pass


def measure(label: str, fn: Callable[[], Optional[int]], expected: int, runs: int, seconds_max: float) -> Optional[tuple[float, float, int]]:
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
            res = measure(label, lambda: getattr(client, method)(*qargs), expected, args.runs, args.seconds_max)
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
    result, server = banyan.ingest(procs, args.banyan, root, "query", ds.events, 1000, 1, lmax, exact=True, keep_server=True)
    rows.append(Row(load_w, "Banyan (1 conn, batches of 1,000 in order, ids checked)", result.rate, "events/s", True, True, result))
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
        rows.append(Row(load_w, f"PostgreSQL COPY ({args.connections} conns, then ANALYZE)", result.rate, "events/s", True, False, result))
        if result.complete:
            client = postgres.QueryClient(pg, args.seconds_max)
            run_queries("PostgreSQL (recursive CTE; BFS in plpgsql)", client, forms, args, rows, False, mismatches)
            client.close()
    finally:
        pg.stop()

    log("queries: SQLite")
    path = os.path.join(root, "sqlite-query.db")
    result = sqlite.ingest(root, "load for queries", ds.events, 1000, "FULL", lmax, path=path)
    rows.append(Row(load_w, "SQLite (WAL, synchronous=FULL, batches of 1,000)", result.rate, "events/s", True, False, result))
    if result.complete:
        con = sqlite.open_db(path, "FULL")
        con.execute("ANALYZE")
        con.close()
        client = sqlite.QueryClient(path, args.seconds_max)
        run_queries("SQLite (recursive CTE; BFS per level)", client, forms, args, rows, False, mismatches)
        client.close()
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
          f"load average at start {info['loadavg']}")
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
        print("\nCPU used during each ingest run (cores busy on average over the run; the machine has "
              f"{info['nproc']}): a client far from saturation with a busy server means the figure is the server's.\n")
        print("| workload | system | client cores | server cores | events | seconds |")
        print("|---|---|---:|---:|---:|---:|")
        for r in cpu_rows:
            cl = "in process" if r.cpu.client_cores == 0 and "SQLite" in r.system else f"{r.cpu.client_cores:.2f}"
            print(f"| {r.workload} | {r.system} | {cl} | {r.cpu.server_cores:.2f} | {r.cpu.events:,} | {r.cpu.seconds:.2f} |")
    print(f"\nTotal time {elapsed:.0f} s; load average at the end {'%.2f %.2f %.2f' % os.getloadavg()}.")


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
        info = machine()
        ensure_installed(need_redis=args.only != "query")
        bindir = postgres.bin_dir()
        if not bindir:
            raise RuntimeError("PostgreSQL is still missing after apt-get")
        versions = {"Banyan": "?", "PostgreSQL": postgres.version(bindir), "SQLite": sqlite.version()}
        if args.only != "query":
            versions["Redis"] = redis_streams.version(redis_binary())
        probe = banyan.Server(procs, args.banyan, root, "version")
        versions["Banyan"] = f"{probe.version()} ({args.banyan})"
        probe.stop()
        log(f"machine {info}; versions {versions}; temp dir {root}")
        ds = generate(REPO, root, args.events, args.seed)
        pg = postgres.Server(procs, bindir, root)
        rows: list[Row] = []
        if args.only != "query":
            rows += ingest_phase(args, ds, procs, root, pg)
        if args.only != "ingest":
            rows += query_phase(args, ds, procs, root, pg, mismatches)
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
