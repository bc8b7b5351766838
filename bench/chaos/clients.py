"""The campaign's clients: publishers that retry against any node, subscribers that hop between nodes.

Publishers (each with its own seeded RNG) differ in two ways the promises depend on: ``wait``
(``?wait=stored``: 201 with ids, or 202) and ``keyed`` (idempotency keys, per event or per request).
A request that gets no answer, a 5xx or a 429 is retried on a randomly chosen node: a keyed one as
it was, a keyless one as a real client without keys would, with fresh events (new markers). One
publisher sends the coalesced type with a few keys. Subscribers read ``/events`` for a few seconds,
then hop to another node with ``Last-Event-ID`` (or, for the live-only one, without).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench.chaos.cluster import COALESCED_TYPE, Cluster
from bench.chaos.history import Publish, Received, Stream

__all__ = ["PublisherSpec", "SubscriberSpec", "publish_loop", "subscribe_loop"]

_ATTEMPTS = 6
_TIMEOUT = httpx.Timeout(15.0, connect=3.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class PublisherSpec:
    name: str
    wait: bool
    keyed: bool
    event_type: str = "JOB_DONE"
    max_events: int = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriberSpec:
    name: str
    resume: bool  # False: live only, never a Last-Event-ID


async def publish_loop(cluster: Cluster, spec: PublisherSpec, rng: random.Random, stop: asyncio.Event) -> None:
    """Publish until ``stop`` is set, recording every attempt in the cluster's history."""
    async with httpx.AsyncClient(timeout=_TIMEOUT) as client:
        n = 0
        while not stop.is_set():
            n += 1
            count = rng.randint(1, spec.max_events)
            keys = tuple(f"k{rng.randint(0, 2)}" if spec.event_type == COALESCED_TYPE else None for _ in range(count))
            wait = spec.wait if spec.event_type != COALESCED_TYPE else rng.random() < 0.5
            header_key = f"{spec.name}-{n}" if spec.keyed and rng.random() < 0.5 else None
            for attempt in range(_ATTEMPTS):
                tag = f"{n}" if spec.keyed else f"{n}.{attempt}"
                markers = tuple(f"{spec.name}-{tag}-{i}" for i in range(count))
                events = [
                    _event(spec, rng, n, i, marker, key, header_key)
                    for i, (marker, key) in enumerate(zip(markers, keys, strict=True))
                ]
                node = rng.choice(cluster.nodes)
                record = await _post(client, node.name, node.url, events, markers, keys, spec, wait, header_key)
                cluster.history.publishes.append(record)
                if record.status is not None and record.status < 500 and record.status != 429:
                    break
                await asyncio.sleep(rng.uniform(0.1, 0.5))
            await asyncio.sleep(rng.uniform(0.05, 0.25))


def _event(
    spec: PublisherSpec, rng: random.Random, n: int, i: int, marker: str, key: str | None, header_key: str | None
) -> dict[str, Any]:
    event: dict[str, Any] = {"type": spec.event_type, "data": {"m": marker}, "source": f"{spec.name}-{n % 4}"}
    if key is not None:
        event["key"] = key
    if spec.keyed and header_key is None:
        event["idempotency_key"] = f"{spec.name}-{n}-{i}"
    return event


async def _post(
    client: httpx.AsyncClient,
    node: str,
    url: str,
    events: list[dict[str, Any]],
    markers: tuple[str, ...],
    keys: tuple[str | None, ...],
    spec: PublisherSpec,
    wait: bool,
    header_key: str | None,
) -> Publish:
    started = time.time()
    status: int | None = None
    body: Any = None
    headers = {"Idempotency-Key": header_key} if header_key else {}
    try:
        response = await client.post(
            f"{url}/api/events" + ("?wait=stored" if wait else ""), json=events, headers=headers
        )
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = response.text[:500]
    except httpx.HTTPError as exc:
        body = f"{type(exc).__name__}: {exc}"
    return Publish(
        node=node,
        started=started,
        ended=time.time(),
        markers=markers,
        event_type=spec.event_type,
        keys=keys,
        wait=wait,
        idempotency_key=header_key,
        status=status,
        body=body,
    )


async def subscribe_loop(cluster: Cluster, spec: SubscriberSpec, rng: random.Random, stop: asyncio.Event) -> None:
    """Read streams, hopping between nodes, until ``stop`` is set; record every connection."""
    last_id: int | None = 0 if spec.resume else None
    timeout = httpx.Timeout(10.0, connect=3.0)
    async with httpx.AsyncClient(timeout=timeout) as client:
        while not stop.is_set():
            node = rng.choice(cluster.nodes)
            resume = last_id if spec.resume else None
            messages: list[Received] = []
            started = time.time()
            status: int | None = None
            body = ""
            headers = {"Last-Event-ID": str(resume)} if resume is not None else {}
            try:
                async with client.stream("GET", f"{node.url}/events", headers=headers) as response:
                    status = response.status_code
                    if status != 200:
                        body = (await response.aread()).decode(errors="replace")[:500]
                    else:
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(rng.uniform(2.0, 8.0)):
                                await _read(response, messages, stop)
            except httpx.HTTPError as exc:
                body = f"{type(exc).__name__}: {exc}"
            finally:
                cluster.history.streams.append(
                    Stream(
                        node=node.name,
                        started=started,
                        ended=time.time(),
                        resume_id=resume,
                        status=status,
                        body=body,
                        messages=tuple(messages),
                    )
                )
            real = [m.id for m in messages if m.event != "HISTORY_TRUNCATED"]
            if real:
                last_id = real[-1]
            if status != 200:
                await asyncio.sleep(0.3)


async def _read(response: httpx.Response, messages: list[Received], stop: asyncio.Event) -> None:
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if stop.is_set():
            return
        if not line:
            if "data" in fields and "id" in fields:
                messages.append(
                    Received(
                        id=int(fields["id"]), event=fields.get("event", "message"), data=fields["data"], at=time.time()
                    )
                )
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value[1:] if value.startswith(" ") else value
