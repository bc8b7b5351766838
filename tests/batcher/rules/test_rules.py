"""The rule set: defaults, TOML loading, and the rules at work in a running batcher."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from sse_batcher.batcher import BatcherConfig, PostgresStore, SSEEventBatcher, StoredMessage
from sse_batcher.batcher.errors import ConfigError
from sse_batcher.batcher.rules import AggregationRules, TypeRule

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


# -- digest rules ---------------------------------------------------------------------------------


def test_digests_belong_to_types_not_to_the_default_rule() -> None:
    with pytest.raises(ConfigError, match="default"):
        AggregationRules().merged({"default": {"digest_seconds": 60}})
    rules = AggregationRules().merged({"types": {"B": {"digest_seconds": 60}, "A": {"digest_seconds": 5}}})
    assert list(rules.digests()) == ["A", "B"]


def test_the_documented_digest_example_holds_the_five_notification_rules(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[3]
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    blocks = [block.split("```", 1)[0] for page in pages for block in page.read_text().split("```toml")[1:]]
    [example] = [block for block in blocks if "[types.ANNOUNCEMENT]" in block]
    (tmp_path / "rules.toml").write_text(example)
    rules = AggregationRules.from_toml(tmp_path / "rules.toml").digests()
    found = {name: (rule.digest_seconds, rule.max_items) for name, rule in rules.items()}
    assert found == {
        "SYSTEM_UPDATE": (3600, 10),
        "APPROVAL_REQUEST": (900, 5),
        "ALERT": (300, 3),
        "REMINDER": (1800, 10),
        "ANNOUNCEMENT": (86400, 20),
    }


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


async def test_a_type_with_a_short_batch_timeout_is_not_held_behind_an_older_event_of_another_type(
    store: PostgresStore, tmp_path: Path
) -> None:
    rules = AggregationRules(types={"JOB_STARTED": TypeRule(timeout_seconds=0.05)})
    collected = Collected()
    async with SSEEventBatcher(store, config(tmp_path, leading_edge=False), rules=rules) as batcher:
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


def test_final_types_default_to_completed_and_failed_and_a_toml_rule_changes_them(tmp_path: Path) -> None:
    text = "[types.JOB_CANCELLED]\nfinal = true\n\n[types.JOB_COMPLETED]\nfinal = false\n"
    rules = AggregationRules.from_toml(rules_file(tmp_path, text))

    assert AggregationRules().final_types() == {"JOB_COMPLETED", "JOB_FAILED"}
    assert rules.final_types() == {"JOB_CANCELLED", "JOB_FAILED"}


def test_final_in_the_default_rule_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="final belongs in"):
        AggregationRules.from_toml(rules_file(tmp_path, "[default]\nfinal = true\n"))
    with pytest.raises(ConfigError, match="final must be true or false"):
        AggregationRules.from_toml(rules_file(tmp_path, '[types.X]\nfinal = "yes"\n'))
