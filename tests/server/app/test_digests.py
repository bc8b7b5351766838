"""Digests in a running server: streamed like any message, live = false held back, rules in /api/stats."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import msgspec

from sse_batcher.batcher.events import Event
from sse_batcher.batcher.pipeline.aggregate import aggregate
from sse_batcher.server.app.digests import digest_stats
from sse_batcher.server.security.tokens import StreamTokens
from tests.server.live import make_config, serving, until
from tests.server.security.test_tokens import PUB, SECRET
from tests.server.sse import events_of, publish, subscribed

RULES = """
[types.ALERT]
digest_seconds = 3600
max_items = 2
live = false

[types.APPROVAL_REQUEST]
digest_seconds = 900
group_by = "user_id"
"""


def config(dsn: str, tmp_path: Path) -> Any:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    return make_config(dsn, tmp_path, rules_file=rules, digest_interval_seconds=0.02, digest_grace_seconds=1.0)


async def test_live_false_holds_a_type_back_but_not_its_critical_events_nor_its_digest(
    dsn: str, tmp_path: Path
) -> None:
    async with serving(config(dsn, tmp_path)) as live, live.client() as client, anyio.create_task_group() as tg:
        received = subscribed(tg, client)
        await received.connected.wait()
        await publish(client, [{"type": "ALERT", "data": {"n": 1}}, {"type": "ALERT", "data": {"n": 2}}])
        await publish(client, {"type": "ALERT", "data": {"n": 3}, "priority": "critical"})
        await publish(client, {"type": "APPROVAL_REQUEST", "data": {"user_id": "u"}})  # digested, and live
        # Events of a window two hours old, stored as a flush would store them: the window is due.
        old = time.time() - 7200
        batch = [Event("ALERT", "s", i, old + i, msgspec.Raw(b'{"old":%d}' % i)) for i in range(3)]
        await live.runtime.store.write(aggregate(batch, "test"))
        await received.wait_for(lambda r: any(m.event == "ALERT_DIGEST" for m in r.messages), timeout=20)
        await publish(client, {"type": "MARKER", "data": {}})
        await received.wait_for(lambda r: any(m.event == "MARKER" for m in r.messages))
        replayed = subscribed(tg, client, params={"last_event_id": "0"})
        await replayed.wait_for(lambda r: any(m.event == "MARKER" for m in r.messages))
        tg.cancel_scope.cancel()
    streamed = [(m.event, msgspec.json.decode(m.data)) for m in received.messages]
    alerts = [body for event, body in streamed if event in ("ALERT", "ALERT_BATCH")]
    assert [body["data"] for body in alerts] == [{"n": 3}]  # only the critical one went out live
    assert [body["data"] for event, body in streamed if event == "APPROVAL_REQUEST"] == [{"user_id": "u"}]
    [digest] = [body["data"] for event, body in streamed if event == "ALERT_DIGEST"]
    assert (digest["count"], digest["truncated"]) == (3, True)
    assert [e["data"] for e in digest["events"]] == [{"old": 1}, {"old": 2}]
    # Held back from live, not from the log: a resume from 0 replays them.
    replayed_alerts = [e["data"] for e in events_of(replayed.messages) if e["type"] == "ALERT"]
    assert {"n": 1} in replayed_alerts and {"n": 2} in replayed_alerts


async def test_stats_list_each_digest_rule_with_its_open_windows(dsn: str, tmp_path: Path) -> None:
    async with serving(config(dsn, tmp_path)) as live, live.client() as client:
        events = [{"type": "APPROVAL_REQUEST", "source": "billing", "data": {"user_id": u}} for u in "aab"]
        response = await client.post("/api/events?wait=stored", json=events)
        assert response.status_code == 201, response.text

        def windows() -> list[dict[str, Any]]:
            rules = {r["type"]: r for r in digest_stats(live.runtime.digester)["rules"]}
            windows: list[dict[str, Any]] = rules["APPROVAL_REQUEST"]["windows"]
            return windows

        await until(lambda: sum(w["count"] for w in windows()) == 3, timeout=20)
        body = (await client.get("/api/stats")).json()["digests"]
    assert body["enabled"] is True and body["grace_seconds"] == 1.0
    rules = {r["type"]: r for r in body["rules"]}
    assert rules["ALERT"]["live"] is False and rules["ALERT"]["digest_type"] == "ALERT_DIGEST"
    approval = rules["APPROVAL_REQUEST"]
    assert (approval["digest_seconds"], approval["group_by"], approval["align"]) == (900, "user_id", "clock")
    by_group = {w["group"]: w for w in approval["windows"]}
    assert {g: w["count"] for g, w in by_group.items()} == {"a": 2, "b": 1}
    window = by_group["a"]
    assert window["source"] == "billing" and window["window_end"] - window["window_start"] == 900
    assert window["closes_at"] == window["window_end"] + 1.0 and window["window_start"] % 900 == 0


async def test_stats_show_digest_groups_only_to_a_request_that_may_read_every_event(dsn: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    guarded = make_config(
        dsn, tmp_path, rules_file=rules, digest_interval_seconds=0.02, digest_grace_seconds=1.0,
        publish_token="pub", subscribe_token="sub", stream_token_secret=SECRET,
    )  # fmt: skip
    async with serving(guarded) as live, live.client() as client:
        event = {"type": "APPROVAL_REQUEST", "data": {"user_id": "secret-user"}}
        response = await client.post("/api/events?wait=stored", json=event, headers=PUB)
        assert response.status_code == 201, response.text
        await until(lambda: bool(digest_stats(live.runtime.digester)["rules"][1]["windows"]), timeout=20)
        narrow = StreamTokens(SECRET).issue(60, types=["APPROVAL_REQUEST"])[0]
        wide = StreamTokens(SECRET).issue(60)[0]

        async def groups(headers: dict[str, str]) -> list[object]:
            response = await client.get("/api/stats", headers=headers)
            assert response.status_code == 200
            [rule] = [r for r in response.json()["digests"]["rules"] if r["type"] == "APPROVAL_REQUEST"]
            return [w["group"] for w in rule["windows"]]

        hidden = [None]
        assert await groups({}) == hidden
        assert await groups({"Authorization": "Bearer wrong"}) == hidden
        assert await groups({"Authorization": f"Bearer {narrow}"}) == hidden  # a filtered token reads a part
        for token in ("sub", "pub", wide):
            assert await groups({"Authorization": f"Bearer {token}"}) == ["secret-user"], token
        assert "secret-user" not in (await client.get("/api/stats")).text


async def test_two_nodes_on_one_database_emit_each_digest_once(dsn: str, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with (
        serving(config(dsn, tmp_path / "a")) as first,
        serving(config(dsn, tmp_path / "b")) as second,
        first.client() as client_a,
        second.client() as client_b,
        anyio.create_task_group() as tg,
    ):
        on_a, on_b = subscribed(tg, client_a), subscribed(tg, client_b)
        await on_a.connected.wait()
        await on_b.connected.wait()
        old = time.time() - 10 * 3600
        for hour in range(5):  # five windows, all due at once: both digesters race for each
            batch = [Event("ALERT", "s", 10 * hour + i, old + hour * 3600 + i, msgspec.Raw(b"{}")) for i in range(2)]
            await first.runtime.store.write(aggregate(batch, f"h{hour}"))
        for received in (on_a, on_b):
            await received.wait_for(lambda r: sum(m.event == "ALERT_DIGEST" for m in r.messages) == 5, timeout=20)
        await publish(client_a, {"type": "MARKER", "data": {}})
        for received in (on_a, on_b):
            await received.wait_for(lambda r: any(m.event == "MARKER" for m in r.messages))
        tg.cancel_scope.cancel()
    digests_a = [(m.id, m.data) for m in on_a.messages if m.event == "ALERT_DIGEST"]
    digests_b = [(m.id, m.data) for m in on_b.messages if m.event == "ALERT_DIGEST"]
    assert digests_a == digests_b and len(digests_a) == 5
    assert all(msgspec.json.decode(data)["data"]["count"] == 2 for _, data in digests_a)
