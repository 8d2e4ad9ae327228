"""The native /v1 HTTP API, authentication and limits, over a real `banyan serve`.

Contract: docs/HTTP_API.md, sections "Authentication", "Native API (/v1)" and "Limits".
Facts used beyond the doc: a new store holds only the genesis event (id 1), so the
first appended event is id 2; limits are CLI flags (--body-bytes-max, --batch-events-max,
--payload-bytes-max, --streams-max, --writer-queue-events-max, --stream-heartbeat-seconds,
--tokens-file) and tokens can come from BANYAN_TOKENS="tok:role,...".

Every test that appends gets its own fresh server, so ids are predictable. SSE streams
are read with a tiny raw-socket reader (`SSE` below) rather than `requests`: it never
reads ahead, so "stop reading" really leaves the backlog in the server, and it can
close a connection abruptly (RST) for the Last-Event-ID test.

Runtime: about 35-60 s against a debug build on 2 cores (~35 s measured); the longest test
is the stalled-reader one (100,000 events, ~12 s), bounded at 120 s. Nothing here is
randomised.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import re
import socket
import struct
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Optional
from urllib.parse import quote

import pytest
import requests

from conftest import free_port, process_env

JSON_CT = "application/json"
NDJSON_CT = "application/x-ndjson"
GENESIS = {"id": 1, "type": "genesis", "message": "CelestialTree begins.", "parents": []}
EVENT_KEYS = {"id", "time_unix_nano", "type", "parents"}
EVENT_OPTIONAL_KEYS = {"message", "payload", "key", "stream"}
STATUS_KEYS = {"role", "epoch", "last_id", "edges", "roots", "heads", "segments", "disk_bytes",
               "durability", "uptime_seconds", "streams", "version"}
HTTP_TIMEOUT = (5, 60)   # (connect, read) for every plain request
_UNSET = object()


# --------------------------------------------------------------------------
# plain-HTTP helpers


def ctx(r: requests.Response) -> str:
    return f"{r.request.method} {r.request.url} -> {r.status_code} {r.text[:400]!r}"


def expect_json(r: requests.Response, status: int = 200) -> Any:
    """Assert status + the common JSON rules (content type, trailing newline); return the body."""
    assert r.status_code == status, f"expected HTTP {status}: {ctx(r)}"
    ct = r.headers.get("Content-Type", "")
    assert ct.startswith(JSON_CT), f"JSON answers carry Content-Type application/json, got {ct!r}: {ctx(r)}"
    assert r.text.endswith("\n"), f"JSON bodies end in a newline: {ctx(r)}"
    return r.json()


def expect_error(r: requests.Response, status: int, error: Any = _UNSET, *,
                 index: Any = _UNSET, field: Any = _UNSET) -> dict:
    """A JSON error answer. `error`/`index`/`field` are checked when given (None = must be absent)."""
    body = expect_json(r, status)
    assert isinstance(body, dict) and isinstance(body.get("error"), str), f"error shape: {ctx(r)}"
    assert set(body) <= {"error", "detail", "field", "index"}, f"unexpected error members: {ctx(r)}"
    for name, want in (("error", error), ("index", index), ("field", field)):
        if want is _UNSET:
            continue
        if want is None:
            assert name not in body, f"error must not carry {name!r}: {ctx(r)}"
        else:
            assert body.get(name) == want, f"expected {name}={want!r}: {ctx(r)}"
    return body


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def ndjson(events: Iterable[Any], blank_lines: bool = False) -> bytes:
    lines = []
    for ev in events:
        if blank_lines:
            lines.append("")
        lines.append(compact(ev))
    return ("\n".join(lines) + "\n").encode()


def dedupe(ids: Iterable[int]) -> list[int]:
    out: list[int] = []
    for i in ids:
        if i != 0 and i not in out:
            out.append(i)
    return out


def expected_event(id_: int, sent: dict, parents: list[int]) -> dict:
    """The stored event (minus time) for a request event; `parents` already resolved."""
    ev: dict[str, Any] = {"id": id_, "type": sent["type"], "parents": parents}
    if sent.get("message"):          # "" is stored as absent
        ev["message"] = sent["message"]
    for k in ("payload", "key", "stream"):
        if k in sent:
            ev[k] = sent[k]
    return ev


def without_time(ev: dict) -> dict:
    assert set(ev) >= EVENT_KEYS and set(ev) <= EVENT_KEYS | EVENT_OPTIONAL_KEYS, f"event shape: {ev}"
    t = ev["time_unix_nano"]
    assert isinstance(t, int) and not isinstance(t, bool), f"time_unix_nano is an integer: {ev}"
    assert abs(t - time.time_ns()) < 600 * 10**9, f"time_unix_nano is not a current Unix time: {ev}"
    d = dict(ev)
    del d["time_unix_nano"]
    return d


class Api:
    """requests.Session bound to one server (+ optional bearer token)."""

    def __init__(self, server_or_url: Any, token: Optional[str] = None) -> None:
        self.url = server_or_url if isinstance(server_or_url, str) else server_or_url.url
        self.s = requests.Session()
        if token:
            self.s.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", HTTP_TIMEOUT)
        return self.s.get(self.url + path, **kw)

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", HTTP_TIMEOUT)
        return self.s.request(method, self.url + path, **kw)

    def post_events(self, events: Any = None, *, data: Optional[bytes] = None,
                    content_type: str = JSON_CT, params: Optional[dict] = None,
                    headers: Optional[dict] = None) -> requests.Response:
        """POST /v1/events with `events` JSON-encoded (or `data` sent as is)."""
        if data is None:
            data = compact(events).encode()
        h = {"Content-Type": content_type}
        h.update(headers or {})
        return self.s.post(self.url + "/v1/events", data=data, headers=h, params=params,
                           timeout=HTTP_TIMEOUT)

    def append(self, events: list[dict], *, params: Optional[dict] = None,
               durable: Any = True, **kw) -> list[int]:
        """Append a batch of NEW events (no duplicates); returns their (dense) ids."""
        r = self.post_events(events, params=params, **kw)
        body = expect_json(r, 200)
        assert set(body) == {"results", "durable"}, f"append answer shape: {ctx(r)}"
        if durable is not _UNSET:
            assert body["durable"] is durable, f"durable should be {durable}: {ctx(r)}"
        res = body["results"]
        assert len(res) == len(events), f"one result per event: {ctx(r)}"
        assert all(set(x) == {"id"} for x in res), f"new events answer {{'id': N}} only: {ctx(r)}"
        ids = [x["id"] for x in res]
        assert ids == list(range(ids[0], ids[0] + len(ids))), f"a batch gets dense ids: {ids}"
        return ids

    def event(self, id_: int) -> dict:
        return expect_json(self.get(f"/v1/events/{id_}"), 200)

    def by_key(self, key: str) -> requests.Response:
        return self.get("/v1/events/by-key/" + quote(key, safe=""))

    def status(self) -> dict:
        st = expect_json(self.get("/v1/status"), 200)
        assert set(st) >= STATUS_KEYS, f"/v1/status lacks {STATUS_KEYS - set(st)}: {st}"
        return st

    def last_id(self) -> int:
        return self.status()["last_id"]

    def page(self, **params) -> dict:
        r = self.get("/v1/events", params=params)
        body = expect_json(r, 200)
        assert set(body) == {"events", "next", "last_id"}, f"page shape: {ctx(r)}"
        return body

    def read_all(self, *, after: int = 0, limit: Optional[int] = None, max_pages: int = 5_000,
                 seconds: float = 60.0, **filters) -> tuple[list[dict], int, int, int]:
        """Follow `next` until next == last_id; checks every page's invariants.
        Returns (events, next, last_id, pages)."""
        events: list[dict] = []
        nxt = after
        deadline = time.monotonic() + seconds
        for pages in range(1, max_pages + 1):
            params: dict[str, Any] = {"after": nxt, **filters}
            if limit is not None:
                params["limit"] = limit
            body = self.page(**params)
            evs, new_next, last = body["events"], body["next"], body["last_id"]
            where = f"page {pages} after={nxt} limit={limit} filters={filters}: next={new_next} " \
                    f"last_id={last} ids={[e['id'] for e in evs][:20]}"
            assert isinstance(new_next, int) and isinstance(last, int), where
            assert nxt <= new_next <= last, f"after <= next <= last_id: {where}"
            if limit is not None:
                assert len(evs) <= limit, f"more events than limit: {where}"
            ids = [e["id"] for e in evs]
            assert ids == sorted(set(ids)), f"page not in strict id order: {where}"
            assert all(nxt < i <= new_next for i in ids), f"events outside (after, next]: {where}"
            if not filters:
                if nxt < last:
                    assert evs, f"an unfiltered page after={nxt} < last_id must hold events: {where}"
                if evs:
                    assert new_next == ids[-1], f"unfiltered: next is the last id returned: {where}"
            if new_next < last:
                assert new_next > nxt, f"no progress although next < last_id: {where}"
            events.extend(evs)
            nxt = new_next
            if nxt == last:
                return events, nxt, last, pages
            assert time.monotonic() < deadline, f"paging did not reach last_id in {seconds}s: {where}"
        raise AssertionError(f"paging did not reach last_id within {max_pages} pages")


def wait_until(pred, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# --------------------------------------------------------------------------
# a raw SSE reader


@dataclasses.dataclass
class Frame:
    id: Optional[str] = None
    event: Optional[str] = None
    data: Optional[str] = None
    comment: Optional[str] = None    # set for comment lines (": heartbeat"), then nothing else is

    @property
    def is_comment(self) -> bool:
        return self.comment is not None

    def event_json(self) -> dict:
        assert self.event == "event", f"/v1/stream frames are `event: event`: {self}"
        assert self.id is not None and self.data is not None, f"frame needs id and data: {self}"
        ev = json.loads(self.data)
        assert str(ev.get("id")) == self.id, f"`id:` line must equal the event id: {self}"
        return ev


class SSE:
    """HTTP/1.1 GET over a plain socket; parses the head, undoes chunked encoding,
    splits SSE frames. Only reads from the socket inside next()/read_events(), so a
    test that stops calling them stops consuming the stream."""

    def __init__(self, port: int, path: str, headers: Optional[dict] = None,
                 rcvbuf: Optional[int] = None, timeout: float = 10.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # Before connect(), so the advertised window is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._raw = b""
        self._body = b""
        self._items: collections.deque[Frame] = collections.deque()
        self.eof = False
        self._chunk_left = 0
        self._after_chunk = False
        self._chunks_done = False
        self.status, self.reason, self.headers = self._read_head(time.monotonic() + timeout)
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()

    # ---- socket + framing ----------------------------------------------

    def _recv(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"SSE {self.path}: deadline passed")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 16)
        except socket.timeout:
            raise TimeoutError(f"SSE {self.path}: no data within {remaining:.1f}s") from None
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
        self._raw += data

    def _read_head(self, deadline: float) -> tuple[int, str, dict[str, str]]:
        while b"\r\n\r\n" not in self._raw:
            if self.eof:
                raise ConnectionError(f"SSE {self.path}: connection closed before the response head: {self._raw!r}")
            assert len(self._raw) < 65536, "response head too large"
            self._recv(deadline)
        head, _, rest = self._raw.partition(b"\r\n\r\n")
        self._raw = rest
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in header_lines:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return int(parts[1]), (parts[2] if len(parts) > 2 else ""), headers

    def _decode(self) -> None:
        """Move bytes from _raw to _body, undoing chunked transfer encoding (linear time:
        positions, one slice at the end; SSE servers often send one chunk per frame)."""
        if not self.chunked:
            self._body += self._raw
            self._raw = b""
            return
        raw, pos, out = self._raw, 0, []
        while not self._chunks_done:
            if self._chunk_left:
                take = raw[pos:pos + self._chunk_left]
                if not take:
                    break
                out.append(take)
                pos += len(take)
                self._chunk_left -= len(take)
                self._after_chunk = self._chunk_left == 0
                continue
            if self._after_chunk:
                if len(raw) - pos < 2:
                    break
                assert raw[pos:pos + 2] == b"\r\n", f"bad chunk terminator {raw[pos:pos + 20]!r}"
                pos += 2
                self._after_chunk = False
                continue
            nl = raw.find(b"\r\n", pos)
            if nl < 0:
                break
            size = int(raw[pos:nl].split(b";")[0].strip(), 16)
            pos = nl + 2
            if size == 0:
                self._chunks_done = True
                self.eof = True
                break
            self._chunk_left = size
        self._raw = raw[pos:]
        if out:
            self._body += b"".join(out)

    def _parse(self) -> None:
        body = self._body
        if b"\r" in body:
            body = body.replace(b"\r\n", b"\n")
        pos = 0
        while True:
            end = body.find(b"\n\n", pos)
            if end < 0:
                break
            block, pos = body[pos:end], end + 2
            frame = Frame()
            data_lines: list[str] = []
            for line in block.decode("utf-8").split("\n"):
                if line.startswith(":"):
                    self._items.append(Frame(comment=line[1:].strip()))
                    continue
                k, _, v = line.partition(":")
                if v.startswith(" "):
                    v = v[1:]
                if k == "data":
                    data_lines.append(v)
                elif k == "id":
                    frame.id = v
                elif k == "event":
                    frame.event = v
                # other fields (retry:) are not frames of their own
            if data_lines:
                frame.data = "\n".join(data_lines)
            if frame.id is not None or frame.event is not None or frame.data is not None:
                self._items.append(frame)
        self._body = body[pos:]

    def next(self, timeout: float) -> Frame:
        """The next frame or comment; TimeoutError / EOFError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            # Bytes may already be buffered (e.g. they came with the response head).
            self._decode()
            self._parse()
            if self._items:
                return self._items.popleft()
            if self.eof:
                raise EOFError(f"SSE {self.path}: stream closed; unparsed tail {self._body[-200:]!r}")
            self._recv(deadline)

    def read_events(self, n: int, timeout: float) -> list[Frame]:
        """The next n non-comment frames (comments skipped), within `timeout` overall."""
        deadline = time.monotonic() + timeout
        out: list[Frame] = []
        while len(out) < n:
            try:
                f = self.next(max(0.0, deadline - time.monotonic()))
            except (TimeoutError, EOFError) as e:
                raise AssertionError(f"got {len(out)} of {n} frames from {self.path}: {e}; "
                                     f"last ids {[x.id for x in out[-5:]]}") from None
            if not f.is_comment:
                out.append(f)
        return out

    def read_body(self, timeout: float = 5.0) -> bytes:
        """For non-200 answers: the whole (small) body."""
        deadline = time.monotonic() + timeout
        length = self.headers.get("content-length")
        while True:
            self._decode()
            if length is not None and len(self._body) >= int(length):
                return self._body[:int(length)]
            if self.eof or self._chunks_done:
                return self._body
            self._recv(deadline)

    def assert_quiet(self, seconds: float) -> None:
        """No event frame (comments allowed) arrives within `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                f = self.next(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return
            assert f.is_comment, f"unexpected frame on {self.path}: {f}"

    def close_abruptly(self) -> None:
        """Close with RST (SO_LINGER 0), like a crashed client."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "SSE":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_stream(server, path: str, **kw) -> SSE:
    s = SSE(server.port, path, **kw)
    if s.status != 200:
        body = s.read_body()
        s.close()
        raise AssertionError(f"GET {path}: HTTP {s.status} {body[:300]!r}")
    ct = s.headers.get("content-type", "")
    assert ct.startswith("text/event-stream"), f"GET {path}: Content-Type {ct!r}"
    return s


# --------------------------------------------------------------------------
# POST /v1/events: shapes, atomicity, keys


def test_append_and_read_exact_shapes(server):
    api = Api(server)
    assert api.last_id() == 1, "a new store holds only the genesis event"
    assert without_time(api.event(1)) == GENESIS

    big = 2**64 + 5
    sent = [
        {"type": "order.created", "key": "order-1", "stream": "orders", "message": "hello",
         "payload": {"n": 1, "big": big, "s": "树🌳\"\\\n", "nested": [1, {"a": None}], "f": 1.5}},
        {"type": "order.paid", "parents": [1, 0, 1], "message": ""},
        {"type": "t", "payload": [1, 2, 3], "stream": "orders"},
        {"type": "x" * 256, "payload": "just a string"},
        {"type": "ünïcode", "payload": 0, "parents": []},
    ]
    r = api.post_events(sent)
    assert expect_json(r) == {"results": [{"id": i} for i in range(2, 7)], "durable": True}, ctx(r)
    parents = [[], [1], [], [], []]
    for i, (ev, p) in enumerate(zip(sent, parents)):
        got = api.event(2 + i)
        assert without_time(got) == expected_event(2 + i, ev, p), got
    # big integers survive (returned byte-for-byte, not through a double)
    assert f'"big":{big}' in api.get("/v1/events/2").text

    # a single object is a batch of one; parents: 0 and repeats dropped, order kept
    r = api.post_events({"type": "single", "parents": [6, 0, 2, 6, 0, 2]})
    assert expect_json(r) == {"results": [{"id": 7}], "durable": True}
    assert api.event(7)["parents"] == [6, 2]
    # the same event on every route: /v1/events/{id}, by-key, the CelestialTree route
    assert api.event(2) == expect_json(api.by_key("order-1")) == expect_json(api.get("/event/2"))
    assert api.event(7) == expect_json(api.get("/event/7"))
    assert expect_json(api.get("/children/2")) == [7], "edges from /v1 appends are real"
    assert expect_json(api.get("/children/1")) == [3]
    assert api.last_id() == 7
    # Content-Type with parameters is still JSON
    r = api.post_events([{"type": "cs"}], content_type="application/json; charset=utf-8")
    assert expect_json(r) == {"results": [{"id": 8}], "durable": True}


def test_payload_size_is_measured_compact(server_factory):
    srv = server_factory(["--payload-bytes-max", "100"], name="payload")
    api = Api(srv)
    exact = {"a": "x" * 92}                       # {"a":"xxx...x"} = 100 bytes compact
    assert len(compact(exact)) == 100
    spaced = '[ {"type" : "p", "payload" : {  "a" :  "%s"  } } ]' % ("x" * 92)
    r = api.post_events(data=spaced.encode())
    assert expect_json(r) == {"results": [{"id": 2}], "durable": True}, ctx(r)
    r = api.get("/v1/events/2")
    assert '"payload":' + compact(exact) in r.text, f"payload is stored compact: {r.text!r}"
    over = {"a": "x" * 93}
    expect_error(api.post_events([{"type": "ok"}, {"type": "p", "payload": over}]), 400,
                 index=1, field="payload")
    assert api.last_id() == 2


def test_batch_is_atomic_and_names_first_bad_event(server):
    api = Api(server)
    assert api.append([{"type": "pre", "key": "pre-a"}, {"type": "pre", "key": "pre-b"}]) == [2, 3]
    before = api.last_id()

    bad = [{"type": "atom", "key": "atom-1"},
           {"type": "atom", "key": "atom-2", "parent_keys": ["atom-1"], "parents": [2]},
           {"type": "atom", "key": "atom-3", "parents": [999_999]}]
    expect_error(api.post_events(bad), 400, index=2, field="parents")
    assert api.last_id() == before, "a failed batch stores nothing"
    for k in ("atom-1", "atom-2", "atom-3"):
        expect_error(api.by_key(k), 404)
    expect_error(api.get(f"/v1/events/{before + 1}"), 404)

    # several bad events: the FIRST is named
    expect_error(api.post_events([{"type": "ok"}, {"type": "x", "parent_keys": ["nope"]},
                                  {"type": "y", "parents": [999_999]}]), 400,
                 index=1, field="parent_keys")
    expect_error(api.post_events([{"type": "ok"}, {"type": "ok"}, {"type": "ok"}, {"type": ""}]),
                 400, index=3, field="type")
    assert api.last_id() == before

    # the next good batch gets the next dense id, and the failed keys are free
    ids = api.append(bad[:2] + [{"type": "atom", "key": "atom-3", "parents": [3]}])
    assert ids == [before + 1, before + 2, before + 3]
    assert expect_json(api.by_key("atom-1"))["id"] == before + 1
    assert sorted(api.event(before + 2)["parents"]) == [2, before + 1]


def test_field_validation_errors(server_factory):
    srv = server_factory(["--payload-bytes-max", "100"], name="fields")
    api = Api(srv)
    cases: list[tuple[Any, Optional[str]]] = [
        ({}, "type"),
        ({"type": ""}, "type"),
        ({"type": "x" * 257}, "type"),
        ({"type": 5}, "type"),
        ({"type": None}, "type"),
        ({"type": "t", "parents": "1"}, "parents"),
        ({"type": "t", "parents": [-1]}, "parents"),
        ({"type": "t", "parents": ["1"]}, "parents"),
        ({"type": "t", "parents": [2**64]}, "parents"),
        ({"type": "t", "parents": [10**9]}, "parents"),
        ({"type": "t", "parent_keys": ["missing"]}, "parent_keys"),
        ({"type": "t", "parent_keys": [1]}, "parent_keys"),
        ({"type": "t", "parent_keys": "k"}, "parent_keys"),
        ({"type": "t", "key": ""}, "key"),
        ({"type": "t", "key": "k" * 513}, "key"),
        ({"type": "t", "key": 5}, "key"),
        ({"type": "t", "stream": "s" * 257}, "stream"),
        ({"type": "t", "stream": ["s"]}, "stream"),
        ({"type": "t", "message": 5}, "message"),
        ({"type": "t", "payload": "x" * 99}, "payload"),     # 101 bytes compact
        ({"type": "t", "tpye": "typo"}, "tpye"),             # unknown member
        (5, None),                                           # not an object
        ("event", None),
    ]
    failures = []
    for ev, field in cases:
        r = api.post_events([{"type": "good"}, ev])
        try:
            expect_error(r, 400, index=1, **({} if field is None else {"field": field}))
        except AssertionError as e:
            failures.append(f"{compact(ev)[:80]}: {e}")
    assert not failures, "\n".join(failures)
    assert api.last_id() == 1, "no failed batch stored anything"

    # bad JSON / not a batch: 400
    for raw in (b"", b"[", b'[{"type":"a"},]', b'{"type":"a"} x', b"null", b"5", b'"str"',
                b'[{"type":"a","type":"b"}]'):
        r = api.post_events(data=raw)
        assert r.status_code == 400, f"{raw!r}: {ctx(r)}"
        expect_error(r, 400)
    assert api.last_id() == 1

    # the boundaries themselves are accepted
    ok = [{"type": "y" * 256, "key": "k" * 512, "stream": "s" * 256, "payload": "x" * 98}]
    assert api.append(ok) == [2]
    assert without_time(api.event(2)) == expected_event(2, ok[0], [])


def test_keys_are_idempotent_and_conflicts_409(server):
    api = Api(server)
    batch = [{"type": "k", "key": "k1", "payload": {"v": 1}},
             {"type": "k", "key": "k2", "parent_keys": ["k1"], "message": "m"},
             {"type": "k", "key": "k3", "parents": [1], "stream": "s"}]
    assert api.append(batch) == [2, 3, 4]
    dup = {"results": [{"id": 2, "duplicate": True}, {"id": 3, "duplicate": True},
                       {"id": 4, "duplicate": True}], "durable": True}
    assert expect_json(api.post_events(batch)) == dup
    assert expect_json(api.post_events(batch, params={"durability": "sync"})) == dup
    assert api.last_id() == 4, "duplicates store nothing"

    # duplicate and new in one batch
    r = api.post_events([batch[1], {"type": "k", "key": "k4"}])
    assert expect_json(r) == {"results": [{"id": 3, "duplicate": True}, {"id": 5}], "durable": True}
    # same content, different key: a new event
    r = api.post_events([dict(batch[0], key="k1-other")])
    assert expect_json(r) == {"results": [{"id": 6}], "durable": True}
    # same content, no key: a new event every time
    assert api.append([{"type": "k", "payload": {"v": 1}}]) == [7]
    assert api.append([{"type": "k", "payload": {"v": 1}}]) == [8]

    # same key, different content: 409, and the whole batch is refused
    conflicts = [
        dict(batch[0], payload={"v": 2}),
        dict(batch[0], type="other"),
        dict(batch[0], message="now with a message"),
        dict(batch[0], stream="s"),
        {k: v for k, v in batch[1].items() if k != "message"},
        dict(batch[2], parents=[2]),
        dict(batch[1], parent_keys=["k3"]),
    ]
    for ev in conflicts:
        r = api.post_events([{"type": "fresh", "key": "k-fresh"}, ev])
        body = expect_error(r, 409, "key conflict")
        assert body.get("index", 1) == 1, f"the conflicting event is index 1: {ctx(r)}"
    assert api.last_id() == 8, "a conflicting batch stores nothing"
    expect_error(api.by_key("k-fresh"), 404)
    assert without_time(expect_json(api.by_key("k1"))) == expected_event(2, batch[0], [])
    assert without_time(expect_json(api.by_key("k2"))) == expected_event(3, batch[1], [2])


def test_parent_keys_within_batch_and_stored(server):
    api = Api(server)
    assert api.append([{"type": "root", "key": "root"}]) == [2]
    batch = [{"type": "a", "key": "a", "parent_keys": ["root"]},
             {"type": "b", "key": "b", "parent_keys": ["a", "root", "a"]},
             {"type": "c", "parent_keys": ["b"], "parents": [1]},
             {"type": "d", "parent_keys": ["a"], "parents": [3]}]
    assert api.append(batch) == [3, 4, 5, 6]
    assert api.event(3)["parents"] == [2]
    assert api.event(4)["parents"] == [3, 2], "parent_keys order kept, repeats dropped"
    assert sorted(api.event(5)["parents"]) == [1, 4], "ids and keys together"
    assert api.event(6)["parents"] == [3], "the same parent by id and by key counts once"
    assert expect_json(api.get("/children/2")) == [3, 4]
    assert expect_json(api.get("/children/3")) == [4, 6]
    # a key is only known once its event comes earlier in the batch (or is stored)
    expect_error(api.post_events([{"type": "x", "parent_keys": ["later"]},
                                  {"type": "y", "key": "later"}]), 400, index=0, field="parent_keys")
    expect_error(api.post_events([{"type": "self", "key": "self", "parent_keys": ["self"]}]), 400,
                 index=0, field="parent_keys")
    assert api.last_id() == 6
    # re-sending the batch that defined keys + used them: all duplicates
    r = api.post_events(batch[:2])
    assert expect_json(r) == {"results": [{"id": 3, "duplicate": True}, {"id": 4, "duplicate": True}],
                              "durable": True}


def test_ndjson_equals_json_array_and_content_types(server):
    api = Api(server)
    events = [{"type": "nd.a", "key": "nd-1", "stream": "nd", "payload": {"x": [1, "two"]}},
              {"type": "nd.b", "key": "nd-2", "parent_keys": ["nd-1"], "message": "m\nwith newline"},
              {"type": "nd.c", "key": "nd-3", "parents": [1], "payload": "🌳"}]
    r = api.post_events(data=ndjson(events, blank_lines=True) + b"\n\n", content_type=NDJSON_CT)
    assert expect_json(r) == {"results": [{"id": 2}, {"id": 3}, {"id": 4}], "durable": True}, ctx(r)
    # the same events as a JSON array are recognised as the same content
    r = api.post_events(events)
    assert expect_json(r) == {"results": [{"id": i, "duplicate": True} for i in (2, 3, 4)],
                              "durable": True}, ctx(r)
    # without keys: the two forms store equal events
    plain = [{k: v for k, v in e.items() if k not in ("key", "parent_keys")} for e in events]
    r = api.post_events(data=ndjson(plain), content_type=NDJSON_CT)
    ids_nd = [x["id"] for x in expect_json(r)["results"]]
    ids_js = api.append(plain)
    assert ids_nd == [5, 6, 7] and ids_js == [8, 9, 10]
    for a, b in zip(ids_nd, ids_js):
        ea, eb = without_time(api.event(a)), without_time(api.event(b))
        del ea["id"], eb["id"]
        assert ea == eb
    # a single NDJSON line without a trailing newline
    r = api.post_events(data=compact({"type": "nd.one"}).encode(), content_type=NDJSON_CT)
    assert expect_json(r) == {"results": [{"id": 11}], "durable": True}
    # error index counts events, not lines (blank lines are ignored)
    r = api.post_events(data=b'\n{"type":"ok"}\n\n{"type":"bad","parents":[999]}\n', content_type=NDJSON_CT)
    expect_error(r, 400, index=1, field="parents")
    r = api.post_events(data=b'{"type":"ok"}\n{"type":\n', content_type=NDJSON_CT)
    expect_error(r, 400)
    # other content types: 415, nothing stored
    for ct in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        r = api.post_events([{"type": "ct"}], content_type=ct)
        expect_error(r, 415)
    assert api.last_id() == 11


def _body_of_size(n: int) -> bytes:
    base = len(compact([{"type": "pad", "message": ""}]))
    body = compact([{"type": "pad", "message": "x" * (n - base)}]).encode()
    assert len(body) == n
    return body


def test_body_and_batch_limits_413(server_factory):
    srv = server_factory(["--body-bytes-max", "4096", "--batch-events-max", "10"], name="limits")
    api = Api(srv)
    assert expect_json(api.post_events(data=_body_of_size(4096)))["results"] == [{"id": 2}]
    expect_error(api.post_events(data=_body_of_size(4097)), 413)
    nd = compact({"type": "pad", "message": "x" * 5000}).encode() + b"\n"
    expect_error(api.post_events(data=nd, content_type=NDJSON_CT), 413)

    # no Content-Length (chunked upload): the limit still holds
    def gen():
        yield b'[{"type":"pad","message":"'
        yield b"x" * 5000
        yield b'"}]'
    r = requests.post(srv.url + "/v1/events", data=gen(), headers={"Content-Type": JSON_CT},
                      timeout=HTTP_TIMEOUT)
    expect_error(r, 413)
    assert api.last_id() == 2

    ten = [{"type": f"e{i}"} for i in range(10)]
    assert api.append(ten) == list(range(3, 13))
    expect_error(api.post_events(ten + [{"type": "e10"}]), 413)
    expect_error(api.post_events(data=ndjson(ten + [{"type": "e10"}]), content_type=NDJSON_CT), 413)
    assert api.last_id() == 12, "413s store nothing"
    # limits are per request: the server is still fine
    assert api.append([{"type": "after"}]) == [13]


def test_durability_query(server_factory):
    srv = server_factory(name="group")
    api = Api(srv)
    r = api.post_events([{"type": "s"}], params={"durability": "sync"})
    assert expect_json(r) == {"results": [{"id": 2}], "durable": True}
    r = api.post_events([{"type": "a"}], params={"durability": "async"})
    body = expect_json(r)
    assert body["results"] == [{"id": 3}] and isinstance(body["durable"], bool), ctx(r)
    for bad in ("fast", "SYNC-ish", "group2", "1"):
        expect_error(api.post_events([{"type": "bad"}], params={"durability": bad}), 400)
    assert api.last_id() == 3
    assert api.event(3)["type"] == "a"

    # a server that never fsyncs says so, unless the request asks for sync
    lazy = server_factory(name="never", fsync="never")
    lapi = Api(lazy)
    r = lapi.post_events([{"type": "d"}])
    assert expect_json(r) == {"results": [{"id": 2}], "durable": False}, ctx(r)
    r = lapi.post_events([{"type": "s"}], params={"durability": "sync"})
    assert expect_json(r) == {"results": [{"id": 3}], "durable": True}, ctx(r)
    assert lapi.status()["durability"] == "never"


# --------------------------------------------------------------------------
# reading single events


def test_get_by_id_and_by_key(server):
    api = Api(server)
    keys = ["order 42/line a", "ключ 🌳/x?y#z%&=+", "plain", "a%2Fb"]
    ids = api.append([{"type": "kv", "key": k, "payload": {"k": k}} for k in keys])
    for id_, k in zip(ids, keys):
        r = api.by_key(k)
        ev = expect_json(r)
        assert ev == api.event(id_), f"{k!r}: {ctx(r)}"
        assert ev["key"] == k and ev["payload"] == {"k": k}
    assert "%2F" in api.by_key(keys[0]).request.url, "the slash really is percent-encoded"
    # absent: JSON 404s (not the router's plain-text one)
    for path in (f"/v1/events/{ids[-1] + 1}", "/v1/events/999999", f"/v1/events/{2**64 - 1}",
                 "/v1/events/by-key/nope", "/v1/events/by-key/" + quote("order 42", safe=""),
                 "/v1/events/by-key/" + quote("a/b", safe="")):
        expect_error(api.get(path), 404)
    # bad ids
    for bad in ("0", "abc", "-1", str(2**64), "1.5", "0x10", "1e3", "%201", "+5"):
        expect_error(api.get(f"/v1/events/{bad}"), 400, "bad id")


# --------------------------------------------------------------------------
# GET /v1/events paging and filters


def test_paging_reads_everything_once(server):
    api = Api(server)
    for b in range(5):
        api.append([{"type": f"p{i % 3}", "payload": {"b": b, "i": i}} for i in range(50)])
    last = api.last_id()
    assert last == 251
    first = api.page()
    assert [e["id"] for e in first["events"]] == list(range(1, 101)), "default after=0, limit=100"
    assert (first["next"], first["last_id"]) == (100, 251)
    assert without_time(first["events"][0]) == GENESIS
    assert first["events"][5] == api.event(6), "page events are the same events"

    events, nxt, last_seen, pages = api.read_all(limit=7)
    assert [e["id"] for e in events] == list(range(1, 252)) and nxt == last_seen == 251
    assert pages == 36
    events, nxt, _, pages = api.read_all(after=240, limit=10_000)
    assert [e["id"] for e in events] == list(range(241, 252)) and pages == 1
    body = api.page(after=251)
    assert body == {"events": [], "next": 251, "last_id": 251}
    body = api.page(limit=10_000)
    assert len(body["events"]) == 251

    for bad in ({"limit": 0}, {"limit": 10_001}, {"limit": -1}, {"limit": "abc"},
                {"after": "abc"}, {"after": -1}, {"since": "yesterday"}, {"until": "12:00"}):
        r = api.get("/v1/events", params=bad)
        expect_error(r, 400)


def test_paging_is_exact_while_appending(server):
    api = Api(server)
    api.append([{"type": "seed", "payload": {"i": i}} for i in range(500)])
    writer_batches, writer_errors = [], []
    writer_done = threading.Event()

    def writer() -> None:
        s = Api(server)
        deadline = time.monotonic() + 30
        try:
            for b in range(60):
                if time.monotonic() > deadline:
                    break
                r = s.post_events([{"type": "live", "payload": {"b": b, "i": i}} for i in range(200)])
                if r.status_code != 200:
                    writer_errors.append(ctx(r))
                    return
                writer_batches.append(b)
                time.sleep(0.005)
        except Exception as e:  # reported by the main thread
            writer_errors.append(repr(e))
        finally:
            writer_done.set()

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        time.sleep(0.05)
        overlapped = not writer_done.is_set()
        events, nxt, last, pages = api.read_all(limit=50, seconds=60)
        ids = [e["id"] for e in events]
        assert ids == list(range(1, nxt + 1)), "every event exactly once, in order, up to next"
        print(f"phase 1: {pages} pages, next={nxt}, writer still running={not writer_done.is_set()}, "
              f"started while writing={overlapped}")
    finally:
        assert writer_done.wait(60), "writer thread did not finish"
        t.join(10)
    assert not writer_errors, writer_errors
    more, nxt2, last2, _ = api.read_all(after=nxt, limit=333)
    all_ids = ids + [e["id"] for e in more]
    final = api.last_id()
    assert final == 1 + 500 + 200 * len(writer_batches)
    assert nxt2 == last2 == final
    assert all_ids == list(range(1, final + 1)), "union of both reads is exactly 1..last"


def _rfc3339(ns: int, digits: int = 9, offset_minutes: int = 0) -> str:
    secs, frac = divmod(ns, 10**9)
    tz = timezone(timedelta(minutes=offset_minutes))
    text = datetime.fromtimestamp(secs, tz=tz).strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{frac:09d}"[:digits]
    if offset_minutes == 0:
        return text + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    h, m = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{h:02d}:{m:02d}"


def test_filters_stream_type_and_time(server):
    api = Api(server)
    groups = []
    for g in range(3):                        # three commits, 60 ms apart
        batch = []
        for i in range(12):
            ev: dict[str, Any] = {"type": ("t.a", "t.b", "t c")[i % 3], "payload": {"g": g, "i": i}}
            if i % 4:
                ev["stream"] = ("s1", "s 2", "s1")[i % 4 - 1]
            batch.append(ev)
        groups.append(api.append(batch))
        time.sleep(0.06)
    everything, _, last, _ = api.read_all(limit=10_000)
    assert [e["id"] for e in everything] == list(range(1, last + 1)) and last == 37

    def expect(pred, limit=5, **filters):
        want = [e for e in everything if pred(e)]
        got, nxt, last_, _ = api.read_all(limit=limit, **filters)
        assert nxt == last_ == last
        assert got == want, f"filters {filters}: got ids {[e['id'] for e in got]}, want {[e['id'] for e in want]}"
        return want

    # query values are form-decoded: %20 and + are both a space (as Go's url.ParseQuery does;
    # `requests` sends "+" for a space in params=)
    for raw in ("stream=s%202", "stream=s+2"):
        body = expect_json(api.get("/v1/events?limit=10000&" + raw))
        assert len(body["events"]) == 9, f"?{raw} must match stream 's 2': got {len(body['events'])} events"
    assert len(expect(lambda e: e.get("stream") == "s1", stream="s1")) == 18
    assert len(expect(lambda e: e.get("stream") == "s 2", stream="s 2")) == 9
    assert len(expect(lambda e: e["type"] == "t.a", type="t.a")) == 12
    assert len(expect(lambda e: e["type"] == "t c", type="t c")) == 12
    assert expect(lambda e: e["type"] == "genesis", type="genesis")[0]["id"] == 1
    assert expect(lambda e: False, type="nope") == []
    assert expect(lambda e: False, stream="nope") == []
    both = expect(lambda e: e["type"] == "t.b" and e.get("stream") == "s1", type="t.b", stream="s1")
    assert both, "the combination is non-empty in this data"

    # time bounds: since inclusive, until exclusive; integer nanoseconds and RFC 3339
    def times(ids):
        return [e["time_unix_nano"] for e in everything if e["id"] in ids]
    ta, tb, tc = times(groups[0]), times(groups[1]), times(groups[2])
    assert max(ta) < min(tb) and max(tb) < min(tc), f"commit times not increasing: {ta} {tb} {tc}"
    b_lo, c_lo = min(tb), min(tc)
    expect(lambda e: b_lo <= e["time_unix_nano"] < c_lo, since=b_lo, until=c_lo)
    expect(lambda e: e["time_unix_nano"] >= b_lo, since=str(b_lo))
    expect(lambda e: e["time_unix_nano"] < b_lo, until=b_lo)
    # RFC 3339 midway between commits (>= 30 ms from any event, so precision doesn't matter)
    mid_ab = (max(ta) + b_lo) // 2
    mid_bc = (max(tb) + c_lo) // 2
    in_b = lambda e: mid_ab <= e["time_unix_nano"] < mid_bc  # noqa: E731
    assert [e["id"] for e in everything if in_b(e)] == groups[1]
    expect(in_b, since=_rfc3339(mid_ab), until=_rfc3339(mid_bc))
    expect(in_b, since=_rfc3339(mid_ab, digits=3), until=_rfc3339(mid_bc, digits=6, offset_minutes=90))
    expect(in_b, since=_rfc3339(mid_ab, offset_minutes=-300), until=str(mid_bc))
    expect(lambda e: True, since="2000-01-01T00:00:00Z")
    expect(lambda e: False, until="2000-01-01T00:00:00Z")
    # filters combine with time
    expect(lambda e: in_b(e) and e["type"] == "t.a", type="t.a", since=mid_ab, until=mid_bc)


# --------------------------------------------------------------------------
# GET /v1/stream (SSE)


def test_stream_stalled_reader_gets_100k_events_exactly_once(server):
    """A reader that stops reading falls behind and catches up; the writer never waits."""
    t0 = time.monotonic()
    budget = 115.0
    api = Api(server)
    assert api.append([{"type": "pre", "payload": {"i": i}} for i in range(10)]) == list(range(2, 12))
    first_bulk = 12
    n_batches, per_batch = 100, 1_000
    bodies = [compact([{"type": f"bulk.{k % 3}", "payload": {"b": b, "k": k}}
                       for k in range(per_batch)]).encode() for b in range(n_batches)]
    with open_stream(server, "/v1/stream?after=0", rcvbuf=8192) as sse:
        head = sse.read_events(5, timeout=10)
        assert [int(f.id) for f in head] == [1, 2, 3, 4, 5]
        assert without_time(head[0].event_json()) == GENESIS
        # stop reading; append 100k events
        t_append = time.monotonic()
        for b, body in enumerate(bodies):
            r = api.post_events(data=body)
            res = expect_json(r)["results"]
            want_first = first_bulk + b * per_batch
            assert res[0] == {"id": want_first} and res[-1] == {"id": want_first + per_batch - 1}, ctx(r)
            assert time.monotonic() - t0 < budget * 0.6, f"appending is too slow: batch {b}"
        append_s = time.monotonic() - t_append
        last = api.last_id()
        assert last == 11 + n_batches * per_batch
        assert api.status()["streams"] == 1
        # resume
        t_read = time.monotonic()
        ids = [int(f.id) for f in head]
        frames = []
        while ids[-1] < last:
            remaining = t0 + budget - time.monotonic()
            assert remaining > 0, f"reader caught up only to {ids[-1]} of {last} within the budget"
            f = sse.next(remaining)
            if f.is_comment:
                continue
            assert f.event == "event", f
            ids.append(int(f.id))
            frames.append(f)
        read_s = time.monotonic() - t_read
        assert ids == list(range(1, last + 1)), "every event exactly once, in order"
        for f in frames:
            ev = f.event_json()
            i = ev["id"]
            if i >= first_bulk:
                b, k = divmod(i - first_bulk, per_batch)
                assert ev["type"] == f"bulk.{k % 3}" and ev["payload"] == {"b": b, "k": k}, ev
        for i in (6, first_bulk, last // 2, last):
            assert frames[i - 6].event_json() == api.event(i)
        sse.assert_quiet(0.3)
    print(f"append {n_batches * per_batch} events: {append_s:.1f}s; catch-up read: {read_s:.1f}s")
    assert time.monotonic() - t0 < 120

    # filtered paging over > 100,000 ids (one page examines at most 100,000 of them)
    rare = api.append([{"type": "rare"}])[0]
    got, nxt, _, pages = api.read_all(type="rare", limit=10)
    assert [e["id"] for e in got] == [rare] and nxt == rare
    print(f"type=rare over {rare} ids: {pages} page(s)")


def test_stream_last_event_id_resume(server):
    api = Api(server)
    api.append([{"type": "r", "payload": {"i": i}} for i in range(50)])          # 2..51
    s1 = open_stream(server, "/v1/stream?after=0")
    got = [int(f.id) for f in s1.read_events(20, timeout=10)]
    assert got == list(range(1, 21))
    s1.close_abruptly()
    api.append([{"type": "r2", "payload": {"i": i}} for i in range(30)])         # 52..81
    # Last-Event-ID wins over after=
    with open_stream(server, "/v1/stream?after=3", headers={"Last-Event-ID": "20"}) as s2:
        frames = s2.read_events(61, timeout=15)
        assert [int(f.id) for f in frames] == list(range(21, 82)), "no gap, no duplicate"
        assert frames[-1].event_json() == api.event(81)
        live = api.append([{"type": "live", "payload": {"i": i}} for i in range(5)])  # 82..86
        assert [int(f.id) for f in s2.read_events(5, timeout=10)] == live
        s2.assert_quiet(0.5)
    # after= alone
    with open_stream(server, "/v1/stream?after=80") as s3:
        assert [int(f.id) for f in s3.read_events(6, timeout=10)] == list(range(81, 87))
        s3.assert_quiet(0.3)
    # EventSource sends Last-Event-ID without after=
    with open_stream(server, "/v1/stream", headers={"Last-Event-ID": "84"}) as s4:
        assert [int(f.id) for f in s4.read_events(2, timeout=10)] == [85, 86]


def test_stream_filters(server):
    api = Api(server)
    sent = []
    for i in range(60):
        ev: dict[str, Any] = {"type": "ta" if i % 3 == 0 else "tb", "payload": {"i": i}}
        if i % 2 == 0:
            ev["stream"] = "s1"
        elif i % 5:
            ev["stream"] = "s2"
        sent.append(ev)
    ids = api.append(sent)
    by_id = dict(zip(ids, sent))

    def check(query: str, pred) -> None:
        want = [i for i in ids if pred(by_id[i])]
        with open_stream(server, "/v1/stream?after=0&" + query) as s:
            frames = s.read_events(len(want), timeout=10)
            assert [int(f.id) for f in frames] == want, query
            assert all(pred(f.event_json()) for f in frames)
            # live events: only matching ones arrive; the matching marker comes last
            more = [{"type": "tb", "payload": {"m": 1}}, {"type": "ta", "payload": {"m": 2}},
                    {"type": "tb", "stream": "s2"}, {"type": "tb", "stream": "s1"},
                    {"type": "ta", "stream": "s1", "payload": {"marker": True}}]
            more_ids = api.append(more)
            want_live = [i for i, e in zip(more_ids, more) if pred(e)]
            assert want_live and want_live[-1] == more_ids[-1]
            got_live = [int(f.id) for f in s.read_events(len(want_live), timeout=10)]
            assert got_live == want_live, query
            ids.extend(more_ids)
            by_id.update(zip(more_ids, more))
            s.assert_quiet(0.3)

    check("type=ta", lambda e: e["type"] == "ta")
    check("stream=s1", lambda e: e.get("stream") == "s1")
    check("type=ta&stream=s1", lambda e: e["type"] == "ta" and e.get("stream") == "s1")


def test_stream_heartbeat_and_start_at_end(server_factory):
    srv = server_factory(["--stream-heartbeat-seconds", "1"], name="heartbeat")
    api = Api(srv)
    api.append([{"type": "old"}])
    with open_stream(srv, "/v1/stream") as s:
        t = time.monotonic()
        f = s.next(5)
        assert f.is_comment and f.comment == "heartbeat", f"expected `: heartbeat`, got {f}"
        f2 = s.next(5)
        gap = time.monotonic() - t
        assert f2.is_comment and f2.comment == "heartbeat", f2
        assert 0.5 <= gap <= 4.5, f"two heartbeats at 1 s should take ~2 s, took {gap:.2f}s"
        new = api.append([{"type": "new"}])[0]
        frames = s.read_events(1, timeout=5)
        assert int(frames[0].id) == new, "without after= the stream starts at the end of the log"
        assert frames[0].event_json() == api.event(new)


def test_streams_max_503(server_factory):
    srv = server_factory(["--streams-max", "2", "--stream-heartbeat-seconds", "1"], name="smax")
    api = Api(srv)
    s1 = open_stream(srv, "/v1/stream?after=0")
    s1.read_events(1, timeout=5)
    s2 = open_stream(srv, "/subscribe")           # /subscribe counts too
    hello = s2.read_events(1, timeout=5)[0]
    assert hello.event == "hello"
    wait_until(lambda: api.status()["streams"] == 2, 5, "status streams == 2")
    try:
        for path in ("/v1/stream", "/v1/stream?after=0", "/subscribe"):
            s3 = SSE(srv.port, path)
            try:
                assert s3.status == 503, f"{path}: the 3rd stream got {s3.status} {s3.headers}"
                body = s3.read_body()
                assert json.loads(body).get("error"), f"503 is a JSON error: {body[:200]!r}"
                ra = s3.headers.get("retry-after", "")
                assert ra.isdigit(), f"503 needs Retry-After (seconds): {s3.headers}"
            finally:
                s3.close()
        # plain requests are unaffected
        assert api.status()["streams"] == 2
    finally:
        s1.close_abruptly()
    # the slot frees once the server notices (a heartbeat write at the latest)
    def reopen():
        s = SSE(srv.port, "/v1/stream?after=0")
        if s.status == 200:
            return s
        s.read_body()
        s.close()
        return None
    s4 = wait_until(reopen, 10, "a stream slot after closing one", interval=0.2)
    try:
        assert int(s4.read_events(1, timeout=5)[0].id) == 1
    finally:
        s4.close()
        s2.close()


def test_stream_bad_after_400(module_server):
    s = SSE(module_server.port, "/v1/stream?after=abc")
    try:
        body = s.read_body()
        assert s.status == 400, (s.status, body)
        assert json.loads(body).get("error")
    finally:
        s.close()


# --------------------------------------------------------------------------
# status and metrics


def test_status_fields_track_appends(server):
    api = Api(server)
    st = api.status()
    assert st["role"] == "leader" and st["epoch"] == 1
    assert (st["last_id"], st["edges"], st["roots"], st["heads"]) == (1, 0, 1, 1), st
    assert st["segments"]["sealed"] == 0 and st["segments"]["events_max"] == 65536, st
    assert st["durability"] == "group" and st["streams"] == 0, st
    assert isinstance(st["disk_bytes"], int) and st["disk_bytes"] > 0, st
    assert isinstance(st["uptime_seconds"], (int, float)) and st["uptime_seconds"] >= 0, st
    assert st["version"] == expect_json(api.get("/version"))["version"], st
    # 2 root; 3 <- {1,2}; 4 <- 3; 5 <- 3; 6 root.  roots {1,2,6}, heads {4,5,6}, edges 4
    assert api.append([{"type": "a"}, {"type": "b", "parents": [1, 2]}, {"type": "c", "parents": [3]},
                       {"type": "d", "parents": [3]}, {"type": "e"}]) == [2, 3, 4, 5, 6]
    st2 = api.status()
    assert (st2["last_id"], st2["edges"], st2["roots"], st2["heads"]) == (6, 4, 3, 3), st2
    assert st2["roots"] == len(expect_json(api.get("/roots")))
    assert st2["heads"] == len(expect_json(api.get("/heads")))
    assert st2["uptime_seconds"] >= st["uptime_seconds"]
    api.append([{"type": "f", "parents": [4, 5, 6]}])
    st3 = api.status()
    assert (st3["last_id"], st3["edges"], st3["roots"], st3["heads"]) == (7, 7, 3, 1), st3
    sse = open_stream(server, "/v1/stream")
    wait_until(lambda: api.status()["streams"] == 1, 5, "streams == 1 with one open stream")
    sse.close_abruptly()
    api.append([{"type": "wake"}])   # something to write, so the server sees the reset at once
    wait_until(lambda: api.status()["streams"] == 0, 20, "streams back to 0 after closing it")


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(\s+-?\d+)?$")


def parse_metrics(text: str) -> tuple[dict[str, float], dict[str, str]]:
    """-> ({sample name: sum over label sets}, {metric: TYPE})"""
    sums: dict[str, float] = collections.defaultdict(float)
    types: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3]
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        sums[m.group(1)] += float(m.group(3))
    return dict(sums), types


def test_metrics_prometheus_text(server):
    api = Api(server)
    r = api.get("/metrics")
    assert r.status_code == 200, ctx(r)
    assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers
    before, types = parse_metrics(r.text)
    assert "banyan_events_appended_total" in before, sorted(before)[:50]
    assert types.get("banyan_events_appended_total") == "counter", types
    assert any(k.startswith("banyan_http_request_duration_seconds") for k in before), sorted(before)
    api.append([{"type": "m"} for _ in range(30)])
    api.append([{"type": "m"} for _ in range(7)])
    api.post_events([{"type": "m", "parents": [10**9]}])          # refused: not counted
    after, _ = parse_metrics(api.get("/metrics").text)
    assert after["banyan_events_appended_total"] - before["banyan_events_appended_total"] == 37
    hist = [k for k in after if k.startswith("banyan_http_request_duration_seconds")]
    assert any(after[k] > before.get(k, 0) for k in hist), "request latency samples grow"


# --------------------------------------------------------------------------
# methods and unknown paths


@pytest.mark.parametrize("method,path", [
    ("DELETE", "/v1/events"), ("PUT", "/v1/events"), ("POST", "/v1/events/1"),
    ("DELETE", "/v1/events/1"), ("POST", "/v1/events/by-key/k"), ("POST", "/v1/status"),
    ("POST", "/v1/stream"), ("POST", "/metrics"),
])
def test_v1_wrong_method_405(module_server, method, path):
    r = requests.request(method, module_server.url + path, timeout=10, data=b"{}")
    expect_error(r, 405, "method not allowed")


@pytest.mark.parametrize("path", ["/v1", "/v1/", "/v1/nope", "/v1/events/1/2", "/v2/events"])
def test_v1_unknown_path_404(module_server, path):
    r = requests.get(module_server.url + path, timeout=10)
    assert r.status_code == 404, ctx(r)


# --------------------------------------------------------------------------
# authentication


ROUTES_READ = [("GET", "/v1/status", None), ("GET", "/v1/events", None), ("GET", "/v1/events/1", None),
               ("GET", "/v1/events/by-key/nope", None), ("GET", "/event/1", None),
               ("GET", "/children/1", None), ("GET", "/roots", None), ("GET", "/snapshot", None),
               ("GET", "/version", None), ("GET", "/metrics", None),
               ("POST", "/descendants", {"ids": [1]}), ("POST", "/provenance", {"ids": [1]})]
ROUTES_WRITE = [("POST", "/v1/events", [{"type": "auth"}]), ("POST", "/emit", {"type": "auth"})]


def _call(srv, method: str, path: str, body: Any, auth: Optional[str]) -> requests.Response:
    headers = {"Content-Type": JSON_CT}
    if auth is not None:
        headers["Authorization"] = auth
    data = None if body is None else compact(body).encode()
    return requests.request(method, srv.url + path, data=data, headers=headers, timeout=HTTP_TIMEOUT)


def _stream_status(srv, path: str, auth: Optional[str]) -> tuple[int, dict, bytes]:
    s = SSE(srv.port, path, headers={"Authorization": auth} if auth else None)
    try:
        if s.status == 200:
            if path.startswith("/subscribe"):
                s.read_events(1, timeout=5)
            return 200, s.headers, b""
        return s.status, s.headers, s.read_body()
    finally:
        s.close()


def check_roles(srv, read: list[str], write: list[str], admin: list[str]) -> None:
    """The role matrix of docs/HTTP_API.md for the given tokens."""
    last = Api(srv, admin[0]).last_id()
    assert requests.get(srv.url + "/healthz", timeout=10).status_code == 200, "/healthz is open"
    r = requests.get(srv.url + "/healthz", headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert r.status_code == 200, "/healthz is open even with a bad token"

    bad_auths = [None, "Bearer nope", "Bearer ", "Basic cjE6", f"Bearer {read[0]}x", read[0]]
    for method, path, body in ROUTES_READ + ROUTES_WRITE:
        for auth in bad_auths:
            r = _call(srv, method, path, body, auth)
            expect_error(r, 401, "unauthorized")
            assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), f"{ctx(r)} {r.headers}"
    for path in ("/v1/stream", "/subscribe"):
        for auth in (None, "Bearer nope"):
            status, headers, body = _stream_status(srv, path, auth)
            assert status == 401, (path, auth, status, body)
            assert json.loads(body).get("error") == "unauthorized", (path, auth, body)
            assert headers.get("www-authenticate", "").startswith("Bearer"), headers
    assert Api(srv, admin[0]).last_id() == last, "refused writes stored nothing"

    for tok in read + write + admin:
        for method, path, body in ROUTES_READ:
            r = _call(srv, method, path, body, f"Bearer {tok}")
            want = 404 if path == "/v1/events/by-key/nope" else 200
            assert r.status_code == want, f"token {tok}: {ctx(r)}"
        for path in ("/v1/stream", "/subscribe"):
            assert _stream_status(srv, path, f"Bearer {tok}")[0] == 200, (tok, path)
    for tok in read:
        for method, path, body in ROUTES_WRITE:
            expect_error(_call(srv, method, path, body, f"Bearer {tok}"), 403, "forbidden")
    assert Api(srv, admin[0]).last_id() == last, "forbidden writes stored nothing"
    n = 0
    for tok in write + admin:
        for method, path, body in ROUTES_WRITE:
            r = _call(srv, method, path, body, f"Bearer {tok}")
            assert r.status_code == 200, f"token {tok}: {ctx(r)}"
            n += 1
    assert Api(srv, admin[0]).last_id() == last + n


def test_auth_tokens_from_env(server_factory):
    srv = server_factory(env={"BANYAN_TOKENS": "r1:read,w1:write,a1:admin"}, name="auth-env")
    check_roles(srv, read=["r1"], write=["w1"], admin=["a1"])


def test_auth_tokens_file_and_env_together(server_factory, tmp_path):
    f = tmp_path / "tokens"
    f.write_text("# Banyan tokens\nr2 read\n\nw2 write\n# a comment line\na2 admin\n")
    srv = server_factory(["--tokens-file", str(f)], env={"BANYAN_TOKENS": "e1:read"}, name="auth-file")
    check_roles(srv, read=["r2", "e1"], write=["w2"], admin=["a2"])
    # file only (no env) behaves the same
    only = server_factory(["--tokens-file", str(f)], env={"BANYAN_TOKENS": None}, name="auth-file-only")
    check_roles(only, read=["r2"], write=["w2"], admin=["a2"])
    expect_error(_call(only, "GET", "/v1/status", None, "Bearer e1"), 401, "unauthorized")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_celestialtree_client_with_token(server_factory):
    srv = server_factory(env={"BANYAN_TOKENS": "r1:read,w1:write,a1:admin"}, name="auth-client")
    c = srv.client()
    c.init_session()
    c.session.headers["Authorization"] = "Bearer w1"
    a = c.emit("ct.a", payload={"x": 1})
    b = c.emit("ct.b", parents=[a], message="hi")
    assert (a, b) == (2, 3)
    assert c.get_event(b)["parents"] == [a]
    assert c.children(a) == [b]
    assert c.descendants(a)["children"][0]["id"] == b
    # subscribe() uses the same session, so it is authorised too
    got, hello = [], threading.Event()

    def on_event(ev):
        got.append(ev)
        if ev == {"message": "subscribed"}:
            hello.set()
    c2 = srv.client()
    c2.init_session()
    c2.session.headers["Authorization"] = "Bearer r1"
    sub = c2.subscribe(on_event, daemon=True)
    assert hello.wait(10), f"authorised subscribe got no hello: {got}"
    d = c.emit("ct.c", parents=[b])
    wait_until(lambda: any(e.get("id") == d for e in got), 10, "the live event on subscribe")

    reader = srv.client()
    reader.init_session()
    reader.session.headers["Authorization"] = "Bearer r1"
    assert reader.get_event(a)["type"] == "ct.a"
    with pytest.raises(RuntimeError):
        reader.emit("ct.denied")
    anon = srv.client()
    with pytest.raises(RuntimeError):
        anon.get_event(a)
    with pytest.raises(RuntimeError):
        anon.emit("ct.denied")
    assert Api(srv, "r1").last_id() == d
    # end the subscription (and its thread) inside this test
    srv.kill9()
    sub.join(timeout=10)
    assert not sub.is_alive(), "subscriber thread still running after the server died"


def test_public_host_without_tokens_is_refused(banyan_bin, tmp_path):
    port = free_port()
    cmd = [str(banyan_bin), "serve", "--data-dir", str(tmp_path / "pub"), "--host", "0.0.0.0",
           "--port", str(port)]
    t = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
                           env=process_env({"BANYAN_TOKENS": None}))
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"`{' '.join(cmd)}` without tokens kept running (it must refuse): "
                             f"{e.stdout!r} {e.stderr!r}")
    took = time.monotonic() - t
    out = (p.stdout or "") + (p.stderr or "")
    assert p.returncode != 0, f"exit 0 although tokens are missing: {out[-2000:]}"
    assert "token" in out.lower(), f"the error should mention tokens: {out[-2000:]}"
    assert took < 10, f"refusing took {took:.1f}s"
    with socket.socket() as s:
        s.settimeout(1)
        assert s.connect_ex(("127.0.0.1", port)) != 0, "nothing listens on the port"


def test_public_host_with_tokens_serves(server_factory):
    srv = server_factory(env={"BANYAN_TOKENS": "r1:read,w1:write"}, host="0.0.0.0", name="public")
    expect_error(requests.get(srv.url + "/v1/status", timeout=10), 401, "unauthorized")
    assert Api(srv, "w1").append([{"type": "pub"}]) == [2]
    assert Api(srv, "r1").last_id() == 2


# --------------------------------------------------------------------------
# overload


def test_writer_queue_full_503(server_factory):
    srv = server_factory(["--writer-queue-events-max", "1000", "--batch-events-max", "1000"], name="queue")
    threads, per_thread, size = 8, 6, 1_000
    body = compact([{"type": "q", "payload": {"i": i}} for i in range(size)]).encode()
    results: list[tuple[int, Optional[str], list[int]]] = []
    problems: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 60
    start = threading.Barrier(threads)

    def worker(t: int) -> None:
        api = Api(srv)
        try:
            start.wait(10)
            for _ in range(per_thread):
                if time.monotonic() > deadline:
                    return
                r = api.post_events(data=body, params={"durability": "sync"})
                with lock:
                    if r.status_code == 200:
                        res = r.json()["results"]
                        ids = [x["id"] for x in res]
                        if len(ids) != size or ids != list(range(ids[0], ids[0] + size)):
                            problems.append(f"batch ids not dense: {ids[:3]}...{ids[-3:]}")
                        results.append((200, None, ids))
                    elif r.status_code == 503:
                        results.append((503, r.headers.get("Retry-After"), []))
                        try:
                            if not isinstance(r.json().get("error"), str):
                                problems.append(f"503 body is not a JSON error: {ctx(r)}")
                        except ValueError:
                            problems.append(f"503 body is not JSON: {ctx(r)}")
                    else:
                        problems.append(ctx(r))
        except Exception as e:
            with lock:
                problems.append(f"thread {t}: {e!r}")

    ts = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(max(1.0, deadline + 30 - time.monotonic()))
    assert not any(t.is_alive() for t in ts), "workers still running"
    assert not problems, problems[:10]
    ok = [r for r in results if r[0] == 200]
    busy = [r for r in results if r[0] == 503]
    print(f"writer queue: {len(ok)} batches accepted, {len(busy)} refused with 503")
    for _, retry_after, _ in busy:
        assert retry_after is not None and retry_after.strip().isdigit(), f"503 Retry-After: {retry_after!r}"
    api = Api(srv)
    assert api.last_id() == 1 + size * len(ok)
    all_ids = sorted(i for r in ok for i in r[2])
    assert all_ids == list(range(2, 2 + size * len(ok))), "accepted batches hold every id once"
