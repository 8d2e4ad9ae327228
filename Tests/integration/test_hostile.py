"""Adversarial tests: what an attacker or an unlucky operator does to a running `banyan serve`.

Each section pins a defect found by probing the server (issue: "Hardening"), so that it keeps
running in CI:

- a damaged write-ahead log after kill -9: never a silent start, never an id given twice;
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

# --------------------------------------------------------------------------
# a damaged write-ahead log

WAL_BATCHES = 50
WAL_BATCH_EVENTS = 1_000


def wal_records(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, type, length) of each record header in a RocksDB WAL (32 KiB blocks, 7-byte headers)."""
    out, offset = [], 0
    while offset + 7 <= len(data):
        left = 32768 - offset % 32768
        if left < 7:
            offset += left
            continue
        length = data[offset + 4] | data[offset + 5] << 8
        out.append((offset, data[offset + 6], length))
        offset += 7 + length
    return out


@pytest.fixture(scope="module")
def crashed_store(tmp_path_factory, banyan_bin):
    """A data directory after kill -9 with 50 keyed batches of 1,000 acknowledged: the log is
    all in the WAL. Returns (path, {key: id}, last acknowledged id)."""
    from conftest import BanyanServer
    base = tmp_path_factory.mktemp("crashed")
    srv = BanyanServer(banyan_bin, base / "data", base / "data.log")
    srv.start()
    acked: dict[str, int] = {}
    try:
        for b in range(WAL_BATCHES):
            batch = [{"type": "t", "key": f"k{b}-{i}", "payload": {"b": b, "i": i}} for i in range(WAL_BATCH_EVENTS)]
            r = requests.post(srv.url + "/v1/events", json=batch, timeout=60)
            assert r.status_code == 200, r.text
            for event, result in zip(batch, r.json()["results"]):
                acked[event["key"]] = result["id"]
    finally:
        srv.kill9()
    return base / "data", acked, max(acked.values())


FLIPS = ["payload@10%", "payload@50%", "payload@90%", "last-record-length", "last-record-type", "last-byte"]


@pytest.mark.parametrize("flip", FLIPS)
def test_a_damaged_wal_is_refused_and_accepting_it_never_reuses_an_id(flip, crashed_store, tmp_path, run_banyan, server_factory):
    source, acked, last_acked = crashed_store
    data = tmp_path / "data"
    shutil.copytree(source, data)
    wals = sorted(data.glob("*.log"), key=lambda p: int(p.stem))
    assert wals, "the crashed store has no WAL"
    wal = wals[-1]
    raw = bytearray(wal.read_bytes())
    last_offset = wal_records(bytes(raw))[-1][0]
    where = {
        "payload@10%": len(raw) // 10, "payload@50%": len(raw) // 2, "payload@90%": len(raw) * 9 // 10,
        "last-record-length": last_offset + 5, "last-record-type": last_offset + 6, "last-byte": len(raw) - 1,
    }[flip]
    raw[where] ^= 0x40 if flip.startswith("last-record") else 0x01
    wal.write_bytes(bytes(raw))

    # verify: exit 1, names the file and what the damage costs.
    v = run_banyan("verify", "--data-dir", str(data), "--json")
    assert v.returncode == 1, v.describe()
    report = json.loads(v.stdout.strip().splitlines()[-1])
    assert report["ok"] is False
    assert any(wal.name in p and "write-ahead log is damaged" in p for p in report["problems"]), report
    assert any(f"up to id {last_acked}" in p for p in report["problems"]), report

    # serve: refuses to start, exit non-zero, says why and the way out.
    s = run_banyan("serve", "--data-dir", str(data), "--port", "0", timeout=60)
    assert s.returncode != 0, s.describe()
    assert "write-ahead log is damaged" in s.stderr and "--accept-wal-loss" in s.stderr, s.describe()
    assert not (data / "WAL_LOSS").exists()

    # serve --accept-wal-loss: starts; every acknowledged id holds its own event or a banyan.lost one.
    srv = server_factory(extra_args=["--accept-wal-loss"], data_dir=data)
    status = requests.get(srv.url + "/v1/status", timeout=10).json()
    assert status["last_id"] == last_acked, status
    kept = lost = 0
    for key, id_ in list(acked.items())[::97] + [(f"k{WAL_BATCHES - 1}-{WAL_BATCH_EVENTS - 1}", last_acked)]:
        event = requests.get(f"{srv.url}/v1/events/{id_}", timeout=10).json()
        by_key = requests.get(f"{srv.url}/v1/events/by-key/{key}", timeout=10)
        if event["type"] == "banyan.lost":
            lost += 1
            assert by_key.status_code == 404, f"key {key} of lost id {id_} still resolves: {by_key.text}"
        else:
            kept += 1
            assert event.get("key") == key, f"id {id_} was acknowledged for {key}, now holds {event}"
            assert by_key.json()["id"] == id_
    assert lost > 0, "the flip lost nothing?"
    # A retried lost key gets a new id past every acknowledged one.
    r = requests.post(srv.url + "/v1/events", json=[{"type": "t", "key": f"k{WAL_BATCHES - 1}-{WAL_BATCH_EVENTS - 1}"}], timeout=10)
    assert r.json()["results"] == [{"id": last_acked + 1}], r.text
    srv.terminate()
    assert not (data / "WAL_LOSS").exists()
    assert run_banyan("verify", "--data-dir", str(data)).returncode == 0
