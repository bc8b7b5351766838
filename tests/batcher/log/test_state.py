from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import anyio
import asyncpg
import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from sse_batcher.batcher import AggregationRules, BatcherConfig, SSEEventBatcher
from sse_batcher.batcher.config import DEFAULT_FINAL_TYPES
from sse_batcher.batcher.events import Event, Message
from sse_batcher.batcher.log.state import StateKeeper, event_json, latest_by_key
from sse_batcher.batcher.log.store import PostgresStore
from sse_batcher.batcher.pipeline.aggregate import aggregate
from sse_batcher.batcher.rules import TypeRule
from tests.pg import started_store


async def emit_all(store: PostgresStore, tmp_path: Path, events: list[tuple[str, str, str | None]]) -> None:
    """Emit ``(type, source, key)`` events through a real batcher and wait until they are stored."""
    async with SSEEventBatcher(store, BatcherConfig(data_dir=tmp_path, batch_size=500)) as batcher:
        for i, (type_, source, key) in enumerate(events):
            batcher.emit(type_, {"job_id": key, "i": i}, source=source, key=key)
        assert await batcher.flush(timeout=30)


def snapshot_events(body: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    decoded = json.loads(body)
    return decoded, decoded["events"]


async def test_snapshot_holds_exactly_the_latest_event_of_each_open_key(store: PostgresStore, tmp_path: Path) -> None:
    await emit_all(
        store,
        tmp_path,
        [
            ("JOB_STARTED", "thumbnail", "a"),
            ("JOB_STARTED", "thumbnail", "b"),
            ("JOB_STARTED", "overlay", "a"),  # another source: another key
            ("JOB_STARTED", "thumbnail", "c"),
            ("JOB_PROGRESS", "thumbnail", "a"),
            ("JOB_PROGRESS", "thumbnail", "a"),
            ("JOB_COMPLETED", "thumbnail", "b"),
            ("JOB_FAILED", "thumbnail", "c"),
            ("NOTE", "thumbnail", None),  # no key: not part of the state
        ],
    )
    snapshot = await store.snapshot()
    body, events = snapshot_events(snapshot.body)
    _, last = await store.bounds()

    assert body["type"] == "STATE_SNAPSHOT" and body["upto_id"] == snapshot.upto_id == last
    assert body["count"] == snapshot.count == 2
    by_key = {(e["source"], e["key"]): e for e in events}
    assert set(by_key) == {("thumbnail", "a"), ("overlay", "a")}
    latest_a = by_key[("thumbnail", "a")]
    assert latest_a["type"] == "JOB_PROGRESS" and latest_a["data"] == {"job_id": "a", "i": 5}
    assert {"seq", "ts", "message_id"} <= set(latest_a)
    assert [e["message_id"] for e in events] == sorted(e["message_id"] for e in events)
    # Each event's message_id is the stored message that carried it.
    stored = [m async for m in store.replay(0)]
    carrier = next(m for m in stored if m.id == latest_a["message_id"])
    assert carrier.event_type == "JOB_PROGRESS"


async def test_keys_and_events_of_any_text_reach_the_state_unchanged(store: PostgresStore, tmp_path: Path) -> None:
    # The state statement's parameters travel as JSON text: quotes, backslashes, control characters
    # and non-ASCII in keys and data must come back as they went in, open or closed.
    odd = ['a"b', "c\\d", "e\x1ff", "\u00e9\u2713", "{x}", "[1,2]", " ", "\n"]
    await emit_all(
        store,
        tmp_path,
        [("JOB_STARTED", "thumbnail", key) for key in odd] + [("JOB_COMPLETED", "thumbnail", key) for key in odd[::2]],
    )
    _, events = snapshot_events((await store.snapshot()).body)

    assert sorted(e["key"] for e in events) == sorted(odd[1::2])
    assert all(e["data"]["job_id"] == e["key"] for e in events)
    assert (await store.fetch("SELECT keys FROM sse_state_meta"))[0][0] == len(odd[1::2])


async def test_a_key_closed_in_an_earlier_message_of_its_batch_is_closed(store: PostgresStore, tmp_path: Path) -> None:
    # Messages are ordered by their first seq: the JOB_COMPLETED aggregate (b's, then a's) is
    # stored before a's JOB_PROGRESS, which is older than a's JOB_COMPLETED all the same.
    await emit_all(
        store,
        tmp_path,
        [
            ("JOB_STARTED", "s", "a"),
            ("JOB_COMPLETED", "s", "b"),
            ("JOB_PROGRESS", "s", "a"),
            ("JOB_COMPLETED", "s", "a"),
        ],
    )
    stored = [(m.event_type, m.id) async for m in store.replay(0)]
    assert [t for t, _ in stored] == ["JOB_STARTED", "JOB_COMPLETED", "JOB_PROGRESS"]

    snapshot = await store.snapshot()
    assert snapshot.count == 0 and snapshot_events(snapshot.body)[1] == []
    assert (await store.fetch("SELECT keys FROM sse_state_meta"))[0][0] == 0


async def test_filters_apply_to_each_keys_latest_event(store: PostgresStore, tmp_path: Path) -> None:
    await emit_all(
        store,
        tmp_path,
        [("JOB_STARTED", "thumbnail", "a"), ("JOB_STARTED", "thumbnail", "b"), ("JOB_PROGRESS", "thumbnail", "a")],
    )
    _, started = snapshot_events((await store.snapshot(types=["JOB_STARTED"])).body)
    _, overlay = snapshot_events((await store.snapshot(sources=["overlay"])).body)

    assert [e["key"] for e in started] == ["b"]  # a's latest event is a progress
    assert overlay == []


async def test_a_retried_batch_moves_no_key_back(store: PostgresStore, tmp_path: Path) -> None:
    async with SSEEventBatcher(store, BatcherConfig(data_dir=tmp_path)) as batcher:
        batcher.emit("JOB_STARTED", {"n": 1}, source="s", key="k")
        assert await batcher.flush(timeout=30)
    first = [m async for m in store.replay(0)]
    batcher_messages = await _messages_of(store)
    await emit_all(store, tmp_path / "2", [("JOB_PROGRESS", "s", "k")])

    await store.write(batcher_messages)  # the first batch again, as after a lost COMMIT answer

    _, events = snapshot_events((await store.snapshot()).body)
    assert [e["type"] for e in events] == ["JOB_PROGRESS"] and events[0]["message_id"] > first[0].id


async def test_a_retried_close_never_closes_a_reopened_key(store: PostgresStore, tmp_path: Path) -> None:
    await emit_all(store, tmp_path / "1", [("JOB_STARTED", "s", "k")])
    await emit_all(store, tmp_path / "2", [("JOB_COMPLETED", "s", "k")])
    closing = await _messages_of(store)
    await emit_all(store, tmp_path / "3", [("JOB_STARTED", "s", "k")])
    reopened = (await store.fetch("SELECT max(id) FROM sse_events"))[0][0]

    await store.write(closing)  # the start and the close again, as after a lost COMMIT answer

    _, events = snapshot_events((await store.snapshot()).body)
    assert [(e["key"], e["message_id"]) for e in events] == [("k", reopened)]
    assert (await store.fetch("SELECT keys FROM sse_state_meta"))[0][0] == 1


async def _messages_of(store: PostgresStore) -> list[Message]:
    rows = await store.fetch("SELECT idem_key, type, event_type, source, event_count, data FROM sse_events ORDER BY id")
    return [
        Message(
            idem_key=r[0],
            type=r[1],
            event_type=r[2],
            source=r[3],
            event_count=r[4],
            first_seq=0,
            last_seq=0,
            ts=0.0,
            payload=r[5],
        )
        for r in rows
    ]


async def test_the_bound_on_keys_evicts_the_keys_idle_longest_and_counts_them(dsn: str, tmp_path: Path) -> None:
    async with started_store(dsn, state_max_keys=3) as store:
        for i in range(10):
            await emit_all(store, tmp_path / str(i), [("JOB_STARTED", "s", f"k{i}")])
        snapshot = await store.snapshot()
        _, events = snapshot_events(snapshot.body)

        assert [e["key"] for e in events] == ["k7", "k8", "k9"]
        assert store.statistics().state_displaced == 7
        keys = await store.fetch("SELECT keys FROM sse_state_meta")
        assert keys[0][0] == 3 == len(await store.fetch("SELECT 1 FROM sse_state"))


async def test_a_restart_keeps_the_state(dsn: str, tmp_path: Path) -> None:
    async with started_store(dsn) as store:
        await emit_all(store, tmp_path, [("JOB_STARTED", "s", "a"), ("JOB_PROGRESS", "s", "b")])
        before = await store.snapshot()
    async with started_store(dsn) as store:
        after = await store.snapshot()

    assert after == before and after.count == 2


async def test_retention_takes_a_key_out_with_its_last_event(dsn: str, tmp_path: Path) -> None:
    async with started_store(dsn, retention_seconds=3600) as store:
        await emit_all(store, tmp_path / "old", [("JOB_STARTED", "s", "old")])
        await store.fetch("UPDATE sse_events SET created_at = now() - interval '2 hours'")
        await emit_all(store, tmp_path / "new", [("JOB_STARTED", "s", "new")])

        await store.delete_expired()

        _, events = snapshot_events((await store.snapshot()).body)
        assert [e["key"] for e in events] == ["new"]
        assert store.statistics().state_expired == 1


async def test_max_keys_zero_keeps_no_state(dsn: str, tmp_path: Path) -> None:
    async with started_store(dsn, state_max_keys=0) as store:
        await emit_all(store, tmp_path, [("JOB_STARTED", "s", "a")])
        snapshot = await store.snapshot()
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetchval("SELECT count(*) FROM sse_state")
        finally:
            await conn.close()

    assert snapshot.count == 0 and rows == 0 and snapshot.upto_id > 0


def test_the_rules_and_the_store_agree_on_the_default_final_types() -> None:
    assert AggregationRules().final_types() == DEFAULT_FINAL_TYPES


async def test_the_state_statement_still_sends_the_commits_notify(dsn: str, tmp_path: Path) -> None:
    heard: list[str] = []
    got = anyio.Event()
    listener = await asyncpg.connect(dsn)
    try:
        await listener.add_listener("sse_events", lambda *args: (heard.append(args[-1]), got.set()))
        async with started_store(dsn) as store:
            await emit_all(store, tmp_path, [("JOB_STARTED", "s", "a")])
            _, last = await store.bounds()
            with anyio.fail_after(10):
                await got.wait()
    finally:
        await listener.close()

    assert heard == [str(last)]


class _Explaining:
    """A real connection that also EXPLAINs every ``fetchval`` statement before running it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.plans: list[Any] = []

    async def fetchval(self, query: str, *args: Any) -> Any:
        self.plans.append(json.loads(await self.conn.fetchval("EXPLAIN (FORMAT JSON) " + query, *args)))
        return await self.conn.fetchval(query, *args)


def _scans(node: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (node type, table) of a JSON plan node and the nodes under it."""
    found = {(node["Node Type"], node.get("Relation Name", ""))}
    for child in node.get("Plans", []):
        found |= _scans(child)
    return found


async def test_closing_keys_probe_the_state_by_key_however_large_it_is(dsn: str, tmp_path: Path) -> None:
    # A close must cost what the batch holds, not what the state holds: 20,000 open keys, a batch
    # closing 300 of them, and the statement must reach them through the primary key.
    async with started_store(dsn) as store:
        await store.fetch(
            "INSERT INTO sse_state SELECT 's', 'k' || i, i, 0, 'JOB_STARTED', '{}' FROM generate_series(0, 19999) i"
        )
        await store.fetch("UPDATE sse_state_meta SET keys = 20000")
        await store.fetch("ANALYZE sse_state")
        batch = [("JOB_COMPLETED", "s", f"k{i}") for i in range(300)] + [
            ("JOB_PROGRESS", "s", f"p{i}") for i in range(30)
        ]
        await emit_all(store, tmp_path, batch)
        messages = {m.idem_key: m for m in await _messages_of(store)}
        rows = await store.fetch("SELECT id, idem_key FROM sse_events ORDER BY id")
        conn = await asyncpg.connect(dsn)
        try:
            explaining = _Explaining(conn)
            keeper = StateKeeper(max_keys=100_000, final_types=DEFAULT_FINAL_TYPES)
            await keeper.apply(cast(asyncpg.Connection, explaining), rows, messages, None)
        finally:
            await conn.close()

    [plan] = explaining.plans
    scans = _scans(plan[0]["Plan"])
    assert ("Seq Scan", "sse_state") not in scans
    assert ("Index Scan", "sse_state") in scans


_RULES = st.sampled_from(
    [
        None,
        AggregationRules(types={"JOB_PROGRESS": TypeRule(coalesce="key")}),
        AggregationRules(
            types={"JOB_PROGRESS": TypeRule(group_identical=True), "JOB_STARTED": TypeRule(max_group_size=2)}
        ),
        AggregationRules(types={"JOB_STARTED": TypeRule(batched=False)}),
    ]
)
_EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["JOB_STARTED", "JOB_PROGRESS", "JOB_COMPLETED"]),
        st.sampled_from(["thumbnail", "overlay"]),
        st.one_of(st.none(), st.sampled_from(["a", "b", 'c"', "\u00e9"])),
        st.sampled_from(["normal", "critical"]),
        st.integers(0, 2),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(events=_EVENTS, rules=_RULES, max_bytes=st.sampled_from([None, 600]))
def test_the_keys_a_message_carries_say_what_its_payload_says(
    events: list[tuple[str, str, str | None, str, int]], rules: AggregationRules | None, max_bytes: int | None
) -> None:
    # The walk reads each message's event_keys/event_seqs instead of decoding its payload; a message
    # read back from a file has none and is decoded. Both must find the same latest events.
    batch = [
        Event(type_, source, seq, 1000.0 + seq, msgspec.Raw(msgspec.json.encode({"n": n})), priority, key)  # type: ignore[arg-type]
        for seq, (type_, source, key, priority, n) in enumerate(events, start=1)
    ]
    messages = aggregate(batch, "o", rules, max_message_bytes=max_bytes)
    rows = [(i, m.idem_key) for i, m in enumerate(messages, start=1)]
    carried = {m.idem_key: m for m in messages}
    read_back = {m.idem_key: msgspec.structs.replace(m, event_keys=(), event_seqs=()) for m in messages}
    finals = DEFAULT_FINAL_TYPES

    walked = latest_by_key(rows, carried, finals)
    decoded = latest_by_key(rows, read_back, finals)

    def comparable(by_source: dict[str, dict[str, Any]]) -> dict[tuple[str, str], tuple[Any, ...]]:
        groups: dict[str, Any] = {}
        return {
            (source, key): (item[0], item[1], item[4], event_json(item, groups))
            for source, latest in by_source.items()
            for key, item in latest.items()
        }

    assert comparable(walked) == comparable(decoded)
    # And, when no rule absorbed an event, both are the emitted truth: each key's last event in emit order.
    if not any(m.absorbed for m in messages):
        truth = {(e.source, e.key): e.seq for e in batch if e.key is not None}
        assert {name: item[1] for name, item in comparable(walked).items()} == truth
