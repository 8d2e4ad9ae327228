"""CelestialTree compatibility: the stock `celestialtree` 0.1.3 client against `banyan serve`.

Contract: /work/shared/CELESTIALTREE_API.md plus Banyan's intended differences
(dense ids, failed emits consume no id, /version name "Banyan", SSE `id:` lines
and no drops, a tree node limit answered with 400).

Everything that the client can express goes through the real client; `requests`
is used only for status codes, headers and error bodies (the client turns every
non-2xx into a bare RuntimeError).

Tests that create events get their own fresh server (`server`), so ids are
predictable: event 1 is the genesis event and the first client event is id 2.
Read-only error checks share one server per module (`module_server`).
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection

GENESIS = {"type": "genesis", "message": "CelestialTree begins.", "parents": []}
EVENT_KEYS = {"id", "time_unix_nano", "type", "parents"}  # + message?, payload?
JSON_CT = "application/json"


# --------------------------------------------------------------------------
# helpers


def expect_error(resp: requests.Response, status: int, error: str, detail: str | None = None) -> dict:
    """Assert a JSON error answer {"error":..., "detail"?...} with the given status."""
    ctx = f"{resp.request.method} {resp.request.url} -> {resp.status_code} {resp.text[:300]!r}"
    assert resp.status_code == status, f"expected HTTP {status}: {ctx}"
    assert resp.headers.get("Content-Type", "").startswith(JSON_CT), f"error body must be JSON: {ctx}"
    body = resp.json()
    assert isinstance(body, dict) and body.get("error") == error, f"expected error {error!r}: {ctx}"
    if detail is not None:
        assert body.get("detail") == detail, f"expected detail {detail!r}: {ctx}"
    return body


def post_raw(server, path: str, body: str | bytes) -> requests.Response:
    # Same headers the client sends; body passed through untouched.
    return requests.post(server.url + path, data=body, timeout=10,
                         headers={"Content-Type": "application/json", "Accept": "application/json"})


def event_meta(ev: dict) -> dict:
    """The meta-view fields a tree node carries for an event."""
    out = {"id": ev["id"], "time_unix_nano": ev["time_unix_nano"], "type": ev["type"]}
    for k in ("message", "payload"):
        if k in ev:
            out[k] = ev[k]
    return out


def to_meta(tree: dict | None, events: dict[int, dict], edge: str) -> dict | None:
    """Turn an expected struct tree into the expected meta tree (iteratively; the
    trees here are tiny but keep the no-recursion habit)."""
    if tree is None:
        return None
    root = dict(tree)
    stack = [root]
    while stack:
        node = stack.pop()
        node.update(event_meta(events[node["id"]]))
        kids = node[edge]
        if kids is not None:
            node[edge] = [dict(k) for k in kids]
            stack.extend(node[edge])
    return root


def node(id_: int, edge: str, kids: list | None = None, ref: bool = False) -> dict:
    """Struct-view tree node; ref nodes have `edge: None`, leaves `[]`."""
    return {"id": id_, "is_ref": ref, edge: None if ref else (kids or [])}


# --------------------------------------------------------------------------
# basics


def test_genesis_first_id_health_version(server):
    c = server.client()
    assert c.health() is True

    genesis = c.get_event(1)
    assert set(genesis) == EVENT_KEYS | {"message"}, f"genesis keys: {genesis}"
    assert {k: genesis[k] for k in ("type", "message", "parents")} == GENESIS
    assert genesis["id"] == 1
    assert isinstance(genesis["time_unix_nano"], int) and genesis["time_unix_nano"] > 0

    assert set(c.roots()) == {1} and set(c.heads()) == {1}, "a new store holds only genesis"
    assert c.emit("first") == 2, "the first client event must get id 2 (genesis is 1)"

    v = c.version()
    assert isinstance(v, dict) and v.get("name") == "Banyan", f"/version: {v}"
    for k in ("name", "version", "commit", "build"):
        assert isinstance(v.get(k), str), f"/version field {k!r} must be a string: {v}"


def test_emit_get_event_exact_shapes(server):
    c = server.client()
    before = time.time_ns()

    payload_dict = {
        "author": "René Scharfe", "name2": "Nguyễn Thái Ngọc Duy", "tree": "🌳 榕树",
        "repl": "\ufffd", "escapes": "quote\" backslash\\ nl\n tab\t nul\u0000 end",
        "i53": 2**53 + 1, "i63": 2**63 - 1, "neg63": -(2**63), "u64": 2**64 - 1,
        "huge": 10**30 + 7, "zero": 0, "f": 0.5, "f2": 0.1, "t": True, "fl": False, "n": None,
        "nested": {"list": [1, [2, [3, {"four": 4}]]], "empty_obj": {}, "empty_list": []},
    }
    payload_list = [1, "two", {"three": 3}, [4, [5]], None, True, 2**64 - 1, "ü"]

    plain = c.emit("plain")
    with_msg = c.emit("msg", message="hello — 世界")
    empty_msg = c.emit("empty-msg", message="")
    with_dict = c.emit("dict", payload=payload_dict)
    with_list = c.emit("list", payload=payload_list, message="both")
    empty_obj = c.emit("empty-obj", payload={})
    empty_arr = c.emit("empty-arr", payload=[])
    assert [plain, with_msg, empty_msg, with_dict, with_list, empty_obj, empty_arr] == list(range(2, 9)), \
        "ids must be dense and sequential from 2"

    def got(i):
        ev = c.get_event(i)
        assert ev["id"] == i
        assert isinstance(ev["time_unix_nano"], int)
        # Server stamps the time; it must be "now" (same host clock, generous 5 min).
        assert abs(ev["time_unix_nano"] - before) < 300 * 10**9, f"time_unix_nano not 'now': {ev}"
        return ev

    ev = got(plain)
    assert set(ev) == EVENT_KEYS, f"no message/payload/key/stream when not given: {ev}"
    assert ev["type"] == "plain" and ev["parents"] == []

    ev = got(with_msg)
    assert set(ev) == EVENT_KEYS | {"message"} and ev["message"] == "hello — 世界"

    ev = got(empty_msg)
    assert set(ev) == EVENT_KEYS, f"an empty message is omitted, as CelestialTree does: {ev}"

    ev = got(with_dict)
    assert set(ev) == EVENT_KEYS | {"payload"}
    assert ev["payload"] == payload_dict, "dict payload must round-trip exactly (unicode, big ints)"
    # Exactness of big ints: compare the raw text too (float round-trips would differ).
    raw = requests.get(f"{server.url}/event/{with_dict}", timeout=10).text
    for big in (2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1, 10**30 + 7):
        assert str(big) in raw, f"integer {big} not preserved verbatim in {raw[:400]!r}"

    ev = got(with_list)
    assert set(ev) == EVENT_KEYS | {"message", "payload"}
    assert ev["payload"] == payload_list and isinstance(ev["payload"], list)
    assert ev["message"] == "both"

    assert got(empty_obj)["payload"] == {}, "an empty object payload is still a payload"
    assert got(empty_arr)["payload"] == [], "an empty list payload is still a payload"

    # Raw response: JSON content type.
    r = requests.get(f"{server.url}/event/{plain}", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith(JSON_CT)


def test_parents_order_duplicates_and_zero(server):
    c = server.client()
    a, b, cc = c.emit("a"), c.emit("b"), c.emit("c")
    d = c.emit("d", parents=[cc, a, b])
    e = c.emit("e", parents=[b, a, b, a, b])
    f = c.emit("f", parents=[0, a, 0])  # CELESTIALTREE_API.md: parent 0 is dropped
    assert c.get_event(d)["parents"] == [cc, a, b], "parent order must be kept as sent"
    assert c.get_event(e)["parents"] == [b, a], "duplicates dropped, first occurrence kept"
    assert c.get_event(f)["parents"] == [a], "parent 0 is dropped, as CelestialTree does"
    # Deduplicated edges: b has exactly one edge to e.
    assert c.children(b) == [d, e]
    assert c.children(a) == [d, e, f]


def test_children_in_emit_order(server):
    c = server.client()
    r = c.emit("root")
    other = c.emit("other")
    kids = []
    for i in range(5):
        kids.append(c.emit("kid", parents=[r], payload={"i": i}))
        c.emit("noise", parents=[other])  # interleaved, must not show up under r
    second_parent = c.emit("kid2", parents=[other, r])  # r as the second parent
    kids.append(second_parent)
    assert c.children(r) == kids, "children are listed in emit order"
    assert c.children(kids[0]) == [], "a leaf has []"
    assert c.children(1) == [], "nobody emitted under genesis"


def test_ancestors_are_sorted_reachable_roots(server):
    c = server.client()
    r2 = c.emit("r-later")   # smaller id, but reached via the 2nd parent below
    r1 = c.emit("r")
    a = c.emit("a", parents=[r1])
    b = c.emit("b", parents=[a, r2])
    d = c.emit("d", parents=[b])
    assert c.ancestors(d) == sorted([r1, r2]), "roots reachable from d, sorted ascending"
    assert c.ancestors(b) == [r2, r1]
    assert c.ancestors(a) == [r1], "only roots, never intermediate ancestors"
    assert c.ancestors(r1) == [r1], "a root's answer is itself"
    assert c.ancestors(1) == [1]


# --------------------------------------------------------------------------
# trees on a small diamond


@pytest.fixture
def diamond(server):
    """A -> B, A -> C, D has parents [C, B] (deliberately not id order), D -> E.
    Plus an unrelated root U so trees must not leak into it."""
    c = server.client()
    A = c.emit("A", message="root of diamond", payload={"k": "v", "n": [1, 2]})
    B = c.emit("B", parents=[A], payload=["list", 1])
    C = c.emit("C", parents=[A], message="see")
    D = c.emit("D", parents=[C, B])
    E = c.emit("E", parents=[D], message="tip", payload={"ü": 2**63 - 1})
    U = c.emit("U")
    assert [A, B, C, D, E, U] == list(range(2, 8))
    events = {i: c.get_event(i) for i in range(1, U + 1)}
    return c, (A, B, C, D, E, U), events


def expected_desc_A(A, B, C, D, E):
    # DFS pre-order, children by id: A, B, D, E, then C whose child D is already seen.
    ch = "children"
    return node(A, ch, [
        node(B, ch, [node(D, ch, [node(E, ch)])]),
        node(C, ch, [node(D, ch, ref=True)]),
    ])


def expected_prov_E(A, B, C, D, E):
    # Parents in the event's own order: D's parents are [C, B] -> C first.
    pa = "parents"
    return node(E, pa, [
        node(D, pa, [
            node(C, pa, [node(A, pa)]),
            node(B, pa, [node(A, pa, ref=True)]),
        ]),
    ])


def test_descendants_tree_struct_and_meta(diamond):
    c, (A, B, C, D, E, U), events = diamond
    exp = expected_desc_A(A, B, C, D, E)
    assert c.descendants(A) == exp
    assert c.descendants(A, view="meta") == to_meta(exp, events, "children")
    assert c.descendants(E) == node(E, "children"), "a leaf has children []"
    assert c.descendants(D) == node(D, "children", [node(E, "children")])
    assert c.descendants(1) == node(1, "children"), "genesis has no descendants"


def test_provenance_tree_struct_and_meta(diamond):
    c, (A, B, C, D, E, U), events = diamond
    exp = expected_prov_E(A, B, C, D, E)
    assert c.provenance(E) == exp
    assert c.provenance(E, view="meta") == to_meta(exp, events, "parents")
    assert c.provenance(A) == node(A, "parents"), "a root has parents []"
    assert c.provenance(U, view="meta") == to_meta(node(U, "parents"), events, "parents")


def test_view_is_trimmed_and_case_insensitive(diamond, server):
    c, (A, B, C, D, E, U), events = diamond
    meta = c.descendants(A, view="meta")
    for v in ("META", " Meta ", "meta"):
        r = requests.get(f"{server.url}/descendants/{A}", params={"view": v}, timeout=10)
        assert r.status_code == 200 and r.json() == meta, f"view={v!r}: {r.status_code} {r.text[:200]}"
    r = requests.get(f"{server.url}/provenance/{E}", params={"view": "struct"}, timeout=10)
    assert r.status_code == 200 and r.json() == c.provenance(E), "explicit view=struct == default"


def test_batch_trees_in_request_order_with_independent_visited_sets(diamond):
    c, (A, B, C, D, E, U), events = diamond
    dA = expected_desc_A(A, B, C, D, E)
    dC = node(C, "children", [node(D, "children", [node(E, "children")])])
    # C first: if the visited set leaked across trees, D would be a ref inside A's tree.
    assert c.descendants_batch([C, A, C]) == [dC, dA, dC]
    assert c.descendants_batch([C, A], view="meta") == [
        to_meta(dC, events, "children"), to_meta(dA, events, "children")]

    pE = expected_prov_E(A, B, C, D, E)
    pB = node(B, "parents", [node(A, "parents")])
    assert c.provenance_batch([B, E, B]) == [pB, pE, pB]
    assert c.provenance_batch([E, U], view="meta") == [
        to_meta(pE, events, "parents"), to_meta(node(U, "parents"), events, "parents")]


def test_roots_heads_snapshot(diamond, server):
    c, (A, B, C, D, E, U), events = diamond
    roots, heads = c.roots(), c.heads()
    assert len(roots) == len(set(roots)) and set(roots) == {1, A, U}, f"roots {roots}"
    assert len(heads) == len(set(heads)) and set(heads) == {1, E, U}, f"heads {heads}"

    snap = c.snapshot()
    required = ("ts", "goroutines", "edges", "roots", "heads", "subscribers", "next_event_id", "events")
    for k in required:
        assert k in snap, f"/snapshot lacks {k!r}: {snap}"
        assert isinstance(snap[k], int) and not isinstance(snap[k], bool), f"{k} must be an int: {snap}"
    last = U
    assert snap["next_event_id"] == last + 1, f"next_event_id must be last id + 1: {snap}"
    assert snap["events"] == last, f"events counts genesis + client events (ids are dense): {snap}"
    assert snap["edges"] == sum(len(ev["parents"]) for ev in events.values()), snap
    assert snap["roots"] == 3 and snap["heads"] == 3, snap
    assert snap["subscribers"] == 0, snap


# --------------------------------------------------------------------------
# errors (requests: the client can't see status codes or bodies)


def test_emit_errors_and_no_id_consumed(server):
    c = server.client()
    first = c.emit("ok")
    assert first == 2

    body = expect_error(post_raw(server, "/emit", "{not json"), 400, "invalid json")
    assert isinstance(body.get("detail"), str) and body["detail"], "invalid json carries a detail"
    expect_error(post_raw(server, "/emit", json.dumps({"type": "x", "parents": [], "bogus": 1})),
                 400, "invalid json")
    expect_error(post_raw(server, "/emit", json.dumps({"parents": []})),
                 400, "emit failed", "type is required")
    expect_error(post_raw(server, "/emit", json.dumps({"type": "", "parents": []})),
                 400, "emit failed", "type is required")
    expect_error(post_raw(server, "/emit", json.dumps({"type": "x", "parents": [first, 9999]})),
                 400, "emit failed", "parent 9999 not found")
    expect_error(post_raw(server, "/emit", json.dumps({"type": "x", "parents": [first + 1]})),
                 400, "emit failed", f"parent {first + 1} not found")

    # The client surfaces failures as RuntimeError and must not get an id.
    with pytest.raises(RuntimeError):
        c.emit("x", parents=[12345])

    # Banyan: failed emits consume no id, nothing half-written.
    assert c.snapshot()["next_event_id"] == first + 1
    r = requests.get(f"{server.url}/event/{first + 1}", timeout=10)
    expect_error(r, 404, "not found")
    assert c.emit("ok2", parents=[first]) == first + 1, "ids stay dense after failed emits"
    assert c.children(first) == [first + 1]


@pytest.mark.parametrize("route", ["event", "children", "ancestors", "descendants", "provenance"])
@pytest.mark.parametrize("bad", ["abc", "0", "-1", "1.5", "99999999999999999999999"])
def test_bad_id_400(module_server, route, bad):
    # Go's strconv.ParseUint semantics: not a uint64, or 0 -> 400 "bad id".
    expect_error(requests.get(f"{module_server.url}/{route}/{bad}", timeout=10), 400, "bad id")


@pytest.mark.parametrize("route", ["event", "children", "ancestors"])
def test_unknown_id_404(module_server, route):
    expect_error(requests.get(f"{module_server.url}/{route}/424242", timeout=10), 404, "not found")


def test_tree_errors(server):
    c = server.client()
    a = c.emit("a")
    for route, error in (("descendants", "descendant process failed"),
                         ("provenance", "provenance process failed")):
        r = requests.get(f"{server.url}/{route}/424242", timeout=10)
        expect_error(r, 404, error, "invalid id 424242: event not found")
        expect_error(requests.get(f"{server.url}/{route}/{a}", params={"view": "bogus"}, timeout=10),
                     400, "bad view", "unknown view: bogus")
        # Batch forms.
        expect_error(post_raw(server, f"/{route}", json.dumps({"ids": []})), 400, "ids is required")
        expect_error(post_raw(server, f"/{route}", json.dumps({})), 400, "ids is required")
        expect_error(post_raw(server, f"/{route}", "[1,2"), 400, "invalid json")
        r = post_raw(server, f"/{route}", json.dumps({"ids": [a, 424242]}))
        assert r.status_code == 404, f"POST /{route} with an unknown id: {r.status_code} {r.text[:200]}"
        expect_error(post_raw(server, f"/{route}", json.dumps({"ids": [a], "view": "bogus"})),
                     400, "bad view")
    with pytest.raises(ValueError):  # the client refuses an empty batch without a request
        c.descendants_batch([])


@pytest.mark.parametrize("method,path", [
    ("GET", "/emit"), ("PUT", "/emit"), ("POST", "/event/1"), ("DELETE", "/event/1"),
    ("POST", "/children/1"), ("POST", "/ancestors/1"), ("PUT", "/descendants"),
    ("GET", "/descendants"), ("PUT", "/provenance/1"), ("POST", "/roots"), ("POST", "/heads"),
    ("DELETE", "/snapshot"), ("POST", "/subscribe"),
])
def test_wrong_method_405(module_server, method, path):
    r = requests.request(method, module_server.url + path, timeout=10, data=b"{}")
    expect_error(r, 405, "method not allowed")


@pytest.mark.parametrize("path", ["/nope", "/events/1", "/v2/emit", "/heads/1"])
def test_unknown_path_404(module_server, path):
    # Body unspecified (Go answers plain text "404 page not found"); status only.
    r = requests.get(module_server.url + path, timeout=10)
    assert r.status_code == 404, f"GET {path}: {r.status_code} {r.text[:200]}"


# --------------------------------------------------------------------------
# deep chain and the node limit


_WS = " \t\r\n"
_NUM = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def parse_json_iterative(text: str) -> Any:
    """Minimal JSON parser with an explicit stack: json.loads gives up around
    ~900-deep nesting (RecursionError), and a 3,001-deep tree is the point here."""
    stack: list[Any] = []   # open containers
    keys: list[Any] = []    # pending key per open container (None for lists)
    pos, n = 0, len(text)
    missing = object()
    result: Any = missing

    def attach(value: Any) -> None:
        nonlocal result
        if not stack:
            result = value
        elif isinstance(stack[-1], list):
            stack[-1].append(value)
        else:
            assert keys[-1] is not None, f"value without a key at {pos}"
            stack[-1][keys[-1]] = value
            keys[-1] = None

    while pos < n:
        ch = text[pos]
        if ch in _WS or ch == ",":
            pos += 1
        elif ch == ":":
            pos += 1
        elif ch == "{" or ch == "[":
            container: Any = {} if ch == "{" else []
            attach(container)
            stack.append(container)
            keys.append(None)
            pos += 1
        elif ch == "}" or ch == "]":
            stack.pop()
            keys.pop()
            pos += 1
        elif ch == '"':
            s, pos = json.decoder.scanstring(text, pos + 1)
            if stack and isinstance(stack[-1], dict) and keys[-1] is None:
                keys[-1] = s  # in an object, a string with no pending key is a key
            else:
                attach(s)
        elif text.startswith("true", pos):
            attach(True); pos += 4
        elif text.startswith("false", pos):
            attach(False); pos += 5
        elif text.startswith("null", pos):
            attach(None); pos += 4
        else:
            m = _NUM.match(text, pos)
            assert m, f"bad JSON at offset {pos}: {text[pos:pos + 40]!r}"
            tok = m.group(0)
            attach(float(tok) if any(c in tok for c in ".eE") else int(tok))
            pos = m.end()
    assert not stack and result is not missing, "truncated JSON"
    return result


def chain_ids(tree: dict, edge: str) -> list[int]:
    """Ids along a single-path tree; asserts every node is a well-formed
    non-ref struct/meta node with at most one child/parent."""
    out, cur = [], tree
    for _ in range(1_000_000):  # bounded walk
        assert cur["is_ref"] is False, f"unexpected ref node {cur.get('id')}"
        out.append(cur["id"])
        kids = cur[edge]
        assert isinstance(kids, list) and len(kids) <= 1, f"node {cur['id']}: {edge}={kids!r:.80}"
        if not kids:
            return out
        cur = kids[0]
    raise AssertionError("chain walk did not terminate")


CHAIN = 3000


def test_deep_chain_trees_are_served(server):
    """A 3,000-event chain hanging off genesis: provenance(last) and descendants(1)
    are 3,001 nodes nested 3,001 deep. The server must build/encode them without
    recursion. Python's json.loads can't parse that depth (RecursionError), so:
    status, Content-Type, a count of '"id":' in the raw text, and a walk over the
    result of a small explicit-stack parser."""
    c = server.client()
    prev, ids = 1, []
    deadline = time.monotonic() + 120
    for i in range(CHAIN):
        prev = c.emit("chain", parents=[prev])
        ids.append(prev)
        assert time.monotonic() < deadline, f"emitting the chain took > 120 s (at {i})"
    assert ids == list(range(2, CHAIN + 2)), "dense ids along the chain"
    n = CHAIN + 1  # plus genesis

    for path in (f"/provenance/{ids[-1]}", "/descendants/1",
                 f"/provenance/{ids[-1]}?view=meta", "/descendants/1?view=meta"):
        r = requests.get(server.url + path, timeout=60)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:300]}"
        assert r.headers.get("Content-Type", "").startswith(JSON_CT), f"GET {path}: {r.headers}"
        text = r.text
        got = text.count('"id":')
        assert got == n, f"GET {path}: expected {n} nodes ('\"id\":' occurrences), got {got}"
        # Full structural check with a parser that has no nesting limit.
        edge = "parents" if path.startswith("/provenance") else "children"
        want = list(reversed(ids)) + [1] if edge == "parents" else [1] + ids
        assert chain_ids(parse_json_iterative(text), edge) == want, \
            f"GET {path}: not the expected {n}-node chain"

    # Batch form of the deep trees too.
    r = post_raw(server, "/provenance", json.dumps({"ids": [ids[-1], ids[-2]]}))
    assert r.status_code == 200 and r.text.count('"id":') == n + (n - 1), \
        f"POST /provenance deep batch: {r.status_code} {r.text[:200]}"
    forest = parse_json_iterative(r.text)
    assert [chain_ids(t, "parents") for t in forest] == [
        list(reversed(ids)) + [1], list(reversed(ids[:-1])) + [1]]
    # And the flat answers are fine to parse.
    assert c.ancestors(ids[-1]) == [1]
    assert c.children(ids[0]) == [ids[1]]


def test_tree_node_limit(server_factory):
    srv = server_factory(extra_args=["--tree-nodes-max", "50"], name="limited")
    c = srv.client()
    chain = [c.emit("c")]
    for _ in range(99):
        chain.append(c.emit("c", parents=[chain[-1]]))
    assert len(chain) == 100

    # 100-node trees: over the limit -> 400 JSON error, both directions and batch.
    for method, path, body in (
        ("GET", f"/descendants/{chain[0]}", None),
        ("GET", f"/provenance/{chain[-1]}", None),
        ("GET", f"/descendants/{chain[0]}?view=meta", None),
        ("POST", "/descendants", {"ids": [chain[0]]}),
        ("POST", "/provenance", {"ids": [chain[-1]]}),
    ):
        r = requests.request(method, srv.url + path, timeout=10,
                             data=None if body is None else json.dumps(body),
                             headers=None if body is None else {"Content-Type": "application/json"})
        assert r.status_code == 400, f"{method} {path}: 100 nodes > limit 50 must be 400, got {r.status_code}"
        j = r.json()
        assert isinstance(j.get("error"), str) and j["error"] and "detail" in j, \
            f"{method} {path}: limit error must be {{error, detail}}: {j}"

    # Well under the limit still works (40 nodes).
    t = c.descendants(chain[60])
    count, stack = 0, [t]
    while stack:
        n = stack.pop()
        count += 1
        stack.extend(n["children"] or [])
    assert count == 40

    with pytest.raises(RuntimeError):
        c.provenance(chain[-1])  # the client sees the 400 as RuntimeError
    assert c.emit("still-fine", parents=[chain[-1]]) == chain[-1] + 1, "the limit only affects trees"


# --------------------------------------------------------------------------
# SSE


class _SmallRecvBuffer(HTTPAdapter):
    """Shrinks the subscriber's TCP receive buffer so that a stalled subscriber
    really backs up into the server (otherwise the kernel's loopback buffers
    swallow hundreds of KB and a dropping server would go unnoticed)."""

    def init_poolmanager(self, *args, **kwargs):
        kwargs["socket_options"] = list(HTTPConnection.default_socket_options) + [
            (socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)]
        super().init_poolmanager(*args, **kwargs)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_subscribe_receives_every_event_in_order(server):
    """The client's subscribe() thread gets hello + all 200 events, in order, even
    though it is deliberately slow at first (CelestialTree would drop events past
    its 64-event buffer; Banyan must not)."""
    N = 200
    sub_client = server.client()   # own session: subscribe() runs in another thread
    sub_client.init_session()
    sub_client.session.mount("http://", _SmallRecvBuffer())  # transport tweak only
    emitter = server.client()
    received: list[dict[str, Any]] = []
    cond = threading.Condition()
    hello_seen = threading.Event()
    slow_until = time.monotonic() + 5.0  # consumer stalls while emitting, at most 5 s

    def on_event(ev: dict) -> None:
        with cond:
            received.append(ev)
            cond.notify_all()
        if ev == {"message": "subscribed"}:
            hello_seen.set()
        else:
            # Stall until the emitter is done (bounded) so events pile up server-side.
            emitting_done.wait(timeout=max(0.0, slow_until - time.monotonic()))

    emitting_done = threading.Event()
    t = sub_client.subscribe(on_event, daemon=True)
    assert hello_seen.wait(timeout=10), f"no hello frame within 10 s; got {received}"
    assert received[0] == {"message": "subscribed"}

    # ~40 KB per event, ~8 MB in all: more than the kernel's largest default TCP
    # send buffer (tcp_wmem max, typically 4 MB) plus our small receive buffer, so
    # while the consumer stalls the server itself must hold well over 64 events.
    big = "x" * 40_000
    sent = []
    for i in range(N):
        payload = {"i": i, "pad": big}
        parents = [sent[-1][0]] if sent and i % 3 else []
        sent.append((emitter.emit(f"sse.{i % 4}", parents=parents, payload=payload, message=f"m{i}"),
                     parents, payload))
    emitting_done.set()
    assert [s[0] for s in sent] == list(range(2, N + 2))

    deadline = time.monotonic() + 30
    with cond:
        while len(received) < N + 1 and time.monotonic() < deadline:
            cond.wait(timeout=max(0.0, deadline - time.monotonic()))
    got = received[1:]
    missing = sorted({s[0] for s in sent} - {e.get("id") for e in got})
    assert len(got) == N, f"lost events: received {len(got)} of {N}; missing ids {missing[:20]}..."
    assert [e["id"] for e in got] == [s[0] for s in sent], "events arrive in id order, none missing"
    for ev, (id_, parents, payload) in zip(got, sent):
        assert set(ev) == EVENT_KEYS | {"message", "payload"}, f"SSE data is the Event: {ev.keys()}"
        assert (ev["parents"], ev["payload"], ev["message"]) == (parents, payload, f"m{id_ - 2}")
    assert got[-1] == emitter.get_event(sent[-1][0]), "SSE event == GET /event"

    # End the stream by killing the server; the subscriber thread must end with it.
    server.kill9()
    t.join(timeout=10)
    assert not t.is_alive(), "subscriber thread still running after the server died"


def test_subscribe_frames_have_ids(server):
    """Raw SSE framing: hello first, then `event: emit` + `id: N` + `data: <Event>`."""
    c = server.client()
    with requests.get(server.url + "/subscribe", stream=True, timeout=(5, 10)) as r:
        assert r.status_code == 200
        assert r.headers.get("Content-Type", "").startswith("text/event-stream"), r.headers
        lines = r.iter_lines(decode_unicode=True)

        def frame() -> dict[str, str]:
            fields: dict[str, str] = {}
            for _ in range(50):  # a frame is a few lines; bounded
                line = next(lines)
                if line == "":
                    if fields:
                        return fields
                    continue
                if line.startswith(":"):
                    continue  # comment / heartbeat
                k, _, v = line.partition(":")
                fields[k] = v[1:] if v.startswith(" ") else v
            raise AssertionError(f"no complete SSE frame in 50 lines: {fields}")

        hello = frame()
        assert hello.get("event") == "hello" and json.loads(hello["data"]) == {"message": "subscribed"}, hello
        assert c.snapshot()["subscribers"] == 1, "/snapshot counts the open subscriber"
        ids = [c.emit("f1"), c.emit("f2", parents=[2], payload=[1]), c.emit("f3", message="m")]
        for want in ids:
            f = frame()
            assert f.get("event") == "emit", f
            assert f.get("id") == str(want), f"SSE frame must carry `id: {want}`: {f}"
            assert json.loads(f["data"]) == c.get_event(want), f


def test_sigterm_with_open_subscriber_exits_0_and_keeps_data(server, verify):
    c = server.client()
    ids = [c.emit("keep", payload={"i": i}) for i in range(10)]
    with requests.get(server.url + "/subscribe", stream=True, timeout=(5, 10)) as r:
        assert r.status_code == 200
        # Read until the hello frame's data line so the subscription is live.
        for i, line in enumerate(r.iter_lines(decode_unicode=True)):
            if line.startswith("data:") or i > 20:
                break
        rc = server.terminate()  # raises if it hangs past 15 s
    assert rc == 0, f"SIGTERM must shut down gracefully with status 0, got {rc}"
    v = verify(server.data_dir)
    assert v.ok and v.report["events"] == ids[-1], f"verify after shutdown:\n{v.describe()}"
    server.restart()
    c = server.client()
    assert [c.get_event(i)["payload"] for i in ids] == [{"i": i} for i in range(10)]
    assert c.emit("after") == ids[-1] + 1
