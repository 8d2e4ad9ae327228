"""`POST /emit` on the event loop (docs/HTTP_API.md, "The event-loop path for /emit"): a server
answers it without a task per request unless `--emit-on-event-loop false`; both paths give the
same answers, byte for byte but the `Date`, for good and bad requests alike (site guard, tokens,
media type, body, store errors, CORS headers); the metric says which path served; requests the
event-loop path does not take keep their order among those it does, within the pipeline depth."""

from __future__ import annotations

import json
import re
import signal
import socket

import pytest
import requests

from test_pipelining import Reader, emit_request, get_request

TOKENS = {"BANYAN_TOKENS": "w-token:write,r-token:read"}
ORIGINS = ["--cors-origins", "https://app.example"]


def raw_request(path: str, body: bytes, headers: dict[str, str], method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def exchange(srv, payloads: list[bytes]) -> list[tuple[int, dict, bytes]]:
    """Sends every request in one write on one connection; the answers, in order."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        sock.sendall(b"".join(payloads))
        reader = Reader(sock)
        return [reader.answer() for _ in payloads]


def event_loop_emits(srv, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    text = requests.get(srv.url + "/metrics", headers=headers, timeout=10).text
    return int(float(re.search(r'^banyan_http_event_loop_requests_total\{route="/emit"\} (\S+)$', text, re.M).group(1)))


JSON = {"Host": "127.0.0.1", "Content-Type": "application/json"}
AUTH = {**JSON, "Authorization": "Bearer w-token"}
# (request, expected status): every way an /emit can be answered that needs no other node.
CASES = [
    (raw_request("/emit", b'{"type":"ok"}', AUTH), 200),
    (raw_request("/emit", b'{"type":"child","parents":[2],"message":"m","payload":{"a":[1,2]}}', AUTH), 200),
    (raw_request("/emit", b'{"type":"   "}', AUTH), 400),
    (raw_request("/emit", b'{"type":"x","colour":1}', AUTH), 400),
    (raw_request("/emit", b'{"type":"x","parents":[999]}', AUTH), 400),
    (raw_request("/emit", b'{"type":"x","parents":"2"}', AUTH), 400),
    (raw_request("/emit", b'{"type":"banyan.reserved"}', AUTH), 400),
    (raw_request("/emit", b'[1,2]', AUTH), 400),
    (raw_request("/emit", b'{"type":', AUTH), 400),
    (raw_request("/emit", b'{"type":"x"}', {**AUTH, "Content-Type": "text/plain"}), 415),
    (raw_request("/emit", b'{"type":"x"}', {"Host": "127.0.0.1", "Authorization": "Bearer w-token"}), 415),
    (raw_request("/emit", b'{"type":"x"}', JSON), 401),
    (raw_request("/emit", b'{"type":"x"}', {**JSON, "Authorization": "Bearer nope"}), 401),
    (raw_request("/emit", b'{"type":"x"}', {**JSON, "Authorization": "Bearer r-token"}), 403),
    (raw_request("/emit", b'{"type":"x"}', {**AUTH, "Host": "evil.example"}), 403),
    (raw_request("/emit", b'{"type":"x"}', {**AUTH, "Origin": "https://evil.example"}), 403),
    (raw_request("/emit", b'{"type":"cors"}', {**AUTH, "Origin": "https://app.example"}), 200),
    (raw_request("/emit", b'{"type":"last"}', AUTH), 200),
]


def comparable(answer: tuple[int, dict, bytes]) -> tuple[int, list, bytes]:
    status, headers, body = answer
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT", headers["date"]), headers
    return status, sorted((k, v) for k, v in headers.items() if k != "date"), body


def test_both_paths_answer_every_emit_alike(server_factory):
    fast = server_factory(extra_args=ORIGINS, env=TOKENS)
    slow = server_factory(extra_args=ORIGINS + ["--emit-on-event-loop", "false"], env=TOKENS)
    for srv in (fast, slow):   # event 2, the parent the second case names
        assert requests.post(srv.url + "/emit", json={"type": "root"}, headers={"Authorization": "Bearer w-token"},
                             timeout=10).json() == {"id": 2}
    before = event_loop_emits(fast, "r-token")
    # One request per connection, then all of them pipelined on one: the same answers.
    one_by_one = [[exchange(srv, [req])[0] for req, _ in CASES] for srv in (fast, slow)]
    pipelined = [exchange(srv, [req for req, _ in CASES]) for srv in (fast, slow)]
    for answers in one_by_one + pipelined:
        assert [a[0] for a in answers] == [status for _, status in CASES], [(a[0], a[2]) for a in answers]
    assert [comparable(a) for a in one_by_one[0]] == [comparable(a) for a in one_by_one[1]]
    assert [comparable(a) for a in pipelined[0]] == [comparable(a) for a in pipelined[1]]
    # The answers themselves: ids in request order, CORS headers for the allowed origin only.
    ids = [json.loads(a[2])["id"] for a in pipelined[0] if a[0] == 200]
    assert ids == list(range(ids[0], ids[0] + 4)), ids
    cors = pipelined[0][-2][1]
    assert cors["access-control-allow-origin"] == "https://app.example" and cors["vary"] == "Origin"
    assert "access-control-allow-origin" not in pipelined[0][0][1]
    assert json.loads(pipelined[0][2][2]) == {"error": "emit failed", "detail": "type is required"}
    # Which path served: every /emit of the fast server, none of the other's.
    assert event_loop_emits(fast, "r-token") - before == 2 * len(CASES)
    assert event_loop_emits(slow, "r-token") == 0
    # Both stored the same events.
    for srv in (fast, slow):
        r = requests.get(srv.url + "/v1/events", params={"limit": 100}, headers={"Authorization": "Bearer r-token"}, timeout=10)
        assert [e["type"] for e in r.json()["events"]][1:] == ["root"] + ["ok", "child", "cors", "last"] * 2


def test_requests_the_event_loop_does_not_take_keep_their_order(server_factory):
    # Depth 2: at most two emits read ahead of their answers; the rest wait, reads paused.
    srv = server_factory(extra_args=["--pipeline-depth-max", "2"])
    first = requests.get(srv.url + "/v1/status", timeout=10).json()["last_id"] + 1
    batch = json.dumps([{"type": "batched"}]).encode()
    payloads, expected = [], []   # each request, and the id its answer names
    next_id = first
    for i in range(40):
        payloads.append(emit_request({"type": "chain", "parents": [next_id - 1]} if i else {"type": "chain"}))
        expected.append(next_id)
        next_id += 1
        if i % 7 == 3:    # a read of the emit just before it, not answered yet when it is sent
            payloads.append(get_request(f"/event/{next_id - 1}"))
            expected.append(next_id - 1)
        if i % 11 == 5:   # an append through the responder
            payloads.append(raw_request("/v1/events", batch, JSON))
            expected.append(next_id)
            next_id += 1
        if i % 13 == 8:   # emits the event loop leaves to the responder: a query string, a chunked body
            payloads.append(raw_request("/emit?x=1", b'{"type":"query"}', JSON))
            body = b'{"type":"chunked"}'
            payloads.append(b"POST /emit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
            expected += [next_id, next_id + 1]
            next_id += 2
    answers = exchange(srv, payloads)
    assert all(a[0] == 200 for a in answers), [(a[0], a[2]) for a in answers if a[0] != 200]
    # Every answer is the one for its request, in request order.
    for request, want, (_, _, body) in zip(payloads, expected, answers):
        answer = json.loads(body)
        if request.startswith(b"GET /event/"):
            assert answer["id"] == want and answer["type"] == "chain", answer
        else:
            got = answer["results"][0]["id"] if "results" in answer else answer["id"]
            assert got == want, (request[:40], answer)
    assert requests.get(srv.url + "/v1/status", timeout=10).json()["last_id"] == next_id - 1


@pytest.mark.parametrize("args", [["--emit-on-event-loop", "false"], ["--min-replicas", "1", "--replica-timeout-ms", "200"]])
def test_servers_that_need_the_responder_do_not_use_the_event_loop(server_factory, args):
    srv = server_factory(extra_args=args)
    r = requests.post(srv.url + "/emit", json={"type": "x"}, timeout=10)
    assert r.status_code in (200, 504), r.text
    assert event_loop_emits(srv) == 0


def test_a_shutdown_answers_every_append_it_stored(server_factory):
    """SIGTERM while a connection has emits under way (depth 2, so most wait behind the first
    two), with reads and batch appends through the responder among them: the server exits
    cleanly, the answers that came are in request order, and every event it stored was answered
    on the connection; what it did not answer (read but not begun, or not read) is not stored."""
    srv = server_factory(extra_args=["--pipeline-depth-max", "2"])
    first = requests.get(srv.url + "/v1/status", timeout=10).json()["last_id"] + 1
    batch = json.dumps([{"type": "batched"}]).encode()
    payloads = []
    for i in range(300):
        payloads.append(emit_request({"type": "s"}))
        if i % 10 == 4:
            payloads.append(get_request("/v1/status"))
        if i % 10 == 7:
            payloads.append(raw_request("/v1/events", batch, JSON))
    answered = []   # the ids of the appends answered, in order
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        sock.sendall(b"".join(payloads))
        reader = Reader(sock)
        for index, request in enumerate(payloads):
            try:
                status, _, body = reader.answer()
            except AssertionError as e:
                assert "connection closed" in str(e), e
                break
            except ConnectionResetError:
                break
            assert status == 200, body
            answer = json.loads(body)
            if request.startswith(b"POST /emit"):
                answered.append(answer["id"])
            elif request.startswith(b"POST /v1/events"):
                answered.append(answer["results"][0]["id"])
            if index == 0:
                srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(timeout=15) == 0
    assert answered == list(range(first, first + len(answered))), "answers in request order"
    srv.start()
    assert requests.get(srv.url + "/v1/status", timeout=10).json()["last_id"] == answered[-1], \
        "every stored event was answered, and none was answered but not stored"
