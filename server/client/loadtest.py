"""``sse-batcher loadtest``: N SSE clients, a publisher at a fixed rate, and what was delivered.

The tool has to stay cheaper than the server it measures, on the same machine. So most clients
are raw sockets that only *count*: every event the tool publishes has the data ``{"i": n}``, so
its ``"i":`` key appears exactly once per delivered event, whatever the aggregate format, and never
in what the server emits itself (its batch-size notices), and every SSE message has one ``id:``
line; ``bytes.count`` finds both at C speed. A few sampled
clients parse every ``data:`` line, to measure latency (the event's ``ts``, set when the server
accepted it, to the moment the client read it) and to check for gaps and duplicates.

It works against any server that speaks the same wire format and endpoints (``GET /events``,
``POST /api/events``, and optionally ``GET /api/stats`` for database rows per event), which is
how ``bench/fanout.py`` compares this server with a plain one. A broker that adds nothing to what
it relays (nginx + nchan) is measured with ``stamp_events``: the tool then puts ``seq`` and ``ts``
into every event it posts, and reads a ``data:`` line holding the posted JSON list as it is.
The paths are options, and message ids are only counted, never parsed, so they need not be integers.

The readers run on uvloop (when installed) through a protocol that counts each chunk as the
transport hands it over. At 1,000 clients they fill a core, so ``publisher_process`` moves the
POSTs into a process of their own, where they do not wait behind the readers.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import multiprocessing
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import msgspec

from sse_batcher.server.client.subscribe import unroll

__all__ = ["LoadTestOptions", "LoadTestResult", "loadtest", "run_loadtest"]

# The key of the tool's own event data ({"i": n}): one per event it published.
_EVENT_KEY = b'"i":'
_ID = b"\nid:"
# Kept from one read to the next, so a key split across two reads is found once.
_TAIL = max(len(_EVENT_KEY), len(_ID)) - 1
_SAMPLED_CLIENTS = 4
# uvloop when installed: the tool must stay cheaper than the servers it measures.
_HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
_READ_SIZE = 256 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadTestOptions:
    """What to run: clients, publish rate and amount, and where."""

    url: str = "http://127.0.0.1:8000"
    clients: int = 50
    rate: float = 1000.0
    count: int | None = None
    duration_seconds: float = 10.0
    batch_per_request: int = 50
    token: str | None = None
    json_output: bool = False
    # After publishing stops, how long to wait for every client to have everything.
    settle_seconds: float = 10.0
    progress: bool = True
    publish_path: str = "/api/events"
    stream_path: str = "/events"
    # Put "seq" and "ts" (the moment of the POST) into each event, for a server that assigns none.
    stamp_events: bool = False
    # POST from a process of its own, so a tool whose readers saturate its core still publishes on time.
    publisher_process: bool = False

    @property
    def total(self) -> int:
        return self.count if self.count is not None else max(1, int(self.rate * self.duration_seconds))


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


class _Client:
    """One SSE connection over a raw socket; counts events, and parses them when sampled."""

    def __init__(self, sampled: bool, notify: Callable[[], None]) -> None:
        self.sampled = sampled
        self._notify = notify
        self.events = 0
        self.messages = 0
        self.bytes = 0
        self.last_receipt = 0.0
        self.latencies: list[float] = []
        self.seqs: set[int] = set()
        self.duplicates = 0
        self.error: str | None = None
        self.ready = anyio.Event()
        self._tail = b"\n"  # the body starts a line: a first "id:" counts too
        self._partial = b""

    async def run(self, host: str, port: int, target: str, token: str | None) -> None:
        # A protocol, not a StreamReader: each chunk the transport reads is counted as it comes,
        # with no copy into and out of a reader's buffer (the tool's cost is per byte received).
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()
        transport: asyncio.Transport | None = None
        try:
            transport, _ = await loop.create_connection(lambda: _Protocol(self, closed), host, port)
            auth = f"Authorization: Bearer {token}\r\n" if token else ""
            request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n{auth}\r\n"
            transport.write(request.encode())
            await closed
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ready.set()
            if transport is not None:
                transport.close()

    def _head(self, data: bytes) -> bytes | None:
        """Collect the response head; return the body bytes after it once it is complete."""
        self._partial += data
        head, sep, rest = self._partial.partition(b"\r\n\r\n")
        if not sep:
            if len(self._partial) > _READ_SIZE:
                raise OSError("response head too long")
            return None
        self._partial = b""
        if not head.startswith(b"HTTP/1.1 200"):
            raise OSError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        self.ready.set()
        return rest

    def _feed(self, data: bytes, now: float) -> None:
        # Chunked transfer framing only ever falls between whole SSE messages (the server writes
        # whole messages), so counting keys in the raw bytes is exact; a key split across two
        # reads is found in the joint of the kept tail and the new data's first bytes.
        joint = self._tail + data[:_TAIL]
        self.bytes += len(data)
        events = data.count(_EVENT_KEY) + joint.count(_EVENT_KEY)
        if events:
            self.events += events
            self.last_receipt = now
            self._notify()
        self.messages += data.count(_ID) + joint.count(_ID)
        self._tail = (self._tail + data)[-_TAIL:] if len(data) < _TAIL else data[-_TAIL:]
        if self.sampled:
            self._parse(data, now)

    def _parse(self, data: bytes, now: float) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if not line.startswith(b"data: "):
                continue
            body = line[6:]
            try:
                # The client's own unrolling, so the load tool reads the wire as consumers do; a relay
                # that adds nothing (nchan) sends the posted list of stamped events as the message.
                if body.startswith(b"["):
                    events = [e for item in msgspec.json.decode(body) for e in unroll(item)]
                else:
                    events = unroll(body)
            except (msgspec.DecodeError, TypeError):
                continue
            for event in events:
                seq, ts = event.get("seq"), event.get("ts")
                if not isinstance(seq, int) or not isinstance(ts, int | float):
                    continue
                if seq in self.seqs:
                    self.duplicates += 1
                else:
                    self.seqs.add(seq)
                self.latencies.append(now - ts)


class _Protocol(asyncio.Protocol):
    """Hands a client's bytes to it: the response head first, then every chunk of the body."""

    def __init__(self, client: _Client, closed: asyncio.Future[None]) -> None:
        self._client = client
        self._closed = closed
        self._in_body = False
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            if not self._in_body:
                rest = self._client._head(data)
                if rest is None:
                    return
                self._in_body = True
                data = rest
            if data:
                self._client._feed(data, time.time())
        except OSError as exc:
            self._client.error = str(exc)
            if self._transport is not None:
                self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self._client.error is None and not self._client.ready.is_set():
            self._client.error = f"{type(exc).__name__}: {exc}"
        if not self._closed.done():
            self._closed.set_result(None)


class _Signal:
    """A resettable event: clients set it on every receipt; the waiter re-arms it."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = anyio.Event()


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


@dataclass(slots=True)
class _Published:
    accepted: int = 0
    rejected: int = 0


async def _publish(options: LoadTestOptions, started: float, published: _Published) -> None:
    """POST the events at the rate, from ``started`` on; count what was accepted."""
    total = options.total
    per_request = max(1, options.batch_per_request)
    interval = per_request / options.rate if options.rate > 0 else 0.0
    parts = urlsplit(options.url)
    headers = {"Authorization": f"Bearer {options.token}"} if options.token else {}

    async def publish(http: httpx.AsyncClient, index: int) -> None:
        first = index * per_request
        n = min(per_request, total - first)
        body: list[dict[str, Any]] = [
            {"type": "LOAD_TEST", "source": "loadtest", "data": {"i": first + k}} for k in range(n)
        ]
        if options.stamp_events:
            now = time.time()
            for k, event in enumerate(body):
                event["seq"], event["ts"] = first + k + 1, now
        try:
            response = await http.post(options.publish_path, json=body)
        except httpx.HTTPError:
            published.rejected += n
            return
        # 202 from sse-batcher; a relay may answer 201 (subscribers present) or 202 (none).
        if 200 <= response.status_code < 300:
            published.accepted += n
        else:
            published.rejected += n

    limiter = anyio.CapacityLimiter(8)

    async def limited(http: httpx.AsyncClient, index: int) -> None:
        async with limiter:
            await publish(http, index)

    async with httpx.AsyncClient(
        base_url=f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}",
        headers=headers,
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        timeout=30,
    ) as http:
        # Publishing is bounded: a server that cannot keep up gets what it took in the time
        # (plus a grace), and requests still in flight then are cancelled and left uncounted.
        with anyio.move_on_after(options.duration_seconds + options.settle_seconds):
            async with anyio.create_task_group() as publishers:
                for index in range((total + per_request - 1) // per_request):
                    delay = started + index * interval - time.time()
                    if delay > 0:
                        await anyio.sleep(delay)
                    if time.time() > started + options.duration_seconds * 1.2 and options.count is None:
                        break
                    publishers.start_soon(limited, http, index)


def _publisher_main(options: LoadTestOptions, conn: Connection) -> None:
    """The publisher process: wait for the start time, publish, send back (accepted, rejected)."""
    started: float = conn.recv()
    published = _Published()
    anyio.run(_publish, options, started, published, backend_options={"use_uvloop": _HAVE_UVLOOP})
    conn.send((published.accepted, published.rejected))


class _PublisherProcess:
    """Publishing in a process of its own: its POSTs do not wait behind the readers' loop."""

    def __init__(self, options: LoadTestOptions) -> None:
        self._options = options
        self.go, child = multiprocessing.Pipe()
        self._process = multiprocessing.get_context("spawn").Process(
            target=_publisher_main, args=(options, child), daemon=True
        )
        self._process.start()

    def result(self) -> tuple[int, int]:
        """Block until the publisher is done; (accepted, rejected)."""
        limit = self._options.duration_seconds + self._options.settle_seconds + 60
        try:
            if not self.go.poll(limit):
                raise RuntimeError(f"the publisher process sent no result in {limit:.0f} s")
            accepted, rejected = self.go.recv()
            return int(accepted), int(rejected)
        finally:
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()


async def loadtest(options: LoadTestOptions) -> LoadTestResult:
    """Run one load test and return what it measured."""
    parts = urlsplit(options.url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    base_path = parts.path.rstrip("/")
    total = options.total
    headers = {"Authorization": f"Bearer {options.token}"} if options.token else {}
    received = _Signal()
    clients = [_Client(i < _SAMPLED_CLIENTS, received.set) for i in range(options.clients)]
    published = _Published()
    progress_done = anyio.Event()
    # Started first, so its imports are done before the clock starts; it waits for the start time.
    publisher = _PublisherProcess(options) if options.publisher_process else None

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
                await _publish(options, started, published)
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


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def run_loadtest(options: LoadTestOptions) -> int:
    """Run :func:`loadtest` and print its result; exit code 0 when every event reached every client."""
    try:
        result = anyio.run(loadtest, options, backend_options={"use_uvloop": _HAVE_UVLOOP})
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
