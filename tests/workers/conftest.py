"""Fixtures of the worker tests: a running batcher on a fresh database, with what it committed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sse_batcher.batcher import PostgresStore, SSEEventBatcher
from tests.collect import Collected, running_batcher


@pytest.fixture
async def env(store: PostgresStore, tmp_path: Path) -> AsyncIterator[tuple[SSEEventBatcher, Collected]]:
    """A started batcher and the listener that collects its commits."""
    async with running_batcher(store, tmp_path) as running:
        yield running
