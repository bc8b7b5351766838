"""Digests: durable windows over the stored log, closed into one digest message each.

Enters: stored rows of ``sse_events`` whose type has a digest rule (:mod:`sse_batcher.batcher.rules`).
Inside: pure logic first: :mod:`.items` reads the events out of a stored message, :mod:`.windows`
puts them into windows (which window, what it counts and keeps), :mod:`.message` turns a closed
window into its ``T_DIGEST`` message. :class:`Digester` runs that in PostgreSQL, one pass at a time
under an advisory lock. :mod:`.live` is the server's half of ``live = false``: the filter that keeps
a digested type out of the live fan-out.
Leaves: digest messages, written to the same log, so they reach every client like any other.
Next: the log (:mod:`sse_batcher.batcher.log`) and, through it, the server's hub.
"""

from __future__ import annotations

from sse_batcher.batcher.digests.digester import Digester, DigesterStats

__all__ = ["Digester", "DigesterStats"]
