"""Nodes: the slot each process takes, its sse_nodes heartbeat, and how /api/stats names it."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

import asyncpg

from sse_batcher.server import ServerConfig
from sse_batcher.server.nodes.node import NodeSlot, default_node_id
from tests.server.live import LiveServer, make_config, serving, until
from tests.server.sse import publish

HOST = socket.gethostname()


def _config(dsn: str, data_dir: Path, **overrides: object) -> ServerConfig:
    return make_config(dsn, data_dir, node_heartbeat_seconds=0.05, **overrides)


async def _beats_after(live: LiveServer, count: int = 2) -> None:
    """Wait until the heartbeat has written ``count`` more rows (what it reports is then current)."""
    node = live.runtime.node
    assert node is not None
    target = node.beats + count
    await until(lambda: node.beats >= target)


# -- slots -------------------------------------------------------------------------------------
def test_a_slot_is_exclusive_until_released_and_the_next_free_one_is_taken(tmp_path: Path) -> None:
    with NodeSlot.take(tmp_path) as first, NodeSlot.take(tmp_path) as second:
        assert (first.index, second.index) == (0, 1)
        assert second.directory == tmp_path / "slots" / "slot-1"
        with NodeSlot.take(tmp_path, preferred=1) as third:
            assert third.index == 2
    with NodeSlot.take(tmp_path, preferred=1) as again:
        assert again.index == 1


def test_slot_zero_adopts_a_dead_letter_file_from_before_slots(tmp_path: Path) -> None:
    legacy = tmp_path / "deadletter"
    legacy.mkdir()
    (legacy / "deadletter.jsonl").write_bytes(b"[]\n")
    with NodeSlot.take(tmp_path) as slot:
        assert (slot.directory / "deadletter" / "deadletter.jsonl").read_bytes() == b"[]\n"
    assert not (legacy / "deadletter.jsonl").exists()


def test_the_default_node_id_is_the_host_name_and_the_slot() -> None:
    assert default_node_id(3) == f"{HOST}-3"


# -- the heartbeat -----------------------------------------------------------------------------
async def test_two_servers_on_one_data_dir_take_two_slots_and_see_each_other(dsn: str, tmp_path: Path) -> None:
    async with serving(_config(dsn, tmp_path)) as first, serving(_config(dsn, tmp_path)) as second:
        assert first.runtime.batcher is not second.runtime.batcher
        await _beats_after(first)
        async with first.client() as client:
            stats = (await client.get("/api/stats")).json()
    assert stats["node"]["id"] == f"{HOST}-0" and stats["node"]["slot"] == 0
    assert {(n["id"], n["alive"]) for n in stats["nodes"]} == {(f"{HOST}-0", True), (f"{HOST}-1", True)}
    # Each has a dead-letter directory of its own.
    assert {p.name for p in (tmp_path / "slots").iterdir()} == {"slot-0", "slot-1"}


async def test_the_heartbeat_row_carries_the_node_counters_and_its_place_in_the_log(dsn: str, tmp_path: Path) -> None:
    async with serving(_config(dsn, tmp_path, node_id="edge-a")) as live:
        async with live.client() as client:
            await publish(client, [{"type": "A", "data": {}}, {"type": "B", "data": {}}])
            assert await live.runtime.batcher.flush()
            await _beats_after(live)
            stats = (await client.get("/api/stats")).json()
        last_id, newest_id = await live.runtime.log_position()
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow("SELECT * FROM sse_nodes WHERE node_id = 'edge-a'")
        finally:
            await conn.close()
    assert row is not None
    assert row["pid"] == stats["node"]["pid"] and row["host"] == HOST
    assert row["events_in"] == stats["batcher"]["events_emitted"] >= 2
    assert last_id == newest_id and newest_id is not None
    assert (row["follower_last_id"], row["newest_id"]) == (last_id, newest_id)
    this = stats["node"]
    assert this["id"] == "edge-a" and this["lag"] == 0 and this["follower_last_id"] == newest_id
    listed = {n["id"]: n for n in stats["nodes"]}
    assert listed["edge-a"]["alive"] is True and listed["edge-a"]["lag"] == 0


async def test_a_node_without_recent_heartbeats_shows_as_gone_and_one_gone_an_hour_is_forgotten(
    dsn: str, tmp_path: Path
) -> None:
    async with serving(_config(dsn, tmp_path)) as live:
        conn = await asyncpg.connect(dsn)
        try:
            for node_id, age in (("stale", timedelta(seconds=10)), ("ancient", timedelta(hours=2))):
                await conn.execute(
                    "INSERT INTO sse_nodes (node_id, host, pid, started_at, heartbeat_at)"
                    " VALUES ($1, 'elsewhere', 1, now() - interval '3 hours', now() - $2::interval)",
                    node_id,
                    age,
                )
            await _beats_after(live)
            left = {r["node_id"] for r in await conn.fetch("SELECT node_id FROM sse_nodes")}
        finally:
            await conn.close()
        async with live.client() as client:
            nodes = (await client.get("/api/stats")).json()["nodes"]
    assert {n["id"]: n["alive"] for n in nodes} == {f"{HOST}-0": True, "stale": False}
    assert [n["id"] for n in nodes] == [f"{HOST}-0", "stale"]  # newest first
    assert left == {f"{HOST}-0", "stale"}
