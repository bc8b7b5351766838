"""The names of the sizing strategies, apart from their code, so rules.py can check a name cheaply.

``batcher.rules`` is imported by the batcher itself; the strategies import the load monitor,
which imports the batcher, so the rule check reads the names from here instead.
"""

from __future__ import annotations

from typing import Final

__all__ = ["STRATEGY_NAMES"]

STRATEGY_NAMES: Final[tuple[str, ...]] = ("fixed", "conservative", "balanced", "aggressive", "adaptive", "learned")
