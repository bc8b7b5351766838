"""BatchWriter: get each batch into the store or, failing that, onto disk; in order, never twice.

The flush loop hands every batch here and gets back a :class:`Written` saying what committed and
what went to disk; the writer never calls back up. A write is retried with jittered backoff, short-cut
by the circuit breaker (:class:`~sse_batcher.batcher.pipeline._retrying.StoreRetries`); a batch
that still fails is appended (fsync'ed) to the dead-letter file, and so is every later batch until
the file has been written back, so order is kept while the store is down. Idempotency keys make every
rewrite (a retry after a lost COMMIT answer, a write-back after a crash) harmless.

When the dead-letter file refuses too (disk full, read-only, a file where its directory should be),
the batch is *held* in memory, in order, and :attr:`BatchWriter.refusing` tells the batcher to refuse
intake (``BufferFullError``) until the held batches are stored or on disk; they are retried on the
write-back clock, the store first. Nothing is lost and the flush loop never sees the ``OSError``:
:attr:`BatchWriter.dead_letter_error` names the file and the error for ``/healthz``.

The writer owns its retry clock (monotonic, so a wall-clock step neither stalls nor hurries a
retry): the flush loop asks :attr:`BatchWriter.next_write_back_at` when to come back, and calls
:meth:`BatchWriter.write_back` then.

Flows one way: flush loop -> writer -> store; what committed goes back as the return value, and the
flush loop hands it on downstream (the log follower, listeners).

Hop 5 of the data flow. Next hop: the store (``sse_batcher.batcher.log.store``), one transaction per batch.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Awaitable, Callable

import anyio

from sse_batcher.batcher.events import Message
from sse_batcher.batcher.log.deadletter import DeadLetterFile
from sse_batcher.batcher.pipeline._retrying import StoreRetries
from sse_batcher.batcher.pipeline._written import Written
from sse_batcher.batcher.pipeline.breaker import CircuitBreaker
from sse_batcher.batcher.protocols import EventStore, WriteResult
from sse_batcher.batcher.stats import Histogram

__all__ = ["BatchWriter", "Written"]

logger = logging.getLogger(__name__)

# The dead-letter file is retried at most this often while the store stays down.
_DEADLETTER_RETRY_MAX_SECONDS = 5.0


class BatchWriter:
    """Store batches through ``store``, or dead-letter them; report what happened as a :class:`Written`.

    Used by one task at a time (the flush loop), so it needs no lock. ``clock`` and ``sleep`` (the
    monotonic clock and ``anyio.sleep``) and ``jitter`` (a factor in [0.5, 1.5)) are for tests.
    """

    def __init__(
        self,
        store: EventStore,
        deadletter: DeadLetterFile,
        *,
        max_retries: int,
        retry_delay_seconds: float,
        breaker: CircuitBreaker | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        jitter: Callable[[], float] = lambda: random.uniform(0.5, 1.5),
    ) -> None:
        self._retries = StoreRetries(
            store,
            max_retries=max_retries,
            retry_delay_seconds=retry_delay_seconds,
            breaker=breaker,
            sleep=sleep,
            jitter=jitter,
        )
        self._deadletter = deadletter
        self._retry_delay = retry_delay_seconds
        self._breaker = breaker
        self._clock = clock
        # Held until handled: if shutdown cancels the write, the batch is kept on disk, not lost.
        self._inflight: list[Message] | None = None
        # Batches neither stored nor on disk (the file refused), oldest first.
        self._held: list[list[Message]] = []
        # Read on every emit: a plain attribute, True while batches are held.
        self.refusing = False
        self.dead_letter_error: str | None = None
        self._on_disk = False  # batches wait in the dead-letter file
        self._next_write_back_at = math.inf  # when to write the file back next (monotonic)
        self._written = 0  # batches of the file already stored by this process
        self._delay = retry_delay_seconds or 0.1
        self.dead_lettered = 0
        self.rejected = 0

    @property
    def breaker(self) -> CircuitBreaker | None:
        return self._breaker

    @property
    def retries(self) -> int:
        """Store writes retried after a failed attempt."""
        return self._retries.retries

    @property
    def failed_writes(self) -> int:
        """Store write attempts that failed, write-backs of the dead-letter file included."""
        return self._retries.failed_writes

    @property
    def latency(self) -> Histogram:
        """How long each successful store write took."""
        return self._retries.latency

    @property
    def on_disk(self) -> bool:
        """True while batches wait in the dead-letter file."""
        return self._on_disk

    @property
    def behind(self) -> bool:
        """True while batches wait for the store: in the dead-letter file, or held in memory."""
        return self._on_disk or self.refusing

    @property
    def held_batches(self) -> int:
        """Batches held in memory because the dead-letter file refused them."""
        return len(self._held)

    @property
    def next_write_back_at(self) -> float:
        """When (monotonic) the file or the held batches should be retried next; inf when none wait."""
        return self._next_write_back_at if self.behind else math.inf

    async def load_dead_letter(self) -> None:
        """Notice a dead-letter file left by an earlier run, so it is written back first.

        A file that cannot be read is treated as holding batches (their order comes first) and
        retried on the write-back clock; the error shows in :attr:`dead_letter_error`.
        """
        try:
            self._on_disk = await anyio.to_thread.run_sync(self._deadletter.count_batches) > 0
        except OSError as exc:
            self._on_disk = True
            self._disk_failed("read", exc)
        self._next_write_back_at = self._clock()

    async def write(self, messages: list[Message], *, closing: bool = False) -> Written:
        """Store ``messages`` or dead-letter them; batches waiting on disk go first, in order.

        ``closing`` (shutdown) allows one attempt only: what fails goes to disk, not lost.
        """
        # Held before anything can wait, and left set if this is cancelled: shutdown then finds it
        # (take_unwritten) and keeps it on disk, even when the cancel came during a write-back.
        self._inflight = messages
        done = Written()
        if self.behind:
            done.extend(await self.write_back())
        if self.behind:
            await self._keep(messages, done)
        else:
            result = await self._retries.write(messages, closing=closing)
            if result is None:
                await self._keep(messages, done)
            else:
                done.extend(await self._handle_result(result, messages))
        self._inflight = None
        return done

    def take_unwritten(self) -> list[list[Message]]:
        """The held batches and the one a cancelled :meth:`write` left, oldest first (shutdown keeps them)."""
        batches, self._held = self._held, []
        self.refusing = False
        if self._inflight:
            batches.append(self._inflight)
        self._inflight = None
        return batches

    async def _handle_result(self, result: WriteResult, messages: list[Message]) -> Written:
        # A key conflict is the client's mistake, answered to its waiter; quarantining it would let
        # a client fill the disk.
        refused = [item for item in result.rejected if not item.conflict]
        if refused:
            self.rejected += len(refused)
            for item in refused:
                logger.error("store refused message %s (%s): %s", item.message.idem_key, item.message.type, item.reason)
            try:
                await anyio.to_thread.run_sync(self._deadletter.quarantine, refused)
            except OSError as exc:
                # Refused rows are never retried; the error lines above are then their only record.
                logger.error("could not quarantine %d refused messages in %s: %s", len(refused),
                             self._deadletter.rejected_path, exc)  # fmt: skip
        return Written(stored=list(result.stored), messages=messages, rejected=list(result.rejected))

    async def _keep(self, messages: list[Message], done: Written) -> None:
        """Put a batch the store did not take in the dead-letter file, or hold it when the file refuses."""
        if self._held or not await self._dead_letter(messages):
            self._held.append(messages)  # behind the batches held already: order is kept
            self.refusing = True
        else:
            done.kept.extend(messages)

    async def _dead_letter(self, messages: list[Message]) -> bool:
        """Append one batch to the file; False (and the retry clock set) when the disk refused."""
        try:
            await anyio.to_thread.run_sync(self._deadletter.append, messages)
        except OSError as exc:
            self._disk_failed("append to", exc)
            return False
        self.dead_letter_error = None
        self.dead_lettered += 1
        if not self._on_disk:
            self._on_disk = True
            self._delay = self._retry_delay or 0.1
            self._next_write_back_at = self._clock() + self._delay
        return True

    def _disk_failed(self, action: str, exc: OSError) -> None:
        if self.dead_letter_error is None:
            logger.error("cannot %s the dead-letter file %s, holding batches in memory: %s",
                         action, self._deadletter.path, exc)  # fmt: skip
        self.dead_letter_error = f"cannot {action} {self._deadletter.path}: {exc}"
        self._retry_later()

    def _retry_later(self) -> None:
        self._delay = min(self._delay * 2, _DEADLETTER_RETRY_MAX_SECONDS)
        self._next_write_back_at = self._clock() + self._delay

    async def keep_on_disk(self, batches: list[list[Message]]) -> list[list[Message]]:
        """Append ``batches`` to the dead-letter file even while being cancelled (shutdown ran out of time).

        Returns the batches now on disk: all of them, unless the disk refused (logged, with how many
        events were lost, since at shutdown nothing else can hold them).
        """
        kept: list[list[Message]] = []
        for index, batch in enumerate(batches):
            try:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._deadletter.append, batch)
            except OSError as exc:
                lost = sum(m.event_count for b in batches[index:] for m in b)
                logger.error("shutdown could not keep %d events in %s: %s", lost, self._deadletter.path, exc)
                break
            self.dead_lettered += 1
            kept.append(batch)
        return kept

    async def write_back(self) -> Written:
        """Write the dead-letter file back in order, then the held batches (to the store while the
        file is empty, else behind it); :attr:`behind` is False afterwards if it all went."""
        done = Written()
        if self._on_disk:
            await self._write_back_file(done)
        had_held = bool(self._held)
        while self._held:
            batch = self._held[0]
            result = None if self._on_disk else await self._retries.write(batch, closing=True)
            if result is not None:
                done.extend(await self._handle_result(result, batch))
            elif await self._dead_letter(batch):
                done.kept.extend(batch)
            else:
                break  # the disk still refuses: retried on the write-back clock
            self._held.pop(0)
        self.refusing = bool(self._held)
        if had_held and not self._held and not self._on_disk:
            self.dead_letter_error = None  # all stored: the file is not needed now
        if not self.behind:
            self._next_write_back_at = math.inf
        return done

    async def _write_back_file(self, done: Written) -> None:
        breaker = self._breaker
        if breaker is not None and not breaker.allow():
            # Open: do not touch the store; come back when the breaker lets a probe through.
            self._next_write_back_at = self._clock() + max(breaker.seconds_until_probe(), 0.01)
            return
        try:
            batches = await anyio.to_thread.run_sync(self._deadletter.batches)
        except OSError as exc:
            self._disk_failed("read", exc)
            return
        for batch in batches[self._written :]:
            try:
                result = await self._retries.store.write(batch)
            except Exception as exc:
                if breaker is not None:
                    breaker.record_failure()
                self._retries.failed_writes += 1
                logger.warning("dead-letter write-back failed, will retry: %s", exc)
                self._retry_later()
                return
            if breaker is not None:
                breaker.record_success()
            self._written += 1
            done.extend(await self._handle_result(result, batch))
        try:
            await anyio.to_thread.run_sync(self._deadletter.clear)
        except OSError as exc:
            self._disk_failed("empty", exc)  # every batch is stored; self._written skips them next time
            return
        self.dead_letter_error = None
        self._written = 0
        self._on_disk = False
