"""GET /api/stats and GET /healthz: the figures the dashboard draws, and whether the server is well.

The stats shape is a contract with the dashboard (frontend/); keys are only ever added::

    {"ts", "batcher": {...}, "store": {...}, "hub": {...}, "sizing": {...}, "follower": {...}, "workers": [...],
     "process": {"cpu_percent", "rss_bytes"}, "demo": {"enabled"}, "node": {...}, "nodes": [...],
     "ab": {"arms": [...]}, "latency": {"delivery": {...}, "commit": {...}},
     "digests": {...}}

``latency`` holds two histograms in seconds, each ``{"bounds", "counts", "total", "count"}``
with per-bucket counts (``counts[i]`` observations <= ``bounds[i]``, the last one above every bound),
cumulative since start: ``delivery`` is each original event's age when the hub first handed it to a
client (server/stream/latency.py), ``commit`` the store write latency (``batcher.write_latency_histogram``).
A reader takes percentiles over an interval from the difference of two snapshots.

``digests`` lists the digest rules, each with its open windows: see ``sse_batcher.server.app.digests``.
A window's ``group`` is event data: it is null unless the request may read every event (subscribing
is open, or its bearer is a subscribe token, a publish token, or a stream token without filters).

``node`` is this process: ``id``, ``host``, ``pid``, ``slot``, ``started_at``, ``events_in``,
``messages_out``, ``clients`` (now), ``follower_last_id``, ``newest_id`` and ``lag`` (as of its last
heartbeat), ``heartbeat_seconds``. ``nodes`` is every node's ``sse_nodes`` row as of that heartbeat,
newest first, each with ``alive`` (false once its heartbeat is three intervals old) and ``lag``.

``sizing.strategy`` names the strategy in charge (arm A's in a live A/B). ``ab.arms`` is empty
without an A/B (SSE_BATCH_STRATEGY_B unset), else one entry per arm: ``strategy``, ``share``,
``sources``, ``events``, ``messages``, ``rows``, ``p50_ms`` and ``p99_ms`` (event age at
commit) and ``store_latency_p99_ms``.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import msgspec
import psutil
from starlette.requests import Request
from starlette.responses import Response

from sse_batcher.batcher import BatcherError, State
from sse_batcher.batcher.sizing import SplitBatcher
from sse_batcher.server._http import json_response
from sse_batcher.server.app.digests import digest_stats
from sse_batcher.server.app.runtime import Runtime, RuntimeNotReady, runtime_of
from sse_batcher.server.nodes.node import lag
from sse_batcher.server.security.guard import guard_of

__all__ = ["health", "render", "snapshot", "stats"]

# A health check must answer even when PostgreSQL hangs.
_PING_TIMEOUT_SECONDS = 2.0


def render(statistics: object) -> dict[str, Any]:
    """A component's frozen ``statistics()`` snapshot as JSON-ready builtins: the one way they are
    rendered (/metrics reads the same dicts)."""
    rendered: dict[str, Any] = msgspec.to_builtins(statistics)
    return rendered


def snapshot(runtime: Runtime, *, show_groups: bool = False) -> dict[str, Any]:
    """Every figure of the running app, as a JSON-ready dict (the /api/stats body).

    ``show_groups`` shows the open digest windows' group values, which are event data.
    """
    hub = render(runtime.hub.statistics())
    batcher = render(runtime.batcher.statistics())
    follower = runtime.follower.statistics()
    process = runtime.process
    return {
        "ts": time.time(),
        "batcher": batcher,
        "store": render(runtime.store.statistics()),
        "hub": hub,
        "sizing": _sizing(runtime),
        "follower": {**render(follower), "lag": follower.lag},
        "ab": _ab(runtime),
        "workers": runtime.farm.worker_stats() if runtime.farm is not None else [],
        "process": _process(process),
        # The dashboard shows the burst control only when this says the demo runs.
        "demo": {"enabled": runtime.farm is not None},
        "node": _this_node(runtime, events_in=batcher.get("events_emitted", 0), hub=hub),
        "nodes": runtime.node.nodes() if runtime.node is not None else [],
        "latency": {
            "delivery": render(runtime.delivery_latency.statistics()),
            "commit": batcher["write_latency_histogram"],
        },
        "digests": digest_stats(runtime.digester, show_groups=show_groups),
    }


def _process(process: psutil.Process) -> dict[str, float | int | None]:
    """CPU percent since the last call, and resident memory; None where the OS refused to say.

    psutil reads /proc files: with every file descriptor in use (``EMFILE``) it raises ``OSError``,
    and the stats must still answer then, when they matter most.
    """
    try:
        cpu_percent: float | None = process.cpu_percent(None)
    except OSError:
        cpu_percent = None
    try:
        rss_bytes: int | None = process.memory_info().rss
    except OSError:
        rss_bytes = None
    return {"cpu_percent": cpu_percent, "rss_bytes": rss_bytes}


def _this_node(runtime: Runtime, *, events_in: int, hub: dict[str, Any]) -> dict[str, Any]:
    node = runtime.node
    if node is None:  # only while the runtime starts
        return {}
    last = node.last
    follower_last_id = last.follower_last_id if last is not None else None
    newest_id = last.newest_id if last is not None else None
    return {
        "id": node.node_id,
        "host": node.host,
        "pid": node.pid,
        "slot": node.slot,
        "started_at": node.started_at,
        "events_in": events_in,
        "messages_out": hub["messages_sent"],
        "clients": hub["clients"],
        "follower_last_id": follower_last_id,
        "newest_id": newest_id,
        "lag": lag(follower_last_id, newest_id),
        "heartbeat_seconds": node.interval_seconds,
    }


def _sizing(runtime: Runtime) -> dict[str, Any]:
    """What the sizing policy decided, and the load it saw."""
    if runtime.sizing is not None:
        return runtime.sizing.as_dict()
    return {
        "dynamic": False,
        "strategy": "fixed",
        "strategy_state": {},
        "batch_size": runtime.batcher.batch_size,
        "batch_timeout_seconds": runtime.batcher.batch_timeout_seconds,
        "load": {},
        "history": [],
        "breaker": {"state": "closed"},
    }


def _ab(runtime: Runtime) -> dict[str, Any]:
    """The live A/B's arms side by side (``{"arms": []}`` without one)."""
    batcher, sizers = runtime.batcher, runtime.arm_sizers
    if not isinstance(batcher, SplitBatcher) or sizers is None:
        return {"arms": []}
    arms = batcher.arm_statistics()
    strategies = [sizer.statistics().strategy for sizer in sizers]
    return {"arms": [{"strategy": name, **arm.as_dict()} for name, arm in zip(strategies, arms, strict=True)]}


async def stats(request: Request) -> Response:
    """GET /api/stats: open to all, but digest groups only for a bearer that may read every event."""
    show_groups = guard_of(request).reads_everything(request)
    return json_response(snapshot(runtime_of(request), show_groups=show_groups), headers={"Cache-Control": "no-store"})


async def health(request: Request) -> Response:
    """GET /healthz: 200 when the store answers, the batcher runs and its dead-letter file takes writes,
    else 503 naming what is down (``deadletter`` names the file and its error)."""
    try:
        runtime = runtime_of(request)
    except RuntimeNotReady as exc:
        # Started, but waiting for the database (or shutting down): say so, naming the store.
        body = {"status": "unavailable", "store": f"unavailable: {exc}", "batcher": "new", "follower": "down"}
        return json_response(body, 503, {"Cache-Control": "no-store", "Retry-After": "2"})
    store = "ok"
    try:
        with anyio.fail_after(_PING_TIMEOUT_SECONDS):
            await runtime.store.ping()
    except TimeoutError:
        store = f"unavailable: no answer in {_PING_TIMEOUT_SECONDS:.0f} s"
    except BatcherError as exc:  # StoreUnavailableError, or BatcherClosedError once the store closed
        store = f"unavailable: {exc}"
    state = runtime.batcher.state
    draining = not runtime.accepting and state is State.RUNNING
    batcher = "draining" if draining else state.value
    follower = "ok" if runtime.follower.connected else "down: reconnecting to PostgreSQL"
    statistics = runtime.batcher.statistics()
    # Batches held in memory because the dead-letter file refuses writes: intake is refused meanwhile.
    deadletter = "ok" if statistics.dead_letter_error is None else f"unavailable: {statistics.dead_letter_error}"
    healthy = store == "ok" and batcher == State.RUNNING.value and follower == "ok" and deadletter == "ok"
    body = {"status": "ok" if healthy else "unavailable", "store": store, "batcher": batcher, "follower": follower}
    if deadletter != "ok":
        body["deadletter"] = deadletter
    breaker = statistics.breaker
    if breaker is not None:
        # An open breaker means batches go to the dead-letter file: late, not lost, but worth seeing.
        body["breaker"] = breaker.state
    return json_response(body, 200 if healthy else 503, {"Cache-Control": "no-store"})
