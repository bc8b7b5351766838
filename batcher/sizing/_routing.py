"""Which arm of the live A/B each event goes to, and how a request is cut into the arms' shares.

A source is routed by blake2b of its name (not Python's ``hash()``, which is salted per process), so
it never changes arm during a run, or between runs, and its events keep their order. A request is
cut into one share per arm, each event remembering its index in the request, so an error in a share
names the event by its place in the whole request and a request's idempotency key becomes the same
per-event key whichever arm the event lands in. Apart from ``split.py`` so that module holds the
batcher's surface alone; :func:`arm_of` is re-exported there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from sse_batcher.batcher.errors import EventValidationError
from sse_batcher.batcher.pipeline.intake import request_scoped_key

__all__ = ["Share", "arm_of", "reindexed", "shares_of"]

# One arm's share of a request: the arm's index (0: A, 1: B), the events' indices in the request,
# and the events themselves (with their request-scoped idempotency keys).
Share = tuple[int, list[int], list[dict[str, Any]]]


def arm_of(source: str, share_b: float) -> int:
    """0 (arm A) or 1 (arm B) for ``source``: stable across processes, B for a ``share_b`` of sources."""
    digest = hashlib.blake2b(source.encode(), digest_size=8).digest()
    return 1 if int.from_bytes(digest, "big") / 2**64 < share_b else 0


def shares_of(
    events: Sequence[dict[str, Any]],
    fallback_source: str,
    idempotency_key: str | None,
    route: Callable[[object], int],
) -> list[Share]:
    """Each arm's events, in arm order, arms with none left out; ``route`` picks an event source's arm.

    A request's key becomes per-event keys here, so event ``i`` gets ``<key>#<i>`` whichever arm it
    lands in.
    """
    indices_by_arm: tuple[list[int], list[int]] = ([], [])
    for index, event in enumerate(events):
        source = event.get("source") if isinstance(event, dict) else None
        indices_by_arm[route(fallback_source if source is None else source)].append(index)
    out: list[Share] = []
    for arm, indices in enumerate(indices_by_arm):
        if not indices:
            continue
        chosen = [events[i] for i in indices]
        if idempotency_key is not None:
            chosen = [
                {**e, "idempotency_key": request_scoped_key(e.get("idempotency_key"), idempotency_key, i)}
                if isinstance(e, dict)
                else e
                for e, i in zip(chosen, indices, strict=True)
            ]
        out.append((arm, indices, chosen))
    return out


def reindexed(exc: EventValidationError, indices: list[int]) -> EventValidationError:
    """``exc`` raised for one arm's share, with ``index`` naming the event in the whole request."""
    where = exc.index
    index = indices[where] if where is not None and 0 <= where < len(indices) else where
    return EventValidationError(exc.field, str(exc).split(": ", 1)[-1], index=index)
