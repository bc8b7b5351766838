"""Each package's public API: what ``__all__`` lists exists, is sorted, and nothing else is public."""

from __future__ import annotations

import importlib
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Every package of the mapped folders, found on disk, so a new sub-package is checked without being listed.
PACKAGES = ["sse_batcher"] + sorted(
    ".".join(("sse_batcher", *init.parent.relative_to(ROOT).parts))
    for top in ("batcher", "server", "workers")
    for init in (ROOT / top).rglob("__init__.py")
)


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


@pytest.mark.parametrize("name", PACKAGES)
def test_every_package_says_what_enters_and_leaves(name: str) -> None:
    doc = importlib.import_module(name).__doc__
    assert doc and len(doc.strip().splitlines()) >= 3, f"{name} needs a docstring that says what it is for"


def test_the_front_doors_stay_small() -> None:
    import sse_batcher
    import sse_batcher.batcher

    assert len(sse_batcher.batcher.__all__) <= 30
    assert len(sse_batcher.__all__) <= 15


def test_the_readme_python_api_imports() -> None:
    from sse_batcher import SSEBroadcaster, SSEEventBatcher, ThreadWorker
    from sse_batcher.workers import Worker

    assert callable(SSEEventBatcher) and callable(SSEBroadcaster) and issubclass(ThreadWorker, Worker)


def test_sizing_has_one_name_per_concept() -> None:
    # The policy is a SizingStrategy (one class per named strategy); what applies it to a running
    # batcher with its load monitor is a BatchSizer.
    from sse_batcher.batcher import sizing

    assert {"BatchSizer", "SizingStrategy", "SizingConfig", "make_strategy"} <= set(sizing.__all__)
    for old in ("SizingController", "DynamicBatchManager", "AdaptiveSizing"):
        assert not hasattr(sizing, old), old
    made = [
        sizing.make_strategy(sizing.SizingConfig(strategy=name), default_size=10, max_timeout_seconds=0.5)
        for name in sizing.STRATEGY_NAMES
    ]
    assert [strategy.name for strategy in made] == list(sizing.STRATEGY_NAMES)
    assert len({type(strategy) for strategy in made}) == len(made)  # one class per named strategy
