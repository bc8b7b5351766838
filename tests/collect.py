"""Shared test helpers: run a batcher on the real store and unroll what it hands out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import msgspec

from sse_batcher.batcher import BatcherConfig, PostgresStore, SSEEventBatcher, StoredMessage
from sse_batcher.server.client import unroll

__all__ = ["Collected", "batcher_config", "running_batcher"]


class Collected:
    """Every message a batcher listener was handed, and its events unrolled from aggregates."""

    def __init__(self) -> None:
        self.messages: list[StoredMessage] = []
        self._changed = anyio.Event()

    def __call__(self, messages: Sequence[StoredMessage]) -> None:
        self.messages.extend(messages)
        self._changed.set()
        self._changed = anyio.Event()

    def bodies(self) -> list[dict[str, Any]]:
        return [msgspec.json.decode(m.payload) for m in self.messages]

    def events(self, source: str | None = None) -> list[dict[str, Any]]:
        """The full original events, in message order, aggregates unrolled as a client does."""
        out: list[dict[str, Any]] = []
        for message in self.messages:
            out.extend(unroll(message.payload))
        return [e for e in out if source is None or e["source"] == source]

    def of_job(self, job_id: int) -> list[dict[str, Any]]:
        """The events of one job in emit (seq) order; aggregates group by type, not by job."""
        return sorted((e for e in self.events() if e["data"].get("job_id") == job_id), key=lambda e: e["seq"])

    async def wait_for_events(self, count: int, source: str | None = None, timeout: float = 20) -> None:
        """Wait until ``count`` events (of ``source``) have been handed out."""
        await self.wait_until(lambda: len(self.events(source)) >= count, timeout)

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 20) -> None:
        """Wait for a delivery after which ``condition()`` holds (checked after every delivery)."""
        with anyio.fail_after(timeout):
            while not condition():
                await self._changed.wait()


def batcher_config(tmp_path: Path, **overrides: Any) -> BatcherConfig:
    """A batcher with a 30 s timeout: an idle writer still takes a lone event at once (the leading
    edge); pass ``leading_edge=False`` to hold events until asked, by size, or the timeout."""
    values: dict[str, Any] = {
        "batch_size": 1000,
        "batch_timeout_seconds": 30.0,
        "retry_delay_seconds": 0.01,
        "data_dir": tmp_path,
    }
    values.update(overrides)
    return BatcherConfig(**values)


@asynccontextmanager
async def running_batcher(
    store: PostgresStore, tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[SSEEventBatcher, Collected]]:
    collected = Collected()
    async with SSEEventBatcher(store, batcher_config(tmp_path, **overrides)) as batcher:
        batcher.add_listener(collected)
        yield batcher, collected
