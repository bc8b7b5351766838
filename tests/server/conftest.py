"""Fixtures of the server tests: a live server on a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.live import LiveServer, make_config, serving


@pytest.fixture
async def live(dsn: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    """The app under uvicorn on a free port, no demo, flushing every 20 ms."""
    async with serving(make_config(dsn, tmp_path)) as server:
        yield server
