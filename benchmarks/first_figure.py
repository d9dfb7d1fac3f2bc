"""Time to first figure, page by page, as a user sees it: a fresh `streamlit run app.py`,
Chromium at 1280x720 (Debian's /usr/bin/chromium through Playwright), each page opened with
its default settings in a new tab; the clock runs from navigation to the first Plotly chart
drawn (``stPlotlyChart .main-svg``), then again for a revisit in a second tab (the same
settings, so a cached result should make it near-instant).

    python benchmarks/first_figure.py [--pages live surface eos opposing spectral-bias hessian]
                                      [--timeout 180] [--url http://127.0.0.1:8501]

Prints one line per page: first visit and revisit in a new tab in seconds (``timeout`` when no
figure came), the new tab's part after the page's title showed (Streamlit's own start and
Plotly's load in a new tab, a few seconds on two cores, come before it), the revisit in the
same tab (away to Home and back through the sidebar), plus the 1-minute load average before each page,
since timings taken on a busy machine are not final. Without ``--url`` it starts (and stops)
its own server with a fresh cache.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["live", "surface", "eos", "opposing", "spectral-bias", "hessian"]
FIGURE = "[data-testid='stPlotlyChart'] .main-svg"
TITLE = "[data-testid='stMainBlockContainer'] h1"


def start_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, LANDSCAPE_CACHE=tempfile.mkdtemp(prefix="landscape-bench-"))
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).status == 200:
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("streamlit did not start")


def time_to_figure(browser, url: str, timeout_s: float) -> tuple[float | None, float | None]:
    """Seconds from navigation to the first figure, and from the page's title (Streamlit has
    loaded and the page's script runs) to that figure: the part the page itself decides."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 720})
    page = ctx.new_page()
    t0 = time.perf_counter()
    page.goto(url)
    try:
        page.wait_for_selector(TITLE, timeout=timeout_s * 1000, state="visible")
        t_title = time.perf_counter() - t0
        page.wait_for_selector(FIGURE, timeout=timeout_s * 1000, state="visible")
        t = time.perf_counter() - t0
        return t, t - t_title
    except Exception:  # playwright's TimeoutError
        return None, None
    finally:
        ctx.close()


def revisit_in_tab(browser, url: str, name: str, timeout_s: float) -> float | None:
    """Seconds from clicking the page's link in the sidebar to its figure, in a tab that
    opened the page, left it for Home through the sidebar and comes back: the revisit a
    student makes while the app is open (Plotly and the session are loaded already)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 720})
    page = ctx.new_page()
    try:
        page.goto(f"{url}/{name}")
        page.wait_for_selector(FIGURE, timeout=timeout_s * 1000, state="visible")
        page.locator("[data-testid='stSidebarNav'] a").first.click()  # Home
        page.wait_for_selector(FIGURE, timeout=timeout_s * 1000, state="detached")
        t0 = time.perf_counter()
        page.locator(f"[data-testid='stSidebarNav'] a[href$='/{name}']").first.click()
        page.wait_for_selector(FIGURE, timeout=timeout_s * 1000, state="visible")
        return time.perf_counter() - t0
    except Exception:  # playwright's TimeoutError
        return None
    finally:
        ctx.close()


def warm_up(browser, url: str, timeout_s: float) -> None:
    """Open the home page (no figure on it) until its title shows."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 720})
    try:
        ctx.new_page().goto(url)
        ctx.pages[0].wait_for_selector(TITLE, timeout=timeout_s * 1000, state="visible")
    except Exception:  # playwright's TimeoutError: measure anyway
        pass
    finally:
        ctx.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", nargs="+", default=PAGES)
    ap.add_argument("--timeout", type=float, default=180.0)
    ap.add_argument("--url", default=None, help="an app already running (default: start one)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    proc, url = (None, args.url) if args.url else start_server()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("LANDSCAPE_CHROMIUM", "/usr/bin/chromium"),
                                        args=["--no-sandbox", "--disable-gpu"])
            warm_up(browser, url, args.timeout)  # the first page of a server imports torch
            print(f"{'page':<15} {'first (s)':>10} {'new tab (s)':>12} {'after title':>12} "
                  f"{'same tab (s)':>13} {'load avg':>9}")
            for name in args.pages:
                load = os.getloadavg()[0]
                first, _ = time_to_figure(browser, f"{url}/{name}", args.timeout)
                again, page_part = time_to_figure(browser, f"{url}/{name}", args.timeout)
                in_tab = revisit_in_tab(browser, url, name, args.timeout)
                fmt = lambda t: "timeout" if t is None else f"{t:.1f}"  # noqa: E731
                print(f"{name:<15} {fmt(first):>10} {fmt(again):>12} {fmt(page_part):>12} "
                      f"{fmt(in_tab):>13} {load:>9.2f}", flush=True)
            browser.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
