from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from sse_batcher.batcher import BatcherConfig, PostgresStore, SSEEventBatcher, StoredMessage
from sse_batcher.batcher.errors import ConfigError
from sse_batcher.batcher.events import Event
from sse_batcher.batcher.pipeline.aggregate import aggregate
from sse_batcher.batcher.rules.rules import AggregationRules, DeadlineClock, TypeRule

RULES_TOML = """
[types.JOB_PROGRESS]
coalesce = "key"

[types.NOTIFY]
group_identical = true
max_group_size = 2

[types.THUMBNAIL_READY]
batched = false
timeout_seconds = 0.25
"""


def event(seq: int, type_: str = "JOB_PROGRESS", key: str | None = None, data: Any = None, source: str = "w") -> Event:
    raw = msgspec.json.encode({"job_id": seq} if data is None else data)
    return Event(type_, source, seq, 1000.0 + seq, msgspec.Raw(raw), key=key)


def body(payload: bytes) -> Any:
    return msgspec.json.decode(payload)


def rules_file(tmp_path: Path, text: str = RULES_TOML) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return path


def test_defaults_bypass_batching_for_job_failed_and_let_progress_wait_the_configured_timeout() -> None:
    rules = AggregationRules()
    assert rules.unbatched_types() == {"JOB_FAILED"}
    assert rules.timeouts(cap_seconds=0.5) == {"JOB_PROGRESS": 0.5}
    assert rules.rule("JOB_STARTED") == TypeRule()
    assert rules.plain


def test_rules_from_toml_apply_over_the_defaults_field_by_field(tmp_path: Path) -> None:
    rules = AggregationRules.from_toml(rules_file(tmp_path))
    assert rules.rule("JOB_PROGRESS") == TypeRule(timeout_seconds=math.inf, coalesce="key")
    assert rules.rule("NOTIFY") == TypeRule(group_identical=True, max_group_size=2)
    assert rules.unbatched_types() == {"JOB_FAILED", "THUMBNAIL_READY"}
    assert not rules.plain


def test_a_rule_may_name_a_sizing_strategy_in_toml(tmp_path: Path) -> None:
    rules = AggregationRules.from_toml(rules_file(tmp_path, '[types.JOB_STARTED]\nstrategy = "conservative"\n'))
    assert rules.rule("JOB_STARTED") == TypeRule(strategy="conservative")
    assert rules.plain  # naming a strategy changes when a type leaves, not how it is aggregated


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[types.X]\nwindow = 1\n", "types.X.*unknown field 'window'"),
        ("[types.X]\nmax_group_size = 0\n", "max_group_size must be an integer >= 1"),
        ('[types.X]\ncoalesce = "payload"\n', "coalesce must be"),
        ('[types.X]\nstrategy = "greedy"\n', "types.X.*strategy must be one of fixed, conservative"),
        ("[typo]\n", "unknown rules section 'typo'"),
        ("[types.X\n", "cannot read rules file"),
    ],
)
def test_bad_rules_file_is_a_config_error_naming_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AggregationRules.from_toml(rules_file(tmp_path, text))


def test_key_coalescing_keeps_the_latest_per_key_and_says_how_many_were_superseded() -> None:
    rules = AggregationRules(types={"JOB_PROGRESS": TypeRule(coalesce="key")})
    events = [event(1, key="a"), event(2, key="b"), event(3, key="a"), event(4), event(5, key="a")]
    [message] = aggregate(events, "o", rules)
    payload = body(message.payload)
    assert [e["seq"] for e in payload["events"]] == [2, 4, 5]
    assert (payload["batch_count"], payload["superseded"], message.event_count) == (3, 2, 3)


def test_coalescing_down_to_one_event_is_still_an_aggregate_so_the_count_is_visible() -> None:
    rules = AggregationRules(types={"JOB_PROGRESS": TypeRule(coalesce="key")})
    [message] = aggregate([event(1, key="a"), event(2, key="a")], "o", rules)
    payload = body(message.payload)
    assert (message.type, payload["superseded"]) == ("JOBS_BATCH_PROGRESS", 1)
    assert [e["seq"] for e in payload["events"]] == [2]


def test_without_a_rule_events_with_the_same_key_are_all_kept() -> None:
    [message] = aggregate([event(1, key="a"), event(2, key="a")], "o", AggregationRules())
    assert "superseded" not in body(message.payload)
    assert message.event_count == 2


def test_identical_payloads_stay_separate_unless_grouping_is_turned_on() -> None:
    same = {"text": "disk almost full"}
    events = [event(1, "NOTIFY", data=same), event(2, "NOTIFY", data=same), event(3, "NOTIFY", data={"x": 1})]
    [plain] = aggregate(events, "o", AggregationRules())
    assert len(body(plain.payload)["events"]) == 3
    grouped_rules = AggregationRules(types={"NOTIFY": TypeRule(group_identical=True)})
    [grouped] = aggregate(events, "o", grouped_rules)
    payload = body(grouped.payload)
    assert [e["seq"] for e in payload["events"]] == [1, 3]
    assert (payload["counts"], payload["batch_count"], grouped.event_count) == ([2, 1], 3, 3)


def test_max_group_size_cuts_groups_and_messages_stay_in_first_seq_order() -> None:
    rules = AggregationRules(types={"JOB_PROGRESS": TypeRule(max_group_size=2)})
    events = [event(1), event(2), event(3, "JOB_STARTED"), event(4), event(5), event(6)]
    messages = aggregate(events, "o", rules)
    assert [(m.first_seq, m.event_count) for m in messages] == [(1, 2), (3, 1), (4, 2), (6, 1)]
    assert len({m.idem_key for m in messages}) == 4


def test_unbatched_type_travels_alone_inside_aggregate() -> None:
    events = [event(1, "JOB_FAILED"), event(2, "JOB_FAILED")]
    assert [m.event_count for m in aggregate(events, "o", AggregationRules())] == [1, 1]
    assert [m.event_count for m in aggregate(events, "o")] == [2]  # no rules: as before


def test_window_clock_names_the_earliest_deadline_across_windows_and_the_timeout() -> None:
    clock = DeadlineClock({"FAST": 0.1, "SLOW": 5.0})
    assert clock.next_deadline(1.0) is None
    assert clock.add("SLOW", 1, 100.0) is True
    assert clock.add("SLOW", 2, 100.5) is False
    assert clock.next_deadline(1.0) == 105.0
    assert clock.add("OTHER", 3, 101.0) is True
    assert clock.next_deadline(1.0) == 102.0
    assert clock.next_deadline(0.02) == pytest.approx(101.02)  # the adaptive timeout moves it
    assert clock.add("FAST", 4, 101.5) is True
    assert clock.next_deadline(1.0) == pytest.approx(101.6)
    clock.drop_through(3)
    assert clock.next_deadline(1.0) == pytest.approx(101.6)
    clock.drop_through(4)
    assert clock.next_deadline(1.0) is None


# -- in a running batcher, on a real PostgreSQL ---------------------------------------------------
class Collected:
    def __init__(self) -> None:
        self.messages: list[StoredMessage] = []
        self.changed = anyio.Event()

    def __call__(self, messages: Any) -> None:
        self.messages.extend(messages)
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_for_messages(self, count: int) -> None:
        with anyio.fail_after(10):
            while len(self.messages) < count:
                await self.changed.wait()


def config(tmp_path: Path, **overrides: Any) -> BatcherConfig:
    # A 30 s timeout: anything delivered within the test's 10 s was not held by it.
    values: dict[str, Any] = {"batch_size": 100, "batch_timeout_seconds": 30.0, "data_dir": tmp_path}
    values.update(overrides)
    return BatcherConfig(**values)


async def test_job_failed_and_critical_events_are_never_held_by_a_30_second_timeout(
    store: PostgresStore, tmp_path: Path
) -> None:
    collected = Collected()
    async with SSEEventBatcher(store, config(tmp_path)) as batcher:
        batcher.add_listener(collected)
        batcher.emit("JOB_FAILED", {"job_id": 1, "error": "boom"}, source="w")
        await collected.wait_for_messages(1)
        batcher.emit("JOB_STARTED", {"job_id": 2}, source="w", priority="critical")
        await collected.wait_for_messages(2)
        stats = batcher.statistics()
    assert [m.type for m in collected.messages] == ["JOB_FAILED", "JOB_STARTED"]
    assert stats.flushes["critical"] == 2 and stats.flushes["timeout"] == 0


async def test_a_type_with_a_short_window_is_not_held_behind_an_older_event_of_another_type(
    store: PostgresStore, tmp_path: Path
) -> None:
    rules = AggregationRules(types={"JOB_STARTED": TypeRule(timeout_seconds=0.05)})
    collected = Collected()
    async with SSEEventBatcher(store, config(tmp_path), rules=rules) as batcher:
        batcher.add_listener(collected)
        batcher.emit("JOB_PROGRESS", {"job_id": 1}, source="w")
        await anyio.wait_all_tasks_blocked()  # the flush loop is waiting on the 30 s deadline
        batcher.emit("JOB_STARTED", {"job_id": 1}, source="w")
        await collected.wait_for_messages(2)
        stats = batcher.statistics()
    assert stats.flushes["timeout"] == 1
    assert [m.type for m in collected.messages] == ["JOB_PROGRESS", "JOB_STARTED"]


async def test_rules_from_toml_coalesce_progress_in_a_running_batcher_and_stats_count_superseded(
    store: PostgresStore, tmp_path: Path
) -> None:
    rules = AggregationRules.from_toml(rules_file(tmp_path))
    collected = Collected()
    async with SSEEventBatcher(store, config(tmp_path), rules=rules) as batcher:
        batcher.add_listener(collected)
        for percent in range(0, 100, 10):
            batcher.emit("JOB_PROGRESS", {"job_id": 7, "percent": percent}, source="w", key="job-7")
        batcher.emit("JOB_PROGRESS", {"job_id": 8, "percent": 50}, source="w", key="job-8")
        batcher.emit("THUMBNAIL_READY", {"job_id": 7}, source="w")  # unbatched by the file: flushes now
        await collected.wait_for_messages(2)
        stats = batcher.statistics()
    progress, ready = collected.messages
    payload = body(progress.payload)
    assert [e["data"]["percent"] for e in payload["events"]] == [90, 50]
    assert payload["superseded"] == 9
    assert ready.type == "THUMBNAIL_READY"
    assert stats.events_superseded == 9
    assert stats.events_stored == 3
