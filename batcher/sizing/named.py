"""Strategies by name: the one place that maps ``SSE_BATCH_STRATEGY`` names to strategy classes.

It sits above ``strategies.py`` and ``learned.py`` (``learned`` builds on the adaptive strategy), so
the imports run one way: this module -> learned -> strategies.
"""

from __future__ import annotations

from dataclasses import replace

from sse_batcher.batcher.rules.rules import AggregationRules
from sse_batcher.batcher.sizing._types import SizingConfig
from sse_batcher.batcher.sizing.learned import LearnedStrategy
from sse_batcher.batcher.sizing.strategies import (
    AdaptiveStrategy,
    AggressiveStrategy,
    BalancedStrategy,
    ConservativeStrategy,
    FixedStrategy,
    SizingStrategy,
)

__all__ = ["make_strategy", "pin_rule_timeouts"]


def make_strategy(config: SizingConfig, *, default_size: int, max_timeout_seconds: float) -> SizingStrategy:
    """The strategy ``config.strategy`` names, for a batcher configured with this size and timeout.

    Raises:
        ConfigError: ``max_timeout_seconds`` is not positive.
    """
    kinds: dict[str, type[SizingStrategy]] = {
        kind.name: kind
        for kind in (
            FixedStrategy,
            ConservativeStrategy,
            BalancedStrategy,
            AggressiveStrategy,
            AdaptiveStrategy,
            LearnedStrategy,
        )
    }
    return kinds[config.strategy](config, default_size=default_size, max_timeout_seconds=max_timeout_seconds)


def pin_rule_timeouts(rules: AggregationRules, config: SizingConfig, *, max_timeout_seconds: float) -> AggregationRules:
    """``rules`` with each ``strategy = "..."`` type given that strategy's fixed timeout as its batch timeout.

    A rule with its own ``timeout_seconds`` keeps it; a strategy whose timeout moves (``adaptive``,
    ``learned``) leaves the type following the batcher's batch timeout.

    Raises:
        ConfigError: ``max_timeout_seconds`` is not positive.
    """
    types = dict(rules.types)
    for name, rule in rules.types.items():
        if rule.strategy is None or rule.timeout_seconds is not None:
            continue
        named = replace(config, strategy=rule.strategy)
        strategy = make_strategy(named, default_size=config.min_size, max_timeout_seconds=max_timeout_seconds)
        pinned = strategy.pinned_timeout()
        if pinned is not None:
            types[name] = replace(rule, timeout_seconds=pinned)
    return AggregationRules(types=types, default=rules.default)
