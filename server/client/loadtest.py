"""``sse-batcher loadtest``: N SSE clients, a publisher at a fixed rate, and what was delivered.

This module runs a test and reports it; the readers that count what arrives are in
``_load_readers.py`` and the publisher in ``_load_publisher.py``. Most clients only count; a few
sampled ones parse every event, to measure latency and to check for gaps and duplicates.

It works against any server that speaks the same wire format and endpoints (``GET /events``,
``POST /api/events``, and optionally ``GET /api/stats`` for database rows per event), which is
how ``bench/fanout.py`` compares this server with a plain one. A broker that adds nothing to what
it relays (nginx + nchan) is measured with ``stamp_events``: the tool then puts ``seq`` and ``ts``
into every event it posts, and reads a ``data:`` line holding the posted JSON list as it is.
The paths are options.

The readers run on uvloop (when installed). At 1,000 clients they fill a core, so
``publisher_process`` moves the POSTs into a process of their own, where they do not wait behind
the readers.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

from sse_batcher.server.client._load_options import LoadTestOptions
from sse_batcher.server.client._load_publisher import Published, PublisherProcess, publish
from sse_batcher.server.client._load_readers import HAVE_UVLOOP, CountingClient, Signal

__all__ = ["LoadTestOptions", "LoadTestResult", "loadtest", "run_loadtest"]

_SAMPLED_CLIENTS = 4


@dataclass(slots=True, kw_only=True)
class LoadTestResult:
    """What a run measured; ``events_per_second_per_client`` is the mean over clients."""

    clients: int
    published: int
    accepted: int
    rejected: int
    publish_seconds: float
    events_per_second_per_client: float
    min_events_per_second_per_client: float
    delivered_fraction: float
    complete_clients: int
    # Per original event, from the sampled clients: emit ts to the moment the client read it.
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    sse_messages_per_event: float
    db_rows_per_event: float | None
    duplicates: int
    gaps: int
    delivered_events: int = 0
    sse_bytes: int = 0
    sse_bytes_per_event: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _stats(client: httpx.AsyncClient) -> dict[str, Any] | None:
    try:
        response = await client.get("/api/stats", timeout=5)
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            return body
    except (httpx.HTTPError, ValueError):
        pass
    return None


def _rows_and_events(stats: dict[str, Any] | None) -> tuple[float, float] | None:
    if stats is None:
        return None
    try:
        return float(stats["store"]["rows_written"]), float(stats["batcher"]["events_emitted"])
    except (KeyError, TypeError, ValueError):
        return None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


async def loadtest(options: LoadTestOptions) -> LoadTestResult:
    """Run one load test and return what it measured."""
    parts = urlsplit(options.url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    base_path = parts.path.rstrip("/")
    total = options.total
    headers = {"Authorization": f"Bearer {options.token}"} if options.token else {}
    received = Signal()
    clients = [CountingClient(i < _SAMPLED_CLIENTS, received.set) for i in range(options.clients)]
    published = Published()
    progress_done = anyio.Event()
    # Started first, so its imports are done before the clock starts; it waits for the start time.
    publisher = PublisherProcess(options) if options.publisher_process else None

    def report(prefix: str, started: float) -> None:
        counts = [c.events for c in clients] or [0]
        print(
            f"{prefix} t={time.time() - started:5.1f}s published={published.accepted + published.rejected}/{total} "
            f"delivered/client min={min(counts)} mean={sum(counts) / len(counts):.0f}",
            file=sys.stderr,
            flush=True,
        )

    async with (
        httpx.AsyncClient(
            base_url=f"{parts.scheme}://{parts.netloc}{base_path}",
            headers=headers,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
            timeout=30,
        ) as http,
        anyio.create_task_group() as readers,
    ):
        for client in clients:
            readers.start_soon(client.run, host, port, f"{base_path}{options.stream_path}", options.token)
        with anyio.fail_after(60):
            for client in clients:
                await client.ready.wait()
        failed = [c.error for c in clients if c.error]
        if failed:
            readers.cancel_scope.cancel()
            raise RuntimeError(f"{len(failed)} of {len(clients)} clients failed to connect: {failed[0]}")
        before = _rows_and_events(await _stats(http))
        started = time.time()

        async def progress() -> None:
            while not progress_done.is_set():
                with anyio.move_on_after(1.0):
                    await progress_done.wait()
                if options.progress and not progress_done.is_set():
                    report("loadtest:", started)

        async with anyio.create_task_group() as side:
            side.start_soon(progress)
            if publisher is not None:
                publisher.go.send(started)
                published.accepted, published.rejected = await anyio.to_thread.run_sync(publisher.result)
            else:
                await publish(options, started, published)
            publish_seconds = time.time() - started
            with anyio.move_on_after(options.settle_seconds):
                while any(c.events < published.accepted for c in clients):
                    await received.wait()
            progress_done.set()
        after = _rows_and_events(await _stats(http))
        readers.cancel_scope.cancel()

    rates = []
    for client in clients:
        elapsed = max(client.last_receipt - started, 1e-6)
        rates.append(client.events / elapsed if client.events else 0.0)
    delivered = sum(c.events for c in clients)
    received_bytes = sum(c.bytes for c in clients)
    messages = sum(c.messages for c in clients)
    latencies = [x for c in clients if c.sampled for x in c.latencies]
    gaps = 0
    for client in clients:
        if client.sampled and client.seqs:
            gaps += (max(client.seqs) - min(client.seqs) + 1) - len(client.seqs)
    rows_per_event = None
    if before is not None and after is not None and after[1] > before[1]:
        rows_per_event = (after[0] - before[0]) / (after[1] - before[1])
    return LoadTestResult(
        clients=options.clients,
        published=total,
        accepted=published.accepted,
        rejected=published.rejected,
        publish_seconds=publish_seconds,
        events_per_second_per_client=sum(rates) / len(rates) if rates else 0.0,
        min_events_per_second_per_client=min(rates) if rates else 0.0,
        delivered_fraction=(delivered / (published.accepted * len(clients)) if published.accepted and clients else 0.0),
        complete_clients=sum(1 for c in clients if c.events >= published.accepted),
        latency_p50_ms=_ms(_percentile(latencies, 0.50)),
        latency_p90_ms=_ms(_percentile(latencies, 0.90)),
        latency_p99_ms=_ms(_percentile(latencies, 0.99)),
        latency_max_ms=_ms(max(latencies) if latencies else None),
        sse_messages_per_event=messages / delivered if delivered else 0.0,
        db_rows_per_event=rows_per_event,
        duplicates=sum(c.duplicates for c in clients),
        gaps=gaps,
        delivered_events=delivered,
        sse_bytes=received_bytes,
        sse_bytes_per_event=received_bytes / delivered if delivered else 0.0,
    )


def run_loadtest(options: LoadTestOptions) -> int:
    """Run :func:`loadtest` and print its result; exit code 0 when every event reached every client."""
    try:
        result = anyio.run(loadtest, options, backend_options={"use_uvloop": HAVE_UVLOOP})
    except (RuntimeError, OSError, httpx.HTTPError) as exc:
        print(f"sse-batcher loadtest: {exc}", file=sys.stderr)
        return 2
    except ExceptionGroup as group:  # raised inside the task groups: say the first cause plainly
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        if not isinstance(leaf, RuntimeError | OSError | httpx.HTTPError):
            raise
        print(f"sse-batcher loadtest: {leaf}", file=sys.stderr)
        return 2
    if options.json_output:
        print(json.dumps(asdict(result)), flush=True)
    else:
        rows = "n/a" if result.db_rows_per_event is None else f"{result.db_rows_per_event:.3f}"
        print(
            f"clients                 {result.clients}\n"
            f"published / accepted    {result.published} / {result.accepted} in {result.publish_seconds:.1f} s\n"
            f"events/s per client     {result.events_per_second_per_client:.0f} "
            f"(min {result.min_events_per_second_per_client:.0f})\n"
            f"delivered fraction      {result.delivered_fraction:.4f} "
            f"({result.complete_clients}/{result.clients} clients got everything)\n"
            f"latency, emit to client (per event, {min(_SAMPLED_CLIENTS, result.clients)} sampled clients)\n"
            f"  p50 / p90 / p99 / max {result.latency_p50_ms} / {result.latency_p90_ms} / "
            f"{result.latency_p99_ms} / {result.latency_max_ms} ms\n"
            f"SSE messages per event  {result.sse_messages_per_event:.4f}\n"
            f"SSE bytes per event     {result.sse_bytes_per_event:.1f}\n"
            f"DB rows per event       {rows}\n"
            f"duplicates / gaps       {result.duplicates} / {result.gaps} (sampled clients)",
            flush=True,
        )
    return 0 if result.delivered_fraction >= 1.0 and result.duplicates == 0 else 1
