"""Cluster mode (docs/REPLICATION.md, "Cluster mode"): nodes join a cluster held in a real etcd
(Debian's etcd-server, started here on loopback with a temporary data directory), each bound to
a lease; `banyan cluster status` reads them back."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import free_port
from test_v1_api import wait_until


class Etcd:
    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("etcd")
        # A failure, not a skip: .ci/run and tools/setup-debian.sh install etcd-server.
        assert binary, "etcd not found: install Debian's etcd-server (tools/setup-debian.sh does)"
        self.port, peer = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / "etcd.log", "w")
        self.proc = subprocess.Popen(
            [binary, "--name", "t", "--data-dir", str(tmp / "etcd"), "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"t=http://127.0.0.1:{peer}"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_until(self.healthy, 30, "etcd")

    def healthy(self) -> bool:
        try:
            return requests.get(self.url + "/health", timeout=1).json().get("health") == "true"
        except requests.RequestException:
            return False

    def stop(self) -> None:
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


def test_nodes_join_with_a_lease_and_leave_with_it(etcd, server_factory, run_banyan):
    ttl = 3
    cluster = ["--cluster", "c1", "--etcd", etcd.url, "--lease-ttl-seconds", str(ttl)]
    leader = server_factory(cluster)
    follower = server_factory(["--follow", leader.url, *cluster])
    requests.post(leader.url + "/v1/events", json=[{"type": "t"}] * 5, timeout=10).raise_for_status()
    expected = {leader.url: "leader", follower.url: "follower"}
    wait_until(lambda: {m["url"]: (m["role"], m["last_id"]) for m in members(run_banyan, etcd)["members"]}
               == {u: (role, 6) for u, role in expected.items()}, 15, "both nodes listed with their role and last id")
    status = members(run_banyan, etcd)
    assert status["leaders"] == [leader.url] and all(m["epoch"] == 1 and m["lag_ids"] == 0 and 0 < m["lease_ttl_left_seconds"] <= ttl
                                                     for m in status["members"]), status
    table = run_banyan("cluster", "status", "--etcd", etcd.url, "--cluster", "c1")
    assert table.returncode == 0 and f"leader {leader.url}" in table.stdout and follower.url in table.stdout, table.describe()
    mine = requests.get(follower.url + "/v1/status", timeout=10).json()["cluster"]
    assert mine["name"] == "c1" and mine["url"] == follower.url and mine["etcd"] == [etcd.url] and mine["lease_ttl_seconds"] == ttl
    assert mine["last_renewal_seconds"] < ttl, mine
    assert requests.get(leader.url + "/v1/status", timeout=10).json()["cluster"]["url"] == leader.url
    # Another cluster in the same etcd is another set of keys.
    assert members(run_banyan, etcd, "c2")["members"] == []

    # A crashed node's key goes with its lease, after the ttl (not before a third of it).
    follower.kill9()
    killed = time.time()
    time.sleep(ttl / 3)
    assert follower.url in {m["url"] for m in members(run_banyan, etcd)["members"]}
    wait_until(lambda: follower.url not in {m["url"] for m in members(run_banyan, etcd)["members"]}, ttl + 3, "the killed node's key to expire")
    assert time.time() - killed <= ttl + 3
    # A node stopped cleanly revokes its lease: gone at once.
    assert leader.terminate() == 0
    assert members(run_banyan, etcd)["members"] == []


def test_cluster_mode_refuses_what_it_cannot_do(etcd, server_factory, run_banyan, tmp_path):
    node = server_factory(["--cluster", "c1", "--etcd", etcd.url, "--lease-ttl-seconds", "2"])
    serve = ["serve", "--data-dir", str(tmp_path / "other"), "--port", str(free_port())]
    for args, words in [(["--cluster", "c1"], "go together"), (["--etcd", etcd.url], "go together"),
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
    r = run_banyan("cluster", "status", "--etcd", etcd.url, "--cluster", "bad name")
    assert r.returncode != 0 and "--cluster takes" in r.stderr, r.describe()
