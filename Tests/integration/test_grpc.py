"""gRPC (docs/CLIENTS.md, "gRPC"): CelestialTree's Emit through the unchanged `celestialtree`
client, and the native banyan.v1 service through stubs that grpcio-tools generates here from
proto/banyan/v1/banyan.proto, against real `banyan serve` processes."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
import requests

from conftest import REPO_ROOT, free_port

PROTO = REPO_ROOT / "proto"


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    """(banyan_pb2, banyan_pb2_grpc), generated from the repository's proto file. Flat (-I at the
    file's directory): a `banyan.v1` package would shadow the Python client's `banyan`."""
    out = tmp_path_factory.mktemp("stubs")
    from grpc_tools import protoc
    rc = protoc.main(["protoc", f"-I{PROTO / 'banyan' / 'v1'}", f"--python_out={out}", f"--grpc_python_out={out}", "banyan.proto"])
    assert rc == 0, "grpc_tools.protoc failed on proto/banyan/v1/banyan.proto"
    sys.path.insert(0, str(out))
    try:
        import banyan_pb2
        import banyan_pb2_grpc
    finally:
        sys.path.remove(str(out))
    return banyan_pb2, banyan_pb2_grpc


def channel(server) -> grpc.Channel:
    ch = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    # /healthz answers once HTTP listens; the gRPC listener starts beside it.
    grpc.channel_ready_future(ch).result(timeout=15)
    return ch


def stub(server, pb):
    return pb[1].BanyanStub(channel(server))


def error_json(e: grpc.RpcError) -> dict:
    for item in e.trailing_metadata() or ():
        if item.key == "banyan-error-json":
            return json.loads(item.value)
    raise AssertionError(f"no banyan-error-json in {e.trailing_metadata()!r}")


def last_id(server) -> int:
    return requests.get(server.url + "/v1/status", timeout=5).json()["last_id"]


def ct_client(server, **kw):
    import celestialtree
    return celestialtree.Client(host="127.0.0.1", http_port=server.port, grpc_port=server.grpc_port, transport="grpc", **kw)


# --------------------------------------------------------------------------
# CelestialTree's Emit


def test_the_celestialtree_client_emits_over_grpc_unchanged(server):
    c = ct_client(server)
    root = c.emit("job.start", parents=[], message="begin", payload={"b": 2, "a": [1.5, 3, None, True, "x", {"z": 1e-7}]})
    child = c.emit("job.step", parents=[root, 0, root], payload=[1, 2])
    plain = c.emit("job.end", parents=[child])
    got = requests.get(f"{server.url}/event/{root}", timeout=5).json()
    # Struct → JSON as CelestialTree's Go server stores it: keys in order, whole numbers whole.
    assert got["type"] == "job.start" and got["message"] == "begin"
    assert got["payload"] == {"a": [1.5, 3, None, True, "x", {"z": 1e-7}], "b": 2}
    raw = requests.get(f"{server.url}/event/{root}", timeout=5).text
    assert '"payload":{"a":[1.5,3,null,true,"x",{"z":1e-7}],"b":2}' in raw
    step = requests.get(f"{server.url}/event/{child}", timeout=5).json()
    # 0 and repeats dropped, order kept; a list payload arrives wrapped by the client and stays so.
    assert step["parents"] == [root] and step["payload"] == {"_": [1, 2]}
    end = requests.get(f"{server.url}/event/{plain}", timeout=5).json()
    assert "payload" not in end and "message" not in end and end["parents"] == [child]
    assert [root, child, plain] == list(range(root, root + 3))


@pytest.mark.parametrize("type_,parents,detail", [
    ("", [], "emit failed: type is required"),
    ("   ", [], "emit failed: type is required"),
    ("ok", [999_999], "emit failed: parent 999999 not found"),
    ("banyan.epoch", [], "emit failed: types starting with banyan. are reserved"),
])
def test_bad_emits_are_invalid_argument_and_store_nothing(server, type_, parents, detail):
    c = ct_client(server)
    before = last_id(server)
    with pytest.raises(RuntimeError) as e:
        c.emit(type_, parents=parents)
    assert str(e.value).startswith(f"grpc emit failed: INVALID_ARGUMENT: {detail}"), str(e.value)
    assert last_id(server) == before


def test_our_proto_is_celestialtrees_on_the_wire(pb, tmp_path):
    """proto/celestialtree/v1/celestialtree.proto against the descriptors the celestialtree client
    ships: the same full names, field numbers and types, and the same bytes for one request."""
    from celestialtree.proto import celestialtree_pb2 as theirs
    from grpc_tools import protoc
    rc = protoc.main(["protoc", f"-I{PROTO}", f"-I{Path(protoc.__file__).parent / '_proto'}",
                      f"--descriptor_set_out={tmp_path / 'set.pb'}", "celestialtree/v1/celestialtree.proto"])
    assert rc == 0
    from google.protobuf import descriptor_pb2
    ours = descriptor_pb2.FileDescriptorSet.FromString((tmp_path / "set.pb").read_bytes()).file[0]
    assert ours.package == theirs.DESCRIPTOR.package == "celestialtree.v1"
    assert [s.name for s in ours.service] == list(theirs.DESCRIPTOR.services_by_name) == ["CelestialTreeService"]
    method = ours.service[0].method[0]
    assert (method.name, method.input_type, method.output_type) == ("Emit", ".celestialtree.v1.EmitRequest", ".celestialtree.v1.EmitResponse")
    for message in ours.message_type:
        their = theirs.DESCRIPTOR.message_types_by_name[message.name]
        assert [(f.name, f.number, f.type, f.label == f.LABEL_REPEATED, f.type_name.lstrip(".")) for f in message.field] == \
            [(f.name, f.number, f.type, f.is_repeated, f.message_type.full_name if f.message_type else "") for f in their.fields], message.name
    request = theirs.EmitRequest(type="t", message="m", parents=[1, 300])
    request.payload.update({"k": 1})
    # Pinned bytes (the same as BanyanGRPCTests pins for the Swift side): tag 1 "t", tag 2 "m",
    # tag 3 Struct{"k": 1.0}, tag 4 packed [1, 300].
    assert request.SerializeToString() == bytes.fromhex(EMIT_REQUEST_HEX)


EMIT_REQUEST_HEX = "0a0174" "12016d" "1a100a0e0a016b1209" "11000000000000f03f" "2203" "01ac02"


# --------------------------------------------------------------------------
# banyan.v1


def test_append_get_and_a_retried_keyed_batch(server, pb):
    m, _ = pb
    s = stub(server, pb)
    batch = m.AppendRequest(events=[
        m.NewEvent(type="commit", key="c1", stream="repo", message="first", payload_json=b'{"n": 1, "big": 18446744073709551615}'),
        m.NewEvent(type="commit", key="c2", parent_keys=["c1"]),
        m.NewEvent(type="build", parents=[1], payload_json=b"null"),
    ], durability=m.DURABILITY_SYNC)
    r = s.Append(batch)
    ids = [x.id for x in r.results]
    assert r.durable and not any(x.duplicate for x in r.results) and not r.HasField("replicas")
    before = last_id(server)
    again = s.Append(m.AppendRequest(events=list(batch.events)[:2]))
    # Keys make a retry safe: the same ids, flagged, nothing stored twice.
    assert [x.id for x in again.results] == ids[:2] and all(x.duplicate for x in again.results)
    assert last_id(server) == before
    first = s.Get(m.GetRequest(key="c1"))
    assert (first.id, first.type, first.key, first.stream, first.message) == (ids[0], "commit", "c1", "repo", "first")
    # The payload is stored as compact JSON, its numbers exact.
    assert first.payload_json == b'{"n":1,"big":18446744073709551615}'
    second = s.Get(m.GetRequest(id=ids[1]))
    assert list(second.parents) == [ids[0]] and not second.HasField("payload_json") and not second.HasField("stream")
    assert not s.Get(m.GetRequest(id=ids[2])).HasField("payload_json")
    over_http = requests.get(f"{server.url}/v1/events/{ids[0]}", timeout=5).json()
    assert over_http["payload"] == {"n": 1, "big": 18446744073709551615} and over_http["time_unix_nano"] == first.time_unix_nano


@pytest.mark.parametrize("events,code,field,index", [
    ([], grpc.StatusCode.INVALID_ARGUMENT, "events", None),
    ([{"type": "ok"}, {"type": "bad", "payload_json": b"{nope"}], grpc.StatusCode.INVALID_ARGUMENT, "payload_json", 1),
    ([{"type": "ok"}, {"type": "banyan.lost"}], grpc.StatusCode.INVALID_ARGUMENT, "type", 1),
    ([{"type": "ok", "parents": [10**9]}], grpc.StatusCode.INVALID_ARGUMENT, None, 0),
    ([{"type": "ok", "key": "dup"}, {"type": "other", "key": "dup"}], grpc.StatusCode.ALREADY_EXISTS, "key", 1),
    ([{"type": "ok", "parents": list(range(1, 2000))}], grpc.StatusCode.INVALID_ARGUMENT, "parents", 0),
    ([{"type": "ok", "payload_json": b"[" * 511 + b"]" * 511}], grpc.StatusCode.INVALID_ARGUMENT, "payload_json", 0),
    ([{"type": "x"}] * 4, grpc.StatusCode.RESOURCE_EXHAUSTED, "events", None),
])
def test_a_bad_batch_stores_nothing_and_says_where(server_factory, pb, events, code, field, index):
    m, _ = pb
    srv = server_factory(extra_args=["--batch-events-max", "3"])
    s = stub(srv, pb)
    before = last_id(srv)
    with pytest.raises(grpc.RpcError) as e:
        s.Append(m.AppendRequest(events=[m.NewEvent(**ev) for ev in events]))
    body = error_json(e.value)
    assert e.value.code() == code, (e.value.code(), body)
    if field is not None:
        assert body.get("field") == field, body
    if index is not None:
        assert body.get("index") == index, body
    assert e.value.details().startswith(body["error"]), (e.value.details(), body)
    assert last_id(srv) == before


def test_get_errors_and_read_your_writes_bound(server_factory, pb):
    m, _ = pb
    srv = server_factory(extra_args=["--read-wait-ms", "300"])
    s = stub(srv, pb)
    with pytest.raises(grpc.RpcError) as e:
        s.Get(m.GetRequest(id=424242))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and error_json(e.value)["field"] == "id"
    with pytest.raises(grpc.RpcError) as e:
        s.Get(m.GetRequest(key="nobody"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and error_json(e.value)["field"] == "key"
    with pytest.raises(grpc.RpcError) as e:
        s.Get(m.GetRequest())
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ahead = last_id(srv) + 1000
    t = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        s.Get(m.GetRequest(id=1, min_id=ahead))
    waited = time.monotonic() - t
    body = error_json(e.value)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE and body["field"] == "min_id" and body["applied_id"] == last_id(srv)
    assert waited >= 0.25, waited
    retry = dict((i.key, i.value) for i in e.value.trailing_metadata())
    assert retry.get("retry-after") == "1"


def test_query_streams_every_page_like_http(server, pb):
    m, _ = pb
    s = stub(server, pb)
    r = s.Append(m.AppendRequest(events=[m.NewEvent(type="root", key="r")] + [
        m.NewEvent(type="leaf", key=f"l{i}", parent_keys=["r"]) for i in range(250)]))
    root = r.results[0].id
    text = f"descendants({root})"
    pages = [json.loads(p.page_json) for p in s.Query(m.QueryRequest(query=text, page_size=40))]
    assert len(pages) == 7 and all(p["next"] for p in pages[:-1]) and pages[-1]["next"] is None
    ids = [x["id"] for p in pages for x in p["results"]]
    assert ids == [x.id for x in r.results[1:]]
    http = requests.post(server.url + "/v1/query", json={"query": text, "page_size": 1000}, timeout=10).json()
    assert [x["id"] for x in http["results"]] == ids
    # include adds fields; count answers one page; explain its plan.
    first = json.loads(next(iter(s.Query(m.QueryRequest(query=text, page_size=1, include=["parents"])))).page_json)
    assert first["results"][0]["parents"] == [root]
    assert [json.loads(p.page_json) for p in s.Query(m.QueryRequest(query=f"count(descendants({root}))"))][0]["count"] == 250
    plan = [json.loads(p.page_json) for p in s.Query(m.QueryRequest(query=f"explain descendants({root})"))]
    assert len(plan) == 1 and "plan" in plan[0]


@pytest.mark.parametrize("request_,field", [
    ({"query": "descendants("}, "query"),
    ({"query": ""}, "query"),
    ({"query": "descendants(1)", "page_size": 10**9}, "page_size"),
    ({"query": "descendants(1)", "nodes_max": 10**12}, "nodes_max"),
    ({"query": "descendants(1)", "include": ["secrets"]}, "include"),
])
def test_bad_queries_name_the_field(server, pb, request_, field):
    m, _ = pb
    s = stub(server, pb)
    with pytest.raises(grpc.RpcError) as e:
        list(s.Query(m.QueryRequest(**request_)))
    body = error_json(e.value)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and body["field"] == field, body
    if field == "query" and request_["query"]:
        assert (body["line"], body["column"]) == (1, 13)


def test_stream_delivers_every_event_once_live_and_resumes(server, pb):
    m, _ = pb
    s = stub(server, pb)
    s.Append(m.AppendRequest(events=[m.NewEvent(type="a" if i % 2 else "b") for i in range(30)]))
    seen: list[int] = []
    types: list[str] = []
    call = s.Stream(m.StreamRequest(after=0))
    done = threading.Event()

    def read():
        for item in call:
            if item.WhichOneof("item") == "event":
                seen.append(item.event.id)
                types.append(item.event.type)
            if len(seen) >= 61:
                done.set()
                return
    t = threading.Thread(target=read, daemon=True)
    t.start()
    deadline = time.monotonic() + 15
    while len(seen) < 31:
        assert time.monotonic() < deadline, f"the stream delivered {len(seen)} of the 31 stored events"
        time.sleep(0.02)
    # Live: appended once the stream has caught up, so these arrive as they commit.
    s.Append(m.AppendRequest(events=[m.NewEvent(type="live") for _ in range(30)]))
    assert done.wait(15), f"stream stopped at {seen[-3:]}"
    call.cancel()
    assert seen == list(range(1, 62)), seen[:5]
    assert types.count("live") == 30
    # Resume after the last id seen: nothing again, nothing skipped.
    resumed = s.Stream(m.StreamRequest(after=31, type="live"))
    got = [next(resumed).event.id for _ in range(30)]
    resumed.cancel()
    assert got == list(range(32, 62))
    with pytest.raises(grpc.RpcError) as e:
        next(iter(s.Stream(m.StreamRequest(after=0, type=""))))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_json(e.value)["field"] == "type"


def test_streams_count_against_streams_max_and_free_their_slot(server_factory, pb):
    m, _ = pb
    srv = server_factory(extra_args=["--streams-max", "1"])
    s = stub(srv, pb)
    first = s.Stream(m.StreamRequest(after=0))
    assert next(first).event.id == 1
    with pytest.raises(grpc.RpcError) as e:
        next(iter(s.Stream(m.StreamRequest(after=0))))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE and error_json(e.value)["error"] == "too many streams"
    first.cancel()
    deadline = time.monotonic() + 5
    while True:
        try:
            again = s.Stream(m.StreamRequest(after=0))
            assert next(again).event.id == 1
            again.cancel()
            break
        except grpc.RpcError:
            # The cancelled stream's slot is released within a second (its loop's check).
            assert time.monotonic() < deadline, "the cancelled stream's slot was never released"
            time.sleep(0.1)


def test_tokens_and_roles(server_factory, pb):
    m, _ = pb
    srv = server_factory(env={"BANYAN_TOKENS": "r-token:read,w-token:write"})
    s = stub(srv, pb)
    event = m.AppendRequest(events=[m.NewEvent(type="x")])
    with pytest.raises(grpc.RpcError) as e:
        s.Append(event)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED and error_json(e.value)["field"] == "authorization"
    with pytest.raises(grpc.RpcError) as e:
        s.Status(m.StatusRequest(), metadata=[("authorization", "Bearer wrong")])
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as e:
        s.Append(event, metadata=[("authorization", "Bearer r-token")])
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert s.Status(m.StatusRequest(), metadata=[("authorization", "Bearer r-token")]).role == "leader"
    r = s.Append(event, metadata=[("authorization", "Bearer w-token")])
    assert r.results[0].id >= 2
    # The streaming calls check the token too, before anything is sent.
    for call in (lambda md: list(s.Query(m.QueryRequest(query="descendants(1)"), metadata=md)),
                 lambda md: next(iter(s.Stream(m.StreamRequest(after=0), metadata=md)))):
        with pytest.raises(grpc.RpcError) as e:
            call([])
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    page = json.loads(next(iter(s.Query(m.QueryRequest(query="count(descendants(1))"), metadata=[("authorization", "Bearer r-token")]))).page_json)
    assert page["count"] == 0 and page["next"] is None
    from celestialtree.proto import celestialtree_pb2, celestialtree_pb2_grpc
    emit = celestialtree_pb2_grpc.CelestialTreeServiceStub(channel(srv)).Emit
    with pytest.raises(grpc.RpcError) as e:
        emit(celestialtree_pb2.EmitRequest(type="x"), metadata=[("authorization", "Bearer r-token")])
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert emit(celestialtree_pb2.EmitRequest(type="x"), metadata=[("authorization", "Bearer w-token")]).id == r.results[0].id + 1
    # The celestialtree client sends no token: refused, as its /emit is.
    with pytest.raises(RuntimeError) as e2:
        ct_client(srv).emit("x", parents=[])
    assert "UNAUTHENTICATED" in str(e2.value)


def test_a_follower_reads_and_names_the_leader_for_writes(server_factory, pb):
    m, _ = pb
    leader = server_factory(name="leader")
    follower = server_factory(name="follower", extra_args=["--follow", leader.url])
    ls, fs = stub(leader, pb), stub(follower, pb)
    ids = [x.id for x in ls.Append(m.AppendRequest(events=[m.NewEvent(type="w", key=f"k{i}") for i in range(5)])).results]
    # Read-your-writes on the follower: min_id waits until it has applied the write.
    got = fs.Get(m.GetRequest(key="k4", min_id=ids[-1]))
    assert got.id == ids[-1]
    status = fs.Status(m.StatusRequest())
    assert status.role == "follower" and status.leader == leader.url and status.last_id >= ids[-1]
    assert json.loads(status.status_json)["role"] == "follower"
    with pytest.raises(grpc.RpcError) as e:
        fs.Append(m.AppendRequest(events=[m.NewEvent(type="w")]))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_json(e.value)["leader"] == leader.url
    with pytest.raises(RuntimeError) as e2:
        ct_client(follower).emit("w", parents=[])
    assert "FAILED_PRECONDITION" in str(e2.value)


def test_status_metrics_and_shutdown_with_an_open_stream(server, pb):
    m, _ = pb
    s = stub(server, pb)
    st = s.Status(m.StatusRequest())
    assert (st.role, st.epoch, st.last_id, st.first_id) == ("leader", 1, 1, 1)
    with pytest.raises(grpc.RpcError):
        s.Get(m.GetRequest(id=99))
    text = requests.get(server.url + "/metrics", timeout=5).text
    assert 'route="/banyan.v1.Banyan/Get",method="GRPC",status="404"' in text
    assert 'route="/banyan.v1.Banyan/Status",method="GRPC",status="200"' in text
    stream = s.Stream(m.StreamRequest(after=0))
    assert next(stream).event.id == 1
    t = time.monotonic()
    assert server.terminate(signal.SIGTERM, timeout=15) == 0
    assert time.monotonic() - t < 10
    # Not OK, which would read as "complete": the reader is told to resume elsewhere.
    with pytest.raises(grpc.RpcError) as e:
        next(stream)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE and error_json(e.value)["error"] == "shutting down", e.value


def listening(pid: int) -> set[int]:
    """The TCP ports a process listens on (ss from iproute2)."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if f"pid={pid}," in line}


def test_grpc_port_off_and_checked(server_factory, run_banyan, tmp_path):
    on = server_factory(name="on")
    assert f"banyan: gRPC on 127.0.0.1:{on.grpc_port} " in on.log()
    srv = server_factory(extra_args=["--grpc-port", "off"], name="off")
    assert "gRPC" not in srv.log(), srv.log()
    assert listening(on.proc.pid) == {on.port, on.grpc_port}
    assert listening(srv.proc.pid) == {srv.port}
    port = free_port()
    r = run_banyan("serve", "--data-dir", str(tmp_path / "same"), "--port", str(port), "--grpc-port", str(port), timeout=30)
    assert r.returncode != 0 and "--grpc-port" in r.stderr, r.describe()


def test_a_taken_grpc_port_stops_the_start(server_factory, banyan_bin, tmp_path):
    import socket
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    try:
        p = subprocess.run([str(banyan_bin), "serve", "--data-dir", str(tmp_path / "d"), "--port", str(free_port()), "--grpc-port", str(taken)],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        holder.close()
    assert p.returncode != 0, p.stderr[-2000:]
    assert f"cannot listen for gRPC on 127.0.0.1:{taken} (--grpc-port)" in p.stderr, p.stderr[-2000:]
