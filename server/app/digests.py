"""The digests of /api/stats and the dashboard: each digest rule with its open windows.

The digester itself (``sse_batcher.batcher.digests.digester``) runs as a background task of the runtime; this module
only shapes what it reports::

    {"enabled", "grace_seconds", "passes", "passes_skipped", "errors", "digests_emitted", "cursor",
     "last_pass_at", "rules": [{"type", "digest_type", "digest_seconds", "max_items", "keep",
     "group_by", "align", "live", "windows": [{"source", "group", "window_start", "window_end",
     "closes_at", "count"}, ...]}, ...]}

Times are epoch seconds. The windows are every node's (they live in PostgreSQL), as of this node's
last pass, soonest to close first. A window's ``group`` is a value out of its events' data (a user
id, say), so it is shown only to a caller that may read every event anyway; for anyone else it is
null (the window, its source and its count stay).
"""

from __future__ import annotations

from typing import Any

from sse_batcher.batcher.digests import Digester
from sse_batcher.batcher.digests.message import digest_type

__all__ = ["digest_stats"]


def digest_stats(digester: Digester | None, *, show_groups: bool = False) -> dict[str, Any]:
    """The digest part of the stats body; ``{"enabled": false, "rules": []}`` without digest rules.

    ``show_groups`` False nulls each window's ``group``: it is event data.
    """
    if digester is None:
        return {"enabled": False, "rules": []}
    stats = digester.statistics()
    windows: dict[str, list[dict[str, Any]]] = {name: [] for name in digester.rules}
    for window in stats.open_windows:
        listed = windows.get(window.event_type)
        if listed is not None:
            listed.append(
                {
                    "source": window.source,
                    "group": window.group if show_groups else None,
                    "window_start": window.window_start,
                    "window_end": window.window_end,
                    "closes_at": window.closes_at,
                    "count": window.count,
                }
            )
    rules = [
        {
            "type": name,
            "digest_type": digest_type(name),
            "digest_seconds": rule.digest_seconds,
            "max_items": rule.max_items,
            "keep": rule.keep,
            "group_by": rule.group_by,
            "align": rule.align,
            "live": rule.live,
            "windows": windows[name],
        }
        for name, rule in digester.rules.items()
    ]
    return {
        "enabled": True,
        "grace_seconds": digester.grace_seconds,
        "passes": stats.passes,
        "passes_skipped": stats.passes_skipped,
        "errors": stats.errors,
        "digests_emitted": stats.digests_emitted,
        "cursor": stats.cursor,
        "last_pass_at": stats.last_pass_at,
        "rules": rules,
    }
