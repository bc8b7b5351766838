"""The fault kinds and their schedule: one fault at a time, drawn from a shuffled deck by a seeded RNG.

Each fault is applied, held for a random while, and undone; then the nodes get a moment to recover
before the next. Drawing from a deck (every kind once, in a random order, then again) rather than
at random guarantees each kind its share however short the run. Some faults compose two, as real
incidents do: a graceful restart while the database is away leaves dead-letter files behind, which
is what the restart's new shape (fewer workers, no A/B arm) must still find and write back.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Awaitable, Callable

from bench.chaos.cluster import Cluster, Node
from bench.chaos.history import Fault

__all__ = ["FAULT_KINDS", "run_faults"]

_TORN_LINE = b'[{"id":null,"type":"T","source":"torn","pay'


async def _kill(cluster: Cluster, node: Node, rng: random.Random) -> str:
    await node.kill(cluster.history)
    await asyncio.sleep(rng.uniform(0.5, 2.0))
    node.start()
    return "kill -9, restart"


async def _pause(cluster: Cluster, node: Node, rng: random.Random) -> str:
    hold = rng.uniform(2.0, 6.0)
    node.signal_tree(signal.SIGSTOP)
    await asyncio.sleep(hold)
    node.signal_tree(signal.SIGCONT)
    return f"SIGSTOP {hold:.1f} s"


async def _pg_restart(cluster: Cluster, node: Node, rng: random.Random) -> str:
    hold = rng.uniform(2.0, 6.0)
    await asyncio.to_thread(cluster.pg.stop)
    await asyncio.sleep(hold)
    await asyncio.to_thread(cluster.pg.start_again)
    return f"PostgreSQL away {hold:.1f} s"


async def _partition(cluster: Cluster, node: Node, rng: random.Random) -> str:
    hold = rng.uniform(3.0, 8.0)
    node.proxy.partition()
    await asyncio.sleep(hold)
    node.proxy.heal()
    return f"partitioned {hold:.1f} s"


async def _cut(cluster: Cluster, node: Node, rng: random.Random) -> str:
    cuts = 0
    for _ in range(rng.randint(2, 6)):
        cuts += node.proxy.cut()
        await asyncio.sleep(rng.uniform(0.2, 1.0))
    return f"{cuts} connections cut"


async def _slow_db(cluster: Cluster, node: Node, rng: random.Random) -> str:
    delay, hold = rng.uniform(0.05, 0.5), rng.uniform(3.0, 6.0)
    node.proxy.delay(delay)
    await asyncio.sleep(hold)
    node.proxy.heal()
    return f"{delay * 1000:.0f} ms per chunk for {hold:.1f} s"


async def _kill_in_outage(cluster: Cluster, node: Node, rng: random.Random) -> str:
    hold = rng.uniform(4.0, 8.0)
    node.proxy.partition()
    await asyncio.sleep(1.0)
    await node.kill(cluster.history)
    node.start()  # before the database is back
    await asyncio.sleep(hold)
    node.proxy.heal()
    return f"kill -9 and restart while partitioned {hold:.1f} s"


async def _deadletter_unwritable(cluster: Cluster, node: Node, rng: random.Random) -> str:
    hold = rng.uniform(4.0, 8.0)
    node.proxy.refuse()  # writes fail fast, so batches go to the dead-letter file, which is not there
    swapped = []
    for slot in sorted((node.data_dir / "slots").glob("slot-*")):
        directory = slot / "deadletter"
        aside = slot / "deadletter.chaos-aside"
        if directory.is_dir():
            directory.rename(aside)
        directory.write_text("a plain file where the dead-letter directory should be\n")
        swapped.append((directory, aside))
    await asyncio.sleep(hold)
    for directory, aside in swapped:
        directory.unlink(missing_ok=True)
        if aside.is_dir():
            aside.rename(directory)
    node.proxy.heal()
    return f"{len(swapped)} dead-letter directories replaced by files for {hold:.1f} s, database refused"


async def _torn_write(cluster: Cluster, node: Node, rng: random.Random) -> str:
    await node.kill(cluster.history)
    files = node.deadletter_files()
    target = rng.choice(files) if files else node.data_dir / "slots" / "slot-0" / "deadletter" / "deadletter.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("ab") as file:
        file.write(_TORN_LINE[: rng.randint(5, len(_TORN_LINE))])
    node.start()
    return f"kill -9, torn line appended to {target.relative_to(node.data_dir)}"


async def _restart_while_away(cluster: Cluster, node: Node, rng: random.Random, change: Callable[[], str]) -> str:
    """Partition, let batches reach the dead-letter file, stop gracefully, heal, restart changed."""
    node.proxy.partition()
    await asyncio.sleep(rng.uniform(1.5, 3.0))
    await node.stop()
    node.proxy.heal()
    what = change()
    node.start()
    return what


async def _scale(cluster: Cluster, node: Node, rng: random.Random) -> str:
    def change() -> str:
        before, node.workers = node.workers, 1 if node.workers > 1 else 2
        return f"--workers {before} -> {node.workers} across a stop while partitioned"

    return await _restart_while_away(cluster, node, rng, change)


async def _ab_toggle(cluster: Cluster, node: Node, rng: random.Random) -> str:
    def change() -> str:
        node.ab = not node.ab
        return f"SSE_BATCH_STRATEGY_B {'set' if node.ab else 'unset'} across a stop while partitioned"

    return await _restart_while_away(cluster, node, rng, change)


FaultFn = Callable[[Cluster, Node, random.Random], Awaitable[str]]
FAULT_KINDS: dict[str, FaultFn] = {
    "kill": _kill,
    "pause": _pause,
    "pg-restart": _pg_restart,
    "partition": _partition,
    "cut": _cut,
    "slow-db": _slow_db,
    "kill-in-outage": _kill_in_outage,
    "deadletter-unwritable": _deadletter_unwritable,
    "torn-write": _torn_write,
    "scale-workers": _scale,
    "ab-toggle": _ab_toggle,
}


async def run_faults(
    cluster: Cluster,
    rng: random.Random,
    until: float,
    *,
    kinds: list[str] | None = None,
    whole_rounds: bool = False,
) -> None:
    """Inject faults one at a time until ``until`` (``time.monotonic()``), recording each.

    ``whole_rounds``: go on past ``until`` until the deck is empty, so every kind is drawn as often
    as every other, and a short run draws each kind at least once.
    """
    deck: list[str] = []
    while time.monotonic() < until or (whole_rounds and deck):
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        if time.monotonic() >= until and not (whole_rounds and deck):
            return
        if not deck:
            deck = list(kinds or FAULT_KINDS)
            rng.shuffle(deck)
        kind = deck.pop()
        node = rng.choice(cluster.nodes)
        started = time.time()
        detail = await FAULT_KINDS[kind](cluster, node, rng)
        target = None if kind == "pg-restart" else node.name
        cluster.history.faults.append(Fault(kind=kind, node=target, started=started, ended=time.time(), detail=detail))
        print(f"  {time.strftime('%H:%M:%S')} {kind:<22} {target or '-':<3} {detail}", flush=True)
        await cluster.wait_healthy(timeout=10)  # a node that stays down is the checker's to judge
