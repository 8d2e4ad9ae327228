#!/usr/bin/env python3
"""Snapshot, restore and compaction figures for docs/PERFORMANCE.md, side by side in one run.

    python3 tools/maintenance_bench.py --banyan .build/release/banyan [--events 1000000] [--rounds 3]

1. Archives of stopped stores (the git/git graph and a gen_dag store of --events events, both
   made with `banyan import`): `banyan snapshot --data-dir` against `tar -cf - | zstd -3` of the
   data directory, alternated, --rounds times; then `banyan restore` of the archive, and
   `pg_basebackup --format=tar --compress=client-zstd:3` of a PostgreSQL 15 holding the same
   events (tools/peer/postgres.py's schema, loaded with COPY), time and size.
2. Ingest while maintenance runs: a server on a restored copy of the gen_dag store takes batches
   of 1,000 events (4 client threads, durability=sync) for --seconds; in one mode nothing else
   happens, in another snapshots run back to back from the first second, in a third one
   compaction of 90% of the store runs from the first second. Modes alternate, --rounds times.
   Reported: events/s over the maintenance window (the same window with nothing running for
   the baseline), and the slowest append in the window (how long appends stall).
3. Space: the compaction's answer (the log family's SST bytes before and after) and the data
   directory's size before and after.
4. Pruning and follower start: on a restored copy, `POST /v1/admin/snapshots {"prune": true}`
   (snapshot, verify, prune; the data directory's size before and after), then a new follower with
   an empty data directory, which bootstraps from that snapshot, against a new follower of an
   unpruned copy, which ships the whole log; both timed from start to caught up, alternated.

Needs PostgreSQL 15 (postgresql package) for the pg_basebackup row; runs as root (PostgreSQL runs
as the postgres user). Everything stays on loopback under --workdir, removed at the end.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer import dataset, postgres  # noqa: E402
from peer.common import Processes, free_port, log, machine, wait_until  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIT = os.path.join(os.path.dirname(REPO), "shared", "datasets", "git-dag.jsonl.zst")


def run(argv: list[str], **kw) -> float:
    t = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, **kw)
    return time.monotonic() - t


def du(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def mib(n: float) -> str:
    return f"{n / 1048576:,.1f} MiB"


def med(values: list[float], fmt) -> str:
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}-{fmt(max(values))})"


class Server:
    def __init__(self, procs: Processes, binary: str, data: str, log_path: str, extra=()):
        self.port = free_port()
        self.proc = procs.start("banyan", [binary, "serve", "--data-dir", data, "--port", str(self.port), "--grpc-port", "0", "--log-level", "warning",
                                           "--snapshot-keep", "2", *extra], log_path)
        self.procs = procs
        wait_until(lambda: self.request("GET", "/healthz")[0] == 200, 60, "banyan serve", self.proc)

    def request(self, method: str, path: str, body: bytes | None = None, timeout: float = 600) -> tuple[int, dict]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers={"Content-Type": "application/json"} if body is not None else {})
            r = c.getresponse()
            data = r.read()
            return r.status, (json.loads(data) if data[:1] == b"{" else {})
        except OSError:
            return 0, {}
        finally:
            c.close()

    def last_id(self) -> int:
        return self.request("GET", "/v1/status")[1]["last_id"]

    def stop(self) -> None:
        self.procs.stop(self.proc)


class Load:
    """4 threads each posting pre-encoded batches of 1,000 events (parents [1]) in a loop;
    records (time, latency) of every acknowledged append."""

    def __init__(self, port: int, threads: int = 4, batch: int = 1000):
        body = json.dumps([{"type": "load", "parents": [1], "payload": {"n": i, "pad": "p" * 100}} for i in range(batch)]).encode()
        self.port, self.body, self.batch = port, body, batch
        self.stop = threading.Event()
        self.acks: list[tuple[float, float]] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(threads)]

    def worker(self) -> None:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        while not self.stop.is_set():
            t = time.monotonic()
            c.request("POST", "/v1/events?durability=sync", body=self.body, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"append: HTTP {r.status}")
            done = time.monotonic()
            with self.lock:
                self.acks.append((done, done - t))

    def window(self, start: float, end: float) -> tuple[float, float]:
        """events/s and the slowest append acknowledged in [start, end]."""
        inside = [lat for t, lat in self.acks if start <= t <= end]
        return len(inside) * self.batch / (end - start), max(inside, default=0.0)


def archives(args, procs: Processes, work: str, name: str, source: str, rows: list) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in name)
    data = os.path.join(work, f"{slug}-data")
    t = run([args.banyan, "import", source, "--data-dir", data])
    log(f"{name}: imported in {t:.1f} s, {mib(du(data))}")
    snap_t, snap_b, tar_t, tar_b, rest_t = [], [], [], [], []
    archive = ""
    for r in range(args.rounds):
        archive = os.path.join(work, f"{slug}-{r}.bsnap")
        snap_t.append(run([args.banyan, "snapshot", "--data-dir", data, "--output", archive]))
        snap_b.append(du(archive))
        tarball = os.path.join(work, f"{slug}-{r}.tar.zst")
        tar_t.append(run(["bash", "-c", f"tar -C {data} -cf - . | zstd -3 -q -o {tarball}"]))
        tar_b.append(du(tarball))
        os.remove(tarball)
        restored = os.path.join(work, f"{slug}-restored-{r}")
        rest_t.append(run([args.banyan, "restore", archive, "--data-dir", restored]))
        shutil.rmtree(restored)
        if r + 1 < args.rounds:
            os.remove(archive)
    rows.append((name, "data directory", mib(du(data)), "", ""))
    rows.append((name, "banyan snapshot (stopped store)", med(snap_b, mib), med(snap_t, lambda x: f"{x:.2f} s"), ""))
    rows.append((name, "tar -cf - \\| zstd -3 of the data directory", med(tar_b, mib), med(tar_t, lambda x: f"{x:.2f} s"), ""))
    rows.append((name, "banyan restore (unpack, open, verify)", "", med(rest_t, lambda x: f"{x:.2f} s"), ""))
    if args.postgres:
        bindir = postgres.bin_dir()
        pg = postgres.Server(procs, bindir, work, f"pg-{slug}")
        pg.start()
        try:
            pg.reset()
            events = read_events(source if not source.endswith(".zst") else decompress(source, work))
            postgres.load(pg, events, 4, 3600)
            pg.sql("CHECKPOINT")
            times, sizes = [], []
            for r in range(args.rounds):
                out = os.path.join(pg.home, f"base-{r}")
                t0 = time.monotonic()
                subprocess.run([os.path.join(bindir, "pg_basebackup"), "-D", out, "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
                                "-Ft", "-X", "fetch", "--compress=client-zstd:3", "-c", "fast"], check=True, capture_output=True, **pg.as_pg)
                times.append(time.monotonic() - t0)
                sizes.append(du(out))
                shutil.rmtree(out)
            rows.append((name, f"pg_basebackup -Ft --compress=client-zstd:3 (PostgreSQL, same events; {mib(du(pg.data))} data directory)",
                         med(sizes, mib), med(times, lambda x: f"{x:.2f} s"), ""))
        finally:
            pg.stop()
            shutil.rmtree(pg.home, ignore_errors=True)
    return archive


def read_events(path: str) -> list:
    """The JSONL file as peer.dataset.Events with the ids `banyan import` gives them (genesis is
    1) and parents resolved from keys, for PostgreSQL to hold the same events."""
    ids: dict[str, int] = {}
    events = []
    with open(path) as f:
        for n, line in enumerate(f, start=2):
            o = json.loads(line)
            if "key" in o:
                ids[o["key"]] = n
            events.append(dataset.Event(n, o["type"], int(o["ts"]), o.get("stream", ""), o.get("message", ""),
                                        json.dumps(o.get("payload"), separators=(",", ":"), ensure_ascii=False),
                                        tuple(ids[k] for k in o.get("parents", ()))))
    return events


def decompress(path: str, work: str) -> str:
    out = os.path.join(work, os.path.basename(path)[:-4])
    if not os.path.exists(out):
        subprocess.run(["zstd", "-d", "-q", "-f", path, "-o", out], check=True)
    return out


def online(args, procs: Processes, work: str, archive: str, store_events: int, rows: list, space: list) -> None:
    results: dict[str, list[tuple[float, float, float]]] = {"none": [], "snapshot": [], "compaction": []}
    for r in range(args.rounds):
        for mode in ("none", "snapshot", "compaction"):
            data = os.path.join(work, f"online-{mode}-{r}")
            run([args.banyan, "restore", archive, "--data-dir", data])
            srv = Server(procs, args.banyan, data, data + ".log")
            load = Load(srv.port)
            for t in load.threads:
                t.start()
            time.sleep(1.0)
            start = time.monotonic()
            end = start + args.seconds
            answer: dict = {}
            if mode == "snapshot":
                while time.monotonic() < end:
                    code, _ = srv.request("POST", "/v1/admin/snapshots")
                    if code != 201:
                        raise RuntimeError(f"snapshot: HTTP {code}")
                end = time.monotonic()
            elif mode == "compaction":
                code, answer = srv.request("POST", "/v1/admin/compactions", json.dumps({"before": store_events * 9 // 10}).encode())
                if code != 201:
                    raise RuntimeError(f"compaction: HTTP {code} {answer}")
                end = time.monotonic()
            else:
                time.sleep(args.seconds)
                end = time.monotonic()
            load.stop.set()
            for t in load.threads:
                t.join(120)
            rate, stall = load.window(start, end)
            results[mode].append((rate, stall, end - start))
            log(f"round {r + 1} {mode}: {rate:,.0f} events/s over {end - start:.1f} s, slowest append {stall * 1000:.0f} ms")
            srv.stop()
            shutil.rmtree(data, ignore_errors=True)
            os.remove(data + ".log")
    base = statistics.median(x[0] for x in results["none"])
    for mode in ("none", "snapshot", "compaction"):
        rates = [x[0] for x in results[mode]]
        rows.append(("ingest", f"while {mode}" if mode != "none" else "no maintenance", med(rates, lambda x: f"{x:,.0f}/s"),
                     med([x[1] for x in results[mode]], lambda x: f"{x * 1000:.0f} ms"),
                     f"{statistics.median(rates) / base:.0%} of no maintenance (windows {med([x[2] for x in results[mode]], lambda x: f'{x:.1f} s')})"))


def reclaimed(args, procs: Processes, work: str, archive: str, store_events: int, space: list) -> None:
    """Compaction of 90% of the store with nothing else running: what it frees."""
    for r in range(args.rounds):
        data = os.path.join(work, f"quiet-{r}")
        run([args.banyan, "restore", archive, "--data-dir", data])
        before = du(data)
        srv = Server(procs, args.banyan, data, data + ".log")
        code, answer = srv.request("POST", "/v1/admin/compactions", json.dumps({"before": store_events * 9 // 10}).encode())
        if code != 201:
            raise RuntimeError(f"compaction: HTTP {code} {answer}")
        srv.stop()
        space.append((answer, before, du(data)))
        shutil.rmtree(data, ignore_errors=True)


def pruning(args, procs: Processes, work: str, archive: str, rows: list, prunes: list) -> None:
    """Snapshot-and-prune of a restored copy, then a follower bootstrapped from it against a
    follower of an unpruned copy catching up by shipping."""
    starts: dict[str, list[float]] = {"bootstrap": [], "shipping": []}
    for r in range(args.rounds):
        for mode in (("bootstrap", "shipping") if r % 2 == 0 else ("shipping", "bootstrap")):
            data = os.path.join(work, f"leader-{mode}-{r}")
            run([args.banyan, "restore", archive, "--data-dir", data])
            leader = Server(procs, args.banyan, data, data + ".log")
            if mode == "bootstrap":
                before = du(data)
                t = time.monotonic()
                code, answer = leader.request("POST", "/v1/admin/snapshots", b'{"prune": true}')
                if code != 201 or not answer.get("pruned") or answer["pruned"].get("note"):
                    raise RuntimeError(f"snapshot with prune: HTTP {code} {answer}")
                job = time.monotonic() - t
                snapshots = du(os.path.join(data, "snapshots"))
                prunes.append((answer, job, before, du(data) - snapshots))
            last = leader.last_id()
            follower_data = os.path.join(work, f"follower-{mode}-{r}")
            t = time.monotonic()
            follower = Server(procs, args.banyan, follower_data, follower_data + ".log", extra=("--follow", f"http://127.0.0.1:{leader.port}"))
            wait_until(lambda: follower.request("GET", "/v1/status")[1].get("applied_id", 0) >= last, 600, f"{mode} follower", follower.proc)
            starts[mode].append(time.monotonic() - t)
            follower.stop()
            leader.stop()
            for d in (data, follower_data):
                shutil.rmtree(d, ignore_errors=True)
                os.remove(d + ".log")
    for mode in ("bootstrap", "shipping"):
        rows.append(("follower start", "from the leader's snapshot" if mode == "bootstrap" else "by shipping the whole log", "",
                     med(starts[mode], lambda x: f"{x:.2f} s"), "start to caught up (empty data directory)"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--banyan", default=os.path.join(REPO, ".build", "release", "banyan"))
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0, help="the no-maintenance and snapshot windows (default 8)")
    ap.add_argument("--no-postgres", dest="postgres", action="store_false")
    ap.add_argument("--only-ingest", action="store_true", help="skip the archive comparisons: one snapshot of the gen_dag store, then the ingest and space figures")
    ap.add_argument("--only-prune", action="store_true", help="only the pruning and follower-start figures (on a gen_dag store)")
    ap.add_argument("--workdir", default="/tmp/banyan-maintenance-bench")
    args = ap.parse_args()
    if not os.access(args.banyan, os.X_OK):
        ap.error(f"not an executable: {args.banyan}")
    if not 10_000 <= args.events <= 10_000_000 or not 1 <= args.rounds <= 10 or not 1 <= args.seconds <= 120:
        ap.error("--events 10000..10000000, --rounds 1..10, --seconds 1..120")
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    os.chmod(args.workdir, 0o755)
    procs = Processes()
    rows: list = []
    space: list = []
    prunes: list = []
    started = time.monotonic()
    try:
        if not args.only_ingest and not args.only_prune:
            archives(args, procs, args.workdir, "git/git", GIT, rows)
        synthetic = dataset.generate(REPO, args.workdir, args.events, 7).path
        if args.only_ingest or args.only_prune:
            data, archive = os.path.join(args.workdir, "gen-data"), os.path.join(args.workdir, "gen.bsnap")
            run([args.banyan, "import", synthetic, "--data-dir", data])
            run([args.banyan, "snapshot", "--data-dir", data, "--output", archive])
        else:
            archive = archives(args, procs, args.workdir, f"gen_dag {args.events:,}", synthetic, rows)
        if not args.only_prune:
            online(args, procs, args.workdir, archive, args.events + 1, rows, space)
            reclaimed(args, procs, args.workdir, archive, args.events + 1, space)
        pruning(args, procs, args.workdir, archive, rows, prunes)
    finally:
        procs.stop_all()
    info = machine()
    print(f"\n## Maintenance figures ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rounds} rounds, "
          f"{time.monotonic() - started:.0f} s; {info})\n")
    print("| store | what | size | time (slowest append for ingest) | |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if space:
        print("\nCompacting 90% (before id {:,}) of a restored copy, nothing else running:".format((args.events + 1) * 9 // 10))
    for answer, before, after in space:
        print(f"- compacted {answer.get('compacted', 0):,} events in {answer.get('duration_ms', 0) / 1000:.1f} s; record bytes "
              f"{mib(answer.get('record_bytes_before', 0))} -> {mib(answer.get('record_bytes_after', 0))}; log family "
              f"{mib(answer.get('log_bytes_before', 0))} -> {mib(answer.get('log_bytes_after', 0))}; data directory {mib(before)} -> {mib(after)}")
    print("\nSnapshot with prune of a restored copy (the job: snapshot, verify, prune), nothing else running:")
    for answer, job, before, after in prunes:
        p = answer["pruned"]
        print(f"- {job:.1f} s in all; pruned {p['events_removed']:,} events ({p['segments_removed']} segments), first id now {p['first_id']:,}; "
              f"database {mib(p['bytes_before'])} -> {mib(p['bytes_after'])}; data directory without snapshots {mib(before)} -> {mib(after)}")
    shutil.rmtree(args.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
