"""The dashboard's digests panel in real Chromium, against a real server process with digest rules."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres
from tests.frontend.browser import launch_chromium, require_playwright
from tests.server_process import ServerProcess

pytestmark = pytest.mark.browser

RULES = """
[types.APPROVAL_REQUEST]
digest_seconds = 900
max_items = 5
group_by = "user_id"

[types.ANNOUNCEMENT]
digest_seconds = 86400
live = false
"""


@pytest.fixture
def server(pg_server: EmbeddedPostgres, tmp_path: Path) -> Iterator[ServerProcess]:
    require_playwright()
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    dsn = pg_server.create_database(f"ui_{uuid.uuid4().hex[:12]}")
    process = ServerProcess(dsn, tmp_path, demo=False, env={"SSE_RULES_FILE": str(rules)})
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_digests_panel_lists_rules_and_open_windows(server: ServerProcess) -> None:
    events = [{"type": "APPROVAL_REQUEST", "source": "billing", "data": {"user_id": u}} for u in ("u1", "u1", "u2")]
    response = httpx.post(f"{server.url}api/events?wait=stored", json=events, timeout=10)
    assert response.status_code == 201, response.text
    problems: list[str] = []
    with require_playwright().sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page: Any = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.goto(server.url)
            page.wait_for_selector("#panel-digests:not([hidden])", timeout=15_000)
            page.wait_for_function(
                "() => document.querySelectorAll('#digests-table tbody tr td.num').length === 3", timeout=15_000
            )
            rows = page.eval_on_selector_all(
                "#digests-table tbody tr", "rows => rows.map(r => [...r.children].map(c => c.textContent))"
            )
        finally:
            browser.close()
    assert problems == []
    by_group = {row[3]: row for row in rows if row[0] == "APPROVAL_REQUEST"}
    assert by_group["u1"][4] == "2" and by_group["u2"][4] == "1"
    assert by_group["u1"][1] == "15 min · max 5 newest · by user_id" and by_group["u1"][5].startswith("in ")
    [announcement] = [row for row in rows if row[0] == "ANNOUNCEMENT"]
    assert "not live" in announcement[1] and announcement[5] == "no open window"
