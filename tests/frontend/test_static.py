"""Static checks of the dashboard in frontend/, no browser needed.

They guard the rules a browser test would only catch by luck: event text never goes through an
HTML parser, every url is relative (the app may be mounted under a prefix), the selectors the
browser tests use exist, vendored code ships with its licence, and every module parses. The
behaviour of frontend/sse-batcher.js and of the dashboard's pure helpers (adjustment text,
histogram percentiles, legend values) is tested under node's test runner (skipped without node,
except in CI, where that fails).
"""

from __future__ import annotations

import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

from tests.frontend.browser import require_node

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
HERE = Path(__file__).resolve().parent

REQUIRED_IDS = {
    "conn-state",
    "last-id",
    "log",
    "total-events",
    "total-saved",
    "total-saved-pct",
    "total-batches",
    "workers-table",
    "jobs",
    "chart-throughput",
    "chart-batchsize",
    "chart-latency",
    "batch-last-change",
    "burst-count",
    "burst-button",
    "filter-type",
    "filter-source",
    "batch-size-current",
    "batch-timeout-current",
    "batch-sizing-mode",
    "batch-strategy-state",
    "panel-ab",
    "ab-table",
    "ab-verdict",
    "breaker-state",
    "cpu",
    "mem",
}
HTML_SINKS = re.compile(r"\b(innerHTML|outerHTML|insertAdjacentHTML|document\.write|createContextualFragment)\b")


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.urls: list[str] = []
        self.label_for: set[str] = set()
        self.controls: set[str] = set()
        self.live: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
            if "aria-live" in a:
                self.live[a["id"]] = a["aria-live"]
        for key in ("src", "href"):
            if key in a:
                self.urls.append(a[key])
        if tag == "label" and "for" in a:
            self.label_for.add(a["for"])
        if tag in {"input", "select", "textarea"} and "id" in a:
            self.controls.add(a["id"])


def _index() -> _Collector:
    collector = _Collector()
    collector.feed((FRONTEND / "index.html").read_text(encoding="utf-8"))
    return collector


def _own_scripts() -> list[Path]:
    return sorted(p for p in FRONTEND.rglob("*.js") if "vendor" not in p.parts)


def test_index_has_every_selector_the_browser_tests_use() -> None:
    assert REQUIRED_IDS <= _index().ids


def test_every_form_control_has_a_label() -> None:
    page = _index()
    assert page.controls <= page.label_for


def test_connection_state_is_announced_politely() -> None:
    assert _index().live.get("conn-state") == "polite"


def test_index_urls_are_relative() -> None:
    for url in _index().urls:
        assert not url.startswith(("/", "http:", "https:")), url


def test_scripts_never_parse_strings_as_html() -> None:
    for path in _own_scripts():
        assert not HTML_SINKS.search(path.read_text(encoding="utf-8")), path


def test_scripts_request_only_relative_urls() -> None:
    call = re.compile(r"""\b(?:fetch|subscribe|EventSource)\(\s*["'`]([^"'`]*)""")
    for path in _own_scripts():
        for url in call.findall(path.read_text(encoding="utf-8")):
            assert not url.startswith("/"), (path, url)


def test_vendored_library_ships_with_its_licence() -> None:
    vendor = FRONTEND / "vendor"
    assert (vendor / "uPlot.iife.min.js").is_file()
    assert (vendor / "uPlot.min.css").is_file()
    assert "MIT License" in (vendor / "uPlot.LICENSE").read_text(encoding="utf-8")


def test_every_module_parses() -> None:
    node = require_node()
    for path in _own_scripts():
        result = subprocess.run(
            [node, "--input-type=module", "--check"],
            input=path.read_text(encoding="utf-8"),
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, (path, result.stderr)


def test_sse_client_behaviour_under_node() -> None:
    result = subprocess.run(
        [require_node(), "--test", str(HERE / "sse_client.test.mjs")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_helpers_behaviour_under_node() -> None:
    result = subprocess.run(
        [require_node(), "--test", str(HERE / "dashboard.test.mjs")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
