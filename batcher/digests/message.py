"""The digest message: what a closed window becomes, ``T_DIGEST``, its payload and its idempotency key.

A digest is an ordinary message in the log, so clients resume and replay it like any other. Its
idempotency key depends only on the window (type, source, group, start), so every node computes
the same one and the log stores one digest per window even if two nodes ever close it both.
"""

from __future__ import annotations

import hashlib
from typing import Final

import msgspec

from sse_batcher.batcher.digests.windows import DigestKey, Window
from sse_batcher.batcher.rules.type_rule import TypeRule

__all__ = ["digest_idem_key", "digest_payload", "digest_type"]

# Group values longer than this are hashed in the idempotency key (a btree entry has a size limit).
_MAX_KEY_GROUP_CHARS: Final = 100
_ENCODER: Final = msgspec.json.Encoder()


def digest_type(event_type: str) -> str:
    """Name the digest of ``event_type``: ``T`` -> ``T_DIGEST``."""
    return event_type + "_DIGEST"


class _DigestData(msgspec.Struct, gc=False):
    event_type: str
    group_by: str | None
    group: str | None
    window_start: float
    window_end: float
    count: int
    first_id: int
    last_id: int
    events: list[msgspec.Raw]
    truncated: bool


class _Digest(msgspec.Struct, gc=False):
    type: str
    source: str
    seq: int
    ts: float
    data: _DigestData


def digest_payload(key: DigestKey, window: Window, rule: TypeRule) -> bytes:
    """The ``data:`` JSON of the digest of ``window``: a single event of type ``T_DIGEST``.

    Its ``seq`` is 0 (no worker emitted it; its message id is its identity) and its ``ts`` the
    window's end.
    """
    event_type, source, group = key
    body = _Digest(
        type=digest_type(event_type),
        source=source,
        seq=0,
        ts=window.end_ms / 1000,
        data=_DigestData(
            event_type=event_type,
            group_by=rule.group_by,
            group=group if rule.group_by is not None else None,
            window_start=window.start_ms / 1000,
            window_end=window.end_ms / 1000,
            count=window.count,
            first_id=window.first_id,
            last_id=window.last_id,
            events=[msgspec.Raw(item) for item in window.items],
            truncated=window.truncated,
        ),
    )
    return _ENCODER.encode(body)


def digest_idem_key(key: DigestKey, start_ms: int) -> str:
    """``digest:<type>:<source>:<group>:<window start ms>``: every node computes the same one."""
    event_type, source, group = key
    if len(group) > _MAX_KEY_GROUP_CHARS:
        group = "sha256-" + hashlib.sha256(group.encode()).hexdigest()
    return f"digest:{event_type}:{source}:{group}:{start_ms}"
