"""The on-disk queue of batches the store could not take, and the quarantine of refused rows.

``deadletter.jsonl`` holds one batch per line: the JSON list of its messages (``payload`` bytes
are base64, so they round-trip exactly). Each append is fsync'ed before it returns, and the
directory once, when the file is created, so an acknowledged batch survives a power cut. A crash
in the middle of an append leaves a torn last line: it is skipped with a warning (that batch was
never acknowledged), and the next append starts on a fresh line so it cannot be glued to it.

``rejected.jsonl`` holds the messages PostgreSQL refused, one per line with the reason. They are
poison: never retried automatically, kept for a human to read.

The methods block on the disk: the batcher calls them through ``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import msgspec

from sse_batcher.batcher.events import Message
from sse_batcher.batcher.protocols import Rejected

__all__ = ["DeadLetterFile"]

logger = logging.getLogger(__name__)

DEADLETTER_NAME: Final = "deadletter.jsonl"
REJECTED_NAME: Final = "rejected.jsonl"

_ENCODER: Final = msgspec.json.Encoder()
_BATCH_DECODER: Final = msgspec.json.Decoder(list[Message])


class _Quarantined(msgspec.Struct, frozen=True):
    rejected_at: float
    reason: str
    message: Message


_QUARANTINED_DECODER: Final = msgspec.json.Decoder(_Quarantined)


def _on_disk(message: Message) -> Message:
    """``message`` as a file keeps it: without the events' keys and seqs, which only repeat the payload.

    Read back, the payload is then the one account of its events, whatever wrote the line.
    """
    if not message.event_keys:
        return message
    return msgspec.structs.replace(message, event_keys=(), event_seqs=())


class DeadLetterFile:
    """Batches waiting for the store, in order, under ``directory`` (created if missing)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._path = directory / DEADLETTER_NAME
        self._rejected_path = directory / REJECTED_NAME
        # The methods run on worker threads; one at a time keeps appends and clear() whole.
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The dead-letter file."""
        return self._path

    @property
    def rejected_path(self) -> Path:
        """The quarantine file of refused messages."""
        return self._rejected_path

    def append(self, messages: Sequence[Message]) -> None:
        """Append one batch and fsync it; when this returns, the batch is on disk.

        Raises:
            OSError: the disk refused (full, read-only, ...).
        """
        line = _ENCODER.encode([_on_disk(m) for m in messages]) + b"\n"
        with self._lock:
            self._append_line(self._path, line)

    def batches(self) -> list[list[Message]]:
        """Return every batch the file holds, oldest first. Unreadable lines are skipped and logged.

        Raises:
            OSError: the file exists but cannot be read.
        """
        with self._lock:
            lines = self._read_lines(self._path)
        batches = []
        for number, line in enumerate(lines, 1):
            try:
                batches.append(_BATCH_DECODER.decode(line))
            except msgspec.DecodeError as exc:
                torn = number == len(lines)
                logger.warning(
                    "skipping %s line %s of %s: %s", "torn last" if torn else "unreadable", number, self._path, exc
                )
        return batches

    def count_batches(self) -> int:
        """Return how many batches (lines) the file holds, a torn last line included.

        Raises:
            OSError: the file exists but cannot be read.
        """
        with self._lock:
            return len(self._read_lines(self._path))

    def clear(self) -> None:
        """Empty the file (and fsync), once its batches are stored.

        Raises:
            OSError: the disk refused.
        """
        with self._lock:
            if not self._path.exists():
                return
            with self._path.open("r+b") as file:
                file.truncate(0)
                file.flush()
                os.fsync(file.fileno())

    def adopt(self, other: DeadLetterFile) -> int:
        """Move every readable batch of ``other`` (a file no process writes to) to the end of this one.

        Appended and fsync'ed first, then ``other`` is emptied: a crash in between leaves the batches
        in both files, and the idempotency keys make the second write-back store nothing twice.
        Returns how many batches moved.

        Raises:
            OSError: either file refused.
        """
        batches = other.batches()
        if batches:
            data = b"".join(_ENCODER.encode(batch) + b"\n" for batch in batches)
            with self._lock:
                self._append_line(self._path, data)
        other.clear()
        return len(batches)

    def quarantine(self, rejected: Sequence[Rejected]) -> None:
        """Append refused messages, with their reasons, to the quarantine file, and fsync.

        Raises:
            OSError: the disk refused.
        """
        if not rejected:
            return
        now = time.time()
        lines = b"".join(
            _ENCODER.encode(_Quarantined(rejected_at=now, reason=item.reason, message=_on_disk(item.message))) + b"\n"
            for item in rejected
        )
        with self._lock:
            self._append_line(self._rejected_path, lines)

    def quarantined(self) -> list[Rejected]:
        """Return the messages in the quarantine file, oldest first (unreadable lines skipped).

        Raises:
            OSError: the file exists but cannot be read.
        """
        with self._lock:
            lines = self._read_lines(self._rejected_path)
        result = []
        for line in lines:
            try:
                item = _QUARANTINED_DECODER.decode(line)
            except msgspec.DecodeError as exc:
                logger.warning("skipping an unreadable line of %s: %s", self._rejected_path, exc)
                continue
            result.append(Rejected(message=item.message, reason=item.reason))
        return result

    def _append_line(self, path: Path, data: bytes) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        with path.open("a+b") as file:
            file.seek(0, os.SEEK_END)
            if file.tell() > 0:
                file.seek(-1, os.SEEK_END)
                if file.read(1) != b"\n":
                    # A torn line from a crash: end it, so this batch starts on a line of its own.
                    data = b"\n" + data
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if created:
            # The new directory entry must be durable too, or the file may vanish after a crash.
            _fsync_directory(self._directory)

    @staticmethod
    def _read_lines(path: Path) -> list[bytes]:
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):  # no file (a file in the directory's place holds none)
            return []
        return [line for line in data.split(b"\n") if line.strip()]


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
