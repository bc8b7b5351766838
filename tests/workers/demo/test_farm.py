from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sse_batcher.batcher import PostgresStore, SSEEventBatcher
from sse_batcher.workers import MAX_BURST, DemoFarm, WorkerClosedError
from tests.collect import Collected, batcher_config, running_batcher

TERMINAL = {"JOB_COMPLETED", "JOB_FAILED"}


def _jobs(collected: Collected, source: str | None = None) -> dict[int, list[str]]:
    """job_id -> the types of its events, in emit (seq) order: aggregates group by type, not by job."""
    jobs: dict[int, list[str]] = {}
    for event in sorted(collected.events(source), key=lambda e: e["seq"]):
        jobs.setdefault(event["data"]["job_id"], []).append(event["type"])
    return jobs


def _finished(collected: Collected, source: str) -> int:
    return sum(1 for e in collected.events(source) if e["type"] in TERMINAL)


async def test_burst_starts_every_job_at_once_and_the_starts_arrive_as_one_aggregate(
    store: PostgresStore, tmp_path: Path
) -> None:
    # No leading edge: an idle writer would send the first start alone, before the others joined it.
    async with running_batcher(store, tmp_path, leading_edge=False) as (batcher, collected):
        # No failures: JOB_FAILED travels alone and at once, which would flush early.
        # speed=2: a job lasts 0.25-1.5 s, long enough for all 60 to be under way before one ends.
        async with DemoFarm(batcher, rate=0, seed=3, speed=2, failure_rate=0) as farm:
            assert farm.burst(60) == 60
            await farm.wait_idle()
            stats = {s["name"]: s for s in farm.worker_stats()}
        assert await batcher.flush(timeout=20)
    jobs = _jobs(collected, "scheduler")
    assert len(jobs) == 60
    for types in jobs.values():
        assert types[0] == "JOB_STARTED" and types[-1] in TERMINAL and "JOB_PROGRESS" in types
    [starts] = [b for b in collected.bodies() if b["type"] == "JOBS_BATCH_STARTED"]
    assert (starts["source"], starts["batch_count"], sorted(starts["job_ids"])) == ("scheduler", 60, sorted(jobs))
    # Started together, not a few at a time: every job had started before the first one ended.
    ends = [e["seq"] for e in collected.events("scheduler") if e["type"] in TERMINAL]
    assert max(e["seq"] for e in starts["events"]) < min(ends)
    scheduler = stats["scheduler"]
    assert scheduler["jobs_done"] + scheduler["jobs_failed"] == 60
    assert scheduler["events"] == len(collected.events("scheduler"))


async def test_farm_runs_three_workers_side_by_side_and_stops_with_everything_flushed(
    store: PostgresStore, tmp_path: Path
) -> None:
    async with running_batcher(store, tmp_path, batch_size=50, batch_timeout_seconds=0.05) as (batcher, collected):
        farm = DemoFarm(batcher, rate=20, seed=11, speed=10, failure_rate=0.2)
        async with farm:
            await collected.wait_until(
                lambda: all(_finished(collected, s) >= 5 for s in ("thumbnail", "overlay", "scheduler")), timeout=30
            )
        assert all(s["state"] == "stopped" and s["jobs_running"] == 0 for s in farm.worker_stats())
        assert await batcher.flush(timeout=20)
        totals = batcher.statistics()
    assert (totals.buffer_depth, totals.events_stored) == (0, totals.events_emitted)
    for source in ("thumbnail", "overlay", "scheduler"):
        for job_id, types in _jobs(collected, source).items():
            assert types[0] == "JOB_STARTED" and types[-1] in TERMINAL, (source, job_id, types)
    by_source: dict[str, list[Any]] = {}
    for message in collected.messages:
        by_source.setdefault(message.source, []).append(message)
    assert all(m.event_count == 1 and "BATCH" not in m.type for m in by_source["overlay"])
    assert any(m.event_count > 1 for m in by_source["thumbnail"])
    assert any(m.event_count > 1 for m in by_source["scheduler"])
    stats = {s["name"]: s for s in farm.worker_stats()}
    assert {name: (s["kind"], s["use_batching"]) for name, s in stats.items()} == {
        "thumbnail": ("thread", True),
        "overlay": ("async", False),
        "scheduler": ("async", True),
    }
    for name, s in stats.items():
        assert s["events"] == len(collected.events(name))
        assert s["jobs_failed"] == sum(1 for t in _jobs(collected, name).values() if t[-1] == "JOB_FAILED")
    failed = [e["data"] for e in collected.events() if e["type"] == "JOB_FAILED"]
    assert all("simulated: " in data["error_message"] for data in failed)
    failures = Counter(data["error_type"] for data in failed)
    assert failures and set(failures) <= {
        "OSError",
        "ValueError",
        "TimeoutError",
        "LookupError",
        "ConnectionResetError",
        "FileNotFoundError",
    }


async def test_a_maximum_burst_is_accepted_and_finished(store: PostgresStore, tmp_path: Path) -> None:
    async with running_batcher(store, tmp_path, batch_timeout_seconds=0.05) as (batcher, collected):
        async with DemoFarm(batcher, rate=0, seed=1, speed=1000) as farm:
            assert farm.burst(MAX_BURST) == MAX_BURST
            await farm.wait_idle()
            [scheduler] = [s for s in farm.worker_stats() if s["name"] == "scheduler"]
        assert await batcher.flush(timeout=60)
    assert scheduler["jobs_done"] + scheduler["jobs_failed"] == MAX_BURST
    assert batcher.statistics().events_saved > 0.9 * batcher.statistics().events_emitted


@pytest.mark.parametrize("count", [0, -1, MAX_BURST + 1, True, 2.5, "10"])
async def test_burst_refuses_counts_outside_1_to_10000(tmp_path: Path, count: Any) -> None:
    farm = DemoFarm(SSEEventBatcher(store=None, config=batcher_config(tmp_path)), rate=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="from 1 to 10000"):
        farm.burst(count)


async def test_burst_after_stop_raises_worker_closed(store: PostgresStore, tmp_path: Path) -> None:
    async with running_batcher(store, tmp_path) as (batcher, _):
        farm = DemoFarm(batcher, rate=0)
        async with farm:
            pass
        await farm.aclose()  # harmless twice
        with pytest.raises(WorkerClosedError):
            farm.burst(5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": -1}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"speed": 0}, "speed"),
        ({"failure_rate": 2}, "failure"),
    ],
)
def test_farm_refuses_settings_out_of_range(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    batcher = SSEEventBatcher(store=None, config=batcher_config(tmp_path))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        DemoFarm(batcher, **kwargs)
