from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(tmp_path / "data")
    try:
        yield pg
    finally:
        pg.stop()


async def query(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_start_initialises_the_cluster_under_data_dir_and_returns_a_working_dsn(
    server: EmbeddedPostgres, tmp_path: Path
) -> None:
    dsn = server.start()

    assert await query(dsn, "SELECT 1") == 1
    assert server.pgdata == (tmp_path / "data" / "pgdata").resolve()
    assert (server.pgdata / "PG_VERSION").is_file()
    assert server.start() == dsn  # idempotent


async def test_data_survives_stop_and_start_again_on_the_same_dsn(server: EmbeddedPostgres) -> None:
    dsn = server.start()
    await query(dsn, "CREATE TABLE kept AS SELECT 42 AS answer")
    server.stop()
    assert not server.running
    with pytest.raises(OSError):
        await query(dsn, "SELECT 1")

    assert server.start_again() == dsn
    assert await query(dsn, "SELECT answer FROM kept") == 42


async def test_a_new_wrapper_reuses_the_cluster_left_by_an_earlier_one(tmp_path: Path) -> None:
    first = EmbeddedPostgres(tmp_path / "data")
    await query(first.start(), "CREATE TABLE kept AS SELECT 7 AS answer")
    first.stop()

    second = EmbeddedPostgres(tmp_path / "data")
    try:
        assert await query(second.start(), "SELECT answer FROM kept") == 7
    finally:
        second.stop()


def test_stop_really_ends_the_postmaster_and_is_idempotent(server: EmbeddedPostgres) -> None:
    server.start()
    pid = int((server.pgdata / "postmaster.pid").read_text().split()[0])
    server.stop()
    server.stop()

    try:
        assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # exited, not reaped yet
    except psutil.NoSuchProcess:
        pass
    assert not (server.pgdata / "postmaster.pid").exists()


async def test_create_database_returns_its_dsn_and_tolerates_an_existing_one(pg_server: EmbeddedPostgres) -> None:
    dsn = pg_server.create_database("events_db")

    assert pg_server.create_database("events_db") == dsn
    assert await query(dsn, "SELECT current_database()") == "events_db"


def test_create_database_refuses_a_name_that_is_not_a_plain_identifier(pg_server: EmbeddedPostgres) -> None:
    with pytest.raises(ValueError, match="database name"):
        pg_server.create_database("x; DROP DATABASE postgres")


def test_start_again_needs_an_earlier_start(server: EmbeddedPostgres) -> None:
    with pytest.raises(RuntimeError):
        server.start_again()
    with pytest.raises(RuntimeError):
        server.dsn()


async def test_create_database_with_replace_starts_it_afresh(pg_server: EmbeddedPostgres) -> None:
    dsn = pg_server.create_database("replaced_db")
    await query(dsn, "CREATE TABLE leftover (x int)")
    assert pg_server.create_database("replaced_db") == dsn  # without replace: kept as it is
    assert await query(dsn, "SELECT to_regclass('leftover')::text") == "leftover"

    assert pg_server.create_database("replaced_db", replace=True) == dsn
    assert await query(dsn, "SELECT to_regclass('leftover')::text") is None


async def test_release_stops_the_server_only_when_the_last_user_leaves(tmp_path: Path) -> None:
    first = EmbeddedPostgres(tmp_path / "data")
    second = EmbeddedPostgres(tmp_path / "data")
    try:
        dsn = first.start()
        assert second.start() == dsn

        assert first.release() is False
        assert await query(dsn, "SELECT 1") == 1
        assert first.release() is False  # a second call does nothing

        assert second.release() is True
        assert not second.running
    finally:
        second.stop()
