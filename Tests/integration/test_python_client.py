"""The Python client (clients/python, `import banyan`) against real `banyan serve` processes:
appends with keys, reads, queries over pages, streams that survive a kill -9, retries that never
store twice, a follower with read-your-writes, tokens; the asyncio client the same way."""
from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
import time

import pytest

from conftest import REPO_ROOT

# The working tree's client, not an installed copy (its one dependency, httpx, is in
# tools/requirements.txt).
sys.path.insert(0, str(REPO_ROOT / "clients" / "python" / "src"))
import banyan  # noqa: E402


def test_append_emit_and_read_back(server):
    with banyan.Client(server.url) as client:
        first = client.append([banyan.event("job.start", key="job-1", stream="jobs", payload={"n": 1}),
                               banyan.event("job.done", parent_keys=["job-1"], message="ok")])
        assert [r.duplicate for r in first.results] == [False, False] and first.durable
        start, done = first.ids
        again = client.append([banyan.event("job.start", key="job-1", stream="jobs", payload={"n": 1})])
        assert again.results == [banyan.Appended(start, True)], "the same key and content is the stored event"
        child = client.emit("job.note", parents=[done], payload={"x": [1, 2]})
        assert client.get(done).parents == [start]
        got = client.get_by_key("job-1")
        assert (got.id, got.stream, got.payload) == (start, "jobs", {"n": 1})
        assert client.get(child).payload == {"x": [1, 2]}
        assert client.get(10_000) is None and client.get_by_key("no/such key") is None
        assert client.status()["last_id"] == child
        # Keys are any text: slashes, spaces and dot segments reach the route as they are.
        odd = client.append([banyan.event("odd", key=k) for k in ("a/b c", "..", ".", "ü?#%")]).ids
        assert [client.get_by_key(k).id for k in ("a/b c", "..", ".", "ü?#%")] == odd


def test_errors_carry_the_servers_fields(server):
    with banyan.Client(server.url) as client:
        with pytest.raises(banyan.BanyanError) as bad:
            client.append([banyan.event("ok"), {"type": "  "}])
        assert (bad.value.status, bad.value.field, bad.value.index) == (400, "type", 1)
        assert client.status()["last_id"] == 1, "a refused batch stores nothing"
        client.append([banyan.event("a", key="k", payload=1)])
        with pytest.raises(banyan.BanyanError) as conflict:
            client.append([banyan.event("a", key="k", payload=2)])
        assert conflict.value.status == 409 and conflict.value.error == "key conflict"
        with pytest.raises(banyan.BanyanError) as query:
            list(client.query("ancestors(1)\nwhere typo = 3"))
        assert (query.value.line, query.value.column, query.value.field) == (2, 7, "query")


def test_events_and_queries_follow_every_page(server):
    with banyan.Client(server.url) as client:
        root = client.emit("root")
        ids = client.append([banyan.event("child", parents=[root], stream="s" if i % 2 else None) for i in range(250)]).ids
        assert [e.id for e in client.events(after=root, limit=7)] == ids
        assert [e.id for e in client.events(stream="s", limit=10)] == ids[1::2]
        found = [e.id for e in client.query(f"descendants({root})", page_size=30)]
        assert found == ids and client.count(f"descendants({root})") == 250
        assert list(client.query(f"path({root}, {ids[-1]})")) == [[root, ids[-1]]]
        assert "descendants" in client.explain(f"descendants({root})").lower()


def test_a_stream_resumes_after_the_server_is_killed_without_gaps_or_repeats(server):
    client = banyan.Client(server.url, timeout=5)
    before = client.emit("before")
    seen: list[int] = []
    done = threading.Event()

    def consume():
        for event in client.stream(after=before):
            seen.append(event.id)
            if len(seen) == 6:
                done.set()
                return

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    first = client.append([banyan.event("one"), banyan.event("two"), banyan.event("three")]).ids
    deadline = time.monotonic() + 10
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen == first
    server.kill9()
    server.start()
    with banyan.Client(server.url) as writer:
        later = writer.append([banyan.event("four"), banyan.event("five"), banyan.event("six")]).ids
    assert done.wait(30), f"the stream did not resume: {seen}"
    assert seen == first + later
    client.close()


def test_an_append_is_retried_until_the_server_is_back(server):
    with banyan.Client(server.url, retries=12) as client:
        client.append([banyan.event("a", key="a")])
        port = server.port
        server.kill9()
        answers: list = []
        appender = threading.Thread(target=lambda: answers.append(client.append([banyan.event("b"), banyan.event("c")])))
        appender.start()
        time.sleep(0.3)  # the first attempts are refused: nothing was sent, so even keyless events are resent
        server.start()
        assert server.port == port, "the port was taken meanwhile; the test needs the same address"
        appender.join(60)
        assert answers and [r.duplicate for r in answers[0].results] == [False, False]
        assert [e.type for e in client.events()][-3:] == ["a", "b", "c"]


def test_a_lost_answer_is_resent_only_for_keyed_events_and_nothing_is_stored_twice(server):
    """SIGSTOP: the request is sent and waits in the socket; the client's read times out, as when
    an answer is lost. After SIGCONT the server stores what it was sent."""
    with banyan.Client(server.url, timeout=1, retries=6) as client:
        server.proc.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(banyan.Unavailable, match="without keys"):
                client.append([banyan.event("keyless")])
        finally:
            server.proc.send_signal(signal.SIGCONT)
        # Keyed: resent until the server answers; the copies that waited in the socket are duplicates.
        server.proc.send_signal(signal.SIGSTOP)
        threading.Timer(2.5, lambda: server.proc.send_signal(signal.SIGCONT)).start()
        result = client.append([banyan.event("keyed", key="once")])
        types = [e.type for e in client.events()]
        assert types.count("keyless") == 1, "the unanswered keyless append was stored by the server, once"
        assert types.count("keyed") == 1 and client.get_by_key("once").id == result.ids[0]


def test_a_server_out_of_reach_is_unavailable_after_the_retries(server):
    url = server.url
    server.kill9()
    with banyan.Client(url, retries=2) as client:
        started = time.monotonic()
        with pytest.raises(banyan.Unavailable):
            client.status()
        assert time.monotonic() - started < 5


def test_writes_through_a_follower_reach_the_leader_and_reads_see_them(server_factory):
    leader = server_factory(name="leader")
    follower = server_factory(name="follower", extra_args=["--follow", leader.url])
    with banyan.Client(follower.url, read_urls=[follower.url]) as client:
        ids = client.append([banyan.event("through.follower", key=f"k{i}") for i in range(20)]).ids
        # The write was redirected to the leader (307) and the read waited for the follower to
        # apply it (min_id), so it is there at once.
        assert client.get(ids[-1]).key == "k19"
        assert client.status()["role"] == "follower"
    with banyan.Client(leader.url) as direct:
        assert direct.get_by_key("k0").id == ids[0]


def test_a_token_survives_the_followers_redirect(server_factory):
    env = {"BANYAN_TOKENS": "w-token:write"}
    leader = server_factory(name="leader", env=env)
    follower = server_factory(name="follower", extra_args=["--follow", leader.url], env={**env, "BANYAN_LEADER_TOKEN": "w-token"})
    with banyan.Client(follower.url, token="w-token") as client:
        event_id = client.emit("redirected.with.token")
    with banyan.Client(leader.url, token="w-token") as direct:
        assert direct.get(event_id).type == "redirected.with.token"


def test_a_query_cut_short_by_its_budget_says_so(server):
    with banyan.Client(server.url) as client:
        root = client.emit("root")
        client.append([banyan.event("c", parents=[root]) for _ in range(50)])
        with pytest.raises(banyan.Truncated) as cut:
            list(client.query(f"descendants({root})", budget={"nodes_max": 10}))
        assert "budget" in cut.value.reason
        assert 0 < len(list(client.query(f"descendants({root})", budget={"nodes_max": 10}, allow_truncated=True))) < 50


def test_tokens_are_sent(server_factory):
    srv = server_factory(env={"BANYAN_TOKENS": "w-token:write"})
    with banyan.Client(srv.url) as anonymous:
        with pytest.raises(banyan.BanyanError) as refused:
            anonymous.status()
        assert refused.value.status == 401
    with banyan.Client(srv.url, token="w-token") as client:
        assert client.get(client.emit("with.token")).type == "with.token"


def test_the_asyncio_client_does_the_same(server):
    async def main():
        async with banyan.AsyncClient(server.url) as client:
            root = await client.emit("root", key="r")
            ids = (await client.append([banyan.event("c", parent_keys=["r"]) for _ in range(40)])).ids
            assert (await client.get_by_key("r")).id == root
            assert [e.id async for e in client.query(f"descendants({root})", page_size=7)] == ids
            assert [e.id async for e in client.events(after=root, limit=9)] == ids
            seen = []
            async with contextlib.aclosing(client.stream(after=ids[-5])) as events:
                async for event in events:
                    seen.append(event.id)
                    if len(seen) == 4:
                        break
            assert seen == ids[-4:]
            with pytest.raises(banyan.BanyanError):
                await client.append([{"type": ""}])
    asyncio.run(main())
