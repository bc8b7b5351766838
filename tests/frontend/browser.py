"""Debian's chromium for the browser tests and the screenshot script, and what to do without them.

In CI (``CI`` set to anything but empty, ``0`` or ``false``) a missing browser, Playwright or node
fails the test: a run that silently skipped them would pass without testing the dashboard. On a
developer's machine they are skipped, naming what is missing and how to get it.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from typing import Any, NoReturn

import pytest

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "in_ci", "launch_chromium", "require_node", "require_playwright"]

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling hosts this machine cannot reach.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def in_ci() -> bool:
    """True when running under CI, where nothing may be skipped for want of a tool."""
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def _missing(what: str) -> NoReturn:
    message = f"{what} (bash scripts/test.sh installs it)"
    if in_ci():
        pytest.fail(f"{message}; CI must run these tests, not skip them", pytrace=False)
    pytest.skip(message)


def require_playwright() -> Any:
    """Return ``playwright.sync_api`` with Debian's chromium present, else fail (CI) or skip."""
    try:
        sync_api = importlib.import_module("playwright.sync_api")
    except ImportError:
        _missing("Playwright is not installed")
    if not Path(CHROMIUM).exists():
        _missing(f"Debian's chromium is missing at {CHROMIUM}")
    return sync_api


def require_node() -> str:
    """Return the path of node, else fail (CI) or skip."""
    node = shutil.which("node")
    if node is None:
        _missing("node is not installed (Debian package nodejs)")
    return node


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
