"""Cluster mode (docs/REPLICATION.md, "Cluster mode"): nodes join a cluster held in a real etcd
(Debian's etcd-server, started here on loopback with a temporary data directory), each bound to
a lease; `banyan cluster status` reads them back."""
from __future__ import annotations

import base64
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from conftest import free_port
from test_replication import expect_clean, export
from test_v1_api import wait_until


class Etcd:
    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("etcd")
        # A failure, not a skip: .ci/run and tools/setup-debian.sh --tests install etcd-server.
        assert binary, "etcd not found: install Debian's etcd-server (tools/setup-debian.sh --tests does)"
        self.port, peer = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / "etcd.log", "w")
        self.command = [binary, "--name", "t", "--data-dir", str(tmp / "etcd"), "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                        "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                        "--initial-cluster", f"t=http://127.0.0.1:{peer}"]
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_until(self.healthy, 30, "etcd")

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def healthy(self) -> bool:
        try:
            return requests.get(self.url + "/health", timeout=1).json().get("health") == "true"
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc.poll() is not None:
            self.log.close()
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def etcd(tmp_path):
    e = Etcd(tmp_path)
    yield e
    e.stop()


def members(run_banyan, etcd: Etcd, cluster: str = "c1") -> dict:
    r = run_banyan("cluster", "status", "--etcd", etcd.url, "--cluster", cluster, "--json")
    assert r.returncode == 0, r.describe()
    return json.loads(r.stdout)


def leader_of(etcd: Etcd, cluster: str = "c1") -> str | None:
    """The URL in the cluster's leader key (etcd's gateway, base64 keys and values)."""
    key = base64.b64encode(f"/banyan/{cluster}/leader".encode()).decode()
    kvs = requests.post(etcd.url + "/v3/kv/range", json={"key": key}, timeout=5).json().get("kvs", [])
    return json.loads(base64.b64decode(kvs[0]["value"]))["url"] if kvs else None


def role(url: str) -> str | None:
    try:
        return requests.get(url + "/v1/status", timeout=2).json()["role"]
    except requests.RequestException:
        return None


def nodes(server_factory, etcd: Etcd, n: int, ttl: int) -> list:
    return [server_factory(["--cluster", "c1", "--etcd", etcd.url, "--lease-ttl-seconds", str(ttl)], name=f"n{i}") for i in range(n)]


def test_nodes_join_with_a_lease_and_leave_with_it(etcd, server_factory, run_banyan):
    ttl = 3
    a, b = nodes(server_factory, etcd, 2, ttl)
    wait_until(lambda: leader_of(etcd) in (a.url, b.url) and role(leader_of(etcd)) == "leader", 15, "a leader")
    leader, follower = (a, b) if leader_of(etcd) == a.url else (b, a)
    requests.post(leader.url + "/v1/events", json=[{"type": "t"}] * 5, timeout=10).raise_for_status()
    expected = {leader.url: "leader", follower.url: "follower"}
    # The elected leader began epoch 2 with its banyan.epoch event (id 1), then the five.
    wait_until(lambda: {m["url"]: (m["role"], m["last_id"]) for m in members(run_banyan, etcd)["members"]}
               == {u: (r, 6) for u, r in expected.items()}, 15, "both nodes listed with their role and last id")
    status = members(run_banyan, etcd)
    assert status["leaders"] == [leader.url] and all(m["epoch"] == 2 and m["lag_ids"] == 0 and 0 < m["lease_ttl_left_seconds"] <= ttl
                                                     for m in status["members"]), status
    table = run_banyan("cluster", "status", "--etcd", etcd.url, "--cluster", "c1")
    assert table.returncode == 0 and f"leader {leader.url}" in table.stdout and follower.url in table.stdout, table.describe()
    mine = requests.get(follower.url + "/v1/status", timeout=10).json()["cluster"]
    assert mine["name"] == "c1" and mine["url"] == follower.url and mine["etcd"] == [etcd.url] and mine["lease_ttl_seconds"] == ttl
    assert mine["last_renewal_seconds"] < ttl and mine["won_at_revision"] is None, mine
    assert requests.get(leader.url + "/v1/status", timeout=10).json()["cluster"]["won_at_revision"] is not None
    # Another cluster in the same etcd is another set of keys.
    assert members(run_banyan, etcd, "c2")["members"] == []

    # A crashed node's key goes with its lease, after the ttl (not before a third of it).
    follower.kill9()
    killed = time.time()
    time.sleep(ttl / 3)
    assert follower.url in {m["url"] for m in members(run_banyan, etcd)["members"]}
    wait_until(lambda: follower.url not in {m["url"] for m in members(run_banyan, etcd)["members"]}, ttl + 3, "the killed node's key to expire")
    assert time.time() - killed <= ttl + 3
    # A node stopped cleanly revokes its lease: its keys go at once, the leader key with them.
    assert leader.terminate() == 0
    assert members(run_banyan, etcd)["members"] == [] and leader_of(etcd) is None


def elected(server_factory, etcd: Etcd, ttl: int) -> tuple[list, dict, object]:
    """Three nodes, once one leads: the nodes, the nodes by URL, and the leader."""
    ns = nodes(server_factory, etcd, 3, ttl)
    by_url = {n.url: n for n in ns}
    wait_until(lambda: role(leader_of(etcd) or "") == "leader", 15, "a leader")
    return ns, by_url, by_url[leader_of(etcd)]


def acknowledged_writes(url: str, n: int, tag: str) -> dict[int, str]:
    """n writes of one event each with replicas=1, through redirects; id -> key of those acknowledged."""
    acked = {}
    for i in range(n):
        key = f"{tag}-{i}"
        try:
            r = requests.post(url + "/v1/events?replicas=1", json=[{"type": "w", "key": key, "payload": {"i": i}}], timeout=5)
        except requests.RequestException:
            continue
        if r.status_code == 200:
            acked[r.json()["results"][0]["id"]] = key
    return acked


def log_of(url: str) -> list[tuple[int, str, str | None]]:
    out, after = [], 0
    while True:
        page = requests.get(url + "/v1/events", params={"after": after, "limit": 10000}, timeout=10).json()
        out += [(e["id"], e["type"], e.get("key")) for e in page["events"]]
        if page["next"] <= after or page["next"] >= page["last_id"]:
            return out
        after = page["next"]


def test_a_killed_leader_is_replaced_within_the_ttl_and_loses_nothing_acknowledged(etcd, server_factory, run_banyan, verify):
    ttl = 3
    ns, by_url, first = elected(server_factory, etcd, ttl)
    acked = acknowledged_writes(first.url, 20, "before")
    assert len(acked) == 20
    first.kill9()
    killed = time.time()
    wait_until(lambda: leader_of(etcd) not in (None, first.url) and role(leader_of(etcd)) == "leader", ttl + 5, "a new leader")
    took = time.time() - killed
    second = by_url[leader_of(etcd)]
    print(f"new leader {second.url} {took:.2f} s after kill -9 (ttl {ttl} s)")
    assert took <= ttl + 2, took
    acked.update(acknowledged_writes(second.url, 10, "after"))
    assert len(acked) == 30
    # Every acknowledged write is on the new leader, with its id.
    on_leader = {i: k for i, _, k in log_of(second.url)}
    assert all(on_leader.get(i) == k for i, k in acked.items()), [(i, k, on_leader.get(i)) for i, k in acked.items() if on_leader.get(i) != k][:5]
    # The old leader comes back as a follower of the new one and holds the same log.
    first.start()
    wait_until(lambda: role(first.url) == "follower" and log_of(first.url) == log_of(second.url), 20, "the old leader to rejoin and catch up")
    third = next(n for n in ns if n.url not in (first.url, second.url))
    wait_until(lambda: log_of(third.url) == log_of(second.url), 20, "the other follower to catch up")
    # Each election began an epoch (a renewal blip on a slow machine may add one).
    epochs = [e for e in log_of(second.url) if e[1] == "banyan.epoch"]
    assert len(epochs) >= 2, epochs
    # Byte-identical exports, and every store verifies clean.
    assert len({export(run_banyan, n) for n in ns}) == 1
    for n in ns:
        expect_clean(verify, n)


def test_a_paused_leader_steps_down_and_acknowledges_nothing_after(etcd, server_factory):
    ttl = 3
    ns, by_url, first = elected(server_factory, etcd, ttl)
    acked = acknowledged_writes(first.url, 10, "before")
    first.proc.send_signal(signal.SIGSTOP)

    def late(i: int) -> int:
        try:
            return requests.post(first.url + "/v1/events", json=[{"type": "late", "key": f"late-{i}"}], timeout=60, allow_redirects=False).status_code
        except requests.RequestException:
            return 0

    with ThreadPoolExecutor(max_workers=20) as pool:
        try:
            # Sent while it is stopped: the kernel queues them, and the node reads them the
            # moment it resumes, before it has looked at etcd again.
            pending = [pool.submit(late, i) for i in range(20)]
            wait_until(lambda: leader_of(etcd) not in (None, first.url) and role(leader_of(etcd)) == "leader", ttl + 5, "another leader")
            second = by_url[leader_of(etcd)]
            acked.update(acknowledged_writes(second.url, 10, "while-paused"))
        finally:
            first.proc.send_signal(signal.SIGCONT)
        statuses = [f.result() for f in pending]
    # None acknowledged: refused, redirected, or stored but answered 503 (the lease is not confirmed).
    assert 200 not in statuses, statuses
    wait_until(lambda: role(first.url) == "follower" and log_of(first.url) == log_of(second.url), 20, "the old leader to follow the new one")
    on_leader = {i: k for i, _, k in log_of(second.url)}
    assert len(acked) == 20 and all(on_leader.get(i) == k for i, k in acked.items())
    assert not any(k and k.startswith("late-") for _, _, k in log_of(second.url))


def test_without_etcd_the_leader_steps_down_reads_go_on_and_leadership_returns_with_it(etcd, server_factory):
    ttl = 3
    ns, by_url, leader = elected(server_factory, etcd, ttl)
    acked = acknowledged_writes(leader.url, 10, "before")
    assert len(acked) == 10
    etcd.kill9()
    killed = time.time()
    # Within half a ttl (and a poll) the leader stops; from then on no node acknowledges a write.
    wait_until(lambda: role(leader.url) == "follower", ttl / 2 + 2, "the leader to step down")
    outage = []
    while time.time() - killed < 10:
        for n in ns:
            try:
                r = requests.post(n.url + "/v1/events", json=[{"type": "w", "key": f"outage-{len(outage)}"}], timeout=2, allow_redirects=False)
                outage.append(r.status_code)
            except requests.RequestException:
                outage.append(0)
        # Reads go on everywhere.
        assert all(requests.get(n.url + "/v1/events", params={"after": 0, "limit": 1}, timeout=2).status_code == 200 for n in ns)
        time.sleep(0.2)
    assert outage and 200 not in outage, outage
    etcd.start()
    back = time.time()
    wait_until(lambda: role(leader_of(etcd) or "") == "leader", ttl + 10, "a leader once etcd is back")
    print(f"leader again {time.time() - back:.2f} s after etcd came back")
    new = by_url[leader_of(etcd)]
    acked.update(acknowledged_writes(new.url, 5, "after"))
    assert len(acked) == 15
    on_leader = {i: k for i, _, k in log_of(new.url)}
    assert all(on_leader.get(i) == k for i, k in acked.items())
    assert not any(k and k.startswith("outage-") for _, _, k in log_of(new.url))


def test_a_handover_moves_the_leadership_and_loses_nothing_without_replicas(etcd, server_factory, run_banyan):
    ttl = 3
    ns, by_url, old = elected(server_factory, etcd, ttl)
    target = next(n for n in ns if n is not old)
    # Writes acknowledged by the leader alone (no replicas asked), right up to the handover.
    acked = {}
    for i in range(200):
        r = requests.post(old.url + "/v1/events", json=[{"type": "w", "key": f"k{i}"}], timeout=5)
        assert r.status_code == 200, r.text
        acked[r.json()["results"][0]["id"]] = f"k{i}"
    # A writer goes on against the old leader during the handover: what it acknowledges must
    # be on the target too; the rest is refused (503 while handing over, then 307 or 503).
    stop = threading.Event()
    during: list[tuple[int, dict]] = []

    def write_on() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                r = requests.post(old.url + "/v1/events", json=[{"type": "w", "key": f"d{n}"}], timeout=5, allow_redirects=False)
                during.append((r.status_code, r.json() if r.headers.get("content-type", "").startswith("application/json") else {}))
            except (requests.RequestException, ValueError):
                pass

    writer = threading.Thread(target=write_on)
    writer.start()
    time.sleep(0.3)
    try:
        r = run_banyan("cluster", "handover", "--etcd", etcd.url, "--cluster", "c1", "--to", target.url, timeout=90)
    finally:
        stop.set()
        writer.join(10)
    assert r.returncode == 0, r.describe()
    answer = json.loads(r.stdout)
    assert answer["from"] == old.url and answer["to"] == target.url and answer["epoch"] > 2, answer
    assert leader_of(etcd) == target.url and role(target.url) == "leader"
    for status, body in during:
        if status == 200:
            acked[body["results"][0]["id"]] = None
    assert any(status in (503, 307) for status, _ in during), during[-5:]
    on_target = {i: k for i, _, k in log_of(target.url)}
    assert all(i in on_target and (k is None or on_target[i] == k) for i, k in acked.items())
    wait_until(lambda: role(old.url) == "follower" and log_of(old.url) == log_of(target.url), 20, "the old leader to follow")
    # Refused: to a node that is not a member (400, naming to), on a node that does not lead (409).
    r = requests.post(target.url + "/v1/admin/handover", params={"to": "http://127.0.0.1:1"}, timeout=10)
    assert r.status_code == 400 and r.json()["field"] == "to", r.text
    r = requests.post(old.url + "/v1/admin/handover", params={"to": target.url}, timeout=10)
    assert r.status_code == 409, r.text


class Relay:
    """A TCP relay on loopback that the test can cut (a partition: bytes are read and dropped,
    new connections are held open and go nowhere) and heal."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.cut_ = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.conns.append(client)
            if self.cut_.is_set():
                threading.Thread(target=self.pump, args=(client, None), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self.conns.append(upstream)
            threading.Thread(target=self.pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self.pump, args=(upstream, client), daemon=True).start()

    def pump(self, src: socket.socket, dst: socket.socket | None) -> None:
        try:
            while data := src.recv(65536):
                if dst is not None and not self.cut_.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                if s is not None and not self.cut_.is_set():
                    s.close()
            except OSError:
                pass

    def cut(self) -> None:
        self.cut_.set()

    def heal(self) -> None:
        # Connections cut stay silent; close them so both sides reconnect through the relay.
        self.cut_.clear()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.conns = []

    def close(self) -> None:
        self.server.close()
        self.heal()


def test_a_partitioned_leader_acknowledges_nothing_and_rejoins_when_healed(etcd, server_factory):
    ttl = 3
    # Each node reaches etcd, and is reached by the others, through relays the test can cut.
    etcd_relays = [Relay(etcd.port) for _ in range(3)]
    ports = [free_port() for _ in range(3)]
    node_relays = [Relay(p) for p in ports]
    ns = []
    for i in range(3):
        n = server_factory(["--cluster", "c1", "--etcd", f"http://127.0.0.1:{etcd_relays[i].port}", "--lease-ttl-seconds", str(ttl),
                            "--advertise", f"http://127.0.0.1:{node_relays[i].port}"], name=f"p{i}", start=False)
        n.port = ports[i]
        ns.append(n.start())
    try:
        advertised = {f"http://127.0.0.1:{node_relays[i].port}": i for i in range(3)}
        wait_until(lambda: leader_of(etcd) in advertised and role(ns[advertised[leader_of(etcd)]].url) == "leader", 15, "a leader")
        old = advertised[leader_of(etcd)]
        acked = acknowledged_writes(ns[old].url, 10, "before")
        assert len(acked) == 10
        etcd_relays[old].cut()
        node_relays[old].cut()
        cut = time.time()
        # A client on the leader's side of the partition: nothing is acknowledged past half a
        # ttl (the writes before that point, if any, count as acknowledged and must survive).
        # No replicas asked: only the lease gate can refuse these.
        late, n = {}, 0
        while time.time() - cut < ttl + 2:
            started = time.time()
            n += 1
            try:
                r = requests.post(ns[old].url + "/v1/events", json=[{"type": "w", "key": f"cut-{n}"}], timeout=5, allow_redirects=False)
            except requests.RequestException:
                continue
            if r.status_code == 200:
                assert started - cut < ttl / 2 + 0.3, f"acknowledged {started - cut:.2f} s after the partition"
                late[r.json()["results"][0]["id"]] = f"cut-{n}"
        wait_until(lambda: leader_of(etcd) in advertised and advertised[leader_of(etcd)] != old
                   and role(ns[advertised[leader_of(etcd)]].url) == "leader", ttl + 5, "a leader on the other side")
        new = advertised[leader_of(etcd)]
        # Acknowledged before the gate closed, without replicas: the partition may lose these
        # (docs: what --min-replicas 0 can lose), so they are not required to survive.
        print(f"{len(late)} writes acknowledged on the cut side before its lease ran out")
        acked.update(acknowledged_writes(ns[new].url, 10, "after"))
        etcd_relays[old].heal()
        node_relays[old].heal()
        wait_until(lambda: role(ns[old].url) == "follower" and log_of(ns[old].url) == log_of(ns[new].url), 30, "the old leader to rejoin")
        on_leader = {i: k for i, _, k in log_of(ns[new].url)}
        assert all(on_leader.get(i) == k for i, k in acked.items()), [(i, k, on_leader.get(i)) for i, k in acked.items() if on_leader.get(i) != k][:5]
    finally:
        for r in etcd_relays + node_relays:
            r.close()


def test_cluster_mode_refuses_what_it_cannot_do(etcd, server_factory, run_banyan, tmp_path):
    node = server_factory(["--cluster", "c1", "--etcd", etcd.url, "--lease-ttl-seconds", "2"])
    serve = ["serve", "--data-dir", str(tmp_path / "other"), "--port", str(free_port()), "--grpc-port", "0"]
    for args, words in [(["--cluster", "c1"], "go together"), (["--etcd", etcd.url], "go together"),
                        (["--cluster", "c1", "--etcd", etcd.url, "--follow", node.url], "do not go together"),
                        (["--cluster", "a/b", "--etcd", etcd.url], "--cluster takes"), (["--cluster", "c1", "--etcd", "localhost:2379"], "--etcd takes"),
                        (["--cluster", "c1", "--etcd", etcd.url, "--lease-ttl-seconds", "1"], "--lease-ttl-seconds must be")]:
        r = run_banyan(*serve, *args, timeout=30)
        assert r.returncode != 0 and words in r.stderr, (args, r.describe())
    # etcd out of reach at the start: a clear error, nothing served.
    r = run_banyan(*serve, "--cluster", "c1", "--etcd", f"http://127.0.0.1:{free_port()}", timeout=30)
    assert r.returncode == 1 and "cannot reach etcd" in r.stderr, r.describe()
    # A second node advertising a live node's URL is refused once the live lease outlasts two ttls.
    started = time.time()
    r = run_banyan(*serve, "--cluster", "c1", "--etcd", etcd.url, "--lease-ttl-seconds", "2", "--advertise", node.url, timeout=60)
    assert r.returncode == 1 and f"advertises {node.url}" in r.stderr and time.time() - started >= 2, r.describe()
    assert [m["url"] for m in members(run_banyan, etcd)["members"]] == [node.url]
    # The election decides who leads: a manual promotion is refused.
    wait_until(lambda: role(node.url) == "leader", 15, "the only node to lead")
    r = requests.post(node.url + "/v1/admin/promote", timeout=10)
    assert r.status_code == 409 and "election" in r.json()["detail"], r.text
    r = requests.post(server_factory(name="plain").url + "/v1/admin/handover", params={"to": node.url}, timeout=10)
    assert r.status_code == 409 and r.json()["error"] == "not in a cluster", r.text
    r = run_banyan("cluster", "status", "--etcd", etcd.url, "--cluster", "bad name")
    assert r.returncode != 0 and "--cluster takes" in r.stderr, r.describe()
