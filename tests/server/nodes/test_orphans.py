"""Orphaned dead-letter files (``server/nodes/orphans.py``): the files of slots no process runs in and of an
A/B arm that is switched off are found at start and written back once."""

from __future__ import annotations

from pathlib import Path

import msgspec

from sse_batcher.batcher.events import Event
from sse_batcher.batcher.log.deadletter import DeadLetterFile
from sse_batcher.batcher.pipeline.aggregate import aggregate
from sse_batcher.server.nodes.node import NodeSlot
from sse_batcher.server.nodes.orphans import adopt_orphans
from tests.batcher.pipeline.test_facade import stored_rows, stored_seqs
from tests.server.live import make_config, serving


def left_behind(directory: Path, origin: str, seqs: range) -> None:
    events = [Event("T", "w", seq, 1.0, msgspec.Raw(b'{"seq":%d}' % seq)) for seq in seqs]
    DeadLetterFile(directory).append(aggregate(events, origin))


async def test_files_of_a_slot_above_the_workers_and_of_a_switched_off_arm_are_written_back_once(
    dsn: str, tmp_path: Path
) -> None:
    slots = tmp_path / "slots"
    left_behind(slots / "slot-3" / "deadletter", "scaled-down", range(1, 3))
    left_behind(slots / "slot-3" / "ab-arm-b" / "deadletter", "scaled-down-b", range(3, 4))
    left_behind(slots / "slot-0" / "ab-arm-b" / "deadletter", "arm-b", range(4, 6))
    async with serving(make_config(dsn, tmp_path)) as live:
        assert await live.runtime.batcher.flush(timeout=10)
    assert sorted(stored_seqs(await stored_rows(dsn))) == [1, 2, 3, 4, 5]
    for directory in ("slot-3/deadletter", "slot-3/ab-arm-b/deadletter", "slot-0/ab-arm-b/deadletter"):
        assert DeadLetterFile(slots / directory).count_batches() == 0
    async with serving(make_config(dsn, tmp_path)):
        pass
    assert len(await stored_rows(dsn)) == 3  # nothing twice at the next start


def test_a_slot_another_process_holds_is_left_to_it(tmp_path: Path) -> None:
    left_behind(tmp_path / "slots" / "slot-1" / "deadletter", "busy", range(1, 3))
    with NodeSlot.take(tmp_path, 0) as mine, NodeSlot.take(tmp_path, 1):
        assert adopt_orphans(mine, tmp_path, ab=False) == 0
    with NodeSlot.take(tmp_path, 0) as mine:
        assert adopt_orphans(mine, tmp_path, ab=False) == 1
        assert DeadLetterFile(mine.directory / "deadletter").count_batches() == 1


def test_a_running_arm_b_keeps_its_own_file(tmp_path: Path) -> None:
    left_behind(tmp_path / "slots" / "slot-0" / "ab-arm-b" / "deadletter", "arm-b", range(1, 3))
    with NodeSlot.take(tmp_path, 0) as mine:
        assert adopt_orphans(mine, tmp_path, ab=True) == 0
        assert adopt_orphans(mine, tmp_path, ab=False) == 1


def test_the_slots_of_this_servers_workers_are_left_to_them(tmp_path: Path) -> None:
    left_behind(tmp_path / "slots" / "slot-1" / "deadletter", "sibling", range(1, 3))
    left_behind(tmp_path / "slots" / "slot-2" / "deadletter", "scaled-down", range(3, 5))
    with NodeSlot.take(tmp_path, 0) as mine:
        assert adopt_orphans(mine, tmp_path, ab=False, workers=2) == 1
    assert DeadLetterFile(tmp_path / "slots" / "slot-1" / "deadletter").count_batches() == 1
