"""Sizing: the batch size and timeout follow the load.

Enters: what each flush reports (:class:`~sse_batcher.batcher.pipeline.FlushReport`) and samples of
the machine and this process (:class:`ServerLoadMonitor`, psutil).
Inside: a named :class:`SizingStrategy` (:mod:`.strategies`, :mod:`.learned`, picked by
:func:`make_strategy`) turns the signals of one decision period into a decision; :class:`BatchSizer`
asks it in its own task and applies the decision to the batcher; :class:`SplitBatcher` runs two
strategies side by side as a live A/B.
Leaves: a new batch size and timeout for the pipeline, and figures for the stats.
Next: back to :mod:`sse_batcher.batcher.pipeline`, through the batcher's ``set_batch_size`` and
``set_batch_timeout``.
"""

from __future__ import annotations

from sse_batcher.batcher.config import STRATEGY_NAMES
from sse_batcher.batcher.sizing.load import LoadSample, ServerLoadMonitor
from sse_batcher.batcher.sizing.named import make_strategy
from sse_batcher.batcher.sizing.sizer import BatchSizer, SizingStats
from sse_batcher.batcher.sizing.split import SplitBatcher
from sse_batcher.batcher.sizing.strategies import SizingConfig, SizingStrategy

__all__ = [
    "STRATEGY_NAMES",
    "BatchSizer",
    "LoadSample",
    "ServerLoadMonitor",
    "SizingConfig",
    "SizingStats",
    "SizingStrategy",
    "SplitBatcher",
    "make_strategy",
]
