"""Replication with real processes on loopback (docs/REPLICATION.md): a leader and followers as
`banyan serve` processes, log shipping, replicas=N acknowledgements, read-your-writes, writes
redirected from followers (with the real `celestialtree` client), promotion with fencing, and an
old leader rejoining after kill -9 with its unreplicated tail dropped.

Every check compares what the servers answer with what was acknowledged: ids, keys and content
of every acknowledged event, byte-identical exports, `verify` clean on every node.
"""
from __future__ import annotations

import json
import random
import signal
import threading
import time
from typing import Any, Optional

import pytest
import requests

from test_v1_api import SSE, Api, expect_json, wait_until

JSON = {"Content-Type": "application/json"}


def expect_error(r: requests.Response, status: int, error: Optional[str] = None, *, field: Optional[str] = None) -> dict:
    """A JSON error answer; replication errors may carry more members (leader, replicas, ids)."""
    body = expect_json(r, status)
    assert isinstance(body.get("error"), str) and isinstance(body.get("detail"), str), r.text
    if error is not None:
        assert body["error"] == error, r.text
    if field is not None:
        assert body.get("field") == field, r.text
    return body


def status(server) -> dict:
    r = requests.get(server.url + "/v1/status", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def follower(server_factory, leader, name: str, *extra: str):
    return server_factory(name=name, extra_args=["--follow", leader.url, *extra])


def wait_caught_up(leader, followers, timeout: float = 60.0) -> int:
    last = status(leader)["last_id"]
    for f in followers:
        wait_until(lambda: status(f)["applied_id"] >= last, timeout, f"{f.url} to apply up to {last}")
    return last


def export(run_banyan, server) -> bytes:
    out = server.data_dir.parent / f"{server.data_dir.name}.export.jsonl"
    r = run_banyan("export", "--data-dir", str(server.data_dir), "--output", str(out))
    assert r.returncode == 0, r.describe()
    return out.read_bytes()


def expect_clean(verify, server) -> None:
    res = verify(server.data_dir)
    assert res.ok, res.describe()


def test_followers_hold_the_leaders_log_and_report_progress(server_factory, run_banyan, verify):
    leader = server_factory(name="leader")
    f1 = follower(server_factory, leader, "f1")
    api = Api(leader)
    rng = random.Random(11)
    print("seed 11")
    for b in range(40):
        events = [{"type": f"t{rng.randrange(5)}", "key": f"k{b}-{i}", "stream": f"s{rng.randrange(3)}",
                   "parents": [rng.randrange(1, b * 10 + 2)], "payload": {"b": b, "i": i}} for i in range(10)]
        api.append(events)
    # 6 MB more, so a late follower catches up over several full pulls (each asked for while the
    # one before is applied).
    blob = "x" * 1000
    for b in range(60):
        api.append([{"type": "big", "parents": [b * 100 + i + 1], "payload": {"blob": blob, "i": i}} for i in range(100)])
    # A follower that starts late catches up from nothing.
    f2 = follower(server_factory, leader, "f2")
    last = wait_caught_up(leader, [f1, f2])
    # The leader sees a follower's progress in its next pull's report, a moment after the follower does.
    wait_until(lambda: all(f["applied_id"] == last for f in status(leader)["followers"]) and len(status(leader)["followers"]) == 2,
               timeout=10, what="the leader to hear both followers are caught up")
    st = status(leader)
    assert st["role"] == "leader" and st["leader"] == leader.url and st["epoch"] == 1
    urls = sorted(f["url"] for f in st["followers"])
    assert urls == sorted([f1.url, f2.url]), st
    for f in st["followers"]:
        assert f["applied_id"] == last and f["lag_ids"] == 0 and f["durable_id"] <= last, st
    fs = status(f1)
    assert fs["role"] == "follower" and fs["leader"] == leader.url and fs["applied_id"] == last and fs["lag_ids"] == 0, fs
    # The confirmed watermark: followers sync what they apply, and hear the leader's with each pull.
    wait_until(lambda: status(leader)["confirmed_id"] == last and status(f1)["confirmed_id"] == last, timeout=10,
               what="the confirmed watermark to reach the last id on the leader and a follower")
    # Reads on a follower answer what the leader answers.
    for path in ("/v1/events/by-key/k7-3", "/event/55", "/descendants/2", "/ancestors/300"):
        assert requests.get(f1.url + path, timeout=10).json() == requests.get(leader.url + path, timeout=10).json(), path
    metrics = requests.get(leader.url + "/metrics", timeout=10).text
    assert f'banyan_follower_applied_id{{follower="{f1.url}"}} {last}' in metrics, metrics[-2000:]
    assert 'banyan_replication_groups_total{direction="shipped"}' in metrics
    for s in (leader, f1, f2):
        s.terminate()
    ex = [export(run_banyan, s) for s in (leader, f1, f2)]
    assert ex[0] == ex[1] == ex[2] and ex[0].count(b"\n") == last
    for s in (leader, f1, f2):
        expect_clean(verify, s)


def test_writes_on_a_follower_are_redirected_to_the_leader(server_factory):
    leader = server_factory(name="leader")
    f = follower(server_factory, leader, "f")
    r = requests.post(f.url + "/v1/events?durability=sync", data='[{"type":"x"}]', headers=JSON,
                      allow_redirects=False, timeout=10)
    assert r.status_code == 307, r.text
    assert r.headers["Location"] == leader.url + "/v1/events?durability=sync"
    assert r.json()["leader"] == leader.url and r.json()["error"] == "not the leader"
    # requests follows a 307 with the same method and body; so does the celestialtree client.
    r = requests.post(f.url + "/v1/events", data='[{"type":"via-follower","key":"vf"}]', headers=JSON, timeout=10)
    assert r.status_code == 200 and r.json()["results"][0]["id"] == 2, r.text
    client = f.client()
    eid = client.emit("emitted-on-follower", parents=[1], message="hi")
    on_leader = requests.get(f"{leader.url}/event/{eid}", timeout=10).json()
    assert on_leader["type"] == "emitted-on-follower" and on_leader["parents"] == [1]
    # ...and the follower gets it back through replication (read-your-writes with min_id).
    got = requests.get(f"{f.url}/event/{eid}", params={"min_id": eid}, timeout=10)
    assert got.status_code == 200 and got.json()["type"] == "emitted-on-follower"
    assert status(leader)["last_id"] == eid  # nothing was written on the follower


def test_read_your_writes_on_a_follower(server_factory):
    leader = server_factory(name="leader")
    f = follower(server_factory, leader, "f", "--read-wait-ms", "300")
    api = Api(leader)
    for n in range(20):
        [eid] = api.append([{"type": "w", "key": f"w{n}"}])
        # Without min_id the follower may not have it yet; with it, it must.
        r = requests.get(f"{f.url}/v1/events/{eid}", params={"min_id": eid}, timeout=10)
        assert r.status_code == 200 and r.json()["key"] == f"w{n}", r.text
        r = requests.get(f"{f.url}/v1/events", params={"after": eid - 1}, headers={"Banyan-Min-Id": str(eid)}, timeout=10)
        assert [e["id"] for e in r.json()["events"]] == [eid], r.text
    r = requests.post(f"{f.url}/v1/query", json={"query": "ancestors(1)"}, params={"min_id": 21}, timeout=10)
    assert r.status_code != 503, r.text
    # An id the leader never wrote: 503 after the bound, with Retry-After and the applied id.
    t0 = time.monotonic()
    r = requests.get(f"{f.url}/v1/events/1", params={"min_id": 10_000}, timeout=10)
    waited = time.monotonic() - t0
    expect_error(r, 503, "not yet applied", field="min_id")
    assert r.headers.get("Retry-After") == "1" and r.json()["applied_id"] == 21 and waited >= 0.25, (r.text, waited)
    expect_error(requests.get(f"{f.url}/roots", params={"min_id": "x"}, timeout=10), 400, field="min_id")


def test_replicas_acknowledgements_and_their_timeout(server_factory):
    leader = server_factory(name="leader", extra_args=["--replica-timeout-ms", "500"])
    f = follower(server_factory, leader, "f")
    api = Api(leader)
    r = api.post_events([{"type": "a", "key": "a1"}], params={"replicas": "1"})
    body = expect_json(r, 200)
    assert body["replicas"] == 1 and body["durable"] is True, body
    # It is durable on the follower now, not merely applied.
    fs = status(f)
    assert fs["durable_id"] >= body["results"][0]["id"], fs
    # Without replicas the answer shape is unchanged.
    assert set(expect_json(api.post_events([{"type": "b"}]), 200)) == {"results", "durable"}
    expect_error(api.post_events([{"type": "c"}], params={"replicas": "17"}), 400, field="replicas")
    expect_error(api.post_events([{"type": "c"}], params={"replicas": "two"}), 400, field="replicas")
    # Two replicas asked, one exists: 504 that names the stored ids and the one confirmation.
    r = api.post_events([{"type": "c", "key": "c1"}], params={"replicas": "2"})
    body = expect_error(r, 504, "replication timeout")
    assert body["replicas"] == 1 and [x["id"] for x in body["results"]] == [4], body
    # A stopped follower confirms nothing; the write is still stored (and never duplicated).
    f.proc.send_signal(signal.SIGSTOP)
    try:
        r = api.post_events([{"type": "d", "key": "d1"}], params={"replicas": "1"})
        body = expect_error(r, 504, "replication timeout")
        assert body["replicas"] == 0, body
    finally:
        f.proc.send_signal(signal.SIGCONT)
    r = api.post_events([{"type": "d", "key": "d1"}], params={"replicas": "1"})
    body = expect_json(r, 200)
    assert body["results"] == [{"id": 5, "duplicate": True}] and body["replicas"] == 1, body


def test_min_replicas_covers_emit(server_factory):
    leader = server_factory(name="leader", extra_args=["--min-replicas", "1", "--replica-timeout-ms", "400"])
    r = requests.post(leader.url + "/emit", json={"type": "x"}, timeout=10)
    body = expect_error(r, 504, "replication timeout")
    assert body["id"] == 2 and body["replicas"] == 0, body
    f = follower(server_factory, leader, "f")
    r = requests.post(leader.url + "/emit", json={"type": "y"}, timeout=10)
    assert r.status_code == 200 and r.json() == {"id": 3}, r.text
    assert status(f)["durable_id"] >= 3


def test_bad_replication_input_changes_nothing(server_factory, run_banyan):
    leader = server_factory(name="leader")
    # A follower whose leader does not answer starts, serves reads, and says it is behind nothing it knows.
    lonely = server_factory(name="lonely", extra_args=["--follow", "http://127.0.0.1:9"])
    st = status(lonely)
    assert st["role"] == "follower" and st["applied_id"] == 0 and st["last_contact_seconds"] is None, st
    r = requests.post(lonely.url + "/emit", json={"type": "x"}, allow_redirects=False, timeout=10)
    assert r.status_code == 307 and r.headers["Location"] == "http://127.0.0.1:9/emit"
    # Replication requests the leader refuses.
    g = leader.url + "/v1/replication/groups"
    expect_error(requests.get(g, params={"after": "x"}, timeout=10), 400, field="after")
    expect_error(requests.get(g, params={"wait_ms": "99999"}, timeout=10), 400, field="wait_ms")
    expect_error(requests.get(g, params={"after": "50"}, timeout=10), 409, "follower ahead of the leader")
    expect_error(requests.get(g, headers={"Banyan-Follower": "not a url"}, timeout=10), 400, field="Banyan-Follower")
    expect_error(requests.get(g, headers={"Banyan-Follower": "http://x", "Banyan-Format": "99", "Banyan-Leader-Epoch": "1"},
                 timeout=10), 409, "incompatible format")
    expect_error(requests.get(g, headers={"Banyan-Follower": "http://x"}, timeout=10), 400, field="Banyan-Leader-Epoch")
    # A follower that reconciled against another epoch: its report does not count.
    expect_error(requests.get(g, headers={"Banyan-Follower": "http://x", "Banyan-Leader-Epoch": "3"}, timeout=10),
                 409, "leader epoch mismatch")
    assert "followers" not in status(leader) or all(f["url"] != "http://x" for f in status(leader)["followers"])
    r = requests.get(g, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/vnd.banyan.commit-groups"
    n = int.from_bytes(r.content[:4], "big")
    assert len(r.content) == 4 + n and r.headers["Banyan-Last-Id"] == "1" and r.headers["Banyan-Epoch"] == "1"
    # Promote on a leader: 409, nothing changes.
    r = run_banyan("promote", "--url", leader.url)
    assert r.returncode == 1 and "already the leader" in r.stderr, r.describe()
    # A stale epoch is refused on a follower's routes... and a newer one fences a leader.
    expect_error(requests.get(lonely.url + "/v1/replication/epoch", params={"epoch": "1"}, timeout=10), 409, "not the leader")
    r = requests.get(g, headers={"Banyan-Follower": "http://f", "Banyan-Epoch": "7", "Banyan-Leader-Epoch": "7"}, timeout=10)
    expect_error(r, 409)
    st = status(leader)
    assert st["role"] == "fenced" and st["leader"] is None and st["epoch"] == 1, st
    r = requests.post(leader.url + "/emit", json={"type": "late"}, allow_redirects=False, timeout=10)
    assert r.status_code == 503 and r.json()["leader"] is None, r.text
    assert status(leader)["last_id"] == 1
    r = run_banyan("promote", "--url", leader.url)
    assert r.returncode == 1 and "fenced" in r.stderr, r.describe()
    r = run_banyan("serve", "--data-dir", str(leader.data_dir.parent / "x"), "--follow", "ftp://nope")
    assert r.returncode != 0 and "--follow" in r.stderr, r.describe()


class Writer(threading.Thread):
    """Appends keyed batches with replicas=1 until stopped; records what was acknowledged."""

    def __init__(self, url: str, tag: str) -> None:
        super().__init__(daemon=True)
        self.url, self.tag = url, tag
        self.acked: dict[str, tuple[int, dict]] = {}
        self.unconfirmed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        s = requests.Session()
        n = 0
        while not self.stop.is_set():
            batch = [{"type": "load", "key": f"{self.tag}-{n}-{i}", "payload": {"n": n, "i": i}} for i in range(20)]
            n += 1
            try:
                r = s.post(self.url + "/v1/events", params={"replicas": "1"}, data=json.dumps(batch), headers=JSON, timeout=5)
            except requests.RequestException:
                time.sleep(0.05)
                continue
            if r.status_code == 200:
                assert r.json()["replicas"] >= 1
                for ev, res in zip(batch, r.json()["results"]):
                    self.acked[ev["key"]] = (res["id"], ev)
            else:
                self.unconfirmed += 1


class Reader(threading.Thread):
    """Reads /v1/stream from the start, reconnecting with Last-Event-ID to whichever URL
    `target()` names when the connection ends; keeps every event seen, in order."""

    def __init__(self, target) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.events: list[dict] = []
        self.reconnects = 0
        self.truncations: list[int] = []
        self.stop = threading.Event()
        self.error: Optional[str] = None
        self.connections: list[str] = []

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = f"reader thread died: {e!r}"
            raise

    def _run(self) -> None:
        while not self.stop.is_set():
            port = self.target()
            headers = {"Last-Event-ID": str(self.events[-1]["id"])} if self.events else {}
            try:
                s = SSE(port, "/v1/stream?after=0", headers=headers, timeout=5)
            except (OSError, EOFError, TimeoutError):
                time.sleep(0.1)
                continue
            self.connections.append(f"{port}@{len(self.events)}:{s.status}")
            if s.status != 200:
                s.close()
                time.sleep(0.1)
                continue
            try:
                while not self.stop.is_set():
                    try:
                        frame = s.next(timeout=0.5)
                    except TimeoutError:
                        continue
                    if frame.is_comment:
                        continue
                    if frame.event == "truncated":
                        # The node dropped a tail it had sent (docs/REPLICATION.md): forget it.
                        cut = json.loads(frame.data)["after"]
                        self.truncations.append(cut)
                        self.events = [e for e in self.events if e["id"] <= cut]
                        continue
                    self.events.append(frame.event_json())
            except (EOFError, OSError) as e:
                self.reconnects += 1
                self.error = repr(e)
            finally:
                s.close()


def test_failover_kill9_promote_and_rejoin(server_factory, run_banyan, verify):
    a = server_factory(name="a", extra_args=["--replica-timeout-ms", "1000"])
    b = follower(server_factory, a, "b")
    c = follower(server_factory, a, "c")
    writers = [Writer(a.url, f"w{i}") for i in range(2)]
    for w in writers:
        w.start()
    # A reader on each follower from the start; each reconnects with Last-Event-ID when its
    # node dies, to wherever `ports` says (its node again, then the new leader or the follower).
    ports = {"b": b.port, "c": c.port}
    readers = {name: Reader(lambda name=name: ports[name]) for name in ports}
    for reader in readers.values():
        reader.start()
    time.sleep(3)
    # Freeze both followers, so what the leader stores now exists only there (a pull answered
    # meanwhile sits unread in a socket buffer, and dies with the follower below).
    b.proc.send_signal(signal.SIGSTOP)
    c.proc.send_signal(signal.SIGSTOP)
    time.sleep(0.3)
    unreplicated = Api(a).append([{"type": "unreplicated", "key": f"u{i}"} for i in range(30)])
    assert unreplicated
    a.kill9()
    for w in writers:
        w.stop.set()
    for w in writers:
        w.join(timeout=20)
    b.kill9()
    c.kill9()
    acked = {k: v for w in writers for k, v in w.acked.items()}
    assert len(acked) > 100, f"too little load got through: {len(acked)}"
    # Both come back from their disks, still following the dead leader.
    b.start()
    c.start()
    ports.update(b=b.port, c=c.port)

    # Promote the follower that applied the most (both hold prefixes of the old leader's log).
    sb, sc = status(b), status(c)
    new, other = (b, c) if sb["applied_id"] >= sc["applied_id"] else (c, b)
    r = run_banyan("promote", "--url", new.url, "--after-epoch", "1")
    assert r.returncode == 0, r.describe()
    promoted = json.loads(r.stdout)
    assert promoted["role"] == "leader" and promoted["epoch"] == 2, promoted
    st = status(new)
    assert st["role"] == "leader" and st["epoch"] == 2 and st["leader"] == new.url, st
    # Every event acknowledged with replicas=1 is on the new leader, with the same content.
    api = Api(new)
    for key, (eid, sent) in acked.items():
        got = api.event(eid)
        assert got["key"] == key and got["payload"] == sent["payload"] and got["type"] == "load", (key, eid, got)
    control = api.event(promoted["last_id"])
    assert control["type"] == "banyan.epoch" and control["payload"]["epoch"] == 2, control

    # The other follower and the old leader follow the new leader; the old leader drops the
    # tail nobody else has (the unreplicated events) and catches up.
    other.terminate()
    other.extra_args = ("--follow", new.url)
    other.start()
    ports.update(b=new.port, c=new.port)
    ports[other.data_dir.name] = other.port
    a.extra_args = ("--follow", new.url)
    a.start()
    body = expect_json(api.post_events([{"type": "after-failover", "key": f"af{i}"} for i in range(25)], params={"replicas": "2"}))
    assert body["replicas"] == 2, body
    more = [x["id"] for x in body["results"]]
    last = wait_caught_up(new, [a, other])
    assert status(a)["role"] == "follower" and status(a)["epoch"] == 2
    kept = [e["key"] for e in Api(a).read_all()[0] if e.get("key", "").startswith("u")]
    assert kept == [], f"the old leader kept its unreplicated tail: {kept[:5]}"
    assert Api(a).event(more[-1])["key"] == "af24"
    metrics = requests.get(a.url + "/metrics", timeout=10).text
    truncated = [l for l in metrics.splitlines() if l.startswith("banyan_replication_truncated_events_total")]
    assert truncated and int(float(truncated[0].split()[-1])) >= len(unreplicated), truncated

    # Streams: no event skipped or repeated, across catch-up, kill -9, promotion and reconnects.
    deadline = time.monotonic() + 30
    while not all(len(r.events) >= last for r in readers.values()):
        assert time.monotonic() < deadline, f"readers did not reach the last id {last}: " + ", ".join(
            f"{n}: {len(r.events)} events (last {r.events[-1]['id'] if r.events else None}), {r.reconnects} reconnects, "
            f"port {ports[n]}, error {r.error}, connections {r.connections}" for n, r in readers.items())
        time.sleep(0.05)
    for reader in readers.values():
        reader.stop.set()
    truth = {e["id"]: e for e in api.read_all()[0]}
    for name, reader in readers.items():
        ids = [e["id"] for e in reader.events]
        assert ids == list(range(1, last + 1)), f"reader {name}: ids not exactly 1..{last}: {ids[:10]}...{ids[-10:]}"
        assert all(e == truth[e["id"]] for e in reader.events), f"reader {name} saw content the leader does not have"
        assert reader.reconnects >= 1, name

    for s in (new, other, a):
        s.terminate()
    exports = [export(run_banyan, s) for s in (new, other, a)]
    assert exports[0] == exports[1] == exports[2] and exports[0].count(b"\n") == last
    for s in (new, other, a):
        expect_clean(verify, s)
