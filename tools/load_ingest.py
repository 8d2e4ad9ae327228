#!/usr/bin/env python3
"""Load generator for a running `banyan serve`.

    python3 tools/load_ingest.py [--url http://127.0.0.1:7777] [--token T]
        [--mode batch|emit] [--events N] [--seconds S] [--connections N] [--batch N] ...

--mode batch (default): durable batched ingest over POST /v1/events. Each connection (a
thread with its own keep-alive requests.Session) sends pre-built bodies of --batch events
(default 1,000) with ~--payload-bytes (150) of payload each. The events form a real DAG:
  --parents keys (default): every event has an idempotency key; events link to earlier
      events of the same batch through parent_keys (a chain plus some fan-in), and the
      first event of a batch (plus every 50th) links by id to recent events committed by
      this and other connections. A batch refused with 503 is re-sent as is (the keys
      make that safe; a re-send after a lost answer comes back as duplicates).
  --parents ids: no keys; every event names 1-2 recent ids (from the last answers).
Bodies are built once per connection as templates; per request only a sequence number
and a few parent ids are substituted, so the client spends its time on HTTP, not JSON.

--mode emit: single-event POST /emit (the CelestialTree route), default 64 connections.

Stops by itself after --events events or --seconds seconds, whichever comes first
(Ctrl-C stops early). Prints a progress line every second, then events/s, request
latency p50/p99/max, and the server's last_id before and after (from /v1/status, or
/snapshot when /v1 is absent) to prove that every acknowledged event was stored.
Exit status: 0 when all went well and the count matches, 1 on request errors,
2 when last_id moved by a different amount than acknowledged (another writer?).

Only the standard library and `requests`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import threading
import time
from typing import Any, Optional

import requests
from requests.adapters import HTTPAdapter

SEQ = b"@SEQ@"
PH = [b"@P0@", b"@P1@", b"@P2@", b"@P3@"]


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:7777", help="server base URL")
    p.add_argument("--token", default=os.environ.get("BANYAN_TOKEN"),
                   help="bearer token (write role); default $BANYAN_TOKEN")
    p.add_argument("--mode", choices=("batch", "emit"), default="batch")
    p.add_argument("--events", type=int, default=1_000_000, help="stop after this many events")
    p.add_argument("--seconds", type=float, default=60.0, help="stop after this many seconds")
    p.add_argument("--connections", type=int, default=None,
                   help="parallel connections/threads (default 4 for batch, 64 for emit)")
    p.add_argument("--batch", type=int, default=1_000, help="events per POST /v1/events")
    p.add_argument("--payload-bytes", type=int, default=150, help="approximate compact payload size")
    p.add_argument("--durability", choices=("sync", "async", "server"), default="sync",
                   help="?durability= of each batch; 'server' sends none (server policy)")
    p.add_argument("--parents", choices=("keys", "ids"), default="keys", help="how events link (batch mode)")
    p.add_argument("--ndjson", action="store_true", help="send application/x-ndjson instead of a JSON array")
    p.add_argument("--templates", type=int, default=4, help="distinct pre-built bodies per connection")
    p.add_argument("--timeout", type=float, default=60.0, help="read timeout of one request, seconds")
    p.add_argument("--seed", type=int, default=None, help="random seed (printed)")
    p.add_argument("--run-id", default=None, help="prefix of the keys (default: random, printed)")
    p.add_argument("--json", action="store_true", help="also print a JSON summary as the last line")
    a = p.parse_args(argv)
    if a.connections is None:
        a.connections = 4 if a.mode == "batch" else 64
    for name in ("events", "connections", "batch", "templates"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be >= 1")
    if a.seconds <= 0:
        p.error("--seconds must be > 0")
    a.url = a.url.rstrip("/")
    return a


# --------------------------------------------------------------------------
# shared state


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked = 0            # new events acknowledged (not duplicates)
        self.duplicates = 0
        self.requests = 0         # successful requests
        self.busy = 0             # 503 answers (retried)
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self.latest_id = 0        # highest id any connection has seen committed
        self.reserved = 0         # events handed out to connections

    def add(self, new: int, dups: int, latency: float, max_id: int) -> None:
        with self.lock:
            self.acked += new
            self.duplicates += dups
            self.requests += 1
            self.latencies.append(latency)
            if max_id > self.latest_id:
                self.latest_id = max_id

    def error(self, msg: str) -> None:
        with self.lock:
            self.errors.append(msg)

    def reserve(self, want: int, budget: int) -> int:
        with self.lock:
            n = min(want, budget - self.reserved)
            if n <= 0:
                return 0
            self.reserved += n
            return n

    def unreserve(self, n: int) -> None:
        with self.lock:
            self.reserved -= n

    def latest(self) -> int:
        with self.lock:
            return self.latest_id


def session(args: argparse.Namespace) -> requests.Session:
    s = requests.Session()
    s.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0))
    s.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0))
    if args.token:
        s.headers["Authorization"] = f"Bearer {args.token}"
    return s


def server_last_id(args: argparse.Namespace) -> tuple[Optional[int], str]:
    s = session(args)
    try:
        r = s.get(args.url + "/v1/status", timeout=(5, 30))
        if r.status_code == 200:
            return int(r.json()["last_id"]), "/v1/status"
        if r.status_code == 404:
            r2 = s.get(args.url + "/snapshot", timeout=(5, 30))
            if r2.status_code == 200:
                return int(r2.json()["next_event_id"]) - 1, "/snapshot"
        return None, f"/v1/status: HTTP {r.status_code} {r.text[:200]!r}"
    except (requests.RequestException, ValueError, KeyError) as e:
        return None, f"/v1/status: {type(e).__name__}: {e}"
    finally:
        s.close()


def retry_after(r: requests.Response) -> float:
    try:
        return min(2.0, max(0.05, float(r.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


# --------------------------------------------------------------------------
# body templates


def payload_for(t: int, i: int, size: int) -> dict[str, Any]:
    base = {"t": t, "i": i, "pad": ""}
    pad = max(0, size - len(json.dumps(base, separators=(",", ":"))))
    base["pad"] = "x" * pad
    return base


def batch_events(args: argparse.Namespace, t: int, variant: int, n: int, rng: random.Random,
                 run_id: str) -> list[dict[str, Any]]:
    """Events of one batch with placeholders: @SEQ@ (per-batch sequence, in keys) and
    @P0@..@P3@ (recent ids, in parents). Placeholders sit in strings, so the events are
    encoded as JSON first and the quotes around numeric placeholders removed later."""
    events = []
    keyed = args.parents == "keys"
    for i in range(n):
        ev: dict[str, Any] = {"type": f"load.{variant}.{i % 4}", "stream": f"load-{t}"}
        if keyed:
            ev["key"] = f"{run_id}.{t}.@SEQ@.{i}"
            parents: list[str] = []
            keys: list[str] = []
            if i == 0:
                parents = ["@P0@"]
            else:
                keys.append(f"{run_id}.{t}.@SEQ@.{i - 1}")
                if i % 8 == 0 and i > 2:
                    j = i - 1 - rng.randint(1, min(i - 1, 50))
                    keys.append(f"{run_id}.{t}.@SEQ@.{j}")
                if i % 50 == 0:
                    parents = ["@P1@"]
            if parents:
                ev["parents"] = parents
            if keys:
                ev["parent_keys"] = keys
        else:
            ev["parents"] = [f"@P{i % 4}@"] + (["@P1@"] if i % 4 != 1 and i % 10 == 0 else [])
        ev["payload"] = payload_for(t, i, args.payload_bytes)
        events.append(ev)
    return events


def encode_template(events: list[dict[str, Any]], ndjson: bool) -> bytes:
    if ndjson:
        text = "\n".join(json.dumps(e, separators=(",", ":")) for e in events) + "\n"
    else:
        text = json.dumps(events, separators=(",", ":"))
    raw = text.encode()
    for ph in PH:  # "@P0@" -> @P0@ : a bare number after substitution
        raw = raw.replace(b'"' + ph + b'"', ph)
    return raw


def render(tmpl: bytes, seq: int, ids: list[int]) -> bytes:
    body = tmpl.replace(SEQ, str(seq).encode()) if SEQ in tmpl else tmpl
    for ph, v in zip(PH, ids):
        if ph in body:
            body = body.replace(ph, str(max(1, v)).encode())
    return body


# --------------------------------------------------------------------------
# workers


def batch_worker(args: argparse.Namespace, t: int, stats: Stats, stop: threading.Event,
                 deadline_box: list[float], run_id: str, start_id: int, ready: threading.Barrier) -> None:
    rng = random.Random(args.seed * 1_000 + t)
    templates = [encode_template(batch_events(args, t, v, args.batch, rng, run_id), args.ndjson)
                 for v in range(args.templates)]
    ct = "application/x-ndjson" if args.ndjson else "application/json"
    params = {} if args.durability == "server" else {"durability": args.durability}
    s = session(args)
    s.headers["Content-Type"] = ct
    url = args.url + "/v1/events"
    own_last = start_id
    seq = 0
    try:
        ready.wait(timeout=60)
    except threading.BrokenBarrierError:
        pass
    try:
        while not stop.is_set() and time.monotonic() < deadline_box[0]:
            n = stats.reserve(args.batch, args.events)
            if n == 0:
                return
            seq += 1
            latest = stats.latest() or own_last
            ids = [own_last, latest, latest - 1, latest - 2]
            if n == args.batch:
                tmpl = templates[seq % len(templates)]
            else:  # the last, partial batch: built on the spot
                tmpl = encode_template(batch_events(args, t, seq % args.templates, n, rng, run_id), args.ndjson)
            body = render(tmpl, seq, ids)
            attempts = 0
            while True:
                attempts += 1
                t0 = time.monotonic()
                try:
                    r = s.post(url, data=body, params=params, timeout=(5, args.timeout))
                except requests.RequestException as e:
                    # With keys a re-send is safe (duplicates); without, it could double-append.
                    if args.parents == "keys" and attempts < 3 and not stop.is_set():
                        time.sleep(0.2)
                        continue
                    stats.error(f"conn {t}: {type(e).__name__}: {e}")
                    stats.unreserve(n)
                    return
                dt = time.monotonic() - t0
                if r.status_code == 503 and time.monotonic() < deadline_box[0] and not stop.is_set():
                    with stats.lock:
                        stats.busy += 1
                    time.sleep(retry_after(r))
                    continue
                break
            if r.status_code != 200:
                stats.error(f"conn {t}: HTTP {r.status_code} {r.text[:300]!r}")
                stats.unreserve(n)
                return
            try:
                res = r.json()["results"]
                ids_back = [x["id"] for x in res]
                dups = sum(1 for x in res if x.get("duplicate"))
            except (ValueError, KeyError, TypeError) as e:
                stats.error(f"conn {t}: bad answer {r.text[:200]!r}: {e}")
                return
            if len(res) != n:
                stats.error(f"conn {t}: {len(res)} results for {n} events")
                return
            own_last = max(ids_back)
            stats.add(n - dups, dups, dt, own_last)
    finally:
        s.close()


def emit_worker(args: argparse.Namespace, t: int, stats: Stats, stop: threading.Event,
                deadline_box: list[float], run_id: str, start_id: int, ready: threading.Barrier) -> None:
    templates = []
    for v in range(args.templates):
        ev = {"type": f"load.emit.{v}", "parents": ["@P0@", "@P1@"] if v % 2 else ["@P0@"],
              "message": f"{run_id} conn {t}", "payload": payload_for(t, v, args.payload_bytes)}
        templates.append(encode_template([ev], ndjson=True).rstrip(b"\n"))
    s = session(args)
    s.headers["Content-Type"] = "application/json"
    url = args.url + "/emit"
    own_last = start_id
    k = 0
    try:
        ready.wait(timeout=60)
    except threading.BrokenBarrierError:
        pass
    try:
        while not stop.is_set() and time.monotonic() < deadline_box[0]:
            if stats.reserve(1, args.events) == 0:
                return
            k += 1
            body = render(templates[k % len(templates)], k, [own_last, stats.latest() or own_last])
            while True:
                t0 = time.monotonic()
                try:
                    r = s.post(url, data=body, timeout=(5, args.timeout))
                except requests.RequestException as e:
                    stats.error(f"conn {t}: {type(e).__name__}: {e}")
                    stats.unreserve(1)
                    return
                dt = time.monotonic() - t0
                if r.status_code == 503 and time.monotonic() < deadline_box[0] and not stop.is_set():
                    with stats.lock:
                        stats.busy += 1
                    time.sleep(retry_after(r))
                    continue
                break
            if r.status_code != 200:
                stats.error(f"conn {t}: HTTP {r.status_code} {r.text[:300]!r}")
                stats.unreserve(1)
                return
            try:
                own_last = int(r.json()["id"])
            except (ValueError, KeyError, TypeError) as e:
                stats.error(f"conn {t}: bad answer {r.text[:200]!r}: {e}")
                return
            stats.add(1, 0, dt, own_last)
    finally:
        s.close()


# --------------------------------------------------------------------------
# main


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1, 1_000_000)
    run_id = args.run_id or f"load{random.Random(args.seed).randrange(16**8):08x}{int(time.time()) % 100000}"
    unit = "batch" if args.mode == "batch" else "request"
    units = "batches" if args.mode == "batch" else "requests"

    before, src = server_last_id(args)
    if before is None:
        print(f"cannot read the server's last_id: {src}", file=sys.stderr)
        return 1
    print(f"load_ingest: mode={args.mode} url={args.url} connections={args.connections} "
          f"events<={args.events:,} seconds<={args.seconds:g}"
          + (f" batch={args.batch} durability={args.durability} parents={args.parents}"
             f"{' ndjson' if args.ndjson else ''}" if args.mode == "batch" else "")
          + f" payload~{args.payload_bytes}B seed={args.seed} run_id={run_id}")
    print(f"server last_id before: {before:,} (from {src})", flush=True)

    stats = Stats()
    stats.latest_id = before
    stop = threading.Event()
    ready = threading.Barrier(args.connections + 1)
    worker = batch_worker if args.mode == "batch" else emit_worker
    deadline_box = [time.monotonic() + args.seconds]   # replaced below, before any worker reads it
    threads = [threading.Thread(target=worker, name=f"load-{t}", daemon=True,
                                args=(args, t, stats, stop, deadline_box, run_id, before, ready))
               for t in range(args.connections)]
    for th in threads:
        th.start()
    # Each connection builds its bodies, then waits here; the clock starts when all are ready.
    try:
        ready.wait(timeout=120)
    except threading.BrokenBarrierError:
        print("warning: not every connection got ready within 120 s", file=sys.stderr)
    start = time.monotonic()
    deadline_box[0] = start + args.seconds
    last_acked, last_t = 0, start
    hard_stop = deadline_box[0] + args.timeout + 10
    try:
        while any(th.is_alive() for th in threads):
            now = time.monotonic()
            if now >= deadline_box[0]:
                stop.set()
            if now >= hard_stop:
                print("warning: connections still busy past the deadline; giving up on them", file=sys.stderr)
                break
            time.sleep(min(1.0, max(0.05, last_t + 1.0 - now)))
            now = time.monotonic()
            with stats.lock:
                acked, reqs, busy, errs = stats.acked, stats.requests, stats.busy, len(stats.errors)
                recent = sorted(stats.latencies[-2000:])
            if now - last_t >= 0.95:
                rate = (acked - last_acked) / (now - last_t)
                avg = acked / max(1e-9, now - start)
                print(f"[{now - start:6.1f}s] acked {acked:>11,}  {rate:>9,.0f}/s now  {avg:>9,.0f}/s avg  "
                      f"{units} {reqs:,}  p50 {percentile(recent, .5) * 1e3:7.1f} ms  "
                      f"p99 {percentile(recent, .99) * 1e3:7.1f} ms  503s {busy}  errors {errs}", flush=True)
                last_acked, last_t = acked, now
    except KeyboardInterrupt:
        stop.set()
        print("interrupted; waiting for requests in flight", file=sys.stderr)
        for th in threads:
            th.join(timeout=args.timeout + 5)
    elapsed = time.monotonic() - start

    after, src2 = server_last_id(args)
    with stats.lock:
        lat = sorted(stats.latencies)
        acked, dups, reqs, busy, errors = stats.acked, stats.duplicates, stats.requests, stats.busy, list(stats.errors)

    print()
    print(f"{args.mode}: {acked:,} events acknowledged in {reqs:,} {units} over {args.connections} "
          f"connections in {elapsed:.2f} s")
    print(f"  throughput     {acked / max(elapsed, 1e-9):,.0f} events/s ({reqs / max(elapsed, 1e-9):,.1f} {units}/s)")
    if lat:
        print(f"  {unit} latency  p50 {percentile(lat, .5) * 1e3:.1f} ms  p99 {percentile(lat, .99) * 1e3:.1f} ms  "
              f"max {lat[-1] * 1e3:.1f} ms")
    print(f"  503 retries {busy:,}, duplicates {dups:,}, errors {len(errors)}")
    for e in errors[:10]:
        print(f"    {e}")
    status = 0 if not errors else 1
    if after is None:
        print(f"  server last_id after: unknown ({src2})")
        status = 1
    else:
        delta = after - before
        verdict = "OK" if delta == acked else "MISMATCH (another writer, or a lost answer?)"
        print(f"  server last_id {before:,} -> {after:,} (+{delta:,}); acknowledged new events {acked:,}: {verdict}")
        if delta != acked:
            status = 2
    if args.json:
        print(json.dumps({
            "mode": args.mode, "connections": args.connections, "batch": args.batch if args.mode == "batch" else 1,
            "events": acked, "requests": reqs, "seconds": round(elapsed, 3),
            "events_per_second": round(acked / max(elapsed, 1e-9), 1),
            "latency_ms": {"p50": round(percentile(lat, .5) * 1e3, 3) if lat else None,
                           "p99": round(percentile(lat, .99) * 1e3, 3) if lat else None,
                           "max": round(lat[-1] * 1e3, 3) if lat else None},
            "busy_503": busy, "duplicates": dups, "errors": len(errors),
            "last_id_before": before, "last_id_after": after, "seed": args.seed, "run_id": run_id,
        }))
    return status


if __name__ == "__main__":
    sys.exit(main())
