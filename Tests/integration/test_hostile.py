"""Adversarial tests: what an attacker or an unlucky operator does to a running `banyan serve`.

Each section pins a defect found by probing the server (issue: "Hardening"), so that it keeps
running in CI:

- a damaged write-ahead log after kill -9: never a silent start, never an id given twice;
- slow and silent connections (slowloris) closed by the header, body and idle timeouts, and
  descriptor exhaustion answered by the connection limit and an accept back-off, /healthz
  answering throughout; a client that leaves an SSE stream frees its slot at once;
- cross-site writes: a foreign Host (DNS rebinding), a foreign Origin, or a body that is not JSON
  is refused on the default no-auth loopback server, while the celestialtree client still works;
- the small ones: HEAD answered as GET without a body, `Allow` on every 405, ids with leading
  zeros refused, blank types and control characters in names refused, `banyan query` exits 3 on a
  truncated answer, a token listed twice refused, forged query cursors refused;
- lone UTF-16 surrogates (`\\ud800`) refused in every string of every JSON route, naming the field,
  instead of being decoded to U+FFFD (which made distinct keys collide);
- query answers bounded in bytes, time and memory: the ladder `paths` query and a page of fat payloads;
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
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
    s = run_banyan("serve", "--data-dir", str(data), "--port", "0", "--grpc-port", "0", timeout=60)
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


# --------------------------------------------------------------------------
# connections: timeouts, the connection limit, descriptor exhaustion


def raw_connection(srv, payload: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    if payload:
        s.sendall(payload)
    return s


def wait_closed(sock: socket.socket, limit_s: float) -> float | None:
    """Seconds until the server closed `sock` (EOF or reset), reading and discarding anything
    it sends; None if it was still open after `limit_s`."""
    start = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < limit_s:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - start
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - start
    return None


def healthz_ms(srv) -> float:
    t = time.monotonic()
    r = requests.get(srv.url + "/healthz", timeout=5)
    assert r.status_code == 200
    return (time.monotonic() - t) * 1000


TIMEOUT_ARGS = ["--header-read-timeout-seconds", "2", "--body-read-timeout-seconds", "3", "--idle-timeout-seconds", "2"]


def test_silent_slow_and_idle_connections_are_closed_by_their_timeouts(server_factory):
    srv = server_factory(extra_args=TIMEOUT_ARGS)
    cases = {
        # connected, nothing sent: the idle timeout (2 s)
        "silent": (lambda: raw_connection(srv), 2.0),
        # half a request head: the header timeout (2 s), counted from its first byte
        "half head": (lambda: raw_connection(srv, b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"), 2.0),
        # a whole head and 10 of 100 body bytes: the body timeout (3 s)
        "half body": (lambda: raw_connection(
            srv, b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{\"type\":"), 3.0),
    }
    results: dict[str, float | None] = {}
    threads = []
    for name, (open_, _) in cases.items():
        sock = open_()
        t = threading.Thread(target=lambda n=name, s=sock: results.__setitem__(n, wait_closed(s, 10)))
        t.start()
        threads.append(t)
    # A head dripped one byte every 0.4 s never completes: closed at the header timeout all the same.
    drip = raw_connection(srv)
    started = time.monotonic()
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 100
    drip_closed = None
    for byte in request:
        try:
            drip.send(bytes([byte]))
        except OSError:
            drip_closed = time.monotonic() - started
            break
        time.sleep(0.4)
        if time.monotonic() - started > 8:
            break
    if drip_closed is None:
        drip_closed = (time.monotonic() - started) + (wait_closed(drip, 5) or 99)
    assert healthz_ms(srv) < 2000, "the server answers while slow connections are open"
    for t in threads:
        t.join()
    for name, (_, timeout) in cases.items():
        took = results[name]
        assert took is not None, f"{name}: still open after 10 s"
        assert timeout - 0.5 <= took <= timeout + 2.5, f"{name}: closed after {took:.1f} s, timeout {timeout} s"
    assert 1.5 <= drip_closed <= 4.5, f"dripping head closed after {drip_closed:.1f} s"

    # Kept alive after a request: closed by the idle timeout; a stream is not cut by any timeout.
    keep = raw_connection(srv, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    stream = requests.get(srv.url + "/v1/stream?after=0", stream=True, timeout=20)
    assert stream.status_code == 200
    took = wait_closed(keep, 10)
    assert took is not None and 1.5 <= took <= 4.5, f"kept-alive connection closed after {took}"
    time.sleep(2)
    requests.post(srv.url + "/v1/events", json=[{"type": "after.idle"}], timeout=10).raise_for_status()
    lines = stream.iter_lines(decode_unicode=True)
    seen = []
    for line in lines:
        if line.startswith("data:"):
            seen.append(json.loads(line[5:])["type"])
            if "after.idle" in seen:
                break
    assert "after.idle" in seen, seen
    stream.close()
    metrics = requests.get(srv.url + "/metrics", timeout=10).text
    assert 'banyan_connections_closed_total{reason="idle timeout"}' in metrics, metrics[-2000:]


def process_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_more_connections_than_descriptors_neither_spins_nor_locks_out(server_factory):
    """Before: with ulimit -n 256 and 400 idle connections the server spun one core at 100% in
    a failing accept loop and /healthz timed out until they closed."""
    srv = server_factory(nofile=256, extra_args=["--idle-timeout-seconds", "60"])
    socks = []
    for _ in range(400):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", srv.port))
        except BlockingIOError:
            pass
        socks.append(s)
    try:
        time.sleep(1)
        cpu0 = process_cpu_seconds(srv.proc.pid)
        time.sleep(3)
        spent = process_cpu_seconds(srv.proc.pid) - cpu0
        assert spent < 1.0, f"the server used {spent:.2f} s of CPU in 3 s with idle connections"
        for _ in range(3):
            assert healthz_ms(srv) < 2000
        fds = len(os.listdir(f"/proc/{srv.proc.pid}/fd"))
        assert fds < 256, f"{fds} descriptors open"
        metrics = requests.get(srv.url + "/metrics", timeout=5).text
        assert 'banyan_connections_closed_total{reason="evicted at the connection limit"}' in metrics
        assert "banyan_connections_max 128" in metrics, [l for l in metrics.splitlines() if "connections" in l]
    finally:
        for s in socks:
            s.close()


def test_a_client_that_leaves_a_stream_frees_its_slot_at_once(server_factory):
    """Before: a closed SSE client held its slot until the next heartbeat (15 s)."""
    srv = server_factory()
    socks = []
    for _ in range(20):
        s = raw_connection(srv, b"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        s.settimeout(5)
        assert b"200" in s.recv(4096).split(b"\r\n")[0]
        socks.append(s)
    assert requests.get(srv.url + "/v1/status", timeout=5).json()["streams"] == 20
    for s in socks:
        s.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if requests.get(srv.url + "/v1/status", timeout=5).json()["streams"] == 0:
            break
        time.sleep(0.1)
    assert requests.get(srv.url + "/v1/status", timeout=5).json()["streams"] == 0, "closed streams still hold their slots"


# --------------------------------------------------------------------------
# lone surrogates

LONE = "\\ud800"  # the six characters of a JSON escape, not a Python surrogate

SURROGATE_CASES = [
    # (route, content type, body, field the error must name)
    ("/emit", "application/json", '{"type":"a%s"}' % LONE, "type"),
    ("/emit", "application/json", '{"type":"a","message":"%s"}' % LONE, "message"),
    ("/emit", "application/json", '{"type":"a","payload":{"k":["%s"]}}' % LONE, "payload"),
    ("/emit", "application/json", '{"type":"a","payload":{"%s":1}}' % LONE, "payload"),
    ("/v1/events", "application/json", '[{"type":"%s"}]' % LONE, "type"),
    ("/v1/events", "application/json", '[{"type":"a"},{"type":"a","key":"%s"}]' % LONE, "key"),
    ("/v1/events", "application/json", '[{"type":"a","stream":"%s"}]' % LONE, "stream"),
    ("/v1/events", "application/json", '[{"type":"a","message":"x%sy"}]' % LONE, "message"),
    ("/v1/events", "application/json", '[{"type":"a","parent_keys":["%s"]}]' % LONE, "parent_keys"),
    ("/v1/events", "application/json", '[{"type":"a","payload":"\\udfff"}]', "payload"),
    ("/v1/events", "application/x-ndjson", '{"type":"a"}\n{"type":"a","key":"%s"}\n' % LONE, "key"),
    ("/v1/query", "application/json", '{"query":"events where type = \\"%s\\""}' % LONE, "query"),
    ("/descendants", "application/json", '{"ids":[1],"view":"%s"}' % LONE, "view"),
]


@pytest.mark.parametrize("route,content_type,body,field", SURROGATE_CASES, ids=[f"{c[0]}:{c[3]}" for c in SURROGATE_CASES])
def test_lone_surrogates_are_refused_naming_the_field(route, content_type, body, field, module_server):
    srv = module_server
    before = requests.get(srv.url + "/v1/status", timeout=10).json()["last_id"]
    r = requests.post(srv.url + route, data=body.encode(), headers={"Content-Type": content_type}, timeout=10)
    assert r.status_code == 400, r.text
    error = r.json()
    assert "lone UTF-16 surrogate" in error["detail"], error
    assert error.get("field") == field, error
    assert requests.get(srv.url + "/v1/status", timeout=10).json()["last_id"] == before, "a refused request stored something"


def test_keys_that_differ_only_in_surrogates_no_longer_collide(module_server):
    """Before: key "\\ud800" got an id, and "\\udfff" and "\\ufffd" were then both its duplicates."""
    srv = module_server
    post = lambda body: requests.post(srv.url + "/v1/events", data=body.encode(), headers={"Content-Type": "application/json"}, timeout=10)
    assert post('[{"type":"a","key":"\\ud800"}]').status_code == 400
    real = post('[{"type":"a","key":"\\ufffd-collide"}]').json()["results"][0]
    assert "duplicate" not in real
    assert post('[{"type":"a","key":"\\udfff-collide"}]').status_code == 400
    again = post('[{"type":"a","key":"\\ufffd-collide"}]').json()["results"][0]
    assert again == {"id": real["id"], "duplicate": True}


# --------------------------------------------------------------------------
# cross-site writes


def last_id(srv) -> int:
    return requests.get(srv.url + "/v1/status", timeout=10).json()["last_id"]


def raw_request(srv, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict]:
    """A request with exactly these headers (requests would add its own Host)."""
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(head.encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    status = int(status_line.split()[1])
    try:
        return status, json.loads(payload) if payload else {}
    except ValueError:
        return status, {"raw": payload.decode(errors="replace")}


CROSS_SITE = [
    # (what, headers, body, status, field)
    ("DNS rebinding: foreign Host", {"Host": "evil.example", "Content-Type": "application/json"}, b'{"type":"x"}', 403, "Host"),
    ("foreign Host with port", {"Host": "evil.example:7777", "Content-Type": "application/json"}, b'{"type":"x"}', 403, "Host"),
    ("cross-origin form post", {"Host": "127.0.0.1", "Origin": "http://evil.example", "Content-Type": "text/plain"}, b'{"type":"x"}', 403, "Origin"),
    ("cross-origin JSON post", {"Host": "127.0.0.1", "Origin": "http://evil.example", "Content-Type": "application/json"}, b'{"type":"x"}', 403, "Origin"),
    ("opaque origin", {"Host": "127.0.0.1", "Origin": "null", "Content-Type": "application/json"}, b'{"type":"x"}', 403, "Origin"),
    ("text/plain body", {"Host": "127.0.0.1", "Content-Type": "text/plain"}, b'{"type":"x"}', 415, "Content-Type"),
    ("no content type", {"Host": "127.0.0.1"}, b'{"type":"x"}', 415, "Content-Type"),
    ("form encoded", {"Host": "localhost", "Content-Type": "application/x-www-form-urlencoded"}, b"type=x", 415, "Content-Type"),
]


@pytest.mark.parametrize("route", ["/emit", "/v1/events"])
@pytest.mark.parametrize("what,headers,body,status,field", CROSS_SITE, ids=[c[0] for c in CROSS_SITE])
def test_cross_site_writes_are_refused(route, what, headers, body, status, field, module_server):
    srv = module_server
    before = last_id(srv)
    got, error = raw_request(srv, "POST", route, headers, body)
    assert got == status, f"{what}: {got} {error}"
    assert error.get("field") == field, error
    assert last_id(srv) == before, f"{what}: stored something"


def test_same_origin_and_plain_clients_still_write(module_server):
    srv = module_server
    for headers in (
        {"Host": f"127.0.0.1:{srv.port}", "Content-Type": "application/json"},
        {"Host": f"localhost:{srv.port}", "Origin": f"http://localhost:{srv.port}", "Content-Type": "application/json; charset=utf-8"},
        {"Host": f"[::1]:{srv.port}", "Content-Type": "application/json"},
    ):
        got, answer = raw_request(srv, "POST", "/emit", headers, b'{"type":"same.origin"}')
        assert got == 200 and isinstance(answer.get("id"), int), (headers, got, answer)
    # The real celestialtree client (application/json, no Origin).
    client = srv.client()
    assert client.emit("via.client", parents=[1]) > 1
    # Reads from another origin are answered (a browser will not let the page read them without CORS).
    got, _ = raw_request(srv, "GET", "/v1/status", {"Host": "127.0.0.1", "Origin": "http://evil.example"})
    assert got == 200


def test_cors_origins_and_allowed_hosts_open_what_they_name(server_factory):
    srv = server_factory(extra_args=["--cors-origins", "https://app.example", "--allowed-hosts", "banyan.internal"])
    got, _ = raw_request(srv, "POST", "/emit", {"Host": "banyan.internal:80", "Content-Type": "application/json"}, b'{"type":"named"}')
    assert got == 200
    got, error = raw_request(srv, "POST", "/emit", {"Host": "other.internal", "Content-Type": "application/json"}, b'{"type":"x"}')
    assert got == 403 and error["field"] == "Host"
    # Preflight and the request itself for the allowed origin.
    pre = requests.options(srv.url + "/v1/events", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}, timeout=10)
    assert pre.status_code == 204, pre.text
    assert pre.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "POST" in pre.headers["Access-Control-Allow-Methods"] and "Content-Type" in pre.headers["Access-Control-Allow-Headers"]
    r = requests.post(srv.url + "/v1/events", json=[{"type": "cors"}], headers={"Origin": "https://app.example"}, timeout=10)
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    denied = requests.options(srv.url + "/v1/events", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, timeout=10)
    assert denied.status_code == 403
    r = requests.post(srv.url + "/v1/events", json=[{"type": "cors"}], headers={"Origin": "https://evil.example"}, timeout=10)
    assert r.status_code == 403 and "Access-Control-Allow-Origin" not in r.headers


# --------------------------------------------------------------------------
# the small ones


@pytest.mark.parametrize("path", ["/v1/status", "/event/1", "/v1/events/1", "/healthz", "/metrics", "/roots", "/v1/events?after=0"])
def test_head_is_get_without_a_body(path, module_server):
    srv = module_server
    get = requests.get(srv.url + path, timeout=10)
    head = requests.head(srv.url + path, timeout=10)
    assert head.status_code == get.status_code == 200, (head.status_code, get.status_code)
    assert head.content == b""
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    if path not in ("/healthz", "/metrics", "/v1/status"):  # their bodies change from one call to the next
        assert int(head.headers["Content-Length"]) == len(get.content)


def test_head_on_a_stream_opens_no_stream(module_server):
    srv = module_server
    for path in ("/v1/stream", "/subscribe"):
        r = requests.head(srv.url + path, timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    assert requests.get(srv.url + "/v1/status", timeout=10).json()["streams"] == 0


@pytest.mark.parametrize("method,path,allow", [
    ("PUT", "/emit", "POST"), ("POST", "/event/1", "GET, HEAD"), ("DELETE", "/v1/events", "GET, HEAD, POST"),
    ("GET", "/v1/query", "POST"), ("POST", "/metrics", "GET, HEAD"), ("PUT", "/v1/status", "GET, HEAD"),
])
def test_every_405_says_what_is_allowed(method, path, allow, module_server):
    r = requests.request(method, module_server.url + path, timeout=10, headers={"Content-Type": "application/json"}, data=b"{}")
    assert r.status_code == 405 and r.headers.get("Allow") == allow, (r.status_code, r.headers)


@pytest.mark.parametrize("path", ["/v1/events/01", "/event/007", "/children/01", "/v1/events?after=01"])
def test_ids_with_leading_zeros_are_refused(path, module_server):
    r = requests.get(module_server.url + path, timeout=10)
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("type_,detail", [
    ("   ", "type is required"), ("\t\n", "type is required"), ("\u3000", "type is required"),
    ("a\u0000b", "control characters (U+0000)"), ("a\u001bb", "control characters (U+001B)"), ("a\u0085", "control characters (U+0085)"),
])
def test_blank_types_and_control_characters_in_names_are_refused(type_, detail, module_server):
    srv = module_server
    before = last_id(srv)
    r = requests.post(srv.url + "/emit", json={"type": type_}, timeout=10)
    assert r.status_code == 400 and detail in r.json()["detail"], r.text
    key = "k" + type_ if "control" in detail else type_
    r = requests.post(srv.url + "/v1/events", json=[{"type": "ok", "key": key}], timeout=10)
    assert r.status_code == 400 and r.json()["field"] == "key", r.text
    r = requests.post(srv.url + "/v1/events", json=[{"type": "ok", "stream": type_}], timeout=10)
    assert r.status_code == 400 and r.json()["field"] == "stream", r.text
    assert last_id(srv) == before
    # Messages and payloads may hold them.
    ok = requests.post(srv.url + "/v1/events", json=[{"type": "ok", "message": "a\u0000b", "payload": {"s": "\u001b[31m"}}], timeout=10)
    assert ok.status_code == 200, ok.text


def test_banyan_query_exits_3_on_a_truncated_answer(tmp_path, run_banyan):
    data = tmp_path / "q"
    lines = "\n".join(json.dumps({"type": "t", "key": f"k{i}", "parents": [f"k{i-1}"] if i else []}) for i in range(50))
    (tmp_path / "in.jsonl").write_text(lines + "\n")
    assert run_banyan("import", str(tmp_path / "in.jsonl"), "--data-dir", str(data)).returncode == 0
    cut = run_banyan("query", "count(descendants(2))", "--data-dir", str(data), "--nodes-max", "10")
    assert cut.returncode == 3 and "truncated" in cut.stderr, cut.describe()
    allowed = run_banyan("query", "count(descendants(2))", "--data-dir", str(data), "--nodes-max", "10", "--allow-truncated")
    assert allowed.returncode == 0 and allowed.stdout.strip() == "10", allowed.describe()
    whole = run_banyan("query", "count(descendants(2))", "--data-dir", str(data))
    assert whole.returncode == 0 and whole.stdout.strip() == "49", whole.describe()


def test_a_token_listed_twice_is_refused(tmp_path, run_banyan):
    tokens = tmp_path / "tokens"
    tokens.write_text("t1 read\nt2 write\nt1 admin\n")
    r = run_banyan("serve", "--data-dir", str(tmp_path / "d"), "--port", "0", "--grpc-port", "0", "--tokens-file", str(tokens), timeout=30)
    assert r.returncode != 0 and "listed twice" in r.stderr, r.describe()


def test_forged_cursors_are_refused(module_server):
    srv = module_server
    requests.post(srv.url + "/v1/events", json=[{"type": "cur", "parents": [1]} for _ in range(5)], timeout=10).raise_for_status()
    first = requests.post(srv.url + "/v1/query", json={"query": "descendants(1)", "page_size": 2}, timeout=10).json()
    assert first["next"]
    for bad in ["999999999.1", "0.0", first["next"][:-2], first["next"] + "AA", "AAAA"]:
        r = requests.post(srv.url + "/v1/query", json={"query": "descendants(1)", "cursor": bad}, timeout=10)
        assert r.status_code == 400 and r.json()["field"] == "cursor", (bad, r.text)
    r = requests.post(srv.url + "/v1/query", json={"query": "ancestors(2)", "cursor": first["next"]}, timeout=10)
    assert r.status_code == 400 and "another query" in r.json()["detail"]


@pytest.mark.parametrize("flag,value", [
    ("--port", "70000"), ("--stream-heartbeat-seconds", "0"), ("--payload-bytes-max", "999999999999"),
    ("--streams-max", "0"), ("--body-bytes-max", "0"), ("--batch-events-max", "0"), ("--query-time-max-ms", "0"),
    ("--query-nodes-default", "20000000"), ("--header-read-timeout-seconds", "0"), ("--idle-timeout-seconds", "-1"),
    ("--connections-max", "0"), ("--connections-max", "100000000"), ("--log-level", "loud"), ("--sync-interval-ms", "0"),
    ("--cors-origins", "evil.example"), ("--query-page-bytes-max", "10"), ("--query-answer-cache-bytes-max", "99999999999999"),
    ("--pipeline-depth-max", "0"), ("--grpc-port", "70000"), ("--grpc-port", "nope"), ("--key-filter-bytes-max", "-1"),
    ("--key-filter-bytes-max", "99999999999999"), ("--key-filter-bytes-max", "1000"),
])
def test_every_flag_is_checked_at_start(flag, value, tmp_path, run_banyan):
    r = run_banyan("serve", "--data-dir", str(tmp_path / "d"), "--port", "0", flag, value, timeout=30)
    assert r.returncode != 0, r.describe()
    assert flag in r.stderr, r.describe()


# --------------------------------------------------------------------------
# query answers bounded in bytes, time and memory


def rss_peak_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_ladder_paths_query_is_paged_charged_and_bounded(server_factory):
    """Before: paths(2, 100001) limit 3000 on a 50,000-layer ladder answered 883 MB after 34 s and
    the server peaked at 4.17 GB; page_size changed nothing."""
    srv = server_factory()
    layers = 20_000
    batch = [{"type": "rung", "parents": [1]}, {"type": "rung", "parents": [1]}]
    for layer in range(2, layers + 1):
        a, b = 2 * layer - 2, 2 * layer - 1
        batch += [{"type": "rung", "parents": [a, b]}, {"type": "rung", "parents": [a, b]}]
        if len(batch) >= 10_000 or layer == layers:
            requests.post(srv.url + "/v1/events", json=batch, timeout=120).raise_for_status()
            batch = []
    top = 2 * layers + 1
    base_rss = rss_peak_mb(srv.proc.pid)
    started = time.monotonic()
    r = requests.post(srv.url + "/v1/query", json={
        "query": f"paths(2, {top}) limit 3000", "page_size": 10000,
        "budget": {"nodes_max": 2_000_000, "time_max_ms": 30_000}}, timeout=120)
    took = time.monotonic() - started
    assert r.status_code == 200, r.text[:500]
    answer = r.json()
    paths = answer["paths"]
    assert answer["truncated"] is True and "node budget" in answer["stats"]["reason"]
    assert sum(len(p) for p in paths) <= 2_000_000, "path ids count against the node budget"
    assert all(len(p) == layers and p[0] == 2 and p[-1] == top for p in paths)
    assert len(r.content) <= (16 << 20) + 200_000, f"{len(r.content)} bytes in one page"
    assert took < 35, f"{took:.1f} s"
    # page_size pages paths.
    small = requests.post(srv.url + "/v1/query", json={"query": f"paths(2, {top}) limit 3000", "page_size": 3}, timeout=120).json()
    assert len(small["paths"]) == 3 and small["next"]
    grown = rss_peak_mb(srv.proc.pid) - base_rss
    assert grown < 600, f"server peak RSS grew by {grown:.0f} MB"


def test_a_page_of_fat_payloads_ends_at_the_byte_cap(server_factory):
    """Before: page_size 10,000 over 1 MB payloads answered 400 MB in one response, even with time_max_ms 1."""
    srv = server_factory()
    fat = "x" * 1_000_000
    for _ in range(6):
        requests.post(srv.url + "/v1/events", json=[{"type": "fat", "payload": fat} for _ in range(10)], timeout=120).raise_for_status()
    seen, cursor, pages = [], None, 0
    while True:
        body = {"query": 'events where type = "fat"', "include": ["payload"], "page_size": 10000}
        if cursor:
            body["cursor"] = cursor
        r = requests.post(srv.url + "/v1/query", json=body, timeout=60)
        assert r.status_code == 200
        assert len(r.content) <= (16 << 20) + (1 << 20) + 1000, f"{len(r.content)} bytes"
        page = r.json()
        seen += [e["id"] for e in page["results"]]
        pages += 1
        cursor = page["next"]
        if not cursor:
            break
    assert seen == list(range(2, 62)) and pages >= 4
    quick = requests.post(srv.url + "/v1/query", json={
        "query": 'events where type = "fat"', "include": ["payload"], "page_size": 10000, "budget": {"time_max_ms": 1}}, timeout=60)
    assert len(quick.json()["results"]) < 60 and quick.json()["next"], "the time budget covers building the page"
