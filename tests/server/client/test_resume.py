"""Resuming a stream without I/O (``server/client/_resume.py``): the watermark drops what was delivered,
a truncated history resets it, and the backoff doubles from the retry hint."""

from __future__ import annotations

from typing import Any

from httpx_sse import ServerSentEvent

from sse_batcher.server.client._resume import Resume


def _message(id_: str, data: str, event: str = "X", retry: int | None = None) -> ServerSentEvent:
    return ServerSentEvent(event=event, data=data, id=id_, retry=retry)


def _resume(**overrides: Any) -> Resume:
    values: dict[str, Any] = {
        "types": None,
        "source": None,
        "token": None,
        "last_event_id": None,
        "retry_seconds": 1.0,
        "max_delay_seconds": 10.0,
        **overrides,
    }
    return Resume(**values)


def test_a_message_not_newer_than_the_last_delivered_is_dropped() -> None:
    # The live server never repeats a message; a proxy or a second server in front of it might.
    resume = _resume()
    single = '{"type":"X","source":"s","seq":%d,"ts":1.0,"data":{}}'
    assert [e.seq for e in resume.take(_message("5", single % 1))] == [1]
    assert resume.take(_message("5", single % 1)) == []
    assert resume.take(_message("4", single % 0)) == []
    assert [e.seq for e in resume.take(_message("6", single % 2))] == [2]
    assert resume.last_id == 6


def test_history_truncated_with_nothing_stored_resumes_from_the_beginning() -> None:
    resume = _resume(last_event_id=900)
    notice = '{"type":"HISTORY_TRUNCATED","first_available_id":null,"last_event_id":900}'
    assert resume.take(_message("", notice, event="HISTORY_TRUNCATED")) == []
    assert resume.request()["headers"]["Last-Event-ID"] == "0"
    truncated = '{"type":"HISTORY_TRUNCATED","first_available_id":40,"last_event_id":0}'
    resume.take(_message("", truncated, event="HISTORY_TRUNCATED"))
    assert resume.last_id == 39


def test_backoff_doubles_from_the_retry_hint_is_capped_and_jittered_by_half() -> None:
    resume = _resume(retry_seconds=60, max_delay_seconds=2.0)
    resume.take(_message("", "", retry=100))
    delays = [resume.next_delay("url", "test") for _ in range(8)]
    for delay, full in zip(delays, [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0], strict=True):
        assert full / 2 <= delay <= full
