"""The asyncio client: `_client.Client`'s API as coroutines and async iterators, over the same
`_core` decisions."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Mapping, Optional, Sequence

import httpx

from . import _core
from ._core import AppendResult, BanyanError, Event, NewEvent, QueryItem, Unavailable


class AsyncClient(_core.ClientBase):
    """The asyncio client (docs/CLIENTS.md)."""

    def __init__(self, url: str, token: Optional[str] = None, *, read_urls: Sequence[str] = (), timeout: float = 10.0,
                 retries: int = _core.RETRIES_MAX) -> None:
        super().__init__(url, token, read_urls=read_urls, timeout=timeout, retries=retries)
        self._http = httpx.AsyncClient(headers=self.headers, timeout=timeout, follow_redirects=False)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # ---- transport ------------------------------------------------------------------------

    async def _send(self, method: str, path: str, *, base: Optional[str] = None, json: Any = None, params: Optional[Mapping[str, str]] = None,
              resend_ok: bool = True, timeout: Optional[float] = None) -> httpx.Response:
        url, attempt, redirects = (base or self.url) + path, 0, 0
        while True:
            try:
                response = await self._http.request(method, url, json=json, params=params, timeout=timeout or self.timeout)
            except httpx.TransportError as error:
                stop = _core.lost(error, resend_ok, method, path)
                if stop is not None:
                    raise stop from error
                if attempt >= self.retries:
                    raise Unavailable(f"{method} {path}: {error!r}") from error
                await asyncio.sleep(_core.retry_pause(attempt, None))
                attempt += 1
                continue
            step, value = _core.answered(response, attempt, self.retries, resend_ok, method, path)
            if step == "ok":
                return response
            if step == "raise":
                raise value
            if step == "redirect":
                redirects += 1
                if redirects > _core.REDIRECTS_MAX:
                    raise _core.error_for(response.status_code, response.text, method, path)
                url, params = value, None  # the Location holds the query
                continue
            await asyncio.sleep(value)
            attempt += 1

    async def _read(self, path: str, params: Optional[Mapping[str, str]] = None, *, json: Any = None, node: Optional[str] = None,
              at_least: int = 0, timeout: Optional[float] = None) -> httpx.Response:
        return await self._send("POST" if json is not None else "GET", path, base=node or self._read_node(),
                          params=self._read_params(params, at_least), json=json, timeout=timeout)

    # ---- writes ---------------------------------------------------------------------------

    async def append(self, events: Sequence[NewEvent], *, durability: Optional[str] = None, replicas: Optional[int] = None) -> AppendResult:
        """Appends a batch atomically (`POST /v1/events`). Build events with `banyan.event(...)`
        or as dicts with the API's fields (`type`, `parents`, `parent_keys`, `key`, `stream`,
        `message`, `payload`)."""
        events = list(events)
        answer = await self._send("POST", "/v1/events", json=events, params=_core.append_params(durability, replicas),
                            resend_ok=_core.retry_safe(events))
        return self._wrote(answer.json())

    async def emit(self, type: str, *, parents: Sequence[int] = (), parent_keys: Sequence[str] = (), key: Optional[str] = None,
             stream: Optional[str] = None, message: Optional[str] = None, payload: Any = None) -> int:
        """Appends one event; answers its id."""
        return (await self.append([_core.event_body(type, parents=parents, parent_keys=parent_keys, key=key, stream=stream,
                                             message=message, payload=payload)])).ids[0]

    # ---- reads ----------------------------------------------------------------------------

    async def get(self, id: int) -> Optional[Event]:
        """The event, or None when there is none with that id."""
        return await self._get_event(f"/v1/events/{int(id)}")

    async def get_by_key(self, key: str) -> Optional[Event]:
        return await self._get_event(_core.key_path(key))

    async def _get_event(self, path: str) -> Optional[Event]:
        try:
            return Event.from_json((await self._read(path)).json())
        except BanyanError as error:
            if error.status == 404:
                return None
            raise

    async def events(self, *, after: int = 0, type: Optional[str] = None, stream: Optional[str] = None, since: Any = None,
               until: Any = None, limit: int = 1000) -> AsyncIterator[Event]:
        """The log in id order after `after`, page by page, up to its end when the last page
        was read (`GET /v1/events`), all from one node."""
        params, node = self._events_params(type, stream, since, until, limit), self._read_node()
        while True:
            page = (await self._read("/v1/events", {**params, "after": str(after)}, node=node, at_least=after)).json()
            for e in page["events"]:
                yield Event.from_json(e)
            if page["next"] >= page["last_id"] or page["next"] <= after:
                return
            after = page["next"]

    async def query(self, text: str, *, page_size: Optional[int] = None, include: Sequence[str] = (),
              budget: Optional[Mapping[str, int]] = None, allow_truncated: bool = False) -> AsyncIterator[QueryItem]:
        """Every result of a query (docs/QUERY_LANGUAGE.md), following `next` cursors, from one
        node: events, or paths (lists of ids) for `path`/`paths`. The pages are one answer over
        one snapshot. An answer its budget cut short raises `Truncated` after the results it has,
        unless `allow_truncated`."""
        cursor, node, timeout = None, self._read_node(), _core.query_timeout(self.timeout, budget)
        while True:
            answer = (await self._read("/v1/query", json=_core.query_body(text, cursor, page_size, include, budget), node=node,
                                       timeout=timeout)).json()
            for item in _core.query_items(answer):
                yield item
            cursor = answer.get("next")
            if not cursor:
                if answer.get("truncated") and not allow_truncated:
                    raise _core.Truncated(answer.get("stats", {}))
                return

    async def count(self, text: str) -> int:
        """`count(text)`; `text` is the inner query."""
        return (await self._read("/v1/query", json={"query": f"count({text})"})).json()["count"]

    async def explain(self, text: str) -> str:
        return (await self._read("/v1/query", json={"query": f"explain {text}"})).json()["plan"]

    async def status(self) -> dict[str, Any]:
        return (await self._read("/v1/status")).json()

    async def stream(self, *, after: Optional[int] = None, type: Optional[str] = None, stream: Optional[str] = None) -> AsyncIterator[Event]:
        """Events after `after` (default: the end of the log now), then live ones, for as long as
        it is iterated, from one node. A lost connection (or one silent for STREAM_SILENCE_MAX_S)
        is resumed with Last-Event-ID: no event is yielded twice or skipped. Refusals are
        raised; an unreachable server is tried again without end."""
        node = self._read_node()
        if after is None:
            after = (await self._read("/v1/status", node=node)).json()["last_id"]
        position, pause = _core.StreamPosition(after), _core.RECONNECT_PAUSE_S[0]
        while True:
            params = self._read_params(_core.stream_params(type, stream, after))
            try:
                async with self._http.stream("GET", node + "/v1/stream", params=params, headers=position.headers(),
                                       timeout=httpx.Timeout(self.timeout, read=_core.STREAM_SILENCE_MAX_S)) as response:
                    wait = _core.stream_refused(response.status_code, response.headers)
                    if wait is None:
                        raise _core.error_for(response.status_code, (await response.aread()).decode(), "GET", "/v1/stream")
                    if wait == 0:
                        parser = _core.SSEParser()
                        async for text in response.aiter_text():
                            pause = _core.RECONNECT_PAUSE_S[0]
                            for frame in parser.feed(text):
                                event = position.take(frame)
                                if event is not None:
                                    yield event
                    else:
                        pause = max(pause, wait)
            except httpx.TransportError:
                pass
            await asyncio.sleep(pause)
            pause = min(pause * 2, _core.RECONNECT_PAUSE_S[1])
