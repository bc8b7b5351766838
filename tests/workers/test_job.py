from __future__ import annotations

import threading

import pytest

from sse_batcher.workers import JobIdAllocator
from sse_batcher.workers.job import JobSpec, completed_data, failed_data, started_data


def test_ids_are_unique_when_allocated_from_many_threads() -> None:
    ids = JobIdAllocator()
    seen: list[list[int]] = [[] for _ in range(8)]

    def allocate(n: int) -> None:
        for _ in range(500):
            seen[n].append(ids.allocate())
        seen[n].extend(ids.allocate_many(50))

    threads = [threading.Thread(target=allocate, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [i for chunk in seen for i in chunk]
    assert sorted(flat) == list(range(1, 8 * 550 + 1))


def test_allocate_many_hands_out_a_consecutive_block() -> None:
    ids = JobIdAllocator(start=10)
    assert list(ids.allocate_many(3)) == [10, 11, 12]
    assert ids.allocate() == 13
    with pytest.raises(ValueError, match="start"):
        JobIdAllocator(start=0)


def test_event_data_is_bounded_so_a_huge_message_cannot_lose_the_event() -> None:
    spec = JobSpec(7, "IMG_2041.jpg", None)
    failed = failed_data(spec, 1.23456, "OSError", "x" * 10_000)
    assert len(failed["error_message"]) == 500
    assert failed["error_message"].endswith("…")
    assert failed["duration_seconds"] == 1.235
    completed = completed_data(spec, 0.5, "y" * 1000)
    assert len(completed["result"]) == 200
    assert completed_data(spec, 0.5, None)["result"] == ""
    assert started_data(spec).keys() == {"job_id", "name", "queued_seconds"}
