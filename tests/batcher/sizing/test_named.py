"""Strategies by name (``batcher/sizing/named.py``): a rule naming a strategy gets that strategy's fixed timeout."""

from __future__ import annotations

from sse_batcher.batcher.rules import AggregationRules, TypeRule
from sse_batcher.batcher.sizing.named import pin_rule_timeouts
from tests.batcher.sizing.test_strategies import CONFIG


def test_a_rule_naming_a_strategy_gets_its_pinned_timeout_as_batch_timeout_unless_it_has_its_own() -> None:
    rules = AggregationRules(
        types={
            "JOB_STARTED": TypeRule(strategy="conservative"),
            "JOB_PROGRESS": TypeRule(timeout_seconds=2.0, strategy="conservative"),
            "NOTE": TypeRule(strategy="adaptive"),
            "BIG": TypeRule(strategy="aggressive"),
        }
    )
    pinned = pin_rule_timeouts(rules, CONFIG, max_timeout_seconds=0.5)
    assert pinned.rule("JOB_STARTED").timeout_seconds == 0.02
    assert pinned.rule("JOB_PROGRESS").timeout_seconds == 2.0
    assert pinned.rule("NOTE").timeout_seconds is None  # follows the batcher's moving timeout
    assert pinned.rule("BIG").timeout_seconds == 0.5
    assert pinned.timeouts(0.5) == {"JOB_STARTED": 0.02, "JOB_PROGRESS": 0.5, "BIG": 0.5}
