"""At a projector's 1280x720, in normal mode and in the presenter view (``?lecture=1``): every
page that computes on open shows its main figure whole, without scrolling; no figure title and
no metric label is clipped; opening the app logs no console error."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

W, H = 1280, 720
# Pages that draw a figure as soon as they open (the Hessian page draws its top eigenvalues
# first and streams the trace and density in after; its metrics row comes with them).
PAGES = ["live", "surface", "eos", "opposing", "spectral-bias", "hessian"]
SQUARE = {"live", "surface"}  # main figure: a loss surface over a square domain

BOXES = """() => Array.from(document.querySelectorAll("[data-testid='stPlotlyChart']")).map(el => {
    const r = el.getBoundingClientRect();
    const svg = el.querySelector(".main-svg");
    const s = svg ? svg.getBoundingClientRect() : r;
    const titles = Array.from(el.querySelectorAll(".gtitle, .annotation-text, .g-xtitle, .g-ytitle"))
        .map(t => { const b = t.getBoundingClientRect();
                    return {text: t.textContent, left: b.left, right: b.right, top: b.top, bottom: b.bottom}; })
        .filter(t => t.text);
    const a = el.querySelector(".nsewdrag");  // the first panel's plot area
    const p = a ? a.getBoundingClientRect() : r;
    return {x: r.x, y: r.y, w: r.width, h: r.height, pw: p.width, ph: p.height,
            svg: {left: s.left, right: s.right, top: s.top, bottom: s.bottom}, titles};
})"""

CLIPPED_METRICS = """() => Array.from(document.querySelectorAll("[data-testid='stMetricLabel'] *"))
    .filter(e => e.children.length === 0 && e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)"""


@pytest.fixture
def projector(browser):
    ctx = browser.new_context(viewport={"width": W, "height": H})
    yield ctx
    ctx.close()


def first_figure(page, timeout=120_000):
    chart = page.locator("[data-testid='stPlotlyChart'] .main-svg").first
    expect(chart).to_be_visible(timeout=timeout)
    # measured once the page has finished (its metrics are drawn): a preview may come first
    expect(page.locator("[data-testid='stMetricValue']").first).to_be_visible(timeout=timeout)
    page.wait_for_timeout(1500)  # let the layout settle (metrics, captions under it)
    return page.evaluate(BOXES)


@pytest.mark.parametrize("lecture", [False, True], ids=["normal", "presenter"])
@pytest.mark.parametrize("path", PAGES)
def test_main_figure_in_view_and_titles_whole(server, projector, output_path, path, lecture):
    page = projector.new_page()
    page.goto(f"{server}/{path}" + ("?lecture=1" if lecture else ""))
    boxes = first_figure(page)
    Path(output_path).mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(Path(output_path) / f"{path}-{'presenter' if lecture else 'normal'}.png"))
    main = boxes[0]
    assert main["y"] >= 0 and main["x"] >= 0, main
    assert main["y"] + main["h"] <= H, f"{path}: main figure ends at y={main['y'] + main['h']:.0f} > {H}"
    assert main["x"] + main["w"] <= W, main
    assert main["h"] >= 300, f"{path}: main figure only {main['h']:.0f} px tall"
    # a sensible aspect: every panel readable; a square domain (a loss surface) drawn near square
    assert main["ph"] >= 80, f"{path}: first panel only {main['ph']:.0f} px tall"
    if path in SQUARE:
        assert 0.6 <= main["pw"] / main["ph"] <= 1.7, f"{path}: panel {main['pw']:.0f}x{main['ph']:.0f}"
    for box in boxes:  # every figure drawn, in view or below it
        s = box["svg"]
        for t in box["titles"]:
            assert t["left"] >= s["left"] - 1 and t["right"] <= s["right"] + 1, \
                f"{path}: title clipped at the side: {t['text']!r}"
            assert t["top"] >= s["top"] - 1 and t["bottom"] <= s["bottom"] + 1, \
                f"{path}: title clipped at the top or bottom: {t['text']!r}"
    assert page.evaluate(CLIPPED_METRICS) == [], f"{path}: metric label clipped"


def test_clean_start_no_console_errors_no_deploy(server, projector):
    page = projector.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
    page.goto(server)
    expect(page.get_by_role("heading", name="landscape")).to_be_visible(timeout=90_000)
    # Client-side navigation to a page that computes on open, as a newcomer would click it.
    page.get_by_role("link", name="Edge of stability").first.click()
    first_figure(page)
    assert errors == [], errors
    assert page.get_by_text("Page not found").count() == 0
    assert page.get_by_role("button", name="Deploy").count() == 0
