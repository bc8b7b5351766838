"""Fixtures of the server tests: a live server on a fresh database, open or guarded by tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.live import LiveServer, make_config, serving
from tests.server.security.test_tokens import SECRET


@pytest.fixture
async def live(dsn: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    """The app under uvicorn on a free port, no demo, flushing every 20 ms."""
    async with serving(make_config(dsn, tmp_path)) as server:
        yield server


@pytest.fixture
async def guarded(dsn: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    """The live app with a publish token ``pub``, a subscribe token ``sub`` and stream tokens signed with ``SECRET``."""
    config = make_config(
        dsn, tmp_path, publish_token="pub", subscribe_token="sub", stream_token_secret=SECRET,
        stream_token_max_seconds=600,
    )  # fmt: skip
    async with serving(config) as server:
        yield server
