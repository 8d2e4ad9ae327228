"""Crash test: kill -9 under concurrent load, restart, nothing acknowledged is lost.

For each seed (default 4 seeds, 1..4; CRASH_SEEDS="8" runs seeds 1..8,
CRASH_SEEDS="3,17,42" runs exactly those):

  1. start `banyan serve --fsync group` on a fresh data dir;
  2. 8 writer threads POST /emit concurrently: random types, messages, payload
     dicts, and parents drawn only from ids that were already ACKNOWLEDGED;
     every acknowledged id -> the exact request is recorded;
  3. after a seeded random delay in [0.3, 2.0] s (and at least MIN_ACKS acks),
     SIGKILL the server mid-flight;
  4. restart on the same data dir and check:
       - every acknowledged id is there with exactly the type/message/payload/parents sent;
       - ids are dense: GET /event/k is 200 for every k in 1..last, 404 at last+1
         (ids present but never acknowledged are fine: committed, ack lost with the
         connection) and those unacknowledged events are well-formed too;
       - children lists of a sample of acked events contain their acked children;
       - /snapshot agrees (next_event_id == last + 1, events == last);
       - new emits work and get last+1, last+2;
  5. SIGTERM (exit 0), then `banyan verify --json` must report ok.

The seed fixes the kill delay and the writers' random choices; thread
interleaving is up to the OS, so a seed does not replay a run exactly. It is
printed at the start and in every failure message.
"""
from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import pytest
import requests

WRITERS = 8
MAX_EMITS_PER_WRITER = 2_500     # bounds the work if the server is very fast
MIN_ACKS = 20                    # don't crash an empty log: wait for this many acks...
MIN_ACKS_WAIT_S = 10.0           # ...but at most this long past the kill delay
SEED_BUDGET_S = 60.0             # whole test per seed
EVENT_KEYS = {"id", "time_unix_nano", "type", "parents"}


def _seeds() -> list[int]:
    raw = os.environ.get("CRASH_SEEDS", "").strip()
    if not raw:
        return [1, 2, 3, 4]
    if "," not in raw and raw.isdigit():
        return list(range(1, int(raw) + 1))
    return [int(x) for x in raw.split(",") if x.strip()]


TYPES = ["task.input", "task.success", "task.error", "crash.test", "ünïcode.type", "t"]
WORDS = ["alpha", "beta", "gamma", "δέλτα", "树", "🌳", "quote\"", "back\\slash", "new\nline", ""]


def random_payload(rng: random.Random) -> dict[str, Any]:
    """Random JSON object, depth <= 3, with ints up to 2^63-1 and unicode."""
    def value(depth: int) -> Any:
        r = rng.random()
        if depth >= 3 or r < 0.55:
            return rng.choice([
                rng.randint(-2**63, 2**63 - 1), rng.randint(0, 1000), rng.choice(WORDS),
                True, False, None, rng.randint(0, 10**6) / 4,  # quarter values are exact floats
            ])
        if r < 0.8:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        return obj(depth + 1)

    def obj(depth: int) -> dict[str, Any]:
        return {f"{rng.choice(WORDS)}{i}": value(depth) for i in range(rng.randint(0, 5))}

    return obj(0)


class Ledger:
    """Thread-safe record of acknowledged emits."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: dict[int, dict[str, Any]] = {}
        self.ids: list[int] = []            # acked ids, ack order (for parent choice)
        self.errors: list[str] = []         # unexpected failures before the kill
        self.killing = threading.Event()    # set just BEFORE the SIGKILL
        self.stop = threading.Event()

    def record(self, id_: int, req: dict[str, Any]) -> None:
        with self.lock:
            if id_ in self.acked:
                self.errors.append(f"id {id_} acknowledged twice: {self.acked[id_]} and {req}")
            self.acked[id_] = req
            self.ids.append(id_)

    def pick_parents(self, rng: random.Random) -> list[int]:
        with self.lock:
            n = len(self.ids)
            if n == 0:
                return []
            k = rng.choice([0, 1, 1, 1, 2, 2, 3, 5])
            if k == 0:
                return []
            # Mostly recent acks (long chains), sometimes anything acked (wide fan-in).
            pool = self.ids[-64:] if rng.random() < 0.8 else self.ids
            return rng.sample(pool, min(k, len(pool)))

    def count(self) -> int:
        with self.lock:
            return len(self.ids)


def writer(url: str, ledger: Ledger, rng: random.Random, thread_no: int) -> None:
    session = requests.Session()
    try:
        for i in range(MAX_EMITS_PER_WRITER):
            if ledger.stop.is_set():
                return
            req: dict[str, Any] = {"type": rng.choice(TYPES), "parents": ledger.pick_parents(rng)}
            if rng.random() < 0.6:
                req["message"] = f"w{thread_no}#{i} {rng.choice(WORDS)}"
            if rng.random() < 0.7:
                req["payload"] = random_payload(rng)
            try:
                r = session.post(url + "/emit", json=req, timeout=(2, 10))
            except requests.RequestException as e:
                if not ledger.killing.is_set():
                    ledger.errors.append(f"writer {thread_no}: {type(e).__name__}: {e} (server not killed yet)")
                return  # after the kill every request fails: this writer is done
            if r.status_code == 200:
                try:
                    id_ = r.json()["id"]
                except Exception as e:  # a 200 with a bad body is a bug even mid-crash
                    ledger.errors.append(f"writer {thread_no}: bad 200 body {r.text[:200]!r}: {e}")
                    return
                ledger.record(id_, req)
            else:
                if not ledger.killing.is_set():
                    ledger.errors.append(
                        f"writer {thread_no}: HTTP {r.status_code} {r.text[:200]!r} for {req}")
                return
    finally:
        session.close()


def expected_event(id_: int, req: dict[str, Any]) -> dict[str, Any]:
    ev = {"id": id_, "type": req["type"], "parents": req["parents"]}
    if req.get("message"):              # "" is omitted, like CelestialTree
        ev["message"] = req["message"]
    if "payload" in req:
        ev["payload"] = req["payload"]
    return ev


def fetch_events(url: str, ids: list[int], deadline: float) -> dict[int, tuple[int, Any]]:
    """GET /event/{id} for many ids with a few parallel sessions -> {id: (status, body)}."""
    local = threading.local()

    def get(id_: int) -> tuple[int, tuple[int, Any]]:
        if time.monotonic() > deadline:
            return id_, (-1, "skipped: per-seed time budget exhausted")
        s = getattr(local, "s", None)
        if s is None:
            s = local.s = requests.Session()
        r = s.get(f"{url}/event/{id_}", timeout=10)
        try:
            body = r.json()
        except ValueError:
            body = r.text[:200]
        return id_, (r.status_code, body)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(get, ids))


@pytest.mark.parametrize("seed", _seeds(), ids=lambda s: f"seed{s}")
def test_kill9_under_load_loses_no_acknowledged_event(seed, server_factory, verify):
    t_start = time.monotonic()
    deadline = t_start + SEED_BUDGET_S
    rng = random.Random(seed)
    kill_after = rng.uniform(0.3, 2.0)
    tag = f"[crash seed={seed} kill_after={kill_after:.2f}s]"
    print(f"{tag} starting (reproduce: CRASH_SEEDS={seed})")

    srv = server_factory(name=f"crash-seed{seed}")
    url = srv.url
    ledger = Ledger()
    threads = [threading.Thread(target=writer, args=(url, ledger, random.Random(seed * 1000 + n), n),
                                name=f"writer-{n}", daemon=True) for n in range(WRITERS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()

    # --- crash point: the seeded delay (a real wait: the timing IS the test input),
    # extended until MIN_ACKS acks so the crash never hits an empty log.
    time.sleep(kill_after)
    extra_deadline = time.monotonic() + MIN_ACKS_WAIT_S
    while ledger.count() < MIN_ACKS and time.monotonic() < extra_deadline and not ledger.errors \
            and any(t.is_alive() for t in threads):
        time.sleep(0.02)
    ledger.killing.set()
    srv.kill9()
    ledger.stop.set()
    crash_at = time.monotonic() - t0
    for t in threads:
        t.join(timeout=max(1.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"{tag} writer threads hung after the kill"

    with ledger.lock:
        acked = dict(ledger.acked)
        errors = list(ledger.errors)
    print(f"{tag} killed at {crash_at:.2f}s with {len(acked)} acknowledged emits")
    assert not errors, f"{tag} unexpected failures before the kill:\n" + "\n".join(errors[:20])
    assert len(acked) >= MIN_ACKS, f"{tag} only {len(acked)} emits acknowledged in {crash_at:.1f}s"

    # --- recovery
    srv.restart()
    url = srv.url
    max_acked = max(acked)
    snap = requests.get(url + "/snapshot", timeout=10).json()
    last = snap["next_event_id"] - 1
    assert last >= max_acked, f"{tag} after restart next_event_id={snap['next_event_id']} but id {max_acked} was acknowledged"
    assert snap.get("events") == last, f"{tag} snapshot events != last id (ids must be dense): {snap}"
    # Unacknowledged-but-committed events can only be the in-flight ones (<= one per writer).
    assert last - len(acked) - 1 <= WRITERS, \
        f"{tag} {last - len(acked) - 1} committed-but-unacked events; at most {WRITERS} requests were in flight"

    got = fetch_events(url, list(range(1, last + 2)), deadline)
    problems: list[str] = []
    for k in range(1, last + 1):
        status, body = got[k]
        if status != 200:
            problems.append(f"GET /event/{k}: {status} {body!r:.200} (ids must be dense up to {last})")
            continue
        if body.get("id") != k or not isinstance(body.get("time_unix_nano"), int):
            problems.append(f"GET /event/{k}: malformed {body!r:.200}")
            continue
        if k in acked:
            want = expected_event(k, acked[k])
            have = {key: body[key] for key in body if key != "time_unix_nano"}
            if have != want:
                problems.append(f"event {k} differs from what was acknowledged:\n  sent {want}\n  got  {have}")
        elif k > 1:
            # Committed but not acknowledged: still must be a sane event whose
            # parents are older events.
            if not set(body) <= EVENT_KEYS | {"message", "payload"} or \
                    any(not (isinstance(p, int) and 1 <= p < k) for p in body.get("parents", [None])):
                problems.append(f"unacknowledged event {k} is malformed: {body!r:.300}")
    status, body = got[last + 1]
    if status != 404:
        problems.append(f"GET /event/{last + 1} (past the end) answered {status}, expected 404")
    genesis = got[1][1] if got[1][0] == 200 else {}
    if {k: genesis.get(k) for k in ("type", "message", "parents")} != \
            {"type": "genesis", "message": "CelestialTree begins.", "parents": []}:
        problems.append(f"genesis event changed: {genesis!r:.200}")
    assert not problems, f"{tag} {len(problems)} problems after restart:\n" + "\n".join(problems[:30])

    # Children index survived too: every acked child appears under each of its
    # parents, in id (= emit) order. A sample keeps this bounded.
    children_of: dict[int, list[int]] = {}
    for cid in sorted(acked):
        for p in acked[cid]["parents"]:
            children_of.setdefault(p, []).append(cid)
    sample = rng.sample(sorted(children_of), min(50, len(children_of)))
    s = requests.Session()
    for p in sample:
        have = s.get(f"{url}/children/{p}", timeout=10).json()
        assert have == sorted(have), f"{tag} children({p}) not in emit order: {have}"
        missing = [c for c in children_of[p] if c not in set(have)]
        assert not missing, f"{tag} children({p}) lacks acknowledged children {missing}: {have}"

    # --- the log keeps working, densely.
    r1 = s.post(url + "/emit", json={"type": "after.crash", "parents": [max_acked]}, timeout=10)
    r2 = s.post(url + "/emit", json={"type": "after.crash", "parents": [last + 1]}, timeout=10)
    assert (r1.status_code, r2.status_code) == (200, 200), f"{tag} emit after restart: {r1.text} {r2.text}"
    assert (r1.json()["id"], r2.json()["id"]) == (last + 1, last + 2), \
        f"{tag} new ids after restart must be {last + 1}, {last + 2}: got {r1.json()}, {r2.json()}"
    assert s.get(f"{url}/event/{last + 2}", timeout=10).json()["parents"] == [last + 1]
    s.close()

    # --- clean stop + offline verification.
    rc = srv.terminate()
    assert rc == 0, f"{tag} SIGTERM exit status {rc}, expected 0"
    v = verify(srv.data_dir)
    assert v.ok, f"{tag} banyan verify failed:\n{v.describe()}"
    assert v.report["events"] == last + 2, f"{tag} verify counted {v.report['events']} events, expected {last + 2}"

    elapsed = time.monotonic() - t_start
    print(f"{tag} ok: {len(acked)} acked, last id {last + 2}, {elapsed:.1f}s")
    assert elapsed < SEED_BUDGET_S, f"{tag} took {elapsed:.1f}s (> {SEED_BUDGET_S:.0f}s budget)"
