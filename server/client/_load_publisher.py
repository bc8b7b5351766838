"""The load tool's publisher: POSTs the events at a fixed rate, in this process or in one of its own.

Apart from ``loadtest.py`` because it can run in a separate process: at 1,000 readers the tool's
readers fill a core, and POSTs that wait behind them would arrive late and lower the rate the
server is asked to carry. :class:`PublisherProcess` starts first (so its imports are done before
the clock starts), waits for the start time, publishes and sends back what was accepted.

A relay that assigns nothing itself (nginx + nchan) is measured with ``stamp_events``: each event
then carries ``seq`` and ``ts`` (the moment of its POST) for the sampled readers.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

from sse_batcher.server.client._load_options import LoadTestOptions
from sse_batcher.server.client._load_readers import HAVE_UVLOOP

__all__ = ["Published", "PublisherProcess", "publish"]


@dataclass(slots=True)
class Published:
    """How many of the published events the server accepted and refused."""

    accepted: int = 0
    rejected: int = 0


async def publish(options: LoadTestOptions, started: float, published: Published) -> None:
    """POST the events at the rate, from ``started`` on; count what was accepted."""
    total = options.total
    per_request = max(1, options.batch_per_request)
    interval = per_request / options.rate if options.rate > 0 else 0.0
    parts = urlsplit(options.url)
    headers = {"Authorization": f"Bearer {options.token}"} if options.token else {}

    async def post(http: httpx.AsyncClient, index: int) -> None:
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
            await post(http, index)

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
    published = Published()
    anyio.run(publish, options, started, published, backend_options={"use_uvloop": HAVE_UVLOOP})
    conn.send((published.accepted, published.rejected))


class PublisherProcess:
    """Publishing in a process of its own: its POSTs do not wait behind the readers' loop."""

    def __init__(self, options: LoadTestOptions) -> None:
        self._options = options
        self.go, child = multiprocessing.Pipe()
        self._process = multiprocessing.get_context("spawn").Process(
            target=_publisher_main, args=(options, child), daemon=True
        )
        self._process.start()

    def result(self) -> tuple[int, int]:
        """Block until the publisher is done; (accepted, rejected).

        Raises:
            RuntimeError: the publisher sent no result within the run's time and a minute.
        """
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
