"""Digests: durable windows over the stored log, closed into one digest message each.

Enters: stored rows of ``sse_events`` whose type has a digest rule (:mod:`sse_batcher.batcher.rules`).
Inside: :mod:`.windows` is the pure logic (which window an event belongs to, what it keeps, what it
emits); :class:`Digester` runs it in PostgreSQL, one pass at a time under an advisory lock.
Leaves: digest messages, written to the same log, so they reach every client like any other.
Next: the log (:mod:`sse_batcher.batcher.log`) and, through it, the server's hub.
"""

from __future__ import annotations

from sse_batcher.batcher.digests.digester import Digester, DigesterStats

__all__ = ["Digester", "DigesterStats"]
