"""Rules: per-type aggregation rules, set in Python or read from a TOML file.

Enters: :class:`TypeRule` values, or a TOML file (``SSE_RULES_FILE``).
Inside: :mod:`.type_rule` (one type's rule and its checks), :mod:`.rules` (the rule set, its
defaults and the TOML loading), :mod:`.shaping` (what a rule does to a group of events) and
:mod:`.deadlines` (when a buffered event is due under its type's batch timeout).
Leaves: :class:`AggregationRules`, which the pipeline asks for each type's batch timeout, how its
events group into messages and which types travel alone, and which the digests ask for their
digest windows.
Next: :mod:`sse_batcher.batcher.pipeline` (buffer, aggregate) and
:mod:`sse_batcher.batcher.digests`.
"""

from __future__ import annotations

from sse_batcher.batcher.rules.rules import DEFAULT_TYPE_RULES, AggregationRules
from sse_batcher.batcher.rules.type_rule import TypeRule

__all__ = ["DEFAULT_TYPE_RULES", "AggregationRules", "TypeRule"]
