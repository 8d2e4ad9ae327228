"""What the synchronous and the asyncio clients share: request bodies, answers, errors, retries,
Server-Sent Events framing. No I/O here."""
from __future__ import annotations

import itertools
import json
from urllib.parse import quote, urljoin
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import httpx

# Attempts of one request when the server is out of reach or overloaded (503 with Retry-After),
# and the longest pause between two.
RETRIES_MAX = 4
RETRY_PAUSE_MAX_S = 5.0
# Stream reconnections: the pause doubles from the first to the last.
RECONNECT_PAUSE_S = (0.25, 10.0)
# A stream with nothing, not even a heartbeat (every 15 s by default), for this long is taken for
# a dead connection and reopened.
STREAM_SILENCE_MAX_S = 60.0
# Redirects (a follower's 307 to its leader) followed by one request.
REDIRECTS_MAX = 3
# Failures that happen before a request leaves: safe to try again whatever it is.
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class BanyanError(Exception):
    """An answer of 400 or more, with the server's JSON error body."""

    def __init__(self, status: int, body: Any, method: str = "", path: str = "") -> None:
        self.status = status
        self.body = body if isinstance(body, dict) else {"error": str(body)}
        self.error: str = self.body.get("error", f"HTTP {status}")
        self.detail: Optional[str] = self.body.get("detail")
        self.field: Optional[str] = self.body.get("field")
        self.index: Optional[int] = self.body.get("index")
        self.line: Optional[int] = self.body.get("line")
        self.column: Optional[int] = self.body.get("column")
        where = f" ({method} {path})" if path else ""
        super().__init__(f"{status} {self.error}{': ' + self.detail if self.detail else ''}{where}")


class NotLeader(BanyanError):
    """A write reached a node that cannot take it: `503 not the leader` (a fenced node, a
    follower that knows no leader, a leader that lost its lease). `results`, when present, are
    the events the leader stored before it found out."""

    @property
    def leader(self) -> Optional[str]:
        return self.body.get("leader")

    @property
    def results(self) -> Optional[list[dict[str, Any]]]:
        return self.body.get("results")


class Truncated(BanyanError):
    """A query's budget was spent: what was yielded is a part of the answer (`reason` says why)."""

    def __init__(self, stats: Mapping[str, Any]) -> None:
        super().__init__(200, {"error": "truncated", "detail": str(stats.get("reason"))})
        self.reason = stats.get("reason")
        self.stats = dict(stats)


class Unavailable(Exception):
    """The server could not be reached within the retries."""


@dataclass(frozen=True)
class Event:
    """One stored event (docs/HTTP_API.md, "Event shape")."""

    id: int
    type: str
    time_unix_nano: int
    parents: list[int]
    message: Optional[str] = None
    payload: Any = None
    key: Optional[str] = None
    stream: Optional[str] = None
    compacted: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> "Event":
        return cls(id=value["id"], type=value["type"], time_unix_nano=value.get("time_unix_nano", 0),
                   parents=list(value.get("parents", [])), message=value.get("message"), payload=value.get("payload"),
                   key=value.get("key"), stream=value.get("stream"), compacted=bool(value.get("compacted", False)), raw=value)


@dataclass(frozen=True)
class Appended:
    """One event of an append: its id, and whether its key was already stored with the same content."""

    id: int
    duplicate: bool = False


@dataclass(frozen=True)
class AppendResult:
    results: list[Appended]
    durable: bool
    replicas: Optional[int] = None

    @property
    def ids(self) -> list[int]:
        return [r.id for r in self.results]

    @property
    def last_id(self) -> int:
        return max(self.ids) if self.results else 0


NewEvent = Mapping[str, Any]


def event_body(type: str, *, parents: Sequence[int] = (), parent_keys: Sequence[str] = (), key: Optional[str] = None,
               stream: Optional[str] = None, message: Optional[str] = None, payload: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type}
    if parents:
        body["parents"] = list(parents)
    if parent_keys:
        body["parent_keys"] = list(parent_keys)
    for name, value in (("key", key), ("stream", stream), ("message", message)):
        if value is not None:
            body[name] = value
    if payload is not None:
        body["payload"] = payload
    return body


def append_params(durability: Optional[str], replicas: Optional[int]) -> dict[str, str]:
    params: dict[str, str] = {}
    if durability is not None:
        if durability not in ("sync", "async"):
            raise ValueError("durability is 'sync' or 'async'")
        params["durability"] = durability
    if replicas is not None:
        params["replicas"] = str(replicas)
    return params


def retry_safe(events: Sequence[NewEvent]) -> bool:
    """An append may be sent again after a lost answer only when every event has a key: the
    server then answers the stored ones as duplicates instead of storing them twice."""
    return all(isinstance(e.get("key"), str) for e in events)


def parse_append(value: Mapping[str, Any]) -> AppendResult:
    return AppendResult([Appended(r["id"], bool(r.get("duplicate", False))) for r in value["results"]],
                        bool(value.get("durable", False)), value.get("replicas"))


def error_for(status: int, text: str, method: str, path: str) -> BanyanError:
    try:
        body: Any = json.loads(text) if text else {}
    except ValueError:
        body = {"error": text.strip() or f"HTTP {status}"}
    if status == 503 and isinstance(body, dict) and body.get("error") == "not the leader":
        return NotLeader(status, body, method, path)
    return BanyanError(status, body, method, path)


def lost(error: Exception, resend_ok: bool, method: str, path: str) -> Optional[Exception]:
    """What to raise when a request failed without an answer, or None to send it again."""
    if isinstance(error, NEVER_SENT) or resend_ok:
        return None
    return Unavailable(f"{method} {path}: the answer was lost ({error!r}); not sent again, since events without "
                       "keys could be stored twice (give every event a key to make appends safe to resend)")


def answered(response: httpx.Response, attempt: int, retries: int, resend_ok: bool, method: str, path: str) -> tuple[str, Any]:
    """The next step after an answer: ("ok", None), ("redirect", url), ("retry", pause) or
    ("raise", error). A 307/308 (a follower naming its leader) is sent again there, headers and
    body included (httpx would drop the token on a redirect to another origin). A 503 with
    Retry-After stored nothing (overloaded, not yet applied) unless it carries `results` (a
    leader that lost its lease after storing): then it is sent again only when that is safe."""
    status = response.status_code
    if status in (307, 308) and "location" in response.headers:
        return "redirect", urljoin(str(response.request.url), response.headers["location"])
    if status == 503 and "retry-after" in response.headers and attempt < retries:
        error = error_for(status, response.text, method, path)
        if "results" in error.body and not resend_ok:
            return "raise", error
        return "retry", retry_pause(attempt, response.headers["retry-after"])
    if status >= 400:
        return "raise", error_for(status, response.text, method, path)
    return "ok", None


def key_path(key: str) -> str:
    # Dots too: httpx resolves "." and ".." segments, which would name another route.
    return "/v1/events/by-key/" + quote(key, safe="").replace(".", "%2E")


def query_timeout(timeout: float, budget: Optional[Mapping[str, int]]) -> float:
    """A query may run for its time budget: the request waits that long and a little more."""
    return max(timeout, (budget or {}).get("time_max_ms", 0) / 1000 + 5)


def retry_pause(attempt: int, retry_after: Optional[str]) -> float:
    if retry_after and retry_after.isdigit():
        return min(float(retry_after), RETRY_PAUSE_MAX_S)
    return min(0.1 * (2 ** attempt), RETRY_PAUSE_MAX_S)


def query_body(text: str, cursor: Optional[str], page_size: Optional[int], include: Iterable[str],
               budget: Optional[Mapping[str, int]]) -> dict[str, Any]:
    body: dict[str, Any] = {"query": text}
    if cursor:
        body["cursor"] = cursor
    if page_size is not None:
        body["page_size"] = page_size
    include = list(include)
    if include:
        body["include"] = include
    if budget:
        body["budget"] = dict(budget)
    return body


QueryItem = Union[Event, list[int]]


def query_items(answer: Mapping[str, Any]) -> list[QueryItem]:
    """The items of one page: events, or the paths of `path`/`paths` answers."""
    if "paths" in answer:
        return [list(p) for p in answer["paths"]]
    return [Event.from_json(r) for r in answer.get("results", [])]


class SSEParser:
    """Server-Sent Events framing (the WHATWG rules the server's frames follow): feed text, get
    frames as dicts of their fields."""

    def __init__(self) -> None:
        self._buffer = ""
        self._frame: dict[str, str] = {}

    def feed(self, text: str) -> list[dict[str, str]]:
        self._buffer += text
        frames = []
        while True:
            newline = self._buffer.find("\n")
            if newline < 0:
                return frames
            line = self._buffer[:newline].rstrip("\r")
            self._buffer = self._buffer[newline + 1:]
            if line == "":
                if self._frame:
                    frames.append(self._frame)
                self._frame = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                self._frame[name] = self._frame[name] + "\n" + value if name == "data" and name in self._frame else value


class StreamPosition:
    """Where a stream is: the last event delivered. An event at or below it is never delivered
    again, whatever a reconnection sends; a `truncated` frame moves it back to the cut."""

    def __init__(self, after: Optional[int]) -> None:
        self.last_id = after

    def headers(self) -> dict[str, str]:
        return {"Accept": "text/event-stream", **({"Last-Event-ID": str(self.last_id)} if self.last_id is not None else {})}

    def take(self, frame: Mapping[str, str]) -> Optional[Event]:
        if frame.get("event") == "truncated" and "id" in frame:
            self.last_id = int(frame["id"])
            return None
        if frame.get("event", "message") != "event" or "id" not in frame or "data" not in frame:
            return None
        event_id = int(frame["id"])
        if self.last_id is not None and event_id <= self.last_id:
            return None
        self.last_id = event_id
        return Event.from_json(json.loads(frame["data"]))


def stream_refused(status: int, headers: Mapping[str, str]) -> Optional[float]:
    """0 for a stream to read, seconds to wait before trying again (503 with Retry-After: too many
    streams, not yet applied), or None for a refusal to raise."""
    if status < 400 and headers.get("content-type", "").startswith("text/event-stream"):
        return 0
    if status == 503 and "retry-after" in headers:
        return retry_pause(0, headers["retry-after"]) or RECONNECT_PAUSE_S[0]
    return None


def stream_params(type: Optional[str], stream: Optional[str], after: Optional[int]) -> dict[str, str]:
    params: dict[str, str] = {}
    if after is not None:
        params["after"] = str(after)
    if type:
        params["type"] = type
    if stream:
        params["stream"] = stream
    return params


class ClientBase:
    """A Banyan server, or a cluster: writes go to `url` (a follower answers 307 to its leader,
    which is followed), reads go to `read_urls` in turn when given (followers), each carrying the
    id of this client's last write as `min_id`, so a read never misses what the client wrote.

    `token`: a bearer token (docs/HTTP_API.md, Authentication). `timeout`: seconds per request.
    Requests that fail before an answer, and 503s with Retry-After (overloaded, not yet applied),
    are tried again up to `retries` times; an append is tried again after a lost answer only when
    every event has a key, so a retry never stores an event twice (docs/CLIENTS.md).
    """

    def __init__(self, url: str, token: Optional[str] = None, *, read_urls: Sequence[str] = (), timeout: float = 10.0,
                 retries: int = RETRIES_MAX) -> None:
        self.url = url.rstrip("/")
        self._reads = itertools.cycle([u.rstrip("/") for u in read_urls] or [self.url])
        self.retries = retries
        self.timeout = timeout
        self.last_write_id = 0
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _read_node(self) -> str:
        """The node the next read goes to; every page of one iterator goes to the same one."""
        return next(self._reads)

    def _read_params(self, params: Optional[Mapping[str, str]], at_least: int = 0) -> dict[str, str]:
        """Read-your-writes: the node must have applied this client's last write (and `at_least`)."""
        params = dict(params or {})
        floor = max(self.last_write_id, at_least)
        if floor:
            params["min_id"] = str(floor)
        return params

    def _wrote(self, answer: Mapping[str, Any]) -> AppendResult:
        result = parse_append(answer)
        self.last_write_id = max(self.last_write_id, result.last_id)
        return result

    @staticmethod
    def _events_params(type: Optional[str], stream: Optional[str], since: Any, until: Any, limit: int) -> dict[str, str]:
        params = {"limit": str(limit)}
        for name, value in (("type", type), ("stream", stream), ("since", since), ("until", until)):
            if value is not None:
                params[name] = str(value)
        return params
