"""Model-based test of the batcher against a plain model: a list of accepted events.

A Hypothesis state machine emits (one by one, many at once, acknowledged), flushes, breaks the
store in every way the writer must survive (PostgreSQL stopped and started, a write refused, a
COMMIT whose answer is lost, the store's connections terminated) and restarts the batcher on the
same data directory (a short ``aclose`` while the store is down leaves a dead-letter file that the
next batcher writes back). After every flush that reports success, and at the end, the rows in
``sse_events`` must hold every accepted event exactly once (each event carries a unique marker;
seqs restart with each batcher), each ``(source, type)`` in emit order when read in id order, and
every acknowledged event under the id it was acknowledged with.

The batcher runs on an event loop in a background thread (an anyio blocking portal); the rules are
plain sync code, so Hypothesis drives it as it would any object. The CI run is derandomized (the
same examples every time); the slow run is random and prints a ``@reproduce_failure`` blob with
the falsifying steps.
"""

from __future__ import annotations

import collections
import tempfile
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import asyncpg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    precondition,
    rule,
    run_state_machine_as_test,
)

from sse_batcher.batcher import AckTimeoutError, BufferFullError, SSEEventBatcher
from sse_batcher.server.client import unroll
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres
from tests.batcher.pipeline.test_facade import FaultyStore
from tests.collect import batcher_config
from tests.pg import fresh_database, started_store

# Normal sources share types, so aggregates, critical events and unbatched JOB_FAILED interleave
# within one (source, type). A worker that bypasses batching does so for all its events (docs/guide.md),
# so bypassed events get a source of their own: their order is kept among themselves.
SOURCES = ("s0", "s1")
TYPES = ("A", "B", "JOB_FAILED")
DIRECT = ("direct", "D")

groups = st.tuples(st.sampled_from(SOURCES), st.sampled_from(TYPES))
ACK_TIMEOUT = 0.5  # an acknowledged emit while the store is down answers AckTimeoutError this fast


@asynccontextmanager
async def _hosted(batcher: SSEEventBatcher, close_timeout: list[float]) -> AsyncIterator[SSEEventBatcher]:
    # Started and closed in one task: the batcher's task group must be entered and left there.
    await batcher.start()
    try:
        yield batcher
    finally:
        await batcher.aclose(timeout=close_timeout[0])


class BatcherModel(RuleBasedStateMachine):
    """The batcher, its store and PostgreSQL, against the list of what was accepted."""

    def __init__(self, pg_server: EmbeddedPostgres, root: Path) -> None:
        super().__init__()
        self.pg = pg_server
        self.data_dir = Path(tempfile.mkdtemp(dir=root))
        self.stack = ExitStack()
        self.portal = self.stack.enter_context(anyio.from_thread.start_blocking_portal())
        self.dsn: str = self.stack.enter_context(self.portal.wrap_async_context_manager(fresh_database(pg_server)))
        real = self.stack.enter_context(
            self.portal.wrap_async_context_manager(started_store(self.dsn, timeout_seconds=1.0))
        )
        self.store = FaultyStore(real)
        self.pg_up = True
        self.marker = 0
        self.accepted: dict[int, tuple[str, str]] = {}  # marker -> (source, type), in emit order
        self.acked: dict[int, int] = {}  # marker -> the message id it was acknowledged with
        self.incarnation: ExitStack | None = None
        # The aclose() timeout of the running batcher, set by the rule that closes it (a cell the
        # hosting task reads when it leaves).
        self.close_timeout = [5.0]
        self.batcher = self._start_batcher()

    # -- the system under test ---------------------------------------------------------------
    def _start_batcher(self) -> SSEEventBatcher:
        cfg = batcher_config(self.data_dir, batch_size=4, batch_timeout_seconds=0.05, max_retries=1)
        stack = ExitStack()
        self.close_timeout = [5.0]
        batcher = stack.enter_context(
            self.portal.wrap_async_context_manager(_hosted(SSEEventBatcher(self.store, cfg), self.close_timeout))
        )
        self.incarnation = stack
        return batcher

    def _next(self, group: tuple[str, str]) -> dict[str, Any]:
        self.marker += 1
        return {"type": group[1], "source": group[0], "data": {"m": self.marker}}

    def _accept(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.accepted[event["data"]["m"]] = (event["source"], event["type"])

    # -- emitting ----------------------------------------------------------------------------
    @rule(group=groups, critical=st.booleans())
    def emit(self, group: tuple[str, str], critical: bool) -> None:
        event = self._next(group)
        priority = "critical" if critical else "normal"
        try:
            self.batcher.emit(event["type"], event["data"], source=event["source"], priority=priority)
        except BufferFullError:
            return
        self._accept([event])

    @rule()
    def emit_unbatched(self) -> None:
        event = self._next(DIRECT)
        try:
            self.batcher.emit(event["type"], event["data"], source=event["source"], batched=False)
        except BufferFullError:
            return
        self._accept([event])

    @rule(chosen=st.lists(st.tuples(groups, st.booleans()), min_size=1, max_size=6))
    def emit_many(self, chosen: list[tuple[tuple[str, str], bool]]) -> None:
        # One call, one lock: a critical event here shares its flush with the batched ones around it.
        events = [self._next(group) | ({"priority": "critical"} if critical else {}) for group, critical in chosen]
        try:
            self.batcher.emit_many(events)
        except BufferFullError:
            return
        self._accept(events)

    @rule(group=groups, criticals=st.lists(st.booleans(), min_size=2, max_size=8))
    def emit_burst(self, group: tuple[str, str], criticals: list[bool]) -> None:
        """A burst of one (source, type), some of it critical: all in one flush, order must hold."""
        events = [self._next(group) | ({"priority": "critical"} if critical else {}) for critical in criticals]
        try:
            self.batcher.emit_many(events)
        except BufferFullError:
            return
        self._accept(events)

    @rule(chosen=st.lists(groups, min_size=1, max_size=4))
    def publish(self, chosen: list[tuple[str, str]]) -> None:
        events = [self._next(group) for group in chosen]
        try:
            ids: list[int | None] = list(self.portal.call(lambda: self.batcher.publish(events, timeout=ACK_TIMEOUT)))
        except AckTimeoutError as exc:
            ids = exc.ids
        except BufferFullError:
            return
        self._accept(events)
        for event, message_id in zip(events, ids, strict=True):
            if message_id is not None:
                self.acked[event["data"]["m"]] = message_id

    @rule(group=groups)
    def emit_and_wait(self, group: tuple[str, str]) -> None:
        event = self._next(group)
        try:
            message_id = self.batcher.emit(
                event["type"], event["data"], source=event["source"], wait=True, timeout=ACK_TIMEOUT
            )
        except AckTimeoutError:
            self._accept([event])  # accepted, not yet committed: it must still be stored once
            return
        except BufferFullError:
            return
        self._accept([event])
        self.acked[event["data"]["m"]] = message_id

    @rule()
    def flush(self) -> None:
        # True: everything accepted so far is stored. (With PostgreSQL stopped after the last
        # write it is True too, but there is nothing to read it from.)
        if self.portal.call(self.batcher.flush, 2.0) and self.pg_up:
            self.check_store()

    # -- faults ------------------------------------------------------------------------------
    @precondition(lambda self: self.pg_up)
    @rule()
    def stop_postgres(self) -> None:
        self.pg.stop()
        self.pg_up = False

    @precondition(lambda self: not self.pg_up)
    @rule()
    def start_postgres(self) -> None:
        self.pg.start_again()
        self.pg_up = True

    @rule(step=st.sampled_from(["fail", "lost"]))
    def inject_fault(self, step: str) -> None:
        """The next write is refused, or commits and loses its answer (the retry must find it)."""
        self.store.plan.append(step)

    @precondition(lambda self: self.pg_up)
    @rule()
    def terminate_store_connections(self) -> None:
        async def terminate() -> None:
            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'sse-batcher' AND datname = current_database()"
                    " AND pid <> pg_backend_pid()"
                )
            finally:
                await conn.close()

        self.portal.call(terminate)

    @rule(close_timeout=st.sampled_from([0.05, 0.3, 5.0]))
    def restart_batcher(self, close_timeout: float) -> None:
        """Close (short: what is not stored goes to the dead-letter file) and start on the same data_dir."""
        self._stop_batcher(close_timeout)
        self.batcher = self._start_batcher()

    def _stop_batcher(self, close_timeout: float) -> None:
        stack, self.incarnation = self.incarnation, None
        if stack is not None:
            self.close_timeout[0] = close_timeout
            stack.close()

    # -- checking ----------------------------------------------------------------------------
    def check_store(self) -> None:
        """Every accepted event stored exactly once, per (source, type) in emit order, acks kept."""
        rows = self.portal.call(self._rows)
        seen: collections.Counter[int] = collections.Counter()
        where: dict[int, int] = {}
        order: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
        for message_id, payload in rows:
            for event in unroll(payload):
                marker = event["data"]["m"]
                seen[marker] += 1
                where[marker] = message_id
                order[(event["source"], event["type"])].append(marker)
        twice = sorted(m for m, n in seen.items() if n > 1)
        assert not twice, f"stored more than once: {twice}"
        unknown = sorted(set(seen) - set(self.accepted))
        assert not unknown, f"stored but never accepted: {unknown}"
        missing = sorted(set(self.accepted) - set(seen))
        assert not missing, f"accepted but not stored: {missing}"
        expected: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
        for marker, group in self.accepted.items():
            expected[group].append(marker)
        for group, markers in expected.items():
            assert order[group] == markers, f"{group} stored out of emit order: {order[group]}"
        wrong = {m: (i, where[m]) for m, i in self.acked.items() if where[m] != i}
        assert not wrong, f"acknowledged under another id (acked, stored): {wrong}"

    async def _rows(self) -> list[tuple[int, str]]:
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch("SELECT id, data::text AS data FROM sse_events ORDER BY id")
        finally:
            await conn.close()
        return [(row["id"], row["data"]) for row in rows]

    def teardown(self) -> None:
        # PostgreSQL comes back whatever happened: the rest of the session shares it.
        try:
            if not self.pg_up:
                self.pg.start_again()
                self.pg_up = True
            self.store.plan.clear()
            flushed = False
            for _ in range(30):  # each flush waits up to 2 s; the dead-letter retry backs off to 5 s
                if self.portal.call(self.batcher.flush, 2.0):
                    flushed = True
                    break
            assert flushed, "flush never succeeded after PostgreSQL came back"
            self.check_store()
            self._stop_batcher(5.0)
            self.check_store()  # closing stores nothing again
        finally:
            self._stop_batcher(5.0)
            self.stack.close()


def _run(pg_server: EmbeddedPostgres, root: Path, config: settings) -> None:
    def factory() -> BatcherModel:
        return BatcherModel(pg_server, root)

    run_state_machine_as_test(factory, settings=config)  # type: ignore[no-untyped-call]


def _settings(**overrides: Any) -> settings:
    values: dict[str, Any] = {
        "deadline": None,
        "database": None,  # no .hypothesis directory in the checkout
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
        "print_blob": True,
    }
    values.update(overrides)
    return settings(**values)


def test_model_small_run_keeps_every_accepted_event_once_in_order(pg_server: EmbeddedPostgres, tmp_path: Path) -> None:
    """A few short, fixed runs (derandomized: the same steps every time), for CI."""
    _run(pg_server, tmp_path, _settings(max_examples=12, stateful_step_count=30, derandomize=True))


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_model_long_run_keeps_every_accepted_event_once_in_order(pg_server: EmbeddedPostgres, tmp_path: Path) -> None:
    """Many random, longer runs; a failure prints the steps and a @reproduce_failure blob."""
    _run(pg_server, tmp_path, _settings(max_examples=60, stateful_step_count=60))
