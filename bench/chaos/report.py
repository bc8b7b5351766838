"""The campaign's table: per fault kind, how often it was injected, the events acknowledged while it
held (or within ``GRACE_SECONDS`` after), and the anomalies that showed in that time."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from bench.chaos.checker import Anomaly, CheckResult
from bench.chaos.history import Fault, History

__all__ = ["GRACE_SECONDS", "Row", "attribute", "render", "rows"]

GRACE_SECONDS = 10.0
_NONE = "(no fault)"


@dataclass(frozen=True, slots=True)
class Row:
    kind: str
    injected: int
    acknowledged: int
    anomalies: int


def attribute(at: float, faults: list[Fault]) -> str:
    """The kind of the latest fault that began before ``at`` and ended at most GRACE_SECONDS before it."""
    candidates = [f for f in faults if f.started - 1.0 <= at <= f.ended + GRACE_SECONDS]
    return max(candidates, key=lambda f: f.started).kind if candidates else _NONE


def rows(history: History, result: CheckResult, kinds: list[str]) -> list[Row]:
    """One row per fault kind (in ``kinds`` order), one for the time no fault explains, and a total."""
    injected = Counter(f.kind for f in history.faults)
    acknowledged: Counter[str] = Counter()
    for publish in history.publishes:
        if publish.status in (201, 202):
            acknowledged[attribute(publish.ended, history.faults)] += len(publish.markers)
    anomalies = Counter(attribute(a.at, history.faults) for a in result.anomalies)
    table = [Row(kind, injected[kind], acknowledged[kind], anomalies[kind]) for kind in [*kinds, _NONE]]
    table.append(
        Row("total", len(history.faults), sum(acknowledged.values()), len(result.anomalies)),
    )
    return table


def render(history: History, result: CheckResult, kinds: list[str]) -> str:
    """The table as Markdown, then the anomalies one a line and the counted window losses."""
    lines = ["| fault | injected | events acknowledged | anomalies |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {r.kind} | {r.injected} | {r.acknowledged} | {r.anomalies} |" for r in rows(history, result, kinds)]
    lines.append("")
    lines.append(
        f"seed {history.seed}, {history.ended - history.started:.0f} s; acknowledged {result.acknowledged_201} "
        f"events with 201 and {result.acknowledged_202} with 202; {result.stored_events} events stored; "
        f"{result.window_losses} answered-202 events lost to a kill -9 within the window (allowed)"
    )
    by_kind = Counter(a.kind for a in result.anomalies)
    if by_kind:
        lines.append("anomalies by kind: " + ", ".join(f"{k} {n}" for k, n in by_kind.most_common()))
    lines += [_line(group, history) for group in _groups(result.anomalies)]
    return "\n".join(lines)


def _groups(anomalies: tuple[Anomaly, ...]) -> list[list[Anomaly]]:
    """Runs of one kind on one node within a second, so a burst of lost events reads as one line."""
    groups: list[list[Anomaly]] = []
    for anomaly in anomalies:
        last = groups[-1][-1] if groups else None
        if last is not None and (last.kind, last.node) == (anomaly.kind, anomaly.node) and anomaly.at - last.at < 1.0:
            groups[-1].append(anomaly)
        else:
            groups.append([anomaly])
    return groups


def _line(group: list[Anomaly], history: History) -> str:
    first = group[0]
    offset = first.at - history.started
    during = attribute(first.at, history.faults)
    more = f" (and {len(group) - 1} more like it)" if len(group) > 1 else ""
    return f"- t+{offset:6.1f} s {first.kind:<18} {first.node or '-':<3} [{during}] {first.detail[:400]}{more}"
