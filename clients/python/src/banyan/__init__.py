"""Python client for Banyan's native HTTP API (docs/CLIENTS.md).

    import banyan
    with banyan.Client("http://127.0.0.1:7777") as client:
        ids = client.append([banyan.event("job.start", key="job-1"),
                             banyan.event("job.done", parent_keys=["job-1"], payload={"ok": True})]).ids
        for e in client.query(f"ancestors({ids[1]})"):
            print(e.id, e.type)
"""
from ._async import AsyncClient
from ._client import Client
from ._core import AppendResult, Appended, BanyanError, Event, NotLeader, Truncated, Unavailable
from ._core import event_body as event

__all__ = ["Client", "AsyncClient", "event", "Event", "AppendResult", "Appended", "BanyanError", "NotLeader", "Truncated", "Unavailable"]
__version__ = "0.1.0"
