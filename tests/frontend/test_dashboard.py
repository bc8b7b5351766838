"""The dashboard in real Chromium (Debian's, through Playwright) against the real server and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres
from tests.frontend.browser import launch_chromium, require_playwright
from tests.server_process import ServerProcess

pytestmark = pytest.mark.browser


@pytest.fixture
def browser_ready() -> None:
    """Before a server is started: fail in CI, or skip elsewhere, without Playwright and chromium."""
    require_playwright()


@pytest.fixture
def server(browser_ready: None, pg_server: EmbeddedPostgres, tmp_path: Path) -> Iterator[ServerProcess]:
    dsn = pg_server.create_database(f"ui_{uuid.uuid4().hex[:12]}")
    process = ServerProcess(dsn, tmp_path, demo=True)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def page(server: ServerProcess) -> Iterator[Any]:
    with require_playwright().sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.problems = []  # console errors, page errors and dialogs, to assert there are none
            page.on("console", lambda m: page.problems.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: page.problems.append(f"pageerror: {e}"))
            page.on("dialog", lambda d: (page.problems.append(f"dialog: {d.message}"), d.dismiss()))
            yield page
        finally:
            browser.close()


def _number(page: Any, selector: str) -> int:
    text = page.text_content(selector) or ""
    digits = "".join(ch for ch in text if ch.isdigit())
    return int(digits) if digits else 0


def test_dashboard_loads_without_errors_and_shows_live_events(page: Any, server: ServerProcess) -> None:
    page.goto(server.url)
    page.wait_for_selector("#log .log-row", timeout=15_000)
    assert page.text_content("#conn-state") == "Connected"
    page.wait_for_function("() => document.querySelector('#batch-sizing-mode').textContent === 'adaptive'")
    assert page.problems == []


def test_counters_and_charts_move(page: Any, server: ServerProcess) -> None:
    page.goto(server.url)
    page.wait_for_function("() => /\\d/.test(document.querySelector('#total-events').textContent)", timeout=15_000)
    page.wait_for_selector("#chart-throughput canvas", timeout=15_000)
    before = _number(page, "#total-events")
    canvas = "document.querySelector('#chart-throughput canvas').toDataURL()"
    chart_before = page.evaluate(f"() => {canvas}")
    page.wait_for_function(
        f"() => parseInt(document.querySelector('#total-events').textContent.replace(/\\D/g, '')) > {before}",
        timeout=15_000,
    )
    # The chart scrolls once a second: wait for it to draw new points, whatever the machine's speed.
    page.wait_for_function(f"before => {canvas} !== before", arg=chart_before, polling=250, timeout=15_000)
    assert page.problems == []


def test_burst_from_the_control_arrives_as_aggregates_and_saved_events(page: Any, server: ServerProcess) -> None:
    page.goto(server.url)
    page.wait_for_selector("#panel-burst:not([hidden])", timeout=15_000)
    page.wait_for_function("() => /\\d/.test(document.querySelector('#total-saved').textContent)", timeout=15_000)
    saved_before = _number(page, "#total-saved")
    page.fill("#burst-count", "300")
    page.click("#burst-button")
    page.wait_for_selector(".log-row .log-badge:not([hidden])", timeout=15_000)
    badge = page.text_content(".log-row .log-badge:not([hidden])") or ""
    assert badge.startswith("aggregate of ")
    assert int(badge.removeprefix("aggregate of ")) > 1
    saved = "parseInt(document.querySelector('#total-saved').textContent.replace(/\\D/g, ''))"
    page.wait_for_function(f"() => {saved} >= {saved_before + 200}", timeout=20_000)
    assert page.problems == []


def test_hostile_event_text_is_shown_as_text_and_never_run(page: Any, server: ServerProcess) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    page.goto(server.url)
    page.wait_for_selector("#log .log-row", timeout=15_000)
    page.fill("#filter-source", "attacker")  # the demo keeps the log moving; keep this row in view
    answer = httpx.post(
        f"{server.url}api/events",
        json={"type": "XSS_PROBE", "source": "attacker", "data": {"name": hostile, "html": "<script>x()</script>"}},
    )
    assert answer.status_code == 202
    row = page.wait_for_selector('.log-row[data-type="XSS_PROBE"]', timeout=15_000)
    assert hostile in (row.text_content() or "") or hostile in (page.text_content("#log") or "")
    assert page.locator("#log img").count() == 0
    assert page.locator("#log script").count() == 0
    assert page.evaluate("() => document.querySelectorAll('img[src=\"x\"]').length") == 0
    assert page.problems == []


def test_page_reconnects_after_a_server_restart_and_resumes_without_duplicates(
    page: Any, server: ServerProcess
) -> None:
    page.goto(server.url)
    page.wait_for_selector("#log .log-row", timeout=15_000)
    server.stop()
    page.wait_for_function("() => document.querySelector('#conn-state').textContent !== 'Connected'", timeout=30_000)
    last_before = int(page.text_content("#last-id") or "0")
    server.start()
    page.wait_for_function("() => document.querySelector('#conn-state').textContent === 'Connected'", timeout=30_000)
    page.wait_for_function(
        f"() => [...document.querySelectorAll('#log .log-row')].some(r => Number(r.dataset.id) > {last_before})",
        timeout=30_000,
    )
    keys = page.eval_on_selector_all("#log .log-row", "rows => rows.map(r => r.dataset.key)")
    assert len(keys) == len(set(keys))
    # The browser saw the server go away; anything else must not be an error.
    assert [p for p in page.problems if "ERR_CONNECTION_REFUSED" not in p and "Failed to fetch" not in p] == []


def test_dashboard_runs_under_its_content_security_policy_without_a_violation(page: Any, server: ServerProcess) -> None:
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    response = page.goto(server.url)
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    page.wait_for_selector("#log .log-row", timeout=15_000)
    page.wait_for_selector("#chart-throughput canvas", timeout=15_000)
    assert page.text_content("#conn-state") == "Connected"
    assert [text for text in console if "Content Security Policy" in text] == []
    assert page.problems == []
    # The policy is in force: an injected inline script does not run, and the browser says so in
    # the console (so the check above would have seen a violation of the dashboard's own).
    with page.expect_console_message(lambda m: "Content Security Policy" in m.text, timeout=10_000):
        page.evaluate(
            "() => { const s = document.createElement('script'); s.textContent = 'window.__inlineRan = true';"
            " document.head.append(s); }"
        )
    assert page.evaluate("() => window.__inlineRan === undefined")


def test_latency_chart_draws_once_events_flow_and_every_legend_shows_numbers(page: Any, server: ServerProcess) -> None:
    page.goto(server.url)
    # The overlay goes once an interval between two polls had events with a delivery age.
    page.wait_for_selector("#chart-latency canvas", timeout=15_000)
    page.wait_for_selector("#chart-latency .chart-empty", state="hidden", timeout=20_000)
    canvas = "document.querySelector('#chart-latency canvas').toDataURL()"
    drawn = page.evaluate(f"() => {canvas}")
    page.wait_for_function(f"before => {canvas} !== before", arg=drawn, polling=250, timeout=15_000)
    # Once the cursor has been over a chart and left, each legend entry shows its latest value, not a dash.
    page.hover("#chart-latency .u-over")
    page.mouse.move(0, 0)
    legend_values = """() => [...document.querySelectorAll('.chart .u-legend .u-series')].map(row => [
        row.querySelector('.u-label').textContent, row.querySelector('.u-value').textContent])"""
    page.wait_for_function(
        f"() => ({legend_values})().every(([label, value]) => /\\d/.test(value))", polling=250, timeout=20_000
    )
    values = dict(page.evaluate(legend_values))
    assert {"events/s", "p50", "p99", "commit p99", "batch size"} <= set(values), values
    assert values["p50"].endswith(" ms") and values["events/s"].endswith("/s"), values
    assert page.problems == []


def test_workers_table_fits_a_phone_screen(page: Any, server: ServerProcess) -> None:
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(server.url)
    page.wait_for_selector("#workers-table tbody tr", timeout=15_000)
    page.wait_for_function(
        "() => /\\d/.test(document.querySelector('#workers-table tbody tr td.num').textContent)", timeout=15_000
    )
    fit = page.evaluate(
        """() => { const t = document.querySelector('#workers-table');
                   return [t.scrollWidth, t.parentElement.clientWidth, document.documentElement.scrollWidth]; }"""
    )
    table, card, width = fit
    assert table <= card, fit  # it fits its card: nothing to scroll sideways
    assert width <= 360, fit
    assert page.problems == []


def test_nodes_table_shows_this_node_alive_and_fits_a_phone_screen(page: Any, server: ServerProcess) -> None:
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(server.url)
    page.wait_for_selector("#nodes-table tbody tr .pill", timeout=15_000)
    page.wait_for_function(
        "() => document.querySelector('#nodes-table tbody tr .pill').textContent === 'alive'", timeout=15_000
    )
    row = page.locator("#nodes-table tbody tr").first
    assert (row.locator("th").text_content() or "").endswith("(here)")
    assert page.locator("#nodes-table tbody tr").count() == 1
    assert page.is_hidden("#nodes-empty")
    # The table scrolls inside its card; the page itself never gets wider than the screen.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 360
    assert page.problems == []


def test_a_live_ab_shows_both_arms_side_by_side_with_their_strategies(
    browser_ready: None, pg_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    dsn = pg_server.create_database(f"ui_{uuid.uuid4().hex[:12]}")
    process = ServerProcess(dsn, tmp_path, demo=True, env={"SSE_BATCH_STRATEGY_B": "conservative"})
    process.start()
    try:
        with require_playwright().sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                page = browser.new_page()
                problems: list[str] = []
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.goto(process.url)
                page.wait_for_selector("#panel-ab:not([hidden])", timeout=15_000)
                assert page.text_content("#ab-arm-a") == "A: adaptive"
                assert page.text_content("#ab-arm-b") == "B: conservative"
                assert page.locator("#ab-table tbody tr").count() == 8
                assert (page.text_content("#ab-verdict") or "").endswith(("samples", "messages"))
                assert problems == []
            finally:
                browser.close()
    finally:
        process.stop()


def test_charts_open_with_the_last_minutes_the_server_kept(
    browser_ready: None, pg_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    dsn = pg_server.create_database(f"ui_{uuid.uuid4().hex[:12]}")
    server = ServerProcess(dsn, tmp_path, demo=False)
    server.start()
    try:
        # Activity before the page exists: a reader (so delivery latency is measured) and publishes.
        with httpx.Client(base_url=server.url, timeout=10) as client, client.stream("GET", "events") as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            for n in range(40):
                answer = client.post("api/events?wait=stored", json={"type": "BEFORE_THE_PAGE", "data": {"n": n}})
                assert answer.status_code == 201
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                points = client.get("api/history").json()["points"]
                if any(p["events"] > 0 for p in points) and any(p["p50_ms"] is not None for p in points):
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"the server kept no history of the activity: {points}")
        # Quiet now: whatever the charts show on load, the page did not see happen.
        with require_playwright().sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
                page.goto(server.url)
                for chart in ("#chart-throughput", "#chart-latency"):
                    page.wait_for_selector(f"{chart} canvas", timeout=15_000)
                    page.wait_for_selector(f"{chart} .chart-empty", state="hidden", timeout=5_000)
            finally:
                browser.close()
    finally:
        server.stop()


@pytest.fixture
def quiet_server(browser_ready: None, pg_server: EmbeddedPostgres, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server without the demo: only what the test publishes is in the log."""
    dsn = pg_server.create_database(f"ui_{uuid.uuid4().hex[:12]}")
    process = ServerProcess(dsn, tmp_path, demo=False)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _job(type_: str, job_id: int, **data: Any) -> dict[str, Any]:
    """A job event keyed by its job, as the workers emit them."""
    return {"type": type_, "source": "render", "key": str(job_id), "data": {"job_id": job_id, **data}}


def _publish_stored(server: ServerProcess, events: list[dict[str, Any]]) -> None:
    answer = httpx.post(f"{server.url}api/events", params={"wait": "stored"}, json=events, timeout=20)
    assert answer.status_code == 201


@contextmanager
def _dashboard(server: ServerProcess) -> Iterator[Any]:
    """The dashboard of ``server`` opened in a new Chromium, closed afterwards."""
    with require_playwright().sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(server.url)
            yield page
        finally:
            browser.close()


def test_dashboard_opened_mid_run_shows_every_job_already_running_at_once(quiet_server: ServerProcess) -> None:
    events = [_job("JOB_STARTED", i) for i in range(30)]
    events += [_job("JOB_PROGRESS", i, percent=40, step="tile 2/5") for i in range(0, 30, 2)]
    events += [_job("JOB_COMPLETED", i) for i in range(25, 30)] + [_job("JOB_FAILED", i) for i in range(22, 25)]
    _publish_stored(quiet_server, events)
    # Nothing is published from here on: only the snapshot can tell the page what is running.
    with _dashboard(quiet_server) as page:
        page.wait_for_function("() => document.querySelectorAll('#jobs li.job').length === 22", timeout=15_000)
        shown = page.eval_on_selector_all("#jobs li.job", "rows => rows.map(r => Number(r.dataset.jobId))")
        percent = page.text_content("#jobs li.job[data-job-id='4'] .job-pct")
        count = page.text_content("#jobs-count")
    assert sorted(shown) == list(range(22))
    assert percent == "40 %" and count == "22 running"


def test_a_row_taken_over_by_another_job_never_shows_the_previous_jobs_bar(quiet_server: ServerProcess) -> None:
    # Rows are reused by position: when job 1 (at 90 %) finishes and job 2 starts, job 2 takes the
    # first row. Its bar must read 0 % from its first frame, not slide back from job 1's 90 %.
    with _dashboard(quiet_server) as page:
        page.wait_for_selector("#conn-state[data-state='open']")
        _publish_stored(quiet_server, [_job("JOB_STARTED", 1), _job("JOB_PROGRESS", 1, percent=90)])
        page.wait_for_function(
            """() => {
              const fill = document.querySelector("#jobs li.job[data-job-id='1'] .job-bar-fill");
              return fill && fill.getAnimations().length === 0
                && new DOMMatrix(getComputedStyle(fill).transform).a === 0.9;
            }"""
        )
        # Every frame from the one job 2's row appears in: its bar's scale, and whether it is moving.
        page.evaluate(
            """() => {
              window.jobTwoScales = [];
              const tick = () => {
                const fill = document.querySelector("#jobs li.job[data-job-id='2'] .job-bar-fill");
                if (fill) {
                  const scale = new DOMMatrix(getComputedStyle(fill).transform).a;
                  window.jobTwoScales.push([scale, fill.getAnimations().length]);
                }
                if (window.jobTwoScales.length < 30) requestAnimationFrame(tick);
              };
              requestAnimationFrame(tick);
            }"""
        )
        _publish_stored(quiet_server, [_job("JOB_COMPLETED", 1), _job("JOB_STARTED", 2)])
        page.wait_for_function("() => window.jobTwoScales.length >= 30", timeout=15_000)
        scales = page.evaluate("() => window.jobTwoScales")
        first_row = page.eval_on_selector("#jobs li.job", "row => row.dataset.jobId")
    assert first_row == "2"
    assert all(sample == [0, 0] for sample in scales), scales
