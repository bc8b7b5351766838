"""Intake: one event's arguments become a buffer item, or are refused with the field and the rule."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sse_batcher.batcher.errors import EventValidationError
from sse_batcher.batcher.pipeline.intake import _NAME_CACHE_LIMIT, Intake

DATA = {"job_id": 1, "percent": 40}


class CountingIntake(Intake):
    """An Intake that counts how often a name is checked in full (a cache miss)."""

    __slots__ = ("checked",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checked = 0

    def _remember(self, type_: str, source: str) -> None:
        self.checked += 1
        super()._remember(type_, source)


def intake(**overrides: Any) -> CountingIntake:
    settings: dict[str, Any] = {
        "default_source": "worker",
        "max_event_bytes": 100,
        "batching": True,
        "unbatched": frozenset({"JOB_FAILED"}),
    }
    return CountingIntake(**{**settings, **overrides})


def test_an_event_becomes_the_item_the_buffer_takes() -> None:
    item = intake().item("JOB_PROGRESS", DATA, "thumb", "critical", "job-1")
    assert item == ("JOB_PROGRESS", "thumb", msgspec.json.encode(DATA), "critical", "job-1", True, False, None)


def test_no_source_is_the_default_source_and_the_rules_and_config_set_the_flags() -> None:
    assert intake().item("JOB_FAILED", DATA)[1::4] == ("worker", True)  # source, batched
    assert intake().item("JOB_FAILED", DATA)[6] is True  # unbatched by rule: urgent
    assert intake().item("JOB_PROGRESS", DATA, batched=False)[5] is False
    assert intake(batching=False).item("JOB_PROGRESS", DATA)[5] is False


def test_names_seen_valid_are_not_checked_again() -> None:
    checker = intake()
    first = checker.item("JOB_PROGRESS", DATA, "thumb")
    again = checker.item("JOB_PROGRESS", DATA, "thumb")
    assert first == again
    assert checker.checked == 1  # the second event was a cache hit
    assert (checker.known_types, checker.known_sources) == ({"JOB_PROGRESS"}, {"thumb"})


def test_a_new_name_is_checked_and_then_remembered() -> None:
    checker = intake()
    checker.item("JOB_PROGRESS", DATA, "thumb")
    checker.item("JOB_PROGRESS", DATA, "resize")  # known type, new source: a miss
    checker.item("JOB_STARTED", DATA, "resize")  # new type, known source: a miss
    checker.item("JOB_STARTED", DATA, "thumb")  # both known: a hit
    assert checker.checked == 3
    assert (checker.known_types, checker.known_sources) == ({"JOB_PROGRESS", "JOB_STARTED"}, {"thumb", "resize"})


def test_the_name_cache_is_bounded_whatever_names_a_client_invents() -> None:
    checker = intake()
    for i in range(_NAME_CACHE_LIMIT + 10):
        checker.item(f"T{i}", DATA, f"s{i}")
    assert len(checker.known_types) == len(checker.known_sources) == _NAME_CACHE_LIMIT
    checker.item(f"T{_NAME_CACHE_LIMIT + 5}", DATA, "s1")  # not remembered: still checked, still accepted
    assert checker.checked == _NAME_CACHE_LIMIT + 11


REFUSALS = [
    pytest.param({"type_": "job_progress"}, "type", id="type-lowercase"),
    pytest.param({"type_": ""}, "type", id="type-empty"),
    pytest.param({"type_": "T" * 65}, "type", id="type-too-long"),
    pytest.param({"type_": 7}, "type", id="type-not-a-string"),
    pytest.param({"type_": ["JOB"]}, "type", id="type-unhashable"),
    pytest.param({"source": "has space"}, "source", id="source-space"),
    pytest.param({"source": "s" * 65}, "source", id="source-too-long"),
    pytest.param({"source": {"a": 1}}, "source", id="source-unhashable"),
    pytest.param({"data": [1, 2]}, "data", id="data-not-an-object"),
    pytest.param({"data": {"n": object()}}, "data", id="data-not-json"),
    pytest.param({"data": {"text": "x" * 200}}, "data", id="data-too-big"),
    pytest.param({"data": {"text": "a\x00b"}}, "data", id="data-nul"),
    pytest.param({"priority": "urgent"}, "priority", id="priority-unknown"),
    pytest.param({"priority": None}, "priority", id="priority-null"),
    pytest.param({"key": ""}, "key", id="key-empty"),
    pytest.param({"key": "k" * 257}, "key", id="key-too-long"),
    pytest.param({"key": "a\x00b"}, "key", id="key-nul"),
    pytest.param({"key": 5}, "key", id="key-not-a-string"),
]


@pytest.mark.parametrize(("bad", "field"), REFUSALS)
def test_a_refused_event_names_its_field_and_changes_nothing(bad: dict[str, Any], field: str) -> None:
    checker = intake()
    checker.item("JOB_PROGRESS", DATA, "thumb")
    before = (set(checker.known_types), set(checker.known_sources), checker.checked)
    # A new valid name beside the bad field: on a cache miss too, a refusal must not remember it.
    event: dict[str, Any] = {"type_": "JOB_STARTED", "data": DATA, "source": "resize", **bad}
    with pytest.raises(EventValidationError) as caught:
        checker.item(**event)
    assert caught.value.field == field
    assert (checker.known_types, checker.known_sources, checker.checked) == before


@pytest.mark.parametrize(("bad", "field"), [p for p in REFUSALS if p.values[1] in ("data", "priority", "key")])
def test_a_refused_event_with_known_names_is_refused_on_the_fast_path_too(bad: dict[str, Any], field: str) -> None:
    checker = intake()
    checker.item("JOB_PROGRESS", DATA, "thumb")
    with pytest.raises(EventValidationError) as caught:
        checker.item(**{"type_": "JOB_PROGRESS", "data": DATA, "source": "thumb", **bad})
    assert caught.value.field == field
    assert checker.checked == 1


def test_a_list_is_checked_all_or_nothing_and_the_error_names_the_event() -> None:
    checker = intake()
    good = {"type": "JOB_PROGRESS", "data": DATA}
    with pytest.raises(EventValidationError) as caught:
        checker.items([good, {**good, "priority": "urgent"}])
    assert (caught.value.field, caught.value.index) == ("priority", 1)
    items = checker.items([good, {**good, "source": None}], request_key="req-1")
    assert [(item[1], item[7]) for item in items] == [("worker", "req-1#0"), ("worker", "req-1#1")]
