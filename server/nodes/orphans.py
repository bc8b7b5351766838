"""Dead-letter files no running process will write back, found at start and moved into this node's own.

Each process writes its dead-letter file in its slot (``data_dir/slots/slot-<i>/deadletter``), and
in a live A/B arm B writes one more (``slot-<i>/ab-arm-b/deadletter``). Two kinds are then left
for no one: the slots above the current ``--workers`` count after scaling down, and arm B's file
once ``SSE_BATCH_STRATEGY_B`` is unset. Their events were answered as kept, so at start a node
moves every such file into its own dead-letter file (arm A's), whose write-back runs first, with the
retries and the order that file has anyway.

Exactly once: a slot's file is taken only under that slot's ``flock``, so a slot a live process
holds is left to it, and two starting processes never both take one file. Slots below the
``--workers`` count are left to the workers that take them (each writes its own file back), and a
slot is locked only when it holds a non-empty file, so a worker starting next door rarely finds its
slot briefly taken (it would then take the next free one: nothing is lost either way). The move appends and
fsyncs before it empties the orphan, so a crash in between leaves the batches in both files, and
the idempotency keys make the second write-back store nothing.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Final

from sse_batcher.batcher.log.deadletter import DeadLetterFile
from sse_batcher.server.nodes.node import NodeSlot

__all__ = ["ARM_B_DIR", "adopt_orphans"]

logger = logging.getLogger(__name__)

# Where arm B of a live A/B keeps its data (its dead-letter directory), under the slot's directory.
ARM_B_DIR: Final = "ab-arm-b"
_DEADLETTER_DIR: Final = "deadletter"
_SLOT_RE: Final = re.compile(r"slot-(\d+)")


def adopt_orphans(slot: NodeSlot, data_dir: Path, *, ab: bool, workers: int = 1) -> int:
    """Move the dead-letter files no process will write back into ``slot``'s own; return the batches moved.

    ``ab`` says this process runs arm B itself (its slot's arm B file is then in use); slots below
    ``workers`` belong to this server's workers. Blocks on the disk: call it through a worker thread.

    A file that cannot be moved is logged and left for the next start.
    """
    mine = DeadLetterFile(slot.directory / _DEADLETTER_DIR)
    moved = 0 if ab else _move(mine, slot.directory / ARM_B_DIR / _DEADLETTER_DIR)
    root = data_dir / "slots"
    indices = sorted(int(m.group(1)) for p in root.glob("slot-*") if (m := _SLOT_RE.fullmatch(p.name)))
    for index in indices:
        files = _files(root / f"slot-{index}")
        if index == slot.index or index < workers or not any(_holds_batches(f) for f in files):
            continue
        try:
            other = NodeSlot.try_take(data_dir, index)
        except OSError as exc:
            logger.error("could not lock slot %d under %s to take its dead-letter file: %s", index, root, exc)
            continue
        if other is None:
            continue  # a live process holds it and writes its files back itself
        with other:
            for directory in files:
                moved += _move(mine, directory)
    return moved


def _files(slot_directory: Path) -> tuple[Path, Path]:
    """The dead-letter directories of a slot: its own, and its arm B's."""
    return slot_directory / _DEADLETTER_DIR, slot_directory / ARM_B_DIR / _DEADLETTER_DIR


def _holds_batches(directory: Path) -> bool:
    try:
        return DeadLetterFile(directory).path.stat().st_size > 0
    except OSError:  # missing, or a file where a directory should be: nothing to take
        return False


def _move(mine: DeadLetterFile, directory: Path) -> int:
    orphan = DeadLetterFile(directory)
    if not orphan.path.exists():
        return 0
    try:
        moved = mine.adopt(orphan)
    except OSError as exc:
        # Left where it is, for the next start: a disk problem must not keep this node from serving.
        logger.error("could not take the orphaned dead-letter file %s into %s: %s", orphan.path, mine.path, exc)
        return 0
    if moved:
        logger.warning("took %d batches from the orphaned dead-letter file %s into %s", moved, orphan.path, mine.path)
    return moved
