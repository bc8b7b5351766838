"""What every sizing strategy shares (``batcher/sizing/_types.py``): a SizingConfig out of range, or naming an
unknown strategy, is a ConfigError."""

from __future__ import annotations

import pytest

from sse_batcher.batcher.errors import ConfigError
from sse_batcher.batcher.sizing._types import SizingConfig


def test_config_out_of_range_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="min_size"):
        SizingConfig(min_size=50, max_size=10)
    with pytest.raises(ConfigError, match="low_load_percent"):
        SizingConfig(low_load_percent=90, high_load_percent=80)
    with pytest.raises(ConfigError, match="decrease_factor"):
        SizingConfig(decrease_factor=1.0)


def test_an_unknown_strategy_is_a_config_error_naming_the_choices() -> None:
    with pytest.raises(ConfigError, match="fixed, conservative, balanced, aggressive, adaptive, learned"):
        SizingConfig(strategy="greedy")
