"""Reading SSE streams in tests: collect messages until a condition, with a deadline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from httpx_sse import ServerSentEvent, aconnect_sse

from sse_batcher.server.client import unroll

__all__ = ["Received", "events_of", "publish", "read_until", "subscribed"]


@dataclass
class Received:
    """What a test client got: every SSE message, in order."""

    messages: list[ServerSentEvent] = field(default_factory=list)
    connected: anyio.Event = field(default_factory=anyio.Event)
    changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def ids(self) -> list[int]:
        return [int(m.id) for m in self.messages if m.id]

    @property
    def seqs(self) -> list[int]:
        return [event["seq"] for event in events_of(self.messages)]

    def count(self) -> int:
        return len(self.seqs)

    async def wait_for(self, condition: Callable[[Received], bool], timeout: float = 10) -> None:
        with anyio.fail_after(timeout):
            while not condition(self):
                changed = self.changed = anyio.Event()
                await changed.wait()


def events_of(messages: list[ServerSentEvent]) -> list[dict[str, Any]]:
    """The full original events in ``messages`` (aggregates unrolled by the client), no control messages."""
    events: list[dict[str, Any]] = []
    for message in messages:
        if message.event == "HISTORY_TRUNCATED":
            continue
        events.extend(unroll(message.data))
    return events


async def read_until(
    client: httpx.AsyncClient,
    received: Received,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """Read /events into ``received`` until cancelled or the stream ends."""
    async with aconnect_sse(client, "GET", "/events", params=params, headers=dict(headers or {})) as source:
        source.response.raise_for_status()
        received.connected.set()
        async for message in source.aiter_sse():
            if not message.data:
                continue
            received.messages.append(message)
            received.changed.set()
    received.changed.set()


def subscribed(tg: Any, client: httpx.AsyncClient, **kwargs: Any) -> Received:
    """Start reading /events in ``tg``; await ``.connected`` before publishing."""
    received = Received()
    tg.start_soon(lambda: read_until(client, received, **kwargs))
    return received


async def publish(client: httpx.AsyncClient, events: list[dict[str, Any]] | dict[str, Any]) -> list[int]:
    """POST events; return their seqs (fails the test unless 202)."""
    response = await client.post("/api/events", json=events)
    assert response.status_code == 202, response.text
    seqs: list[int] = response.json()["seqs"]
    return seqs
