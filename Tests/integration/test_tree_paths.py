"""CelestialTree's tree views on the event loop (docs/HTTP_API.md, "The event-loop path for tree
views"): a server answers `GET /provenance/{id}` and `GET /descendants/{id}` without a task per
request unless `--trees-on-event-loop false`, small trees on the event loop itself and larger ones
on the heavy pool; both paths give the same answers, byte for byte but the `Date` and the events'
times, for each kind of request in CASES (views, ids, tokens, site guard, CORS, the node limit,
requests left to the responder); the metric says which path served; a tree read between appends
on one connection sees exactly the appends before it; the node limit is exact."""

from __future__ import annotations

import json
import re
import sys
import threading
import time

import requests

from test_emit_paths import ORIGINS, TOKENS, comparable as comparable_head, exchange, raw_request
from test_pipelining import emit_request

# 700 nodes: the provenance of the chain's last event (about 600 nodes) passes the event loop's
# own bound (512) and is built on the heavy pool; event 2 has more than 700 children (the fan),
# so its descendants are too large for either path, found at its list of children.
LIMITS = ["--tree-nodes-max", "700"]
# A chain of CHAIN events nests twice as deep in JSON: past the parser's default bound.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
READ = {"Host": "127.0.0.1", "Authorization": "Bearer r-token"}
CHAIN, FAN = 600, 750
HOG = 20_000


def event_loop_requests(srv, route: str) -> int:
    text = requests.get(srv.url + "/metrics", headers={"Authorization": "Bearer r-token"}, timeout=10).text
    found = re.search(r'^banyan_http_event_loop_requests_total\{route="' + re.escape(route) + r'"\} (\S+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


def comparable(answer: tuple[int, dict, bytes]) -> tuple[int, list, bytes]:
    """The answer but the `Date` and the events' times, which differ between the two servers'
    stores (as many digits on both, so `Content-Length` is compared as it is)."""
    status, headers, body = comparable_head(answer)
    return status, headers, re.sub(rb'"time_unix_nano":\d+', b'"time_unix_nano":0', body)


def get(path: str, headers: dict[str, str] = READ, method: str = "GET") -> bytes:
    return raw_request(path, b"", headers, method=method)


def load(srv) -> None:
    """The same events on every server: a small DAG (ids 2-7), a chain of CHAIN events from 7,
    then FAN children of 2."""
    auth = {"Authorization": "Bearer w-token"}
    dag = [{"type": "root"}, {"type": "a", "parents": [2]}, {"type": "b", "parents": [2], "message": "m"},
           {"type": "c", "parents": [3, 4], "payload": {"k": [1, "x"]}}, {"type": "d", "parents": [5]}, {"type": "e", "parents": [5, 3]}]
    for i, event in enumerate(dag):
        assert requests.post(srv.url + "/emit", json=event, headers=auth, timeout=10).json() == {"id": i + 2}
    chain = [{"type": "link", "key": f"link-{i}", **({"parents": [7]} if i == 0 else {"parent_keys": [f"link-{i - 1}"]})}
             for i in range(CHAIN)]
    fan = [{"type": "leaf", "parents": [2]} for _ in range(FAN)]
    for batch in (chain, fan):
        r = requests.post(srv.url + "/v1/events", json=batch, headers=auth, timeout=30)
        assert r.status_code == 200, r.text


def tree_ids(node: dict, link: str) -> list[int]:
    """Every id of a tree in pre-order, references included."""
    ids = [node["id"]]
    for child in node.get(link) or []:
        ids += tree_ids(child, link)
    return ids


LAST = 7 + CHAIN
# (request, expected status, served on the event loop)
CASES = [
    (get("/provenance/6"), 200, True),
    (get("/provenance/6?view=meta"), 200, True),
    (get("/provenance/6?view=%20Meta+"), 200, True),          # trimmed and lower-cased, as CelestialTree does
    (get("/descendants/3"), 200, True),                        # past the event loop's bound: built on the pool
    (get(f"/descendants/{LAST - 5}?view=meta&other=1"), 200, True),
    (get(f"/provenance/{LAST}"), 200, True),                   # past the event loop's bound: built on the pool
    (get(f"/provenance/{LAST}?view=meta"), 200, True),
    (get("/descendants/2?view=meta"), 400, True),              # past --tree-nodes-max on both paths
    (get("/descendants/2"), 400, True),
    (get(f"/provenance/{LAST + FAN + 1}"), 404, True),
    (get("/provenance/1"), 200, True),
    (get("/provenance/0"), 400, False),                        # ids the route refuses: left to the responder
    (get("/provenance/01"), 400, False),
    (get("/provenance/x"), 400, False),
    (get("/provenance/6?view=tree"), 400, False),
    (get("/provenance/6?view=%ff"), 400, False),
    (get("/provenance/6?min_id=3"), 200, False),               # read-your-writes waits in a task
    (get("/provenance/6", {**READ, "Banyan-Min-Id": "3"}), 200, False),
    (get("/provenance/6", {"Host": "127.0.0.1"}), 401, True),
    (get("/provenance/6", {**READ, "Authorization": "Bearer nope"}), 401, True),
    (get("/provenance/6", {**READ, "Authorization": "Bearer w-token"}), 200, True),
    (get("/provenance/6", {**READ, "Host": "evil.example"}), 403, True),
    (get("/descendants/4", {**READ, "Origin": "https://app.example"}), 200, True),
    (get("/descendants/4", {**READ, "Origin": "https://evil.example"}), 200, True),   # a GET is not refused for its origin
    (raw_request("/provenance/6", b"{}", {**READ, "Content-Type": "application/json"}, method="GET"), 200, False),   # a body
    (get("/provenance/6"), 200, True),
]


def test_both_paths_answer_every_tree_request_alike(server_factory):
    fast = server_factory(extra_args=ORIGINS + LIMITS, env=TOKENS)
    slow = server_factory(extra_args=ORIGINS + LIMITS + ["--trees-on-event-loop", "false"], env=TOKENS)
    routes = ["/provenance/{id}", "/descendants/{id}"]
    for srv in (fast, slow):
        load(srv)
    before = sum(event_loop_requests(fast, r) for r in routes)
    # One request per connection, then all of them pipelined on one: the same answers.
    one_by_one = [[exchange(srv, [req])[0] for req, _, _ in CASES] for srv in (fast, slow)]
    after_one_by_one = sum(event_loop_requests(fast, r) for r in routes)
    pipelined = [exchange(srv, [req for req, _, _ in CASES]) for srv in (fast, slow)]
    for answers in one_by_one + pipelined:
        assert [a[0] for a in answers] == [status for _, status, _ in CASES], [(a[0], a[2][:200]) for a in answers]
    assert [comparable(a) for a in one_by_one[0]] == [comparable(a) for a in one_by_one[1]]
    assert [comparable(a) for a in pipelined[0]] == [comparable(a) for a in pipelined[1]]
    # The answers themselves.
    answers = pipelined[0]
    assert tree_ids(json.loads(answers[0][2]), "parents") == [6, 5, 3, 2, 4, 2]   # the second 2 a reference
    assert answers[1][2] == answers[2][2] and json.loads(answers[1][2])["type"] == "d"
    assert set(tree_ids(json.loads(answers[3][2]), "children")) == {3, 5, 6} | set(range(7, LAST + 1))
    assert tree_ids(json.loads(answers[4][2]), "children") == list(range(LAST - 5, LAST + 1))
    deep = tree_ids(json.loads(answers[5][2]), "parents")
    assert 512 < len(deep) <= 700 and deep[:CHAIN + 1] == list(range(LAST, 6, -1)) and set(deep) == {2, 3, 4, 5} | set(range(7, LAST + 1))
    for too_large in answers[7:9]:
        assert json.loads(too_large[2]) == {"error": "tree too large", "detail": "the tree response would take more than 700 nodes (tree node limit)"}
    assert json.loads(answers[9][2])["detail"] == f"invalid id {LAST + FAN + 1}: event not found"
    cors = answers[22][1]
    assert cors["access-control-allow-origin"] == "https://app.example" and cors["vary"] == "Origin"
    assert "access-control-allow-origin" not in answers[23][1]
    # Which path served: one by one, the requests marked so on the fast server; pipelined, one
    # that comes while the responder answers an earlier request goes to the responder too.
    served = sum(1 for _, _, fast_path in CASES if fast_path)
    assert after_one_by_one - before == served
    assert 1 <= sum(event_loop_requests(fast, r) for r in routes) - after_one_by_one <= served
    assert sum(event_loop_requests(slow, r) for r in routes) == 0


def test_a_tree_between_appends_sees_exactly_those_before_it(server_factory):
    """Pipelined on one connection: emits that extend a chain, and reads of the chain's
    descendants and of the new event's provenance (past the event loop's own bound, so built on
    the heavy pool); each read answers as if the requests before it had all been served and none
    after it begun. Two other connections keep the heavy pool busy meanwhile, so each read waits
    there while the emits behind it could be stored, if they were taken."""
    srv = server_factory()
    first = requests.get(srv.url + "/v1/status", timeout=10).json()["last_id"] + 1
    chain = [{"type": "n", "key": f"n-{i}", **({"parent_keys": [f"n-{i - 1}"]} if i else {})} for i in range(CHAIN)]
    assert requests.post(srv.url + "/v1/events", json=chain, timeout=30).status_code == 200
    # A separate long chain whose descendants take the pool's threads for a while each.
    hog_root = first + CHAIN
    for b in range(HOG // 1000):
        batch = [{"type": "h", **({"parents": [hog_root + b * 1000 + i - 1]} if b or i else {})} for i in range(1000)]
        assert requests.post(srv.url + "/v1/events", json=batch, timeout=30).status_code == 200
    start = hog_root + HOG
    stop = threading.Event()
    hogged: list[int] = []   # the status of every hog request: a failed one would leave the pool idle

    def hog() -> None:
        with requests.Session() as s:
            while not stop.is_set():
                # The batch route: the responder's path, on the same heavy pool.
                hogged.append(s.post(f"{srv.url}/descendants", json={"ids": [hog_root]}, timeout=60).status_code)

    hogs = [threading.Thread(target=hog, daemon=True) for _ in range(2)]
    for t in hogs:
        t.start()
    payloads, checks = [], []
    for i in range(20):
        # Each read right before an emit: were the emit taken while the read waits on the pool,
        # it could be stored before the read's walk begins.
        x = start + i
        payloads.append(raw_request(f"/descendants/{first}", b"", {"Host": "127.0.0.1"}, method="GET"))
        checks.append(("descendants", x - 1))
        payloads.append(emit_request({"type": "n", "parents": [x - 1 if i else first + CHAIN - 1]}))
        checks.append(("emit", x))
        payloads.append(raw_request(f"/provenance/{x}", b"", {"Host": "127.0.0.1"}, method="GET"))
        checks.append(("provenance", x))
    before = event_loop_requests(srv, "/descendants/{id}")
    try:
        time.sleep(0.2)
        answers = exchange(srv, payloads)
    finally:
        stop.set()
        for t in hogs:
            t.join(timeout=60)
    assert hogged and set(hogged) == {200}, hogged
    assert all(a[0] == 200 for a in answers), [(a[0], a[2][:200]) for a in answers if a[0] != 200]
    chain_ids = list(range(first, first + CHAIN))
    for (kind, x), (_, _, body) in zip(checks, answers):
        answer = json.loads(body)
        if kind == "emit":
            assert answer == {"id": x}
            continue
        grown = chain_ids + list(range(start, x + 1))
        if kind == "descendants":
            # The chain and the emits before the read, not the one after it.
            assert tree_ids(answer, "children") == grown, (x, len(tree_ids(answer, "children")))
        else:
            assert tree_ids(answer, "parents") == grown[::-1], x
    assert event_loop_requests(srv, "/descendants/{id}") - before == 20


def test_the_node_limit_admits_a_tree_of_exactly_that_many_nodes(server_factory):
    """Links are fetched only up to the nodes the budget has left (each will be a node): a tree
    of exactly --tree-nodes-max nodes is answered, one node more is refused, on both views."""
    srv = server_factory(env=TOKENS)
    load(srv)
    trees = {path: len(tree_ids(requests.get(srv.url + path, headers=READ, timeout=30).json(), link))
             for path, link in ((f"/provenance/{LAST}", "parents"), ("/descendants/3", "children"))}
    for path, nodes in trees.items():
        assert 512 < nodes < 1_000, (path, nodes)
        for limit, status in ((nodes, 200), (nodes - 1, 400)):
            assert srv.terminate() == 0
            srv.extra_args = ("--tree-nodes-max", str(limit))
            srv.start()
            for view in ("", "?view=meta"):
                r = requests.get(srv.url + path + view, headers=READ, timeout=30)
                assert r.status_code == status, (path, view, limit, r.text[:200])
