"""LogFollower on a real PostgreSQL: every committed row once, in id order, whoever wrote it."""

from __future__ import annotations

import anyio
import asyncpg
import msgspec

from sse_batcher.batcher import Message, PostgresStore
from sse_batcher.batcher.events import Event
from sse_batcher.batcher.log import LogFollower
from sse_batcher.batcher.pipeline.aggregate import aggregate
from tests.collect import Collected
from tests.pg import started_store, store_config


class Seen(Collected):
    """What a follower handed on (tests.collect's listener), counted in messages."""

    @property
    def ids(self) -> list[int]:
        return [m.id for m in self.messages]

    async def wait_for(self, count: int, timeout: float = 20) -> None:
        await self.wait_until(lambda: len(self.messages) >= count, timeout)


def batch(origin: str, first: int, n: int = 2) -> list[Message]:
    events = [Event("T", origin, s, 1.0, msgspec.Raw(b'{"s":%d}' % s)) for s in range(first, first + n)]
    return aggregate(events, origin)


async def test_two_writers_on_separate_pools_are_followed_once_each_in_id_order(dsn: str) -> None:
    seen = Seen()
    async with (
        started_store(dsn) as a,
        started_store(dsn) as b,
        LogFollower(store_config(dsn, replay_page_size=7), seen, poll_seconds=5.0),
    ):

        async def write(store: PostgresStore, origin: str) -> None:
            for i in range(40):
                await store.write(batch(origin, i * 10))

        async with anyio.create_task_group() as tg:
            tg.start_soon(write, a, "a")
            tg.start_soon(write, b, "b")
        await seen.wait_for(80)
    assert seen.ids == sorted(set(seen.ids)) and len(seen.ids) == 80


async def test_a_row_committed_without_a_notification_is_found_by_the_safety_poll(
    store: PostgresStore, dsn: str
) -> None:
    seen = Seen()
    async with LogFollower(store_config(dsn), seen, poll_seconds=0.1) as follower:
        conn = await asyncpg.connect(dsn)
        try:  # a writer that does not NOTIFY (an old version, a manual fix)
            await conn.execute(
                "INSERT INTO sse_events (idem_key, type, event_type, source, data, event_count)"
                " VALUES ('manual', 'T', 'T', 's', '{}', 1)"
            )
        finally:
            await conn.close()
        await seen.wait_for(1)
        assert follower.statistics().polls >= 1
    assert seen.messages[0].source == "s"


async def test_killed_follower_connection_heals_with_no_gap(store: PostgresStore, dsn: str) -> None:
    seen = Seen()
    async with LogFollower(store_config(dsn), seen, poll_seconds=0.2) as follower:
        await store.write(batch("x", 1))
        await seen.wait_for(1)
        admin = await asyncpg.connect(dsn)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'sse-batcher-follower' AND datname = current_database()"
            )
            assert killed == 1
            for i in range(2, 12):  # committed while the follower is away
                await store.write(batch("x", i * 10))
        finally:
            await admin.close()
        await seen.wait_for(11)
        stats = follower.statistics()
        assert stats.reconnects >= 1 and stats.connected
    assert seen.ids == sorted(set(seen.ids)) and len(seen.ids) == 11


async def test_a_local_poke_hands_over_without_waiting_for_the_poll(store: PostgresStore, dsn: str) -> None:
    seen = Seen()
    async with LogFollower(store_config(dsn), seen, poll_seconds=60.0) as follower:
        result = await store.write(batch("y", 1))
        follower.poke(result.stored)
        await seen.wait_for(1, timeout=10)  # the 60 s poll never fired
        assert await follower.wait_caught_up(5)
    assert seen.ids == [m.id for m in result.stored]


async def test_starts_after_the_newest_row_so_history_stays_with_the_store(store: PostgresStore, dsn: str) -> None:
    await store.write(batch("old", 1))
    seen = Seen()
    async with LogFollower(store_config(dsn), seen, poll_seconds=60.0):
        await store.write(batch("new", 100))
        await seen.wait_for(1)
    assert [m.source for m in seen.messages] == ["new"]


async def test_a_local_commit_costs_one_read_not_a_second_on_its_own_notification(
    store: PostgresStore, dsn: str
) -> None:
    """Each commit is poked and notified; the second of the two finds its id known and wakes nothing.

    A last write that is only notified shows every earlier wake-up has been served.
    """
    seen = Seen()
    async with LogFollower(store_config(dsn), seen, poll_seconds=60.0) as follower:
        await store.write(batch("warm", 1))
        await seen.wait_for(1)
        reads_before = follower.statistics().reads
        for i in range(10):
            result = await store.write(batch("local", 10 + i * 10))
            follower.poke(result.stored)
            await seen.wait_for(2 + i)
        await store.write(batch("last", 500))
        await seen.wait_for(12)
        stats = follower.statistics()
    assert stats.notifications >= 11
    # One read per commit (11); a notification racing a read in flight may add one or two.
    assert stats.reads - reads_before <= 13
