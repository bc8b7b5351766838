"""POST /api/events: all or nothing, and every bad input answered with its own 4xx, nothing stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from sse_batcher.batcher.sizing import SizingConfig
from tests.server.live import LiveServer, make_config, serving, until
from tests.server.sse import subscribed

JSON = {"Content-Type": "application/json"}


def _emitted(live: LiveServer) -> int:
    return live.runtime.batcher.statistics().events_emitted


async def test_one_event_is_accepted_with_its_seq(live: LiveServer) -> None:
    async with live.client() as client:
        response = await client.post("/api/events", json={"type": "JOB_STARTED", "data": {"job_id": 1}})
    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "seqs": [1]}


async def test_a_list_is_accepted_whole_with_seqs_in_order(live: LiveServer) -> None:
    events = [{"type": "JOB_STARTED", "data": {"job_id": i}, "source": "w1", "priority": "normal"} for i in range(5)]
    async with live.client() as client:
        response = await client.post("/api/events", json=events)
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 5 and body["seqs"] == sorted(body["seqs"]) and len(set(body["seqs"])) == 5
    assert await live.runtime.batcher.flush()
    assert live.runtime.store.statistics().rows_written == 1  # one aggregate row


async def test_an_empty_list_is_accepted_as_nothing(live: LiveServer) -> None:
    async with live.client() as client:
        response = await client.post("/api/events", json=[])
    assert (response.status_code, response.json()) == (202, {"accepted": 0, "seqs": []})


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b'{"type": "A", "data": {"x": NaN}}', 400),
        (b'{"type": "A", "data": {"x": 1e999}}', 400),
        (b"\xff\xfe", 400),
        (b"", 400),
        (b"[" * 5000 + b"]" * 5000, 400),
        (b'{"type": "A", "data": {}} trailing', 400),
        (b"42", 422),
        (b'"text"', 422),
        (b"null", 422),
    ],
    ids=["syntax", "nan", "overflow", "not-utf8", "empty", "deep", "trailing", "number", "string", "null"],
)
async def test_malformed_or_non_event_bodies_are_refused_and_nothing_is_stored(
    live: LiveServer, body: bytes, status: int
) -> None:
    async with live.client() as client:
        response = await client.post("/api/events", content=body, headers=JSON)
    assert response.status_code == status, response.text
    assert response.json()["error"]
    assert _emitted(live) == 0


@pytest.mark.parametrize(
    ("events", "index", "field"),
    [
        ([{"type": "OK", "data": {}}, {"type": "bad type", "data": {}}], 1, "type"),
        ([{"type": "OK", "data": {}}, {"data": {}}], 1, "type"),
        ([{"type": "OK"}], 0, "data"),
        ([{"type": "OK", "data": []}], 0, "data"),
        ([{"type": "OK", "data": {}, "source": "no spaces"}], 0, "source"),
        ([{"type": "OK", "data": {}, "priority": "urgent"}], 0, "priority"),
        ([{"type": "OK", "data": {}, "key": ""}], 0, "key"),
        ([{"type": "OK", "data": {}, "colour": "red"}], 0, "colour"),
        ([{"type": ["OK"], "data": {}}], 0, "type"),
        ([{"type": "OK", "data": {}, "source": {"a": 1}}], 0, "source"),
        ([{"type": "OK", "data": {"s": "nul\u0000"}}], 0, "data"),
        ([{"type": "OK", "data": {}}, {"type": "OK", "data": {}, "key": "k\u0000"}], 1, "key"),
        ([{"type": "OK", "data": {}}, 7], 1, "event"),
        ([{"type": "OK", "data": {"blob": "x" * 70_000}}], 0, "data"),
    ],
    ids=[
        "bad-type",
        "missing-type",
        "missing-data",
        "data-not-object",
        "bad-source",
        "bad-priority",
        "empty-key",
        "unknown-field",
        "type-not-string",
        "source-not-string",
        "nul",
        "nul-key",
        "not-object",
        "data-too-big",
    ],
)
async def test_schema_errors_are_422_naming_index_and_field_and_nothing_is_stored(
    live: LiveServer, events: list[Any], index: int, field: str
) -> None:
    async with live.client() as client:
        response = await client.post("/api/events", json=events)
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["index"], body["field"]) == (index, field)
    assert body["error"]
    assert _emitted(live) == 0


async def test_null_source_means_the_default_source(live: LiveServer) -> None:
    async with live.client() as client:
        response = await client.post("/api/events", json={"type": "A", "data": {}, "source": None, "key": None})
    assert response.status_code == 202
    assert await live.runtime.batcher.flush()
    assert live.runtime.store.statistics().rejected_rows == 0


async def test_too_many_events_in_one_request_is_413(dsn: str, tmp_path: Path) -> None:
    async with serving(make_config(dsn, tmp_path, max_request_events=10)) as live, live.client() as client:
        response = await client.post("/api/events", json=[{"type": "A", "data": {}}] * 11)
        assert response.status_code == 413
        assert _emitted(live) == 0


async def test_publish_token_is_required_and_checked(dsn: str, tmp_path: Path) -> None:
    async with serving(make_config(dsn, tmp_path, publish_token="p4ss")) as live, live.client() as client:
        event = {"type": "A", "data": {}}
        assert (await client.post("/api/events", json=event)).status_code == 401
        wrong = await client.post("/api/events", json=event, headers={"Authorization": "Bearer p4sX"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        in_query = await client.post("/api/events", json=event, params={"token": "p4ss"})
        assert in_query.status_code == 401  # publishers can set headers; tokens stay out of logs
        assert _emitted(live) == 0
        ok = await client.post("/api/events", json=event, headers={"Authorization": "Bearer p4ss"})
        assert ok.status_code == 202


async def test_full_buffer_is_503_with_retry_after_and_nothing_accepted(dsn: str, tmp_path: Path) -> None:
    batcher = {"max_buffered_events": 10, "batch_size": 10, "batch_timeout_seconds": 60, "leading_edge": False}
    config = make_config(dsn, tmp_path, batcher=batcher)
    async with serving(config) as live, live.client() as client:
        assert (await client.post("/api/events", json=[{"type": "A", "data": {}}] * 9)).status_code == 202
        response = await client.post("/api/events", json=[{"type": "A", "data": {}}] * 2)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert _emitted(live) == 9


async def test_buffer_full_in_bytes_is_503_with_retry_after_and_nothing_accepted(dsn: str, tmp_path: Path) -> None:
    # No leading edge: the two accepted events must stay in the buffer for the third to find it full.
    batcher = {"max_buffered_bytes": 1000, "max_event_bytes": 500, "batch_size": 10, "batch_timeout_seconds": 60}
    batcher["leading_edge"] = False
    config = make_config(dsn, tmp_path, batcher=batcher)
    big = {"type": "A", "data": {"blob": "x" * 400}}  # about 400 bytes encoded: two fit, three do not
    async with serving(config) as live, live.client() as client:
        assert (await client.post("/api/events", json=[big, big])).status_code == 202
        response = await client.post("/api/events", json=big)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert _emitted(live) == 2


async def test_publish_during_drain_is_503(live: LiveServer) -> None:
    live.runtime.request_drain()
    await until(lambda: live.runtime.hub.closing)
    async with live.client() as client:
        response = await client.post("/api/events", json={"type": "A", "data": {}})
    assert response.status_code == 503 and "retry-after" in response.headers


async def test_wait_stored_answers_201_with_the_committed_message_ids(live: LiveServer, dsn: str) -> None:
    import asyncpg

    events = [{"type": "JOB_STARTED", "data": {"job_id": i}, "source": "a" if i < 3 else "b"} for i in range(5)]
    async with live.client() as client:
        response = await client.post("/api/events?wait=stored", json=events)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["accepted"] == 5
    conn = await asyncpg.connect(dsn)
    try:
        rows = dict(await conn.fetch("SELECT id, source FROM sse_events"))
    finally:
        await conn.close()
    assert [rows[i] for i in body["ids"]] == ["a", "a", "a", "b", "b"]


async def test_wait_stored_while_postgres_is_down_answers_504_saying_the_events_are_kept(
    dsn: str, tmp_path: Path, pg_server: Any
) -> None:
    config = make_config(dsn, tmp_path, publish_wait_timeout_seconds=1.5, batcher={"max_retries": 0})
    async with serving(config) as live, live.client() as client:
        import anyio

        await anyio.to_thread.run_sync(pg_server.stop)
        try:
            response = await client.post("/api/events?wait=stored", json=[{"type": "T", "data": {"x": 1}}])
        finally:
            await anyio.to_thread.run_sync(pg_server.start_again)
        assert response.status_code == 504, response.text
        body = response.json()
        assert body["kept"] is True and body["state"] == "kept" and body["ids"] == [None]
        assert await live.runtime.batcher.flush(timeout=30)  # written back once PostgreSQL answers
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM sse_events WHERE type = 'T'") == 1
    finally:
        await conn.close()


async def test_wait_with_an_unknown_value_is_a_400(live: LiveServer) -> None:
    async with live.client() as client:
        response = await client.post("/api/events?wait=forever", json={"type": "T", "data": {}})
    assert response.status_code == 400 and response.json()["field"] == "wait"
    assert _emitted(live) == 0


async def test_a_publish_retried_with_the_same_idempotency_key_stores_nothing_twice_and_answers_the_same_ids(
    live: LiveServer, dsn: str
) -> None:
    import asyncpg

    events = [{"type": "ORDER", "data": {"n": i}} for i in range(3)]
    async with live.client() as client:
        first = await client.post("/api/events?wait=stored", json=events, headers={"Idempotency-Key": "req-42"})
        again = await client.post("/api/events?wait=stored", json=events, headers={"Idempotency-Key": "req-42"})
        own = [{"type": "ORDER", "data": {"n": 9}, "idempotency_key": "order-9"}]
        once = await client.post("/api/events?wait=stored", json=own)
        twice = await client.post("/api/events?wait=stored", json=own)
        other = await client.post("/api/events?wait=stored", json=events, headers={"Idempotency-Key": "req-43"})
    assert first.status_code == again.status_code == 201, first.text
    assert again.json()["ids"] == first.json()["ids"]
    assert twice.json()["ids"] == once.json()["ids"]
    assert set(other.json()["ids"]).isdisjoint(first.json()["ids"])
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetchval("SELECT count(*) FROM sse_events WHERE event_type = 'ORDER'")
    finally:
        await conn.close()
    assert rows == 3 + 1 + 3  # keyed events are stored one row each, once


async def test_a_bad_idempotency_key_is_a_400_and_changes_nothing(live: LiveServer) -> None:
    async with live.client() as client:
        header = await client.post("/api/events", json={"type": "T", "data": {}}, headers={"Idempotency-Key": "a b"})
        field = await client.post("/api/events", json={"type": "T", "data": {}, "idempotency_key": ""})
    assert header.status_code == 400 and header.json()["field"] == "Idempotency-Key"
    assert field.status_code == 422 and field.json()["field"] == "idempotency_key"
    assert _emitted(live) == 0


async def _stored_rows(dsn: str, event_type: str) -> list[tuple[str, str]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT idem_key, data::text FROM sse_events WHERE event_type = $1 ORDER BY id", event_type
        )
    finally:
        await conn.close()
    return [(row[0], row[1]) for row in rows]


async def test_an_idempotency_key_is_stored_beside_the_row_and_never_broadcast(live: LiveServer, dsn: str) -> None:
    async with live.client() as client, anyio.create_task_group() as tg:
        received = subscribed(tg, client)
        await received.connected.wait()
        own = {"type": "ORDER", "data": {"n": 1}, "idempotency_key": "secret-order-1"}
        assert (await client.post("/api/events?wait=stored", json=own)).status_code == 201
        header = {"Idempotency-Key": "secret-request"}
        assert (
            await client.post("/api/events?wait=stored", json={"type": "ORDER", "data": {}}, headers=header)
        ).status_code == 201
        await received.wait_for(lambda r: r.count() == 2)
        tg.cancel_scope.cancel()
    streamed = b"".join(m.data.encode() for m in received.messages)
    assert b"secret" not in streamed and b"idempotency_key" not in streamed
    rows = await _stored_rows(dsn, "ORDER")
    assert len(rows) == 2 and all("secret" not in data for _, data in rows)
    assert all("secret" in key for key, _ in rows)  # the key is kept beside the row


async def test_idempotency_keys_are_scoped_per_publish_token(dsn: str, tmp_path: Path) -> None:
    tokens = tmp_path / "publish.tokens"
    tokens.write_text("alpha-token\nbeta-token\n")
    async with serving(make_config(dsn, tmp_path, publish_tokens_file=tokens)) as live, live.client() as client:
        alpha = {"Authorization": "Bearer alpha-token", "Idempotency-Key": "order-1"}
        beta = {"Authorization": "Bearer beta-token", "Idempotency-Key": "order-1"}
        first = await client.post("/api/events?wait=stored", json={"type": "ORDER", "data": {"by": "a"}}, headers=alpha)
        second = await client.post("/api/events?wait=stored", json={"type": "ORDER", "data": {"by": "b"}}, headers=beta)
    assert first.status_code == second.status_code == 201, second.text
    assert first.json()["ids"] != second.json()["ids"]
    stored = [data for _, data in await _stored_rows(dsn, "ORDER")]
    assert len(stored) == 2 and '"by": "b"' in stored[1]


async def test_idempotency_keys_are_scoped_per_client_address_when_publishing_is_open(
    live: LiveServer, dsn: str
) -> None:
    other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    event = {"type": "ORDER", "data": {"n": 1}, "idempotency_key": "order-1"}
    async with live.client() as one, live.client(transport=other) as two:
        first = await one.post("/api/events?wait=stored", json=event)
        second = await two.post("/api/events?wait=stored", json=event)
        again = await one.post("/api/events?wait=stored", json=event)
    assert first.status_code == second.status_code == again.status_code == 201
    assert first.json()["ids"] == again.json()["ids"] != second.json()["ids"]
    assert len(await _stored_rows(dsn, "ORDER")) == 2


async def test_a_reused_idempotency_key_with_other_content_is_a_409_naming_it(live: LiveServer, dsn: str) -> None:
    async with live.client() as client:
        first = await client.post(
            "/api/events?wait=stored", json={"type": "ORDER", "data": {"n": 1}, "idempotency_key": "order-1"}
        )
        other = await client.post(
            "/api/events?wait=stored", json={"type": "ORDER", "data": {"n": 2}, "idempotency_key": "order-1"}
        )
        header = {"Idempotency-Key": "req-7"}
        batch = [{"type": "ORDER", "data": {"n": 3}}, {"type": "ORDER", "data": {"n": 4}}]
        assert (await client.post("/api/events?wait=stored", json=batch, headers=header)).status_code == 201
        changed = await client.post(
            "/api/events?wait=stored", json=[batch[0], {"type": "ORDER", "data": {"n": 5}}], headers=header
        )
        same = await client.post(
            "/api/events?wait=stored", json={"type": "ORDER", "data": {"n": 1}, "idempotency_key": "order-1"}
        )
    assert first.status_code == 201 and same.status_code == 201 and same.json()["ids"] == first.json()["ids"]
    assert other.status_code == 409, other.text
    assert other.json()["field"] == "idempotency_key" and "order-1" in other.json()["error"]
    assert changed.status_code == 409 and changed.json()["index"] == 1 and "req-7#1" in changed.json()["error"]
    stored = [data for _, data in await _stored_rows(dsn, "ORDER")]
    assert len(stored) == 3 and not any('"n": 2' in d or '"n": 5' in d for d in stored)


async def test_a_key_reused_with_other_content_is_a_409_without_wait_once_the_first_is_stored(
    live: LiveServer, dsn: str
) -> None:
    first = {"type": "ORDER", "data": {"n": 1}, "idempotency_key": "order-1"}
    async with live.client() as client:
        assert (await client.post("/api/events?wait=stored", json=first)).status_code == 201
        other = await client.post("/api/events", json=[{"type": "ORDER", "data": {}}, {**first, "data": {"n": 2}}])
        retry = await client.post("/api/events", json=first)
        moved = await client.post("/api/events", json={**first, "source": "elsewhere"})
    assert other.status_code == 409 and other.json()["index"] == 1 and "order-1" in other.json()["error"]
    assert retry.status_code == 202
    assert moved.status_code == 409
    assert await live.runtime.batcher.flush()
    assert len(await _stored_rows(dsn, "ORDER")) == 1  # the 409 stored nothing, the retry nothing twice


async def test_one_key_twice_in_a_request_with_other_content_is_a_409_found_by_the_write(
    live: LiveServer, dsn: str
) -> None:
    # Nothing is stored under the key yet, so only the write can see the conflict.
    twice = [
        {"type": "ORDER", "data": {"n": 1}, "idempotency_key": "order-1"},
        {"type": "ORDER", "data": {"n": 2}, "idempotency_key": "order-1"},
    ]
    async with live.client() as client:
        response = await client.post("/api/events?wait=stored", json=twice)
    assert response.status_code == 409, response.text
    assert response.json()["index"] == 1 and "order-1" in response.json()["error"]
    stored = [data for _, data in await _stored_rows(dsn, "ORDER")]
    assert len(stored) == 1 and '"n": 1' in stored[0]
    assert live.runtime.batcher.statistics().rejected_messages == 0  # a conflict is not quarantined


async def test_60_single_event_posts_at_once_from_10_connections_leave_in_at_most_12_messages(
    dsn: str, tmp_path: Path
) -> None:
    """The leading edge sends a lone event at once but still coalesces a crowd: what arrives while
    a write is in flight, or soon after, goes in a later batch. Sizing is off, so the 30 s timeout
    stays and never fires here, however slowly a loaded machine sends the 60 requests."""
    config = make_config(dsn, tmp_path, batcher={"batch_timeout_seconds": 30.0}, sizing=SizingConfig(enabled=False))
    async with serving(config) as live:
        clients = [live.client(limits=httpx.Limits(max_connections=1)) for _ in range(10)]
        try:

            async def post(client: httpx.AsyncClient, i: int) -> None:
                response = await client.post("/api/events", json={"type": "JOB_DONE", "data": {"i": i}, "source": "w"})
                assert response.status_code == 202

            async with anyio.create_task_group() as tg:
                for i in range(60):
                    tg.start_soon(post, clients[i % 10], i)
        finally:
            for client in clients:
                await client.aclose()
        batcher = live.runtime.batcher
        # A partial leading-edge write can leave the last events short of a full batch: flush them.
        assert await batcher.flush(timeout=20)
        await until(lambda: batcher.statistics().events_stored == 60)
        stats = batcher.statistics()
    assert stats.messages_stored <= 12
    assert stats.flushes["timeout"] == 0
