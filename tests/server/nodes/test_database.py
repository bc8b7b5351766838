from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from sse_batcher import embedded_database
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres


async def _answer(dsn: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT 41 + 1")
    finally:
        await conn.close()


async def test_yields_a_working_dsn_and_stops_the_database_on_exit(tmp_path: Path) -> None:
    async with embedded_database(tmp_path / "data") as dsn:
        assert await _answer(dsn) == 42
    assert not EmbeddedPostgres(tmp_path / "data").running


async def test_nested_users_share_one_database_and_the_last_one_out_stops_it(tmp_path: Path) -> None:
    async with embedded_database(tmp_path / "data") as outer:
        async with embedded_database(str(tmp_path / "data")) as inner:
            assert inner == outer
        assert await _answer(outer) == 42  # the inner exit left it running
    assert not EmbeddedPostgres(tmp_path / "data").running


async def test_a_failing_program_still_stops_the_database(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError):
        async with embedded_database(tmp_path / "data"):
            1 / 0  # noqa: B018
    assert not EmbeddedPostgres(tmp_path / "data").running


async def test_defaults_to_sse_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSE_DATA_DIR", str(tmp_path / "from-env"))
    async with embedded_database() as dsn:
        assert await _answer(dsn) == 42
        assert (tmp_path / "from-env" / "pgdata" / "PG_VERSION").is_file()
