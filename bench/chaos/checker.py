"""The anomalies in a recorded history: a pure function, so a hand-made history can test it.

What it holds the cluster to (each check names the anomaly kind it reports):

- ``acked-lost`` / ``acked-wrong-id``: every event answered 201 is stored, under the id it was
  answered with (an event a coalescing rule superseded counts as stored when the message of that
  id holds the event that superseded it: same type, same key);
- ``duplicate``: no event (marker) is stored twice, whatever it was answered;
- ``refused-stored``: an event whose every attempt was refused (4xx, or 503) is not stored;
- ``unacked-lost``: an event answered 202 and never stored is a loss the cluster may take only when
  the node that answered it was killed (SIGKILL) between the request's start and ``loss_window_seconds``
  after the answer (a node can answer and die before the client has read the answer);
  such losses are counted (``window_losses``), not flagged;
- ``stream-gap``: every connection got exactly the stored messages after its resume id, in order
  (a live-only connection: after its first message), and no ``HISTORY_TRUNCATED`` for an id still held;
- ``stream-bytes``: every connection, on every node, got the same ``event:`` and ``data:`` for an id;
- ``server-error``: no 5xx but a 503 with a JSON ``{"error"}`` body and a 504 with the documented
  ``{"error", "state", "kept", "ids"}`` body;
- ``timeout-but-stored``: a 504 for events whose messages a stream had already delivered well before
  it was sent (the waiter missed its commit; a client that retries without a key then stores them
  twice). Delivery, not ``created_at``, dates the commit: ``created_at`` is when the transaction
  began, and a partition can hold a COMMIT for seconds. Not flagged when a fault on the node's way to
  PostgreSQL held from the commit to the answer: the COMMIT's answer may have been lost with the link;
- ``node-exit``: no node process exits unless the campaign stopped or killed it;
- ``node-stuck``: no node stays unhealthy once every fault is undone (a live process that no longer
  serves is worse than an exit: no supervisor restarts it);
- ``memory-growth``: within each run of a node process, resident memory stays flat (compared over
  the samples of its fullest process tree: a supervisor waiting for its database has no workers yet).
"""

from __future__ import annotations

import bisect
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from bench.chaos.history import History, Publish, StoredMessage, Stream

__all__ = ["Anomaly", "CheckResult", "Limits", "check"]

_CONTROL = "HISTORY_TRUNCATED"
_ANSWER_504 = frozenset({"error", "state", "kept", "ids"})
# Faults on a node's way to PostgreSQL (pg-restart: every node's): a COMMIT may succeed while its
# answer is held or lost, so the node rightly answers 504 for events already stored.
_LINK_FAULTS = frozenset(
    {
        "pg-restart",
        "partition",
        "cut",
        "slow-db",
        "kill-in-outage",
        "deadletter-unwritable",
        "scale-workers",
        "ab-toggle",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """How much slack the checks allow."""

    loss_window_seconds: float = 30.0  # a kill this long after a 202 may lose its events
    commit_slack_seconds: float = 1.0  # a 504 for events delivered earlier than this is a miss
    memory_growth_factor: float = 1.5  # last quarter's median over the first quarter's
    memory_slack_bytes: int = 64 * 2**20
    memory_min_samples: int = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class Anomaly:
    """One broken promise: its kind, when it showed, the node involved and what was seen."""

    kind: str
    at: float
    node: str | None
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """The anomalies, the losses the kill window allows, and the events acknowledged."""

    anomalies: tuple[Anomaly, ...]
    window_losses: int
    acknowledged_201: int
    acknowledged_202: int
    stored_events: int
    lost_202_markers: tuple[str, ...] = field(default=())


def check(history: History, limits: Limits | None = None) -> CheckResult:
    """Every anomaly in ``history`` (see the module docstring), in time order."""
    limits = limits or Limits()
    stored_in: dict[str, list[int]] = defaultdict(list)
    by_id: dict[int, StoredMessage] = {}
    for message in history.stored:
        by_id[message.id] = message
        for event in message.events:
            stored_in[event.marker].append(message.id)
    anomalies: list[Anomaly] = []
    anomalies += _duplicates(history, stored_in)
    acked_201, acked_202, window_losses, lost = _publishes(history, stored_in, by_id, limits, anomalies)
    anomalies += _streams(history)
    anomalies += _server_errors(history)
    anomalies += [
        Anomaly(kind="node-exit", at=e.at, node=e.node, detail=f"exit code {e.returncode}: {e.log_tail}")
        for e in history.exits
    ]
    anomalies += [
        Anomaly(kind="node-stuck", at=s.at, node=s.node, detail=f"unhealthy after the faults ended: {s.log_tail}")
        for s in history.stuck
    ]
    anomalies += _memory(history, limits)
    anomalies.sort(key=lambda a: a.at)
    return CheckResult(
        anomalies=tuple(anomalies),
        window_losses=window_losses,
        acknowledged_201=acked_201,
        acknowledged_202=acked_202,
        stored_events=sum(len(m.events) for m in history.stored),
        lost_202_markers=tuple(lost),
    )


def _duplicates(history: History, stored_in: dict[str, list[int]]) -> list[Anomaly]:
    first_seen = {m.id: m.created_at for m in history.stored}
    return [
        Anomaly(kind="duplicate", at=first_seen[ids[1]], node=None, detail=f"{marker} stored in messages {ids}")
        for marker, ids in stored_in.items()
        if len(ids) > 1
    ]


def _refused(status: int | None) -> bool:
    return status is not None and (400 <= status < 500 or status == 503)


def _publishes(
    history: History,
    stored_in: dict[str, list[int]],
    by_id: dict[int, StoredMessage],
    limits: Limits,
    anomalies: list[Anomaly],
) -> tuple[int, int, int, list[str]]:
    attempts: dict[str, list[Publish]] = defaultdict(list)
    for publish in history.publishes:
        for marker in publish.markers:
            attempts[marker].append(publish)
    acked_201 = acked_202 = window_losses = 0
    lost: list[str] = []
    first_delivery: dict[int, float] = {}
    for stream in history.streams:
        for received in stream.messages:
            first_delivery[received.id] = min(received.at, first_delivery.get(received.id, received.at))
    kills: dict[str, list[float]] = defaultdict(list)
    for kill in history.kills:
        kills[kill.node].append(kill.at)
    for publish in history.publishes:
        if publish.status == 201:
            acked_201 += len(publish.markers)
            anomalies += _check_201(publish, stored_in, by_id)
        elif publish.status == 202:
            acked_202 += len(publish.markers)
            for marker, key in zip(publish.markers, publish.keys, strict=True):
                if stored_in.get(marker) or _superseded(history, publish, key, by_id):
                    continue
                # From the request's start: a node can answer, then die before the client has read it.
                window = publish.ended + limits.loss_window_seconds
                if any(publish.started <= at <= window for at in kills[publish.node]):
                    window_losses += 1
                    continue
                lost.append(marker)
                anomalies.append(
                    Anomaly(
                        kind="unacked-lost",
                        at=publish.ended,
                        node=publish.node,
                        detail=f"{marker} answered 202 by {publish.node}, never stored, node not killed after",
                    )
                )
        elif publish.status == 504 and all(stored_in.get(m) for m in publish.markers):
            delivered = [first_delivery.get(stored_in[m][0]) for m in publish.markers]
            known = [at for at in delivered if at is not None]
            committed = max(known) if len(known) == len(delivered) else publish.ended
            link_failed = any(
                fault.kind in _LINK_FAULTS
                and fault.node in (publish.node, None)
                and fault.started <= publish.ended
                and fault.ended >= committed - limits.commit_slack_seconds
                for fault in history.faults
            )
            if committed < publish.ended - limits.commit_slack_seconds and not link_failed:
                anomalies.append(
                    Anomaly(
                        kind="timeout-but-stored",
                        at=publish.ended,
                        node=publish.node,
                        detail=f"504 {publish.body} for {list(publish.markers)}, all streamed "
                        f"{publish.ended - committed:.1f} s before the answer",
                    )
                )
    for marker, tries in attempts.items():
        if tries and stored_in.get(marker) and all(_refused(p.status) for p in tries):
            answers = [(p.node, p.status) for p in tries]
            anomalies.append(
                Anomaly(
                    kind="refused-stored",
                    at=tries[-1].ended,
                    node=tries[-1].node,
                    detail=f"{marker} refused {answers} yet stored in {stored_in[marker]}",
                )
            )
    return acked_201, acked_202, window_losses, lost


def _check_201(publish: Publish, stored_in: dict[str, list[int]], by_id: dict[int, StoredMessage]) -> list[Anomaly]:
    body = publish.body if isinstance(publish.body, dict) else {}
    ids = body.get("ids")
    if not isinstance(ids, list) or len(ids) != len(publish.markers):
        return [Anomaly(kind="acked-wrong-id", at=publish.ended, node=publish.node, detail=f"201 body {body}")]
    found: list[Anomaly] = []
    for marker, key, answered in zip(publish.markers, publish.keys, ids, strict=True):
        where = stored_in.get(marker, [])
        if answered in where:
            continue
        message = by_id.get(answered) if isinstance(answered, int) else None
        if not where and message is not None and key is not None:
            if any(e.event_type == publish.event_type and e.key == key for e in message.events):
                continue  # superseded by a later event of its key, in the message it was answered with
        kind = "acked-wrong-id" if where else "acked-lost"
        detail = f"{marker} answered 201 id {answered} by {publish.node}, stored in {where or 'no message'}"
        found.append(Anomaly(kind=kind, at=publish.ended, node=publish.node, detail=detail))
    return found


def _superseded(history: History, publish: Publish, key: str | None, by_id: dict[int, StoredMessage]) -> bool:
    """Whether a coalescing rule may have dropped this event for a later one of its key."""
    if key is None or publish.event_type not in history.coalesced_types:
        return False
    return any(
        message.created_at >= publish.started - 1.0
        and any(e.event_type == publish.event_type and e.key == key for e in message.events)
        for message in by_id.values()
    )


def _streams(history: History) -> list[Anomaly]:
    stored_ids = [m.id for m in history.stored]
    found: list[Anomaly] = []
    seen: dict[int, tuple[str, str, str]] = {}
    for stream in history.streams:
        if stream.status != 200:
            continue
        found += _stream_order(stream, stored_ids)
        for received in stream.messages:
            if received.event == _CONTROL:
                continue
            first = seen.setdefault(received.id, (received.event, received.data, stream.node))
            if first[:2] != (received.event, received.data):
                found.append(
                    Anomaly(
                        kind="stream-bytes",
                        at=stream.started,
                        node=stream.node,
                        detail=f"id {received.id}: {stream.node} sent {received.event} {received.data[:120]!r}, "
                        f"{first[2]} sent {first[0]} {first[1][:120]!r}",
                    )
                )
    return found


def _stream_order(stream: Stream, stored_ids: list[int]) -> list[Anomaly]:
    messages = list(stream.messages)
    if messages and messages[0].event == _CONTROL:
        if stream.resume_id is not None and stored_ids and stored_ids[0] <= stream.resume_id + 1:
            detail = f"HISTORY_TRUNCATED for resume id {stream.resume_id}, which the store still holds"
            return [Anomaly(kind="stream-gap", at=stream.started, node=stream.node, detail=detail)]
        messages = messages[1:]
    if not messages:
        return []
    if stream.resume_id is None:
        start = bisect.bisect_left(stored_ids, messages[0].id)
    else:
        start = bisect.bisect_right(stored_ids, stream.resume_id)
    for offset, received in enumerate(messages):
        expected = stored_ids[start + offset] if start + offset < len(stored_ids) else None
        if received.id != expected:
            got = [m.id for m in messages[max(0, offset - 2) : offset + 3]]
            detail = f"resume {stream.resume_id}: message {offset} is id {received.id}, expected {expected} ({got})"
            return [Anomaly(kind="stream-gap", at=stream.started, node=stream.node, detail=detail)]
    return []


def _server_errors(history: History) -> list[Anomaly]:
    found: list[Anomaly] = []
    answers: list[tuple[str, float, int | None, object]] = [
        (p.node, p.ended, p.status, p.body) for p in history.publishes
    ] + [(s.node, s.started, s.status, s.body) for s in history.streams]
    for node, at, status, body in answers:
        if status is None or status < 500:
            continue
        if status == 503 and _error_body(body):
            continue
        if status == 504 and isinstance(body, dict) and set(body) >= _ANSWER_504:
            continue
        found.append(Anomaly(kind="server-error", at=at, node=node, detail=f"{status} {str(body)[:300]}"))
    return found


def _error_body(body: object) -> bool:
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return False
    return isinstance(body, dict) and isinstance(body.get("error"), str)


def _memory(history: History, limits: Limits) -> list[Anomaly]:
    # Within one run, only the samples of its fullest process tree: a --workers node started while
    # its database is away is its supervisor alone until the workers start.
    fullest: dict[tuple[str, int], int] = defaultdict(int)
    for sample in history.memory:
        key = (sample.node, sample.run)
        fullest[key] = max(fullest[key], sample.processes)
    runs: dict[tuple[str, int], list[tuple[float, int]]] = defaultdict(list)
    for sample in history.memory:
        if sample.processes == fullest[(sample.node, sample.run)]:
            runs[(sample.node, sample.run)].append((sample.at, sample.rss_bytes))
    found: list[Anomaly] = []
    for (node, run), samples in runs.items():
        if len(samples) < limits.memory_min_samples:
            continue
        samples.sort()
        quarter = max(2, len(samples) // 4)
        first = statistics.median(rss for _, rss in samples[1 : 1 + quarter])  # the first is start-up
        last = statistics.median(rss for _, rss in samples[-quarter:])
        if last > first * limits.memory_growth_factor + limits.memory_slack_bytes:
            detail = f"run {run}: {first / 2**20:.0f} MiB early, {last / 2**20:.0f} MiB late"
            found.append(Anomaly(kind="memory-growth", at=samples[-1][0], node=node, detail=detail))
    return found
