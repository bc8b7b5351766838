"""Save a screenshot of the running dashboard (demo workers, embedded PostgreSQL) as docs/dashboard.png.

Run: ``python scripts/screenshot.py [--width 1280 --height 800] [--out docs/dashboard.png]``.
It starts a throwaway embedded PostgreSQL and the server, sends one burst so aggregates show,
waits for the charts to fill (and for every chart to have drawn), and shoots the page in Debian's chromium.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._pg import postgres  # noqa: E402
from tests.frontend.browser import launch_chromium  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--full-page", action="store_true")
    # A minute and more, so the charts (whose time axis spans at least a minute) are filled.
    parser.add_argument("--seconds", type=float, default=70.0, help="how long the demo runs before the shot")
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    args = parser.parse_args()
    with postgres() as pg, tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(pg.create_database("shot"), Path(tmp), demo=True)
        server.start()
        try:
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                page = browser.new_page(viewport={"width": args.width, "height": args.height})
                page.goto(server.url)
                time.sleep(args.seconds / 2)
                httpx.post(f"{server.url}api/demo/burst", json={"count": 400}, timeout=10)
                time.sleep(args.seconds / 2)
                # Every chart has drawn (the latency chart needs two polls with events between them).
                for chart in ("throughput", "latency", "batchsize"):
                    page.wait_for_selector(f"#chart-{chart} .chart-empty", state="hidden", timeout=30_000)
                page.mouse.move(0, 0)  # legends show the latest values, not the ones under a cursor
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=args.full_page)
                browser.close()
        finally:
            server.stop()
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
