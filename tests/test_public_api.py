"""Each package's public API: what ``__all__`` lists exists, is sorted, and nothing else is public."""

from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = ["batcher", "server", "workers"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_every_name_exists(name: str) -> None:
    package = importlib.import_module(name)
    exported = list(package.__all__)
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n)) or exported == sorted(exported)
    assert len(exported) == len(set(exported))
    for symbol in exported:
        assert hasattr(package, symbol), f"{name}.{symbol} is in __all__ but missing"


@pytest.mark.parametrize("name", PACKAGES)
def test_no_public_name_is_left_out_of_all(name: str) -> None:
    package = importlib.import_module(name)
    public = {
        n
        for n, value in vars(package).items()
        if not n.startswith("_") and not isinstance(value, types.ModuleType) and n != "annotations"
    }
    assert public <= set(package.__all__)


def test_design_md_python_api_imports() -> None:
    from batcher import SSEEventBatcher
    from workers import SSEBroadcaster, Worker

    assert callable(SSEEventBatcher) and callable(SSEBroadcaster) and isinstance(Worker, type)


def test_sizing_has_one_name_per_concept() -> None:
    # Issue 13: the policy is a SizingStrategy (one class per named strategy), and what applies it
    # to a running batcher with its load monitor is a BatchSizer; the three old names are gone.
    import batcher

    assert {"BatchSizer", "SizingStrategy", "SizingConfig", "make_strategy"} <= set(batcher.__all__)
    for old in ("SizingController", "DynamicBatchManager", "AdaptiveSizing"):
        assert not hasattr(batcher, old), old
    made = [
        batcher.make_strategy(batcher.SizingConfig(strategy=name), default_size=10, max_timeout_seconds=0.5)
        for name in batcher.STRATEGY_NAMES
    ]
    assert [strategy.name for strategy in made] == list(batcher.STRATEGY_NAMES)
    assert len({type(strategy) for strategy in made}) == len(made)  # one class per named strategy
