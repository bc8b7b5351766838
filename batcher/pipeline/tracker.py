"""FlushTracker: who waits for what to be stored, and telling them when it is.

Two kinds of waiter, both resolved by the flush loop from what the writer returned:

- ``flush()`` waits until every event accepted before the call has been handled (stored, or on disk
  while the store is down, and then written back). Each queue of the buffer is FIFO, so counting
  handled events against the buffer's marks is enough.
- Acknowledged publishing (``emit(..., wait=True)``, ``POST /api/events?wait=stored``) waits for
  particular events to be *committed*, and learns their message ids. A waiter is registered under
  the buffer's lock at the moment its event gets its seq (``expect``), so no flush can commit the
  event first. An event belongs to the message of its (source, type) whose seq range holds it: a
  batch's aggregates are cut per (source, type) in seq order, so ranges of one group never overlap.
  Seqs restart with every batcher run, so a message answers waiters only when it carries this run's
  ``origin``: the write-back of a dead-letter file left by an earlier run resolves nothing here.
  An event a rule superseded or folded is named in its message's ``absorbed`` seqs instead, which
  are taken first, since such a seq can lie inside the range of another part of its group.

Waiters are ``concurrent.futures.Future`` objects, so a worker thread can block on one while the
event loop resolves it. The caller's side, putting events with waiters and waiting for them, is
``acks.py``.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio

from sse_batcher.batcher.errors import BatcherClosedError, IdempotencyConflictError, StoreRejectedError
from sse_batcher.batcher.events import Message
from sse_batcher.batcher.pipeline.writer import Written

__all__ = ["BUFFERED", "KEPT", "Ack", "FlushTracker"]

# Where an acknowledged event stands before it is stored: in memory, or in the dead-letter file.
BUFFERED = "buffered"
KEPT = "kept"


@dataclass(slots=True)
class Ack:
    """One acknowledged event: its future message id, and whether it is kept on disk meanwhile."""

    seq: int
    future: concurrent.futures.Future[int] = field(default_factory=concurrent.futures.Future)
    state: str = BUFFERED


class FlushTracker:
    """Flush waiters (loop only) and acknowledgement waiters (any thread registers, the loop resolves)."""

    def __init__(self, origin: str) -> None:
        self._origin = origin
        self._handled = (0, 0)  # batched and bypass events stored or kept on disk so far
        self._flush_waiters: list[tuple[tuple[int, int], anyio.Event]] = []
        self._lock = threading.Lock()
        # (source, type) -> seqs waited for (sorted, since seqs only grow) and their acks.
        self._acks: dict[tuple[str, str], tuple[list[int], dict[int, Ack]]] = {}
        self._ack_count = 0
        # How each coroutine waiting for its acks is told to stop waiting (end_waits); None once told.
        self._ending: set[Callable[[], None]] | None = set()

    # -- flush() -----------------------------------------------------------------------------
    def handled(self, events: int, *, bypass: bool) -> None:
        """Count ``events`` taken from the buffer and handed to the writer (stored or kept on disk)."""
        normal, bypassed = self._handled
        self._handled = (normal, bypassed + events) if bypass else (normal + events, bypassed)

    def reached(self, target: tuple[int, int], behind: bool) -> bool:
        """Whether everything up to the buffer marks ``target`` is handled, none of it still waiting for
        the store (``behind``: on disk, or held in memory)."""
        handled = self._handled
        return handled[0] >= target[0] and handled[1] >= target[1] and not behind

    def add_flush_waiter(self, target: tuple[int, int]) -> anyio.Event:
        done = anyio.Event()
        self._flush_waiters.append((target, done))
        return done

    def release_flush_waiters(self, behind: bool, *, closed: bool = False) -> None:
        """Wake every flush() whose target is reached (all of them when ``closed``)."""
        if not self._flush_waiters:
            return
        keep = []
        for target, done in self._flush_waiters:
            if closed or self.reached(target, behind):
                done.set()
            else:
                keep.append((target, done))
        self._flush_waiters = keep

    # -- acknowledgements ---------------------------------------------------------------------
    def expect(self, groups: Sequence[tuple[str, str]]) -> tuple[list[Ack], Callable[[int], None]]:
        """Return one :class:`Ack` per ``(source, type)`` of the events about to be accepted, in order,
        and the ``on_seq`` callback the buffer calls with each event's seq (under its lock)."""
        acks = [Ack(seq=0) for _ in groups]
        unassigned = iter(zip(acks, groups, strict=True))

        def register(seq: int) -> None:
            ack, group = next(unassigned)
            ack.seq = seq
            with self._lock:
                seqs, by_seq = self._acks.setdefault(group, ([], {}))
                seqs.append(seq)
                by_seq[seq] = ack
                self._ack_count += 1

        return acks, register

    def on_end_waits(self, end: Callable[[], None]) -> Callable[[], None] | None:
        """Have :meth:`end_waits` call ``end``; return what unregisters it, or None when waits have
        ended already (the caller answers at once)."""
        with self._lock:
            if self._ending is None:
                return None
            self._ending.add(end)
        ending = self._ending

        def forget() -> None:
            with self._lock:
                ending.discard(end)

        return forget

    def end_waits(self) -> None:
        """Tell every coroutine waiting for acks to stop waiting and answer with what it knows, now
        and from now on; the acks themselves still resolve when their events are stored."""
        with self._lock:
            ending, self._ending = self._ending, None
        for end in ending or ():
            end()

    @property
    def waiting(self) -> int:
        """Acknowledgement waiters not yet resolved."""
        return self._ack_count

    def settle(self, written: Written) -> None:
        """Resolve the acks of everything ``written`` committed; mark those it kept on disk."""
        if not self._ack_count:
            return
        by_key: dict[str, list[Message]] = {}
        for message in written.messages:
            by_key.setdefault(message.idem_key, []).append(message)
        # A key can stand for several messages: a publish retried within one batch, by its
        # idempotency key, stores one row; every copy's waiter gets that row's id.
        committed = [(m, s.id) for s in written.stored for m in by_key.get(s.idem_key, ())]
        # Singles first: a critical or bypass event of a group can sit inside the seq range of that
        # group's aggregate; taken out first, the aggregate's range no longer holds it.
        committed.sort(key=lambda pair: pair[0].event_count != 1)
        with self._lock:
            # Refusals first: a key conflict shares its key with the stored message it conflicts with.
            refusals = [
                (
                    refused.message,
                    IdempotencyConflictError(refused.reason, refused.message.idem_key)
                    if refused.conflict
                    else StoreRejectedError(f"PostgreSQL refused the event: {refused.reason}"),
                )
                for refused in written.rejected
            ]
            for take in (self._take_absorbed, self._take):
                for message, error in refusals:
                    for ack in take(message):
                        if not ack.future.done():
                            ack.future.set_exception(error)
                for message, message_id in committed:
                    for ack in take(message):
                        if not ack.future.done():
                            ack.future.set_result(message_id)
            for message in written.kept:
                for ack in self._find(message):
                    ack.state = KEPT

    def close(self) -> None:
        """Fail every waiter left: the batcher closed. Those kept on disk keep their ``kept`` state."""
        with self._lock:
            groups, self._acks, self._ack_count = self._acks, {}, 0
        for _, acks in groups.values():
            for ack in acks.values():
                if not ack.future.done():
                    ack.future.set_exception(BatcherClosedError("the batcher closed before the event was stored"))

    def _range(self, message: Message) -> tuple[list[int], dict[int, Ack], int, int] | None:
        if message.origin != self._origin:
            return None  # another run's message: its seqs are not this run's
        group = self._acks.get((message.source, message.event_type))
        if group is None:
            return None
        seqs, acks = group
        lo = bisect.bisect_left(seqs, message.first_seq)
        hi = bisect.bisect_right(seqs, message.last_seq)
        return seqs, acks, lo, hi

    def _find(self, message: Message) -> list[Ack]:
        found = self._range(message)
        if found is None:
            return []
        seqs, acks, lo, hi = found
        absorbed = [acks[s] for s in message.absorbed if s in acks]
        return [acks[s] for s in seqs[lo:hi]] + absorbed

    def _take_absorbed(self, message: Message) -> list[Ack]:
        if not message.absorbed:
            return []
        found = self._range(message)
        if found is None:
            return []
        seqs, acks, _, _ = found
        taken = []
        for seq in message.absorbed:
            ack = acks.pop(seq, None)
            if ack is not None:
                del seqs[bisect.bisect_left(seqs, seq)]
                taken.append(ack)
        self._ack_count -= len(taken)
        if not seqs:
            del self._acks[(message.source, message.event_type)]
        return taken

    def _take(self, message: Message) -> list[Ack]:
        found = self._range(message)
        if found is None:
            return []
        seqs, acks, lo, hi = found
        taken = [acks.pop(s) for s in seqs[lo:hi]]
        del seqs[lo:hi]
        self._ack_count -= len(taken)
        if not seqs:
            del self._acks[(message.source, message.event_type)]
        return taken
