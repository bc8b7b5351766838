"""TypeRule (``batcher/rules/type_rule.py``): a rule checks its own fields, so a bad digest rule is refused."""

from __future__ import annotations

import pytest

from sse_batcher.batcher.errors import ConfigError
from sse_batcher.batcher.rules import AggregationRules


@pytest.mark.parametrize(
    "values",
    [
        {"digest_seconds": 0.5},
        {"digest_seconds": 60, "max_items": 0},
        {"digest_seconds": 60, "align": "hour"},
        {"digest_seconds": 60, "keep": "all"},
        {"digest_seconds": 60, "group_by": ""},
        {"live": False},
    ],
)
def test_invalid_digest_rules_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        AggregationRules().merged({"types": {"ALERT": values}})
