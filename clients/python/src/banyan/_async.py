"""The asyncio client: the API of `_client.Client` with `await` and `async for`."""
from __future__ import annotations

import asyncio
from urllib.parse import quote
from typing import Any, AsyncIterator, Mapping, Optional, Sequence

import httpx

from . import _core
from ._core import AppendResult, BanyanError, Event, NewEvent, QueryItem, Unavailable


class AsyncClient(_core.ClientBase):
    """The asyncio client: `Client`'s methods as coroutines and async iterators."""

    def __init__(self, url: str, token: Optional[str] = None, *, read_urls: Sequence[str] = (), timeout: float = 10.0,
                 retries: int = _core.RETRIES_MAX) -> None:
        super().__init__(url, token, read_urls=read_urls, timeout=timeout, retries=retries)
        self._http = httpx.AsyncClient(headers=self.headers, timeout=timeout, follow_redirects=True)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # ---- transport ------------------------------------------------------------------------

    async def _send(self, method: str, path: str, *, base: Optional[str] = None, json: Any = None,
              params: Optional[Mapping[str, str]] = None, resend_ok: bool = True) -> httpx.Response:
        url = (base or self.url) + path
        for attempt in range(self.retries + 1):
            try:
                response = await self._http.request(method, url, json=json, params=params)
            except httpx.ConnectError as error:  # never sent: always safe to try again
                failure: Exception = error
            except httpx.TransportError as error:
                if not resend_ok:
                    raise Unavailable(f"{method} {path}: the answer was lost ({error}); not sent again, "
                                      "since events without keys could be stored twice") from error
                failure = error
            else:
                if response.status_code == 503 and "Retry-After" in response.headers and attempt < self.retries:
                    await asyncio.sleep(_core.retry_pause(attempt, response.headers["Retry-After"]))
                    continue
                if response.status_code >= 400:
                    raise _core.error_for(response.status_code, response.text, method, path)
                return response
            if attempt < self.retries:
                await asyncio.sleep(_core.retry_pause(attempt, None))
        raise Unavailable(f"{method} {path}: {failure}")

    async def _read(self, path: str, params: Optional[Mapping[str, str]] = None, *, json: Any = None) -> httpx.Response:
        base, params = self._read_target(params)
        return await self._send("POST" if json is not None else "GET", path, base=base, params=params, json=json)

    # ---- writes ---------------------------------------------------------------------------

    async def append(self, events: Sequence[NewEvent], *, durability: Optional[str] = None, replicas: Optional[int] = None) -> AppendResult:
        """Appends a batch atomically (`POST /v1/events`). Build events with `banyan.event(...)`
        or as dicts with the API's fields (`type`, `parents`, `parent_keys`, `key`, `stream`,
        `message`, `payload`)."""
        answer = await self._send("POST", "/v1/events", json=list(events), params=_core.append_params(durability, replicas),
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
        return await self._get_event("/v1/events/by-key/" + quote(key, safe=""))

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
        was read (`GET /v1/events`)."""
        params = self._events_params(type, stream, since, until, limit)
        while True:
            page = (await self._read("/v1/events", {**params, "after": str(after)})).json()
            for e in page["events"]:
                yield Event.from_json(e)
            if page["next"] >= page["last_id"] or page["next"] <= after:
                return
            after = page["next"]

    async def query(self, text: str, *, page_size: Optional[int] = None, include: Sequence[str] = (),
              budget: Optional[Mapping[str, int]] = None) -> AsyncIterator[QueryItem]:
        """Every result of a query (docs/QUERY_LANGUAGE.md), following `next` cursors: events,
        or paths (lists of ids) for `path`/`paths`. The pages are one answer over one snapshot."""
        cursor = None
        while True:
            answer = (await self._read("/v1/query", json=_core.query_body(text, cursor, page_size, include, budget))).json()
            for item in _core.query_items(answer):
                yield item
            cursor = answer.get("next")
            if not cursor:
                return

    async def count(self, text: str) -> int:
        """`count(text)`; `text` is the inner query."""
        return (await self._read("/v1/query", json={"query": f"count({text})"})).json()["count"]

    async def explain(self, text: str) -> str:
        return (await self._read("/v1/query", json={"query": f"explain {text}"})).json()["plan"]

    async def status(self) -> dict[str, Any]:
        return (await self._read("/v1/status")).json()

    async def stream(self, *, after: Optional[int] = None, type: Optional[str] = None, stream: Optional[str] = None) -> AsyncIterator[Event]:
        """Events after `after` (default: from the end of the log), then live ones, for as long as
        it is iterated. A lost connection is resumed with Last-Event-ID: no event is yielded twice
        or skipped. Errors other than an unreachable server are raised."""
        position = _core.StreamPosition(after)
        pause = _core.RECONNECT_PAUSE_S[0]
        while True:
            base, params = self._read_target(_core.stream_params(type, stream, after))
            try:
                async with self._http.stream("GET", base + "/v1/stream", params=params, headers=position.headers(),
                                       timeout=httpx.Timeout(None, connect=self._http.timeout.connect)) as response:
                    if response.status_code >= 400 and not (response.status_code == 503 and "Retry-After" in response.headers):
                        raise _core.error_for(response.status_code, (await response.aread()).decode(), "GET", "/v1/stream")
                    if response.status_code < 400:
                        parser = _core.SSEParser()
                        async for text in response.aiter_text():
                            pause = _core.RECONNECT_PAUSE_S[0]
                            for frame in parser.feed(text):
                                event = position.take(frame)
                                if event is not None:
                                    yield event
            except httpx.TransportError:
                pass
            await asyncio.sleep(pause)
            pause = min(pause * 2, _core.RECONNECT_PAUSE_S[1])
