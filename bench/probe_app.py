"""The no-database fan-out probe: the floor of what a Python SSE fan-out costs on this machine.

What it does, and nothing more: ``POST /api/events`` gives each event a ``seq`` and ``ts`` and
appends it to a pending list; every 50 ms tick turns what is pending into one aggregate message per
(source, type), in sse-batcher's compact format, encodes it once and queues the same ``bytes`` to
every client; ``GET /events`` writes its queue to the socket as raw ASGI body chunks. No database,
no resume, no filters, no sse-starlette. Same endpoints and wire format as sse-batcher, so the
same load tool (``sse-batcher loadtest``) drives it, and ``bench/fanout.py`` compares the two.

Run: ``python -m bench.probe_app --port 8002``
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

__all__ = ["TICK_SECONDS", "create_probe_app", "main"]

TICK_SECONDS = 0.05
_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]


def _batch_type(event_type: str) -> str:
    return "JOBS_BATCH_" + event_type[4:] if event_type.startswith("JOB_") else event_type + "_BATCH"


def create_probe_app() -> Starlette:
    """The probe: a pending list, one queue of ``bytes`` per client, a tick loop in the lifespan."""
    queues: set[asyncio.Queue[bytes]] = set()
    pending: dict[tuple[str, str], list[dict[str, Any]]] = {}
    seqs, ids = itertools.count(1), itertools.count(1)
    emitted, frames = [0], [0]

    async def tick() -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            groups, chunks = list(pending.items()), []
            pending.clear()
            for (source, event_type), events in groups:
                name = _batch_type(event_type)
                data = {"type": name, "event_type": event_type, "source": source,
                        "batch_count": len(events), "events": events}  # fmt: skip
                chunks.append(
                    b"id: %d\nevent: %s\ndata: %s\n\n" % (next(ids), name.encode(), msgspec.json.encode(data))
                )
            if chunks:
                frames[0] += 1
                message = b"".join(chunks)
                for queue in queues:
                    queue.put_nowait(message)

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(tick())
        yield
        task.cancel()

    async def publish(request: Request) -> Response:
        body = msgspec.json.decode(await request.body())
        accepted = []
        for event in body if isinstance(body, list) else [body]:
            seq = next(seqs)
            key = (event.get("source") or "app", event["type"])
            pending.setdefault(key, []).append({"seq": seq, "ts": time.time(), "data": event["data"]})
            accepted.append(seq)
        emitted[0] += len(accepted)
        return JSONResponse({"accepted": len(accepted), "seqs": accepted}, status_code=202)

    async def stream(request: Request) -> Response:
        return _Stream(queues)

    async def stats(request: Request) -> Response:
        hub = {"clients": len(queues), "fanouts": frames[0]}
        return JSONResponse({"batcher": {"events_emitted": emitted[0]}, "hub": hub})

    routes = [
        Route("/events", stream, methods=["GET"]),
        Route("/api/events", publish, methods=["POST"]),
        Route("/api/stats", stats, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


class _Stream(Response):
    """A raw ASGI body of the client's queue; receive() telling of a disconnect ends it."""

    def __init__(self, queues: set[asyncio.Queue[bytes]]) -> None:
        self._queues = queues

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._queues.add(queue)
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        writer = asyncio.create_task(_write(queue, send))
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        finally:
            self._queues.discard(queue)
            writer.cancel()


async def _write(queue: asyncio.Queue[bytes], send: Send) -> None:
    while True:
        await send({"type": "http.response.body", "body": await queue.get(), "more_body": True})


def main() -> None:
    """Serve the probe under uvicorn with uvloop and httptools, as sse-batcher runs."""
    parser = argparse.ArgumentParser(prog="probe_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    uvicorn.run(
        create_probe_app(),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
        ws="none",
    )


if __name__ == "__main__":
    main()
