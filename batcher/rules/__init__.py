"""Rules: per-type aggregation rules, set in Python or read from a TOML file.

Enters: :class:`TypeRule` values, or a TOML file (``SSE_RULES_FILE``).
Leaves: :class:`AggregationRules`, which the pipeline asks how long a type may wait, how its events
group into messages and which types travel alone, and which the digests ask for their windows.
Next: :mod:`sse_batcher.batcher.pipeline` (buffer, aggregate) and
:mod:`sse_batcher.batcher.digests`.
"""

from __future__ import annotations

from sse_batcher.batcher.rules.rules import DEFAULT_TYPE_RULES, AggregationRules, TypeRule

__all__ = ["DEFAULT_TYPE_RULES", "AggregationRules", "TypeRule"]
