"""The campaign's proxy against a real PostgreSQL: it forwards, cuts, and partitions without closing."""

from __future__ import annotations

import anyio
import asyncpg
import pytest

from bench.chaos.proxy import ChaosProxy, unix_socket_of
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres


def _socket(pg_server: EmbeddedPostgres) -> str:
    return unix_socket_of(pg_server.dsn())


async def test_queries_pass_through_and_a_cut_closes_the_connection(pg_server: EmbeddedPostgres) -> None:
    proxy = ChaosProxy(_socket(pg_server))
    port = await proxy.start()
    try:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres")
        assert await conn.fetchval("SELECT 1") == 1
        assert proxy.cut() == 1
        with pytest.raises((asyncpg.exceptions.ConnectionDoesNotExistError, OSError)):
            await conn.fetchval("SELECT 1")
        again = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres")
        assert await again.fetchval("SELECT 2") == 2
        await again.close()
    finally:
        await proxy.aclose()


async def test_a_partition_holds_bytes_and_a_heal_lets_them_through(pg_server: EmbeddedPostgres) -> None:
    proxy = ChaosProxy(_socket(pg_server))
    port = await proxy.start()
    try:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres")
        proxy.partition()
        with anyio.move_on_after(0.5) as scope:
            await conn.fetchval("SELECT 3")
        assert scope.cancelled_caught  # no answer, and no error: the connection is still open
        proxy.heal()
        fresh = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres")
        assert await fresh.fetchval("SELECT 4") == 4
        await fresh.close()
        conn.terminate()
    finally:
        await proxy.aclose()


async def test_a_refusal_closes_new_connections_until_healed(pg_server: EmbeddedPostgres) -> None:
    proxy = ChaosProxy(_socket(pg_server))
    port = await proxy.start()
    try:
        proxy.refuse()
        with pytest.raises((OSError, asyncpg.exceptions.ConnectionDoesNotExistError)):
            await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=disable", timeout=5)
        proxy.heal()
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=disable")
        assert await conn.fetchval("SELECT 5") == 5
        await conn.close()
    finally:
        await proxy.aclose()
