"""The campaign table: each anomaly and acknowledgement goes to the fault that was holding then."""

from __future__ import annotations

from bench.chaos.checker import check
from bench.chaos.history import Fault, History, NodeExit, Publish
from bench.chaos.report import attribute, render, rows


def test_an_anomaly_belongs_to_the_latest_fault_begun_before_it_within_the_grace() -> None:
    faults = [
        Fault(kind="kill", node="n1", started=10, ended=12),
        Fault(kind="pause", node="n2", started=15, ended=20),
    ]
    assert attribute(11, faults) == "kill"
    assert attribute(18, faults) == "pause"
    assert attribute(25, faults) == "pause"
    assert attribute(5, faults) == "(no fault)"
    assert attribute(100, faults) == "(no fault)"


def test_the_table_counts_injections_acknowledgements_and_anomalies_per_kind() -> None:
    history = History(seed=7, started=0, ended=60)
    history.faults.append(Fault(kind="kill", node="n1", started=10, ended=12))
    history.publishes.append(
        Publish(
            node="n1",
            started=11,
            ended=11.1,
            markers=("a", "b"),
            event_type="T",
            keys=(None, None),
            wait=False,
            idempotency_key=None,
            status=202,
        )
    )
    history.exits.append(NodeExit(node="n1", at=11.5, returncode=3, log_tail="startup failed"))
    result = check(history)
    table = {row.kind: row for row in rows(history, result, ["kill", "pause"])}
    assert (table["kill"].injected, table["kill"].acknowledged, table["kill"].anomalies) == (
        1,
        2,
        3,
    )  # the exit, and its two lost events
    assert table["pause"].injected == 0
    assert table["total"].anomalies == 3
    assert "seed 7" in render(history, result, ["kill", "pause"])
