"""The demo render farm: three simulated workers whose events look and arrive like a real farm's.

Enters: a batcher, and burst requests from the dashboard.
Inside: :class:`DemoFarm` runs the workers; :mod:`.jobs` decides what each simulated job does.
Leaves: job events, through each worker's broadcaster, into the batcher.
Next: :mod:`sse_batcher.batcher.pipeline`, like any other worker's events.
"""

from __future__ import annotations

from sse_batcher.workers.demo.farm import MAX_BURST, DemoFarm

__all__ = ["MAX_BURST", "DemoFarm"]
