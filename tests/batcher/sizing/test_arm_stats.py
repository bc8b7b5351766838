"""What the live A/B reports (``batcher/sizing/_arm_stats.py``): both arms' counters added into one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sse_batcher.batcher import BatcherConfig, SSEEventBatcher
from sse_batcher.batcher.sizing._arm_stats import summed_stats
from tests.batcher.sizing.test_split import UnusedStore


def test_a_flag_or_error_of_arm_b_is_not_hidden_behind_arm_as(tmp_path: Path) -> None:
    quiet = SSEEventBatcher(UnusedStore(), BatcherConfig(data_dir=tmp_path)).statistics()
    troubled = replace(quiet, kept_on_disk=True, held_batches=2, dead_letter_error="cannot append to /x: full")
    for a, b in ((quiet, troubled), (troubled, quiet)):
        summed = summed_stats(a, b)
        assert (summed.kept_on_disk, summed.held_batches, summed.dead_letter_error) == (
            True,
            2,
            "cannot append to /x: full",
        )
    assert summed_stats(quiet, quiet).kept_on_disk is False
