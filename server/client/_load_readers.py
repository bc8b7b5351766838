"""The load tool's SSE readers: raw sockets that count what they receive, and parse it when sampled.

Apart from ``loadtest.py`` because this is the part whose cost decides what the tool can measure:
it must stay cheaper than the server it loads, on the same machine. So a reader is not an SSE
client but a protocol that counts each chunk as the transport hands it over, with no copy into
and out of a reader's buffer. Every event the tool publishes has the data ``{"i": n}``, so its
``"i":`` key appears exactly once per delivered event, whatever the aggregate format, and never in
what the server emits itself (its batch-size notices), and every SSE message has one ``id:`` line;
``bytes.count`` finds both at C speed. Message ids are only counted, never parsed, so they need
not be integers. A sampled reader also parses every ``data:`` line, to measure latency (the
event's ``ts``, set when the server accepted it, to the moment the reader read it) and to check
for gaps and duplicates.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Callable

import anyio
import msgspec

from sse_batcher.server.client.events import unroll

__all__ = ["HAVE_UVLOOP", "CountingClient", "Signal"]

# uvloop when installed: the tool must stay cheaper than the servers it measures.
HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
# The key of the tool's own event data ({"i": n}): one per event it published.
_EVENT_KEY = b'"i":'
_ID = b"\nid:"
# Kept from one read to the next, so a key split across two reads is found once.
_TAIL = max(len(_EVENT_KEY), len(_ID)) - 1
_READ_SIZE = 256 * 1024


class CountingClient:
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

    def __init__(self, client: CountingClient, closed: asyncio.Future[None]) -> None:
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


class Signal:
    """A resettable event: clients set it on every receipt; the waiter re-arms it."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = anyio.Event()
