"""Screenshots of every page at a projector's 1280x720, as a newcomer sees them: a fresh
`streamlit run app.py` and Debian's Chromium through Playwright, each page opened with its
default settings, in normal mode and (lesson and figure pages) in the presenter view.

    python benchmarks/screenshots.py [--out docs/screenshots] [--pages eos hessian]

Waits for a page's first figure (pages that compute on open) or its title, then for the page
to settle, and writes ``<page>.png`` and ``<page>-presenter.png``; prints one line per file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from first_figure import FIGURE, TITLE, start_server, warm_up  # noqa: E402

# page address -> (computes a figure on open, has a presenter view worth showing)
PAGES = {"": (False, False), "live": (True, True), "surface": (True, True), "hessian": (True, True),
         "inspect": (False, False), "show": (False, False), "eos": (True, True),
         "opposing": (True, True), "spectral-bias": (True, True), "flatness": (False, True)}
# a guided lesson step, as a slide would link to it
STEPS = [("eos-step3-presenter", "eos?lecture=1&step=3"), ("spectral-bias-step2", "spectral-bias?step=2")]


def shoot(browser, url: str, figure: bool, out: Path, timeout_s: float) -> Path:
    ctx = browser.new_context(viewport={"width": 1280, "height": 720})
    page = ctx.new_page()
    try:
        page.goto(url)
        page.wait_for_selector(FIGURE if figure else TITLE, timeout=timeout_s * 1000, state="visible")
        page.wait_for_timeout(2500)  # metrics, captions, the rest of the first run
        page.screenshot(path=str(out))
        return out
    finally:
        ctx.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/screenshots")
    ap.add_argument("--pages", nargs="+", default=list(PAGES))
    ap.add_argument("--timeout", type=float, default=180.0)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    proc, url = start_server()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("LANDSCAPE_CHROMIUM", "/usr/bin/chromium"),
                                        args=["--no-sandbox", "--disable-gpu"])
            warm_up(browser, url, args.timeout)
            for name in args.pages:
                figure, presenter = PAGES[name]
                stem = name or "home"
                t = time.perf_counter()
                shot = shoot(browser, f"{url}/{name}", figure, out / f"{stem}.png", args.timeout)
                print(f"{shot} {time.perf_counter() - t:.1f} s", flush=True)
                if presenter:
                    shot = shoot(browser, f"{url}/{name}?lecture=1", figure,
                                 out / f"{stem}-presenter.png", args.timeout)
                    print(shot, flush=True)
            for stem, address in STEPS:
                print(shoot(browser, f"{url}/{address}", True, out / f"{stem}.png", args.timeout), flush=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
