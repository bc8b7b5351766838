"""server.client against a live server: unrolled events are the published ones, resumes lose and repeat nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from sse_batcher.server import StreamEvent, StreamRefusedError, asubscribe, subscribe
from tests.server.live import LiveServer, make_config, serving, until
from tests.server.sse import publish


def _published(items: list[dict[str, Any]], seqs: list[int]) -> list[tuple[Any, ...]]:
    """What a subscriber must see of ``items``: one row per event, in seq order."""
    return [
        (seq, item["type"], item.get("source", "app"), item["data"], item.get("priority", "normal"), item.get("key"))
        for seq, item in zip(seqs, items, strict=True)
    ]


def _seen(events: list[StreamEvent]) -> list[tuple[Any, ...]]:
    rows = [(e.seq, e.type, e.source, e.data, e.priority, e.key) for e in events]
    return sorted(rows, key=lambda row: row[0])


async def _take(events: AsyncIterator[StreamEvent], count: int, into: list[StreamEvent], timeout: float = 20) -> None:
    with anyio.fail_after(timeout):
        while len(into) < count:
            into.append(await anext(events))


class Relay:
    """A TCP relay in front of the live server whose connections the test cuts, as a network would.

    While ``down``, a new connection is closed at once, so the client's reconnects fail until
    :meth:`restore`. ``requests`` holds what clients sent, to check the resume headers.
    """

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._scopes: list[anyio.CancelScope] = []
        self.requests: list[bytes] = []
        self.down = False
        self.port = 0

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_status.started()
        await listener.serve(self._relay)

    def cut(self) -> None:
        self.down = True
        for scope in self._scopes:
            scope.cancel()
        self._scopes.clear()

    def restore(self) -> None:
        self.down = False

    async def _relay(self, downstream: anyio.abc.SocketStream) -> None:
        async with downstream:
            if self.down:
                return
            async with await anyio.connect_tcp("127.0.0.1", self._upstream_port) as upstream:
                with anyio.CancelScope() as scope:
                    self._scopes.append(scope)
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._pump, downstream, upstream, self.requests.append, scope)
                        tg.start_soon(self._pump, upstream, downstream, None, scope)

    @staticmethod
    async def _pump(
        source: anyio.abc.SocketStream,
        sink: anyio.abc.SocketStream,
        record: Callable[[bytes], None] | None,
        scope: anyio.CancelScope,
    ) -> None:
        try:
            async for chunk in source:
                if record is not None:
                    record(chunk)
                await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        scope.cancel()  # one side is gone: so is the connection


def _port(url: str) -> int:
    port = httpx.URL(url).port
    assert port is not None
    return port


async def test_compact_aggregates_unroll_to_exactly_the_published_events(live: LiveServer) -> None:
    items: list[dict[str, Any]] = [
        *({"type": "JOB_STARTED", "source": "thumbnail", "data": {"job_id": i}} for i in range(20)),
        *(
            {"type": "JOB_PROGRESS", "source": "render", "data": {"percent": i}, "key": f"job-{i % 3}"}
            for i in range(9)
        ),
        {"type": "DISK_LOW", "source": "alerts", "data": {"node": "gpu-3"}, "priority": "critical"},
        {"type": "NOTE", "data": {"text": 'ünïcode \n and quotes " '}},
    ]
    received: list[StreamEvent] = []
    async with live.client() as client:
        seqs = await publish(client, items)
        async with aclosing(asubscribe(f"{live.url}/events", last_event_id=0)) as events:
            await _take(events, len(items), received)
    assert _seen(received) == _published(items, seqs)
    ids = [e.message_id or 0 for e in received]
    assert ids == sorted(ids) and len(set(ids)) < len(ids)  # some arrived together, as aggregates


async def test_cut_connection_resumes_with_last_event_id_without_gap_or_duplicate(dsn: str, tmp_path: Path) -> None:
    # A 50 ms retry hint against a client asking for 60 s: only an honoured hint reconnects in time.
    config = make_config(dsn, tmp_path, retry_milliseconds=50)
    first = [{"type": "JOB_STARTED", "source": "a", "data": {"job_id": i}} for i in range(30)]
    second = [{"type": "JOB_DONE", "source": "a", "data": {"job_id": i}} for i in range(30)]
    received: list[StreamEvent] = []
    async with serving(config) as live, live.client() as client, anyio.create_task_group() as tg:
        relay = Relay(_port(live.url))
        await tg.start(relay.run)
        url = f"http://127.0.0.1:{relay.port}/events"
        seqs = await publish(client, first)
        async with aclosing(asubscribe(url, last_event_id=0, retry_seconds=60, max_delay_seconds=0.2)) as events:
            await _take(events, len(first), received)
            relay.cut()
            seqs += await publish(client, second)  # stored while the client cannot reach the server
            relay.restore()
            await _take(events, len(first) + len(second), received)
        tg.cancel_scope.cancel()
    assert _seen(received) == _published(first + second, seqs)
    assert len({e.seq for e in received}) == len(received)
    resumed_from = received[len(first) - 1].message_id
    assert any(f"last-event-id: {resumed_from}\r\n".encode() in r.lower() for r in relay.requests)


async def test_sync_subscribe_in_a_thread_resumes_after_a_cut(dsn: str, tmp_path: Path) -> None:
    config = make_config(dsn, tmp_path, retry_milliseconds=50)
    first = [{"type": "FRAME", "source": "r", "data": {"i": i}} for i in range(10)]
    second = [{"type": "FRAME", "source": "r", "data": {"i": i}} for i in range(10, 25)]
    async with serving(config) as live, live.client() as client, anyio.create_task_group() as tg:
        relay = Relay(_port(live.url))
        await tg.start(relay.run)
        seqs = await publish(client, first)

        async def cut_and_publish() -> None:
            relay.cut()
            seqs.extend(await publish(client, second))
            relay.restore()

        def consume() -> list[StreamEvent]:
            got: list[StreamEvent] = []
            url = f"http://127.0.0.1:{relay.port}/events"
            for event in subscribe(url, last_event_id=0, max_delay_seconds=0.2, idle_timeout_seconds=20):
                got.append(event)
                if len(got) == len(first):
                    anyio.from_thread.run(cut_and_publish)
                if len(got) == len(first) + len(second):
                    break
            return got

        with anyio.fail_after(30):
            received = await anyio.to_thread.run_sync(consume)
        tg.cancel_scope.cancel()
    assert _seen(received) == _published(first + second, seqs)


async def test_filters_by_type_and_source_reach_the_server(live: LiveServer) -> None:
    items = [
        {"type": "JOB_DONE", "source": "thumbnail", "data": {"job_id": 1}},
        {"type": "JOB_STARTED", "source": "thumbnail", "data": {"job_id": 2}},
        {"type": "JOB_FAILED", "source": "web", "data": {"job_id": 3}},
        {"type": "JOB_DONE", "source": "web", "data": {"job_id": 4}},
    ]
    by_type: list[StreamEvent] = []
    by_both: list[StreamEvent] = []
    async with live.client() as client:
        await publish(client, items)
        await publish(client, {"type": "JOB_DONE", "source": "thumbnail", "data": {"job_id": 5}})  # the last one
        url = f"{live.url}/events"
        async with aclosing(asubscribe(url, types=["JOB_DONE", "JOB_FAILED"], last_event_id=0)) as events:
            await _take(events, 4, by_type)
        async with aclosing(asubscribe(url, types="JOB_DONE", source="thumbnail", last_event_id=0)) as events:
            await _take(events, 2, by_both)
    assert sorted(e.data["job_id"] for e in by_type) == [1, 3, 4, 5]
    assert [(e.type, e.source, e.data["job_id"]) for e in by_both] == [
        ("JOB_DONE", "thumbnail", 1),
        ("JOB_DONE", "thumbnail", 5),
    ]


async def test_token_is_sent_as_bearer_and_a_wrong_one_stops_the_stream(dsn: str, tmp_path: Path) -> None:
    async with serving(make_config(dsn, tmp_path, subscribe_token="s3cret")) as live, live.client() as client:
        await publish(client, {"type": "PING", "data": {}})
        url = f"{live.url}/events"
        with pytest.raises(StreamRefusedError) as refused:
            async with aclosing(asubscribe(url, token="nope")) as events:
                await anext(events)
        assert refused.value.status == 401
        async with aclosing(asubscribe(url, token="s3cret", last_event_id=0)) as events:
            with anyio.fail_after(10):
                event = await anext(events)
    assert event.type == "PING"


async def test_history_truncated_resets_the_watermark_so_newer_ids_are_not_dropped(live: LiveServer) -> None:
    received: list[StreamEvent] = []
    after: list[StreamEvent] = []
    async with live.client() as client:
        await publish(client, {"type": "OLD", "data": {}})
        async with aclosing(asubscribe(f"{live.url}/events", last_event_id=0)) as events:
            await _take(events, 1, received)
        # A resume point beyond anything stored (the database was reset): the server says so and
        # goes on from its newest id, far below the one we asked for.
        before = live.runtime.hub.statistics().clients_total
        async with (
            aclosing(asubscribe(f"{live.url}/events", last_event_id=10**9)) as events,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_take, events, 1, after)
            await until(lambda: live.runtime.hub.statistics().clients_total > before)
            seqs = await publish(client, {"type": "NEW", "data": {"n": 1}})
    assert [(e.type, e.seq) for e in after] == [("NEW", seqs[0])]
    assert after[0].message_id is not None and after[0].message_id < 10**9


async def test_snapshot_yields_each_open_keys_latest_event_flagged_then_live_events(live: LiveServer) -> None:
    def job(type_: str, key: str) -> dict[str, Any]:
        return {"type": type_, "source": "render", "key": key, "data": {"job_id": key}}

    received: list[StreamEvent] = []
    async with live.client() as client:
        stored = await client.post(
            "/api/events",
            params={"wait": "stored"},
            json=[
                job("JOB_STARTED", "a"),
                job("JOB_STARTED", "b"),
                job("JOB_PROGRESS", "a"),
                job("JOB_COMPLETED", "b"),
            ],  # fmt: skip
        )
        assert stored.status_code == 201
        stream = asubscribe(f"{live.url}/events", snapshot=True, types="JOB_STARTED,JOB_PROGRESS")
        async with aclosing(stream) as events:
            await _take(events, 1, received)
            await publish(client, job("JOB_STARTED", "c"))
            await _take(events, 2, received)

    snapshot, live_event = received
    assert (snapshot.snapshot, snapshot.key, snapshot.type) == (True, "a", "JOB_PROGRESS")
    assert snapshot.message_id in stored.json()["ids"]
    assert (live_event.snapshot, live_event.key) == (False, "c")
