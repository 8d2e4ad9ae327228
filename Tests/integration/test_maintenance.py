"""Snapshots with real processes (docs/OPERATIONS.md, "Backup and restore"): a snapshot taken by a
running server while clients append, downloaded with `banyan snapshot --url`, verified and
restored with the CLI into a store whose export equals the source's up to S; retention, the
schedule, one job at a time, the `banyan.maintenance` stream, and bad input refused with nothing
left behind.
"""
from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from test_replication import JSON, expect_error, export
from test_v1_api import wait_until

ADMIN = {"Authorization": "Bearer adm"}


def append_batches(url: str, prefix: str, batches: int, size: int = 200, headers: dict | None = None) -> list[int]:
    ids: list[int] = []
    for b in range(batches):
        events = [{"type": "build" if i % 3 else "test", "key": f"{prefix}-{b}-{i}", "stream": f"s{i % 4}",
                   "parents": [1], "payload": {"b": b, "i": i}} for i in range(size)]
        r = requests.post(url + "/v1/events", json=events, headers={**JSON, **(headers or {})}, timeout=30)
        assert r.status_code == 200, r.text
        ids += [e["id"] for e in r.json()["results"]]
    return ids


def lines_through(jsonl: bytes, last: int) -> list[bytes]:
    return [line for line in jsonl.splitlines() if line and json.loads(line)["id"] <= last]


def maintenance_events(url: str, headers: dict | None = None) -> list[dict]:
    r = requests.post(url + "/v1/query", json={"query": 'events where stream = "banyan.maintenance"'}, headers={**JSON, **(headers or {})}, timeout=10)
    assert r.status_code == 200, r.text
    events = []
    for hit in r.json()["results"]:
        got = requests.get(f"{url}/v1/events/{hit['id']}", headers=headers or {}, timeout=10)
        assert got.status_code == 200, got.text
        events.append(got.json())
    return events


def test_snapshot_during_ingest_restores_to_the_source_up_to_s(server, run_banyan, verify, tmp_path):
    append_batches(server.url, "pre", 10)
    stop = threading.Event()
    written: list[int] = []
    errors: list[str] = []

    def writer():
        n = 0
        while not stop.is_set():
            try:
                written.extend(append_batches(server.url, f"during{n}", 1, 100))
            except AssertionError as e:
                errors.append(str(e))
                return
            n += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(0.3)
        archive = tmp_path / "s.bsnap"
        r = run_banyan("snapshot", "--url", server.url, "--output", str(archive))
        assert r.returncode == 0, r.describe()
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(30)
    assert not errors, errors
    assert written, "no appends ran during the snapshot"
    listing = requests.get(server.url + "/v1/admin/snapshots", timeout=10).json()
    assert len(listing["snapshots"]) == 1
    entry = listing["snapshots"][0]
    s = entry["snapshot_id"]
    assert min(written) <= s < max(written), f"S={s} is not inside the appends that ran meanwhile"
    assert archive.stat().st_size == entry["archive_bytes"]

    r = run_banyan("snapshot", "verify", str(archive))
    assert r.returncode == 0 and "snapshot verify: ok" in r.stdout, r.describe()

    restored = tmp_path / "restored"
    r = run_banyan("restore", str(archive), "--data-dir", str(restored))
    assert r.returncode == 0, r.describe()
    assert verify(restored).ok
    source = export(run_banyan, server)
    out = tmp_path / "restored.jsonl"
    r = run_banyan("export", "--data-dir", str(restored), "--output", str(out))
    assert r.returncode == 0, r.describe()
    copy = out.read_bytes().splitlines()
    assert len(copy) == s
    assert copy == lines_through(source, s)

    # The run is in the maintenance stream: started, then finished with the started one as parent.
    events = maintenance_events(server.url)
    assert [e["type"] for e in events] == ["banyan.snapshot.started", "banyan.snapshot.finished"]
    started, finished = events
    assert finished["parents"] == [started["id"]]
    assert finished["payload"]["snapshot_id"] == s and finished["payload"]["name"] == entry["name"]
    assert started["payload"]["requested_by"] == "anonymous"
    assert started["id"] <= s < finished["id"], "the archive holds the started event and not the finished one"


def test_retention_keeps_the_newest_and_jobs_report_them(server_factory):
    srv = server_factory(extra_args=["--snapshot-keep", "2"])
    names = []
    for i in range(3):
        append_batches(srv.url, f"r{i}", 1, 10)
        r = requests.post(srv.url + "/v1/admin/snapshots", timeout=60)
        assert r.status_code == 201, r.text
        names.append(r.json()["snapshot"]["name"])
        assert r.json()["removed"] == ([] if i < 2 else [names[0]])
    listed = [e["name"] for e in requests.get(srv.url + "/v1/admin/snapshots", timeout=10).json()["snapshots"]]
    assert listed == [names[2], names[1]]
    assert sorted(p.name for p in (srv.data_dir / "snapshots").iterdir()) == sorted(names[1:]), "no checkpoint or partial file left"
    jobs = requests.get(srv.url + "/v1/admin/jobs", timeout=10).json()
    assert jobs["running"] is None
    assert [j["state"] for j in jobs["recent"]] == ["finished"] * 3
    assert jobs["recent"][0]["result"]["name"] == names[2]
    metrics = requests.get(srv.url + "/metrics", timeout=10).text
    assert 'banyan_maintenance_jobs_total{kind="snapshot",outcome="finished"} 3' in metrics, metrics


def test_scheduled_snapshots_run_and_record_who_asked(server_factory, tmp_path):
    snapdir = tmp_path / "elsewhere"
    srv = server_factory(extra_args=["--snapshot-every", "1s", "--snapshot-dir", str(snapdir), "--snapshot-keep", "5"])
    append_batches(srv.url, "x", 1, 10)
    wait_until(lambda: len(list(snapdir.glob("*.bsnap"))) >= 2, 20, "two scheduled snapshots")
    events = maintenance_events(srv.url)
    starts = [e for e in events if e["type"] == "banyan.snapshot.started"]
    assert len(starts) >= 2 and all(e["payload"]["requested_by"] == "schedule" for e in starts)


def test_admin_role_token_names_and_refusals(server_factory, run_banyan, tmp_path, monkeypatch):
    tokens = tmp_path / "tokens"
    tokens.write_text("adm admin ops-oncall\nwr write\n")
    srv = server_factory(extra_args=["--tokens-file", str(tokens)])
    expect_error(requests.post(srv.url + "/v1/admin/snapshots", timeout=10), 401)
    expect_error(requests.post(srv.url + "/v1/admin/snapshots", headers={"Authorization": "Bearer wr"}, timeout=10), 403)
    r = requests.post(srv.url + "/v1/admin/snapshots", headers=ADMIN, timeout=60)
    assert r.status_code == 201, r.text
    name = r.json()["snapshot"]["name"]
    started = [e for e in maintenance_events(srv.url, ADMIN) if e["type"] == "banyan.snapshot.started"]
    assert started[0]["payload"]["requested_by"] == "ops-oncall"

    # Download: the bytes on disk; a bad or unknown name is refused.
    got = requests.get(srv.url + "/v1/admin/snapshots/" + name, headers=ADMIN, timeout=30)
    assert got.status_code == 200 and got.headers["Content-Type"] == "application/zstd"
    assert got.content == (srv.data_dir / "snapshots" / name).read_bytes()
    expect_error(requests.get(srv.url + "/v1/admin/snapshots/nope.bsnap", headers=ADMIN, timeout=10), 404, field="name")
    expect_error(requests.get(srv.url + "/v1/admin/snapshots/..%2Fx", headers=ADMIN, timeout=10), 400, field="name")

    # The CLI names the token problem and the data directory in use.
    out = tmp_path / "a.bsnap"
    r = run_banyan("snapshot", "--url", srv.url, "--output", str(out))
    assert r.returncode == 1 and "401" in r.stderr and not out.exists(), r.describe()
    # Given the data directory of a running server, the CLI asks that server (here without a token: 401).
    r = run_banyan("snapshot", "--data-dir", str(srv.data_dir), "--output", str(out))
    assert r.returncode == 1 and f"open by the server at http://127.0.0.1:{srv.port}" in r.stderr and "401" in r.stderr and not out.exists(), r.describe()
    monkeypatch.setenv("BANYAN_TOKEN", "adm")
    r = run_banyan("snapshot", "--data-dir", str(srv.data_dir), "--output", str(out))
    assert r.returncode == 0 and out.exists(), r.describe()
    assert run_banyan("snapshot", "verify", str(out)).returncode == 0
    # Once it stops, the mark it left is gone and the data directory is read directly.
    srv.terminate()
    assert not (srv.data_dir / "banyan-server.json").exists()
    direct = tmp_path / "direct.bsnap"
    r = run_banyan("snapshot", "--data-dir", str(srv.data_dir), "--output", str(direct))
    assert r.returncode == 0 and "asking" not in r.stderr, r.describe()


def test_bad_archives_and_targets_are_refused_with_nothing_left_behind(server, run_banyan, tmp_path):
    append_batches(server.url, "b", 2, 50)
    archive = tmp_path / "good.bsnap"
    assert run_banyan("snapshot", "--url", server.url, "--output", str(archive)).returncode == 0
    r = run_banyan("snapshot", "--url", server.url, "--output", str(archive))
    assert r.returncode != 0 and "already exists" in r.stderr, r.describe()

    data = bytearray(archive.read_bytes())
    cases = {
        "truncated.bsnap": bytes(data[: len(data) // 2]),
        "flipped.bsnap": bytes(data[:100]) + bytes([data[100] ^ 0x40]) + bytes(data[101:]),
        "text.bsnap": b"not an archive\n",
    }
    for name, content in cases.items():
        bad = tmp_path / name
        bad.write_bytes(content)
        r = run_banyan("snapshot", "verify", str(bad))
        assert r.returncode == 1 and ("corrupt" in r.stderr or "truncated" in r.stderr), (name, r.describe())
        target = tmp_path / f"restore-{name}"
        r = run_banyan("restore", str(bad), "--data-dir", str(target))
        assert r.returncode == 1, (name, r.describe())
        assert not target.exists()
        assert not list(tmp_path.glob(f"restore-{name}.restoring-*")), "a staging directory was left behind"

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "mine").write_text("keep me")
    r = run_banyan("restore", str(archive), "--data-dir", str(occupied))
    assert r.returncode == 1 and "not empty" in r.stderr, r.describe()
    assert [p.name for p in occupied.iterdir()] == ["mine"]

    r = run_banyan("serve", "--snapshot-every", "soon", "--data-dir", str(tmp_path / "x"))
    assert r.returncode == 64 and "--snapshot-every" in r.stderr, r.describe()
    r = run_banyan("serve", "--snapshot-keep", "0", "--data-dir", str(tmp_path / "x"))
    assert r.returncode == 64 and "--snapshot-keep" in r.stderr, r.describe()


# ---------------------------------------------------------------------------------- compaction

LINEAGE_QUERIES = [
    "count(ancestors(400))", "ancestors(350)", "descendants(3) limit 500", "count(descendants(2))", "roots(ancestors(420))",
    "heads(descendants(2))", "path(2, 420)", "count(between(5, 400))", 'count(events where type = "build")',
    'events where stream = "s1" limit 300', 'events where key = "c-1-7"', "count(events where id < 450 and time > 0)",
]


def lineage_answers(url: str) -> list:
    answers = []
    for q in LINEAGE_QUERIES:
        r = requests.post(url + "/v1/query", json={"query": q}, headers=JSON, timeout=30)
        assert r.status_code == 200, (q, r.text)
        body = r.json()
        answers.append((q, body.get("results"), body.get("count"), body.get("paths"), body["truncated"]))
    return answers


def chained_batches(url: str, batches: int, size: int = 100) -> None:
    """Events that each name the previous one and an older one, with keys, streams, messages and payloads."""
    for b in range(batches):
        last = requests.get(url + "/v1/status", timeout=10).json()["last_id"]
        events = [{"type": "build" if i % 3 else "test", "key": f"c-{b}-{i}", "stream": f"s{i % 4}", "message": f"step {i}",
                   "parents": [last + i] + ([last + i - 7] if i >= 7 else []), "payload": {"b": b, "i": i, "pad": "x" * 200}}
                  for i in range(size)]
        r = requests.post(url + "/v1/events", json=events, headers=JSON, timeout=30)
        assert r.status_code == 200, r.text


def test_compaction_is_replicated_and_keeps_every_lineage_answer(server_factory, run_banyan, verify):
    leader = server_factory(name="leader")
    followers = [server_factory(name=f"f{n}", extra_args=["--follow", leader.url]) for n in (1, 2)]
    chained_batches(leader.url, 5)
    last = requests.get(leader.url + "/v1/status", timeout=10).json()["last_id"]
    wait_until(lambda: all(requests.get(f.url + "/v1/status", timeout=5).json()["applied_id"] >= last for f in followers), 30, "followers caught up")
    before = lineage_answers(leader.url)
    assert before == lineage_answers(followers[0].url)

    horizon = last * 9 // 10
    r = run_banyan("compact", "--url", leader.url, "--before", str(horizon))
    assert r.returncode == 0, r.describe()
    answer = json.loads(r.stdout)
    assert answer["compacted"] == horizon - 1 and answer["spec"]["before"] == horizon
    control = answer["control"]

    def compacted_everywhere():
        return all(requests.get(f"{n.url}/v1/events/{horizon - 1}", timeout=5).json().get("compacted") for n in [leader, *followers])
    wait_until(compacted_everywhere, 30, "every node carried out the compaction")
    for node in [leader, *followers]:
        assert lineage_answers(node.url) == before, node.url
        event = requests.get(f"{node.url}/v1/events/10", timeout=5).json()
        assert event["compacted"] is True and "payload" not in event and "message" not in event
        assert event["dropped"]["payload_bytes"] > 200
        assert requests.get(f"{node.url}/v1/events/{horizon}", timeout=5).json().get("payload") is not None
        # CelestialTree's routes keep its shapes: the event without message and payload.
        ct = requests.get(f"{node.url}/event/10", timeout=5).json()
        assert set(ct) == {"id", "time_unix_nano", "type", "parents", "key", "stream"}, ct
        r = requests.post(node.url + "/v1/query", json={"query": "count(events where payload.i = 3)"}, headers=JSON, timeout=10).json()
        # Event id = 2 + 100 * batch + i: those at or above the horizon keep their payload.
        assert r["count"] == sum(1 for i in range(horizon, last + 1) if (i - 2) % 100 == 3), r
        # Unknown on every compacted event that had a payload: all but genesis (a message only).
        assert r["stats"]["compacted"] == horizon - 2 and "compaction" in r["stats"]["horizon"], r
    # The followers ran it from the log; the leader recorded start and finish.
    wait_until(lambda: requests.get(followers[0].url + "/v1/admin/jobs", timeout=5).json()["recent"], 30, "the follower's job to end")
    jobs = requests.get(followers[0].url + "/v1/admin/jobs", timeout=5).json()["recent"]
    assert jobs[0]["kind"] == "compaction" and jobs[0]["requested_by"] == "log" and jobs[0]["result"]["control"] == control
    events = maintenance_events(leader.url)
    assert [e["type"] for e in events] == ["banyan.compaction.started", "banyan.compaction.finished"]
    assert events[1]["parents"] == [control]

    # A keyed retry of a compacted event is a duplicate, not a conflict.
    retry = {"type": "test", "key": "c-0-0", "stream": "s0", "message": "step 0", "parents": [1], "payload": {"b": 0, "i": 0, "pad": "x" * 200}}
    first = requests.get(leader.url + "/v1/events/by-key/c-0-0", timeout=5).json()
    retry["parents"] = first["parents"]
    r = requests.post(leader.url + "/v1/events", json=[retry], headers=JSON, timeout=10)
    assert r.status_code == 200 and r.json()["results"] == [{"id": first["id"], "duplicate": True}], r.text
    retry["payload"]["i"] = 1
    assert requests.post(leader.url + "/v1/events", json=[retry], headers=JSON, timeout=10).status_code == 409

    for node in [leader, *followers]:
        node.terminate()
    exports = [export(run_banyan, node) for node in [leader, *followers]]
    assert exports[0] == exports[1] == exports[2]
    for node in [leader, *followers]:
        result = verify(node.data_dir)
        assert result.ok and result.report["compacted"] == horizon - 1, result.describe()


def test_compaction_cut_by_kill_9_resumes_after_restart(server_factory, run_banyan, verify):
    srv = server_factory()
    chained_batches(srv.url, 60, 500)
    last = requests.get(srv.url + "/v1/status", timeout=10).json()["last_id"]

    def ask():
        try:
            requests.post(srv.url + "/v1/admin/compactions", json={"older_than": "1ms"}, headers=JSON, timeout=60)
        except requests.RequestException:
            pass

    t = threading.Thread(target=ask)
    t.start()
    def rewriting():
        running = requests.get(srv.url + "/v1/admin/jobs", timeout=5).json()["running"]
        return running is not None and running["done"] > 0
    wait_until(rewriting, 20, "the compaction to have rewritten a first batch")
    srv.kill9()
    t.join(30)
    assert verify(srv.data_dir).ok, "consistent after kill -9 mid-compaction"
    srv.restart()
    wait_until(lambda: requests.get(f"{srv.url}/v1/events/{last}", timeout=5).json().get("compacted") is True, 60, "the restarted server to finish it")
    wait_until(lambda: len(maintenance_events(srv.url)) == 2, 30, "the finish to be recorded")
    resumed = requests.get(srv.url + "/v1/admin/jobs", timeout=5).json()["recent"]
    assert resumed and resumed[0]["requested_by"] == "log", f"the restart resumed the cut-off run: {resumed}"
    assert resumed[0]["result"]["examined"] < last, "it resumed from its progress mark rather than from the start"
    started, finished = maintenance_events(srv.url)
    assert finished["type"] == "banyan.compaction.finished" and finished["parents"] == [started["id"]]
    for i in (2, last // 2, last):
        assert requests.get(f"{srv.url}/v1/events/{i}", timeout=5).json().get("compacted") is True
    srv.terminate()
    result = verify(srv.data_dir)
    assert result.ok and result.report["compacted"] == last, result.describe()


def test_compaction_refusals(server_factory, run_banyan, tmp_path):
    leader = server_factory(name="leader")
    follower = server_factory(name="f", extra_args=["--follow", leader.url])
    chained_batches(leader.url, 1, 20)
    post = lambda url, body: requests.post(url + "/v1/admin/compactions", json=body, headers=JSON, timeout=30)
    expect_error(post(leader.url, {"before": 10_000}), 400, field="before")
    expect_error(post(leader.url, {"before": 1}), 400, field="before")
    expect_error(post(leader.url, {}), 400)
    expect_error(post(leader.url, {"before": 5, "older_than": "1d"}), 400)
    expect_error(post(leader.url, {"older_than": "soon"}), 400, field="older_than")
    expect_error(post(leader.url, {"before": 5, "colour": "red"}), 400)
    expect_error(post(follower.url, {"before": 5}), 409, "not the leader")
    expect_error(requests.post(leader.url + "/v1/events", json=[{"type": "banyan.compaction.started"}], headers=JSON, timeout=10), 400, field="type")
    expect_error(requests.post(leader.url + "/emit", json={"type": "banyan.epoch"}, timeout=10), 400)
    assert maintenance_events(leader.url) == [], "nothing was recorded"
    r = run_banyan("compact", "--url", leader.url)
    assert r.returncode == 64 and "exactly one" in r.stderr, r.describe()
    r = run_banyan("compact", "--data-dir", str(leader.data_dir), "--before", "5")
    assert r.returncode == 1 and "in use by a running server" in r.stderr, r.describe()

    # A stopped store is compacted alone, nothing recorded.
    leader.terminate()
    r = run_banyan("compact", "--data-dir", str(leader.data_dir), "--before", "10", "--stream", "s1")
    assert r.returncode == 0 and "compacted" in r.stdout, r.describe()
    r = run_banyan("get", "--data-dir", str(leader.data_dir), "7")
    assert r.returncode == 0 and '"compacted":true' in r.stdout, r.describe()


def mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): {r.stderr.strip()}")


def test_a_full_or_read_only_snapshot_directory_fails_cleanly(server_factory, verify, tmp_path):
    full, readonly = tmp_path / "full", tmp_path / "readonly"
    mount_tmpfs(full, "size=64k")
    try:
        mount_tmpfs(readonly, "ro,size=1m")
        try:
            for snapdir, reason in ((full, "No space left"), (readonly, "Read-only file system")):
                srv = server_factory(name=f"srv-{snapdir.name}", extra_args=["--snapshot-dir", str(snapdir)])
                chained_batches(srv.url, 10)  # an image of about 200 KB
                r = requests.post(srv.url + "/v1/admin/snapshots", timeout=60)
                assert r.status_code == 500 and reason in r.text, r.text
                assert list(snapdir.iterdir()) == [], "nothing half-written left behind"
                jobs = requests.get(srv.url + "/v1/admin/jobs", timeout=10).json()
                assert jobs["running"] is None and jobs["recent"][0]["state"] == "failed" and reason in jobs["recent"][0]["error"]
                types = [e["type"] for e in maintenance_events(srv.url)]
                assert types == ["banyan.snapshot.started", "banyan.snapshot.failed"], types
                append_batches(srv.url, "after", 1, 10)  # the live store takes writes as before
                srv.terminate()
                assert verify(srv.data_dir).ok
        finally:
            subprocess.run(["umount", str(readonly)], check=False)
    finally:
        subprocess.run(["umount", str(full)], check=False)


def test_a_follower_takes_snapshots_without_recording_them(server_factory, run_banyan, verify, tmp_path):
    leader = server_factory(name="leader")
    follower = server_factory(name="f", extra_args=["--follow", leader.url])
    append_batches(leader.url, "fs", 3, 50)
    last = requests.get(leader.url + "/v1/status", timeout=10).json()["last_id"]
    wait_until(lambda: requests.get(follower.url + "/v1/status", timeout=5).json()["applied_id"] >= last, 30, "the follower to catch up")
    r = requests.post(follower.url + "/v1/admin/snapshots", timeout=60)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["events"] == {"started": None, "finished": None}
    assert body["snapshot"]["snapshot_id"] == last
    archive = tmp_path / "from-follower.bsnap"
    assert run_banyan("snapshot", "--url", follower.url, "--output", str(archive)).returncode == 0
    restored = tmp_path / "restored"
    assert run_banyan("restore", str(archive), "--data-dir", str(restored)).returncode == 0
    assert verify(restored).ok
    assert maintenance_events(leader.url) == [] and requests.get(leader.url + "/v1/status", timeout=5).json()["last_id"] == last


def test_sigterm_stops_a_running_compaction_which_resumes_at_the_next_start(server_factory, verify):
    srv = server_factory()
    chained_batches(srv.url, 60, 500)
    last = requests.get(srv.url + "/v1/status", timeout=10).json()["last_id"]
    t = threading.Thread(target=lambda: requests.post(srv.url + "/v1/admin/compactions", json={"older_than": "1ms"}, headers=JSON, timeout=120))
    t.start()

    def rewriting():
        running = requests.get(srv.url + "/v1/admin/jobs", timeout=5).json()["running"]
        return running is not None and running["done"] > 0
    wait_until(rewriting, 20, "the compaction to have rewritten a first batch")
    started = time.monotonic()
    srv.terminate()
    stopped_in = time.monotonic() - started
    t.join(30)
    assert stopped_in < 10, f"the shutdown waited {stopped_in:.1f} s for the compaction"
    assert verify(srv.data_dir).ok
    srv.restart()
    wait_until(lambda: requests.get(f"{srv.url}/v1/events/{last}", timeout=5).json().get("compacted") is True, 60, "the restarted server to finish it")
    wait_until(lambda: maintenance_events(srv.url)[-1]["type"] == "banyan.compaction.finished", 30, "the finish to be recorded")
    types = [e["type"] for e in maintenance_events(srv.url)]
    assert types[0] == "banyan.compaction.started", types
    resumed = wait_until(lambda: requests.get(srv.url + "/v1/admin/jobs", timeout=5).json()["recent"], 30, "the resumed job to end")
    assert resumed and resumed[0]["requested_by"] == "log" and resumed[0]["result"]["examined"] < last, f"it was cut and resumed: {resumed}"


# ---- pruning below a snapshot ------------------------------------------------------------------

SEGMENT = 65_536  # Limits.segmentEventsMax: the prune cuts at sealed-segment boundaries


def fill_past_a_segment(url: str, prefix: str) -> int:
    """Genesis plus 70,000 keyed events: segment 1...65,536 seals, the log goes on past it."""
    ids = append_batches(url, prefix, 7, 10_000)
    return ids[-1]


def test_prune_below_a_snapshot_answers_gone_below_and_keeps_the_rest(server_factory, run_banyan, verify, tmp_path):
    server = server_factory(extra_args=["--snapshot-keep", "1"])
    last = fill_past_a_segment(server.url, "p")
    before = requests.get(server.url + f"/v1/events?after={SEGMENT}&limit=1000", timeout=30).json()["events"]
    r = requests.post(server.url + "/v1/admin/snapshots", json={"prune": True}, timeout=300)
    assert r.status_code == 201, r.text
    pruned = r.json()["pruned"]
    archive = server.data_dir / "snapshots" / r.json()["snapshot"]["name"]
    assert pruned["first_id"] == SEGMENT + 1 and pruned["events_removed"] == SEGMENT and pruned["segments_removed"] == 1, pruned
    assert pruned["snapshot"] == archive.name and pruned["bytes_after"] < pruned["bytes_before"], pruned
    st = requests.get(server.url + "/v1/status", timeout=10).json()
    assert st["first_id"] == SEGMENT + 1 and st["pruned"] == {"first_id": SEGMENT + 1, "archives": [{"first_id": SEGMENT + 1, "name": archive.name}]}, st
    assert f"banyan_store_first_id {SEGMENT + 1}" in requests.get(server.url + "/metrics", timeout=10).text

    # Below the cut: a clear 410 naming the first id and the snapshot, on every kind of read.
    gone = expect_error(requests.get(server.url + "/v1/events/100", timeout=10), 410, "pruned")
    assert f"holds ids from {SEGMENT + 1}" in gone["detail"] and archive.name in gone["detail"], gone
    expect_error(requests.get(server.url + "/v1/events?after=0", timeout=10), 410, "pruned")
    for route in ("/provenance/100", "/descendants/100", "/provenance/100?view=meta"):
        assert requests.get(server.url + route, timeout=10).status_code == 410, route
    assert requests.get(server.url + "/v1/stream", headers={"Last-Event-ID": "10"}, timeout=10, stream=True).status_code == 410
    assert requests.get(server.url + "/v1/stream?after=0", timeout=10, stream=True).status_code == 410
    assert requests.get(server.url + "/healthz", timeout=10).status_code == 200, "the server survived every read below the cut"
    expect_error(requests.get(server.url + "/v1/events/by-key/p-0-5", timeout=10), 410, "pruned")
    expect_error(requests.post(server.url + "/v1/query", json={"query": "ancestors(100)"}, headers=JSON, timeout=10), 410, "pruned")
    assert requests.get(server.url + "/event/100", timeout=10).status_code == 410
    # Above it: what was there before, and walks that report where they stop.
    assert requests.get(server.url + f"/v1/events?after={SEGMENT}&limit=1000", timeout=30).json()["events"] == before
    q = requests.post(server.url + "/v1/query", json={"query": f"ancestors({last})"}, headers=JSON, timeout=10).json()
    assert q["results"] == [] and q["stats"]["pruned_below"] == SEGMENT + 1 and "pruned" in q["stats"]["horizon"], q
    # A retried keyed append of a pruned event is still a duplicate, never a second copy.
    retry = requests.post(server.url + "/v1/events", json=[{"type": "test", "key": "p-0-3", "stream": "s3", "parents": [1], "payload": {"b": 0, "i": 3}}],
                          headers=JSON, timeout=10)
    assert retry.status_code == 200 and retry.json()["results"][0]["duplicate"] is True and retry.json()["results"][0]["id"] == 5, retry.text

    # A second prune: the store keeps both archives, each naming the ids it holds.
    fill_past_a_segment(server.url, "q")
    r = requests.post(server.url + "/v1/admin/snapshots", json={"prune": True}, timeout=300)
    assert r.status_code == 201 and r.json()["pruned"]["first_id"] == 2 * SEGMENT + 1, r.text
    second = server.data_dir / "snapshots" / r.json()["snapshot"]["name"]
    assert r.json()["snapshot"]["first_id"] == SEGMENT + 1, "the second image starts where the first prune left the store"
    assert archive.name in expect_error(requests.get(server.url + "/v1/events/100", timeout=10), 410, "pruned")["detail"]
    assert second.name in expect_error(requests.get(server.url + f"/v1/events/{SEGMENT + 100}", timeout=10), 410, "pruned")["detail"]
    # Retention (--snapshot-keep 1) never removes an archive the store was pruned below.
    for _ in range(2):
        assert requests.post(server.url + "/v1/admin/snapshots", timeout=300).status_code == 201
    names = [s["name"] for s in requests.get(server.url + "/v1/admin/snapshots", timeout=10).json()["snapshots"]]
    assert len(names) == 3 and archive.name in names and second.name in names, names
    runs = [e for e in maintenance_events(server.url) if e["type"] == "banyan.snapshot.finished"]
    # The first run's events were themselves pruned by the second; the rest are there.
    assert runs[0]["payload"]["pruned"]["first_id"] == 2 * SEGMENT + 1 and runs[-1]["payload"]["pruned"] is None, runs

    final = requests.get(server.url + "/v1/status", timeout=10).json()["last_id"]
    server.terminate()
    res = verify(server.data_dir)
    assert res.ok and res.report["pruned_below"] == 2 * SEGMENT + 1 and res.report["events"] == final - 2 * SEGMENT, res.describe()
    exported = tmp_path / "after.jsonl"
    assert run_banyan("export", "--data-dir", str(server.data_dir), "--output", str(exported)).returncode == 1
    r = run_banyan("export", "--data-dir", str(server.data_dir), "--after", str(2 * SEGMENT), "--output", str(exported))
    assert r.returncode == 0, r.describe()
    # The first archive restores the whole log up to its id; the second, the ids from the first cut up to its own.
    restored = tmp_path / "restored"
    r = run_banyan("restore", str(archive), "--data-dir", str(restored))
    assert r.returncode == 0, r.describe()
    whole = verify(restored)
    assert whole.ok and whole.report["pruned_below"] is None and whole.report["events"] >= last, whole.describe()
    r = run_banyan("restore", str(second), "--data-dir", str(tmp_path / "restored2"))
    assert r.returncode == 0 and f"events {SEGMENT + 1}..." in r.stdout, r.describe()
    assert verify(tmp_path / "restored2").report["pruned_below"] == SEGMENT + 1
    server.start()
    assert requests.get(server.url + "/v1/status", timeout=10).json()["first_id"] == 2 * SEGMENT + 1


def test_cli_prunes_a_stopped_store_and_a_follower_bootstraps_from_the_leaders_snapshot(server_factory, run_banyan, verify, tmp_path):
    leader = server_factory(name="leader")
    early = server_factory(name="early", extra_args=["--follow", leader.url])
    append_batches(leader.url, "e", 1, 100)
    wait_until(lambda: requests.get(early.url + "/v1/status", timeout=10).json()["applied_id"] >= 101, 30, "the early follower to catch up")
    early.terminate()
    fill_past_a_segment(leader.url, "f")
    r = requests.post(leader.url + "/v1/admin/snapshots", json={"prune": True}, timeout=300)
    assert r.status_code == 201 and r.json()["pruned"]["first_id"] == SEGMENT + 1, r.text
    s = r.json()["snapshot"]["snapshot_id"]
    append_batches(leader.url, "after", 3, 100)

    # A new follower with an empty data directory restores the leader's newest snapshot, then ships
    # from it; also when its first start, with the leader out of reach, left an empty store.
    fresh = server_factory(name="fresh", extra_args=["--follow", "http://127.0.0.1:9"])
    fresh.terminate()
    assert (fresh.data_dir / "CURRENT").exists()
    fresh.extra_args = ("--follow", leader.url)
    fresh.start()
    assert "bootstrapped from the leader's snapshot" in fresh.log(), fresh.log()
    last = requests.get(leader.url + "/v1/status", timeout=10).json()["last_id"]
    wait_until(lambda: requests.get(fresh.url + "/v1/status", timeout=10).json()["applied_id"] >= last, 60, "the bootstrapped follower to catch up")
    # It holds the snapshot's whole log (the leader pruned after taking it), and the same events after it.
    assert requests.get(fresh.url + "/v1/events/100", timeout=10).status_code == 200
    page = f"/v1/events?after={s - 50}&limit=1000"
    assert requests.get(fresh.url + page, timeout=30).json()["events"] == requests.get(leader.url + page, timeout=30).json()["events"]

    # A follower whose own log ends below the leader's first id is refused, its data untouched.
    early._spawn()  # not start(): it must exit, not become healthy
    assert early.proc.wait(timeout=60) != 0
    assert "pruned below" in early.log() and "Move" in early.log(), early.log()
    assert verify(early.data_dir).report["events"] == 101

    # The CLI prunes a stopped store below an archive it writes.
    fresh.terminate()
    archive = tmp_path / "cli.bsnap"
    r = run_banyan("snapshot", "--data-dir", str(fresh.data_dir), "--output", str(archive), "--prune", timeout=300)
    assert r.returncode == 0 and f"now holds ids from {SEGMENT + 1}" in r.stdout, r.describe()
    res = verify(fresh.data_dir)
    assert res.ok and res.report["pruned_below"] == SEGMENT + 1, res.describe()
