"""One campaign, start to end: cluster up, clients and faults for ``seconds``, heal, settle, check.

The end matters as much as the faults: every fault is undone, every node brought back and given
time to write back its dead-letter files, the publishers finish their retries, and only then are
the nodes stopped gracefully and the store read. What is still missing then is missing for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench.chaos.checker import CheckResult, check
from bench.chaos.clients import PublisherSpec, SubscriberSpec, publish_loop, subscribe_loop
from bench.chaos.cluster import COALESCED_TYPE, Cluster, Node, cluster
from bench.chaos.faults import FAULT_KINDS, run_faults
from bench.chaos.history import History, StoredEvent, StoredMessage, Stuck
from sse_batcher.server.client import unroll

__all__ = ["CampaignResult", "run_campaign"]

PUBLISHERS = (
    PublisherSpec(name="wk", wait=True, keyed=True),
    PublisherSpec(name="w", wait=True, keyed=False),
    PublisherSpec(name="k", wait=False, keyed=True),
    PublisherSpec(name="p", wait=False, keyed=False),
    PublisherSpec(name="big", wait=False, keyed=False, max_events=20),
    PublisherSpec(name="co", wait=False, keyed=False, event_type=COALESCED_TYPE),
)
SUBSCRIBERS = (
    SubscriberSpec(name="s1", resume=True),
    SubscriberSpec(name="s2", resume=True),
    SubscriberSpec(name="live", resume=False),
)
_SETTLE_SECONDS = 45.0
_STUCK_SECONDS = 15.0
_CLIENT_STOP_SECONDS = 40.0


@dataclass(slots=True, kw_only=True)
class CampaignResult:
    history: History
    result: CheckResult
    kinds: list[str]
    leftovers: dict[str, int] = field(default_factory=dict)  # dead-letter file -> lines never written back
    logs: Path | None = None


async def run_campaign(
    seed: int,
    seconds: float,
    *,
    nodes: int = 3,
    kinds: list[str] | None = None,
    logs: Path | None = None,
    whole_rounds: bool = False,
) -> CampaignResult:
    """Run the campaign and check its history; node logs are copied to ``logs`` when given.

    ``whole_rounds``: finish the deck begun when ``seconds`` run out (see ``faults.run_faults``).
    """
    kinds = kinds or list(FAULT_KINDS)
    history = History(seed=seed, coalesced_types=frozenset({COALESCED_TYPE}))
    rng = random.Random(seed)
    async with cluster(history, nodes=nodes) as the_cluster:
        history.started = time.time()
        watcher = asyncio.create_task(the_cluster.watch())
        stop_publishers, stop_subscribers = asyncio.Event(), asyncio.Event()
        publishers = [
            asyncio.create_task(publish_loop(the_cluster, spec, random.Random(rng.random()), stop_publishers))
            for spec in PUBLISHERS
        ]
        subscribers = [
            asyncio.create_task(subscribe_loop(the_cluster, spec, random.Random(rng.random()), stop_subscribers))
            for spec in SUBSCRIBERS
        ]
        try:
            until = time.monotonic() + seconds
            await run_faults(the_cluster, rng, until, kinds=kinds, whole_rounds=whole_rounds)
            await _heal(the_cluster)
            stop_publishers.set()
            await _finish(publishers, _CLIENT_STOP_SECONDS)
            await _settle(the_cluster)
            await asyncio.sleep(3.0)  # let the subscribers take the last messages
            stop_subscribers.set()
            await _finish(subscribers, 15.0)
        finally:
            stop_publishers.set()
            stop_subscribers.set()
            await _finish([*publishers, *subscribers], 0)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await asyncio.gather(*(node.stop() for node in the_cluster.nodes), return_exceptions=True)
            history.ended = time.time()
        history.stored = await _read_store(the_cluster.dsn)
        leftovers = _collect(the_cluster.nodes, logs)
    return CampaignResult(history=history, result=check(history), kinds=kinds, leftovers=leftovers, logs=logs)


def _collect(nodes: list[Node], logs: Path | None) -> dict[str, int]:
    """The dead-letter files still holding batches (path -> batches); copy them and the node logs to ``logs``."""
    leftovers = {}
    for node in nodes:
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
            shutil.copy(node.log, logs / f"{node.name}.log")
        for path in node.deadletter_files():
            lines = sum(1 for line in path.read_bytes().splitlines() if line.strip())
            if lines:
                name = str(path.relative_to(node.data_dir.parent))
                leftovers[name] = lines
                if logs is not None:
                    shutil.copy(path, logs / name.replace("/", "_"))
    return leftovers


async def _heal(the_cluster: Cluster) -> None:
    """Undo whatever fault may be left, bring every node back and wait until they are healthy.

    A node still unhealthy after ``_STUCK_SECONDS`` is recorded as stuck and restarted (SIGTERM), as
    a supervisor with a health check would, so that its dead-letter files are written back.
    """
    if not the_cluster.pg.running:
        await asyncio.to_thread(the_cluster.pg.start_again)
    for node in the_cluster.nodes:
        node.proxy.heal()
        node.signal_tree(signal.SIGCONT)
        if node.process is None or node.process.poll() is not None:
            node.down = True
            node.process = None
            node.start()
    await the_cluster.wait_healthy(timeout=_STUCK_SECONDS)
    for node in the_cluster.nodes:
        if not await node.healthy(the_cluster.http):
            the_cluster.history.stuck.append(Stuck(node=node.name, at=time.time(), log_tail=node.log_tail()))
            await node.stop()
            node.start()
    await the_cluster.wait_healthy(timeout=60)


async def _finish(tasks: list[asyncio.Task[None]], timeout: float) -> None:
    if timeout > 0:
        await asyncio.wait(tasks, timeout=timeout)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _settle(the_cluster: Cluster) -> None:
    """Wait until the newest id and every dead-letter file stop changing for a few seconds (bounded)."""
    deadline = time.monotonic() + _SETTLE_SECONDS
    last: tuple[object, ...] = ()
    quiet_since = time.monotonic()
    connection = await asyncpg.connect(the_cluster.dsn)
    try:
        while time.monotonic() < deadline and time.monotonic() - quiet_since < 4.0:
            newest = await connection.fetchval("SELECT max(id) FROM sse_events")
            files = tuple(p.stat().st_size for n in the_cluster.nodes for p in n.deadletter_files())
            state = (newest, files)
            if state != last:
                last, quiet_since = state, time.monotonic()
            await asyncio.sleep(0.5)
    finally:
        await connection.close()


async def _read_store(dsn: str) -> list[StoredMessage]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT id, extract(epoch FROM created_at)::float8 AS at, data::text AS data FROM sse_events ORDER BY id"
        )
    finally:
        await connection.close()
    stored = []
    for row in rows:
        events = []
        for event in unroll(row["data"]):
            data = event.get("data")
            if isinstance(data, dict) and isinstance(data.get("m"), str):
                events.append(StoredEvent(marker=data["m"], event_type=str(event.get("type")), key=event.get("key")))
        stored.append(StoredMessage(id=row["id"], created_at=row["at"], events=tuple(events)))
    return stored
