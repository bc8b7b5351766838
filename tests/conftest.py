"""Fixtures shared by every test package. Helpers live in ``tests/pg.py``; only fixtures go here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from sse_batcher.batcher.log.store import PostgresStore
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres
from tests.pg import fresh_database, started_store


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """One embedded PostgreSQL for the session (initdb and start: under a second)."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def dsn(pg_server: EmbeddedPostgres) -> AsyncIterator[str]:
    """The dsn of a fresh, empty database, dropped after the test."""
    async with fresh_database(pg_server) as url:
        yield url


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresStore]:
    """A started PostgresStore on a fresh database."""
    async with started_store(dsn) as started:
        yield started
