"""A publish's idempotency keys, scoped to its publisher, and the check for a key reused with other content.

Keys are one namespace in the store, so each is prefixed with a digest of the publisher's
rate-limit key (its token's digest, or its address when publishing is open): no publisher can
claim, or learn the id of, another's key. The content digest the batcher stores beside a key
(``sse_batcher.batcher.pipeline.aggregate.content_digest``) is computed here the same way, so a
key reused with other content is refused before anything is emitted, once the first is stored.
Two such publishes racing before either is stored are caught by the write instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final

import anyio
import msgspec

from sse_batcher.batcher import EventValidationError, PostgresStore, StoreUnavailableError
from sse_batcher.batcher.events import NORMAL, Event, check_idempotency_key, encode_json
from sse_batcher.batcher.log._sql import SELECT_BY_KEYS
from sse_batcher.batcher.pipeline.aggregate import content_digest
from sse_batcher.batcher.pipeline.intake import request_scoped_key

__all__ = ["ScopedKeys", "scoped_key"]

# Longest key the batcher takes (check_idempotency_key).
_MAX_KEY_CHARS: Final = 200
# The check must not hold a publish up while PostgreSQL is slow: past this, the write decides.
_CHECK_TIMEOUT_SECONDS: Final = 1.0


def scoped_key(publisher: str, key: str) -> str:
    """``key`` in ``publisher``'s namespace: a digest of the publisher's rate-limit key, then the key.

    A key too long to fit with the prefix is replaced by its own digest (still one per key).
    """
    scope = hashlib.sha256(publisher.encode()).hexdigest()[:16]
    scoped = f"{scope}:{key}"
    if len(scoped) > _MAX_KEY_CHARS:
        scoped = f"{scope}:#{hashlib.sha256(key.encode()).hexdigest()}"
    return scoped


class ScopedKeys:
    """The events of one publish with their keys (own, or ``<header>#<i>``) scoped to ``publisher``.

    ``events`` is what to emit. A key that is not valid is left in place for the batcher's checks
    to refuse, with the event's index and after its other fields.
    """

    def __init__(self, events: Sequence[Any], request_key: str | None, publisher: str) -> None:
        self.events: list[Any] = []
        # Storage key ("k:" and the scoped key) -> the event's index and the client's key.
        self._named: dict[str, tuple[int, str]] = {}
        for index, event in enumerate(events):
            own = event.get("idempotency_key") if isinstance(event, dict) else None
            key = request_scoped_key(own, request_key, index) if isinstance(event, dict) else None
            try:
                valid = check_idempotency_key(key)
            except EventValidationError:
                self.events.append({**event, "idempotency_key": key})
                continue
            if valid is None:
                self.events.append(event)
                continue
            scoped = scoped_key(publisher, valid)
            self._named[f"k:{scoped}"] = (index, valid)
            self.events.append({**event, "idempotency_key": scoped})

    def named(self, storage_key: str) -> tuple[int | None, str]:
        """The index and client's key of the event stored under ``storage_key``."""
        index, key = self._named.get(storage_key, (None, "?"))
        return index, key

    async def stored_conflict(self, store: PostgresStore, default_source: str) -> tuple[int, str] | None:
        """The first event whose key is stored with other content: its index and key; None when none is.

        Raises:
            StoreError: PostgreSQL did not answer in time (nothing is known).
            BatcherClosedError: the store is closed.
        """
        digests = self._digests(default_source)
        if not digests:
            return None
        try:
            with anyio.fail_after(_CHECK_TIMEOUT_SECONDS):
                rows = await store.fetch(SELECT_BY_KEYS, list(digests))
        except TimeoutError:
            raise StoreUnavailableError("the idempotency check had no answer in time") from None
        stored = {row[1]: row[3] for row in rows if row[3] is not None}
        conflicts = [self._named[key] for key, digest in digests.items() if stored.get(key, digest) != digest]
        return min(conflicts) if conflicts else None

    def _digests(self, default_source: str) -> dict[str, str]:
        """Each keyed event's content digest by storage key, as the batcher will store it.

        An event the batcher will refuse anyway (a field of the wrong kind) is skipped.
        """
        digests: dict[str, str] = {}
        for storage_key, (index, _) in self._named.items():
            event = self.events[index]
            data = event.get("data")
            source = event.get("source") or default_source
            priority = event.get("priority", NORMAL)
            key = event.get("key")
            if not (isinstance(data, dict) and isinstance(event.get("type"), str) and isinstance(source, str)):
                continue
            if not (isinstance(priority, str) and (key is None or isinstance(key, str))):
                continue
            try:
                raw = encode_json(data)
            except (TypeError, ValueError, OverflowError, RecursionError):
                continue
            content = Event(event["type"], source, 0, 0.0, msgspec.Raw(raw), priority, key)
            digests[storage_key] = content_digest(content)
        return digests
