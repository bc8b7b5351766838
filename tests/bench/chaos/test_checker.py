"""The campaign's checker on hand-made histories: a clean one passes, each broken promise is named."""

from __future__ import annotations

import json
from typing import Any

from bench.chaos.checker import check
from bench.chaos.history import (
    Fault,
    History,
    Kill,
    MemorySample,
    NodeExit,
    Publish,
    Received,
    StoredEvent,
    StoredMessage,
    Stream,
    Stuck,
)


def _publish(
    markers: tuple[str, ...],
    status: int | None,
    body: Any = None,
    *,
    node: str = "n1",
    at: float = 10.0,
    event_type: str = "T",
    keys: tuple[str | None, ...] | None = None,
    wait: bool = False,
) -> Publish:
    return Publish(
        node=node,
        started=at,
        ended=at + 0.1,
        markers=markers,
        event_type=event_type,
        keys=keys or tuple(None for _ in markers),
        wait=wait,
        idempotency_key=None,
        status=status,
        body=body,
    )


def _message(id_: int, *markers: str, at: float = 11.0, event_type: str = "T", key: str | None = None) -> StoredMessage:
    return StoredMessage(
        id=id_, created_at=at, events=tuple(StoredEvent(marker=m, event_type=event_type, key=key) for m in markers)
    )


def _received(id_: int) -> Received:
    return Received(id=id_, event="T_BATCH", data=json.dumps({"id": id_}), at=15.0)


def _clean() -> History:
    history = History(seed=1)
    history.publishes += [
        _publish(("a", "b"), 201, {"accepted": 2, "ids": [1, 1]}, wait=True),
        _publish(("c",), 202, {"accepted": 1, "seqs": [3]}),
        _publish(("d",), 422, {"error": "bad"}),
    ]
    history.stored += [_message(1, "a", "b"), _message(2, "c")]
    history.streams += [
        Stream(node="n1", started=9, ended=20, resume_id=0, status=200, messages=(_received(1), _received(2))),
        Stream(node="n2", started=12, ended=20, resume_id=1, status=200, messages=(_received(2),)),
        Stream(node="n3", started=12, ended=20, resume_id=None, status=200, messages=(_received(2),)),
    ]
    return history


def _kinds(history: History) -> list[str]:
    return [a.kind for a in check(history).anomalies]


def test_a_history_that_kept_every_promise_has_no_anomaly() -> None:
    result = check(_clean())
    assert result.anomalies == ()
    assert (result.acknowledged_201, result.acknowledged_202, result.stored_events) == (2, 1, 3)


def test_a_201_event_that_is_missing_or_under_another_id_is_flagged() -> None:
    history = _clean()
    history.stored[0] = _message(1, "a")
    history.stored.append(_message(3, "b"))
    assert _kinds(history) == ["acked-wrong-id"]
    history.stored.pop()
    assert _kinds(history) == ["acked-lost"]


def test_an_event_stored_twice_is_flagged_whatever_its_answer() -> None:
    history = _clean()
    history.stored.append(_message(3, "c"))
    assert "duplicate" in _kinds(history)


def test_a_refused_event_that_was_stored_is_flagged_unless_a_later_attempt_succeeded() -> None:
    history = _clean()
    history.stored.append(_message(3, "d"))
    assert "refused-stored" in _kinds(history)
    history.publishes.append(_publish(("d",), 202, {"accepted": 1}, at=12))
    assert "refused-stored" not in _kinds(history)


def test_a_202_loss_is_counted_after_a_kill_and_flagged_without_one() -> None:
    history = _clean()
    history.stored.pop()
    history.streams.clear()
    assert _kinds(history) == ["unacked-lost"]
    history.kills.append(Kill(node="n2", at=10.5))
    assert _kinds(history) == ["unacked-lost"]  # another node's kill explains nothing
    history.kills.append(Kill(node="n1", at=10.5))
    result = check(history)
    assert result.anomalies == ()
    assert result.window_losses == 1


def test_a_202_read_after_the_kill_that_lost_it_is_counted_not_flagged() -> None:
    # The node answered, then died before the client had read the whole answer: the kill lands
    # between the request's start and its recorded end.
    history = _clean()
    history.stored.pop()
    history.streams.clear()
    history.kills.append(Kill(node="n1", at=9.9))
    assert _kinds(history) == ["unacked-lost"]  # killed before the request: explains nothing
    history.kills.append(Kill(node="n1", at=10.05))
    result = check(history)
    assert result.anomalies == ()
    assert result.window_losses == 1


def test_a_superseded_event_of_a_coalesced_type_is_not_a_loss() -> None:
    history = History(seed=1, coalesced_types=frozenset({"P"}))
    history.publishes += [
        _publish(("p1",), 202, {}, event_type="P", keys=("k",)),
        _publish(("p2",), 201, {"ids": [5]}, event_type="P", keys=("k",), at=10.2),
    ]
    history.stored.append(_message(5, "p3", event_type="P", key="k"))
    assert _kinds(history) == []
    history.stored[0] = _message(5, "p3", event_type="P", key="other")
    assert _kinds(history) == ["unacked-lost", "acked-lost"]


def test_a_stream_that_skips_repeats_or_restarts_is_flagged() -> None:
    for messages in ((_received(2),), (_received(1), _received(1)), (_received(1), _received(2), _received(1))):
        history = _clean()
        history.streams = [Stream(node="n1", started=9, ended=20, resume_id=0, status=200, messages=messages)]
        assert _kinds(history) == ["stream-gap"], messages


def test_history_truncated_for_a_held_id_is_flagged() -> None:
    history = _clean()
    truncated = Received(id=1, event="HISTORY_TRUNCATED", data="{}", at=10.0)
    history.streams = [Stream(node="n1", started=9, ended=20, resume_id=0, status=200, messages=(truncated,))]
    assert _kinds(history) == ["stream-gap"]


def test_two_nodes_sending_different_bytes_for_one_id_are_flagged() -> None:
    history = _clean()
    other = Received(id=2, event="T_BATCH", data='{"id": 2, "x": 1}', at=13.0)
    history.streams[1] = Stream(node="n2", started=12, ended=20, resume_id=1, status=200, messages=(other,))
    assert _kinds(history) == ["stream-bytes"]


def test_only_documented_503_and_504_bodies_pass() -> None:
    history = _clean()
    history.publishes += [
        _publish(("e",), 503, {"error": "the event buffer is full; retry shortly"}),
        _publish(("f",), 504, {"error": "timeout", "state": "buffered", "kept": False, "ids": [None]}),
    ]
    assert _kinds(history) == []
    history.publishes += [_publish(("g",), 500, "Internal Server Error"), _publish(("h",), 504, {"error": "x"})]
    history.streams.append(Stream(node="n2", started=12, ended=12, resume_id=None, status=502, body="bad gateway"))
    assert _kinds(history) == ["server-error", "server-error", "server-error"]


def test_a_504_for_events_streamed_long_before_it_is_flagged() -> None:
    history = _clean()
    answer = {"error": "timeout", "state": "buffered", "kept": False, "ids": [None]}
    history.publishes.append(_publish(("x",), 504, answer, at=20.0))
    history.stored.append(_message(3, "x", at=12.0))
    assert _kinds(history) == []  # begun long before, but a partition may have held its COMMIT
    late = Received(id=3, event="T", data="{}", at=19.9)
    history.streams.append(Stream(node="n2", started=12, ended=20, resume_id=2, status=200, messages=(late,)))
    assert _kinds(history) == []  # streamed just before the answer: the waiter may not have heard yet
    early = Received(id=3, event="T", data="{}", at=14.0)
    history.streams.append(Stream(node="n3", started=12, ended=20, resume_id=2, status=200, messages=(early,)))
    assert _kinds(history) == ["timeout-but-stored"]


def test_a_504_for_events_committed_as_the_nodes_database_link_failed_is_not_flagged() -> None:
    # The COMMIT went through; its answer was held or lost with the link: the node cannot know.
    history = _clean()
    answer = {"error": "timeout", "state": "buffered", "kept": False, "ids": [None]}
    history.publishes.append(_publish(("x",), 504, answer, at=20.0))
    history.stored.append(_message(3, "x", at=12.0))
    early = Received(id=3, event="T", data="{}", at=14.0)
    history.streams.append(Stream(node="n3", started=12, ended=20, resume_id=2, status=200, messages=(early,)))
    history.faults.append(Fault(kind="partition", node="n2", started=13.5, ended=18.0))
    assert _kinds(history) == ["timeout-but-stored"]  # another node's partition explains nothing
    history.faults.append(Fault(kind="kill", node="n1", started=13.5, ended=18.0))
    assert _kinds(history) == ["timeout-but-stored"]  # nor a fault that leaves the link alone
    history.faults.append(Fault(kind="scale-workers", node="n1", started=13.9, ended=25.0))
    assert _kinds(history) == []


def test_memory_is_compared_within_one_shape_of_a_nodes_process_tree() -> None:
    # A --workers 2 node started while its database is away is its supervisor alone at first.
    history = _clean()
    history.memory += [MemorySample(node="n1", run=0, at=float(t), rss_bytes=44 * 2**20, processes=1) for t in range(3)]
    history.memory += [
        MemorySample(node="n1", run=0, at=float(t), rss_bytes=154 * 2**20, processes=3) for t in range(3, 12)
    ]
    assert _kinds(history) == []
    history.memory += [
        MemorySample(node="n1", run=0, at=float(t), rss_bytes=600 * 2**20, processes=3) for t in range(12, 20)
    ]
    assert _kinds(history) == ["memory-growth"]


def test_an_unplanned_exit_and_growing_memory_are_flagged() -> None:
    history = _clean()
    history.exits.append(NodeExit(node="n2", at=15, returncode=3, log_tail="Application startup failed"))
    history.memory += [MemorySample(node="n1", run=0, at=float(t), rss_bytes=100 * 2**20) for t in range(10)]
    assert _kinds(history) == ["node-exit"]
    history.memory += [MemorySample(node="n1", run=0, at=float(t), rss_bytes=400 * 2**20) for t in range(10, 20)]
    assert _kinds(history) == ["node-exit", "memory-growth"]


def test_a_node_left_unhealthy_after_the_faults_is_flagged() -> None:
    history = _clean()
    history.stuck.append(Stuck(node="n2", at=30, log_tail="Cancelled via cancel scope"))
    assert _kinds(history) == ["node-stuck"]
