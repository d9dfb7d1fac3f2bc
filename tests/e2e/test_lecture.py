"""The lecture kit in Chromium at a projector's 1280x720: a clean first load and deep links,
the presenter view (main figure in view, larger type, full-screen button, settings from the
link), guided lesson steps (Next / Back, ``?step=k``), and a movie made on a page and
downloaded."""

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

W, H = 1280, 720

# Recorded from the first byte of every page: any sidebar menu of file names and any
# "Page not found" while the app starts.
WATCH = """() => {
    window.__seen = {fileMenu: false, notFound: false};
    new MutationObserver(() => {
        const nav = document.querySelector("[data-testid='stSidebarNav']");
        // the pages/ folder's menu: "app", "eos", ..., "spectral bias" (file names)
        if (nav && /(^|\\n)(app|spectral bias)(\\n|$)/.test(nav.innerText)) window.__seen.fileMenu = true;
        if (document.body && document.body.innerText.includes("Page not found")) window.__seen.notFound = true;
    }).observe(document, {subtree: true, childList: true, characterData: true});
}"""

MAIN_BOX = """() => { const el = document.querySelector("[data-testid='stPlotlyChart']");
    const r = el.getBoundingClientRect(); return {y: r.y, bottom: r.bottom, right: r.right}; }"""

AXIS_FONT = """() => Math.min(...Array.from(document.querySelectorAll(
    "[data-testid='stPlotlyChart'] .g-xtitle text, [data-testid='stPlotlyChart'] .g-ytitle text"))
    .map(t => parseFloat(getComputedStyle(t).fontSize)))"""

TICK_FONT = """() => Math.min(...Array.from(document.querySelectorAll(
    "[data-testid='stPlotlyChart'] .xtick text, [data-testid='stPlotlyChart'] .ytick text"))
    .map(t => parseFloat(getComputedStyle(t).fontSize)))"""


@pytest.fixture
def projector(browser):
    ctx = browser.new_context(viewport={"width": W, "height": H}, accept_downloads=True)
    yield ctx
    ctx.close()


def shot(page, output_path, name: str) -> None:
    Path(output_path).mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(Path(output_path) / f"{name}.png"))


def wait_main_figure(page, timeout=120_000):
    expect(page.locator("[data-testid='stPlotlyChart'] .main-svg").first).to_be_visible(timeout=timeout)
    expect(page.locator("[data-testid='stMetricValue']").first).to_be_visible(timeout=timeout)
    page.wait_for_timeout(1500)  # the layout settles (metrics and captions under the figure)


def test_first_load_and_deep_links_are_clean(server, projector):
    """First in this module, so on a fresh server: no menu of file names, no "Page not found",
    no console error and no failed request; every deep link opens its page."""
    page = projector.new_page()
    page.add_init_script(f"({WATCH})()")
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
    page.goto(server)
    expect(page.get_by_role("heading", name="landscape")).to_be_visible(timeout=90_000)
    page.wait_for_timeout(1000)
    for path, heading in [("live", "Live training"), ("spectral-bias", "Spectral bias"),
                          ("home", "landscape"), ("eos", "Edge of stability")]:
        page.goto(f"{server}/{path}")
        expect(page.get_by_role("heading", name=heading)).to_be_visible(timeout=60_000)
        page.wait_for_timeout(1000)
        seen = page.evaluate("window.__seen")
        assert not seen["fileMenu"], f"/{path}: the sidebar listed file names"
        assert not seen["notFound"], f"/{path}: 'Page not found' was shown"
        assert page.url.rstrip("/").endswith(f"/{path}"), page.url
    # the app's menu: one link per page (the /home alias is not listed)
    links = page.locator("[data-testid='stSidebarNav'] a")
    expect(links).to_have_count(10)
    expect(links.filter(has_text="Edge of stability")).to_be_visible()
    assert errors == [], errors


@pytest.mark.parametrize("path", ["live", "surface"])
def test_presenter_view_main_figure_in_view_larger_type_full_screen(server, projector, output_path, path):
    normal = projector.new_page()
    normal.goto(f"{server}/{path}")
    wait_main_figure(normal)
    normal_axis, normal_tick = normal.evaluate(AXIS_FONT), normal.evaluate(TICK_FONT)
    normal.close()

    page = projector.new_page()
    page.goto(f"{server}/{path}?lecture=1")
    wait_main_figure(page)
    shot(page, output_path, f"{path}-presenter")
    box = page.evaluate(MAIN_BOX)
    assert box["y"] >= 0 and box["bottom"] <= H and box["right"] <= W, f"{path}: {box}"
    expect(page.locator("[data-testid='stSidebar']")).to_be_hidden()  # the controls are away
    axis, tick = page.evaluate(AXIS_FONT), page.evaluate(TICK_FONT)
    assert axis >= 18 and axis > normal_axis, (axis, normal_axis)
    assert tick > normal_tick, (tick, normal_tick)
    button = page.get_by_test_id("fullscreen-button")
    expect(button).to_be_visible()
    b = button.bounding_box()
    assert b["y"] + b["height"] <= box["y"], "the full-screen button must not cover the figure"
    button.click()
    page.wait_for_function("document.fullscreenElement === document.documentElement", timeout=5000)
    button.click()
    page.wait_for_function("document.fullscreenElement === null", timeout=5000)


def test_presenter_link_restores_the_settings(server, projector):
    page = projector.new_page()
    page.goto(f"{server}/surface?lecture=1&grid=15&dirs=random&log=true")
    wait_main_figure(page)
    expect(page.get_by_text(re.compile(r"grid: 15x15"))).to_be_visible()
    # the full-screen row's "Show controls" brings the sidebar back with the same settings
    page.get_by_test_id("exit-presenter-button").click()
    page.wait_for_url(re.compile(r"/surface\?(?!.*lecture)"))
    wait_main_figure(page)
    expect(page.locator("[data-testid='stSidebar']")).to_be_visible()
    assert "grid=15" in page.url and "log=true" in page.url
    expect(page.get_by_text(re.compile(r"grid: 15x15"))).to_be_visible()


def step_text(page, box: str) -> str:
    return page.locator(box).first.inner_text()


def test_lesson_steps_next_back_and_deep_link(server, projector, output_path):
    page = projector.new_page()
    page.goto(f"{server}/eos?step=3")
    box = ".st-key-lesson_steps"
    expect(page.locator(box)).to_contain_text("Step 3 of 5", timeout=60_000)
    expect(page.locator(box)).to_contain_text("It hovers at the edge")
    shot(page, output_path, "eos-step-3")
    page.locator(box).get_by_role("button", name="Next").click()
    expect(page.locator(box)).to_contain_text("Step 4 of 5")
    assert re.search(r"[?&]step=4\b", page.url), page.url
    page.locator(box).get_by_role("button", name="Back").click()
    page.locator(box).get_by_role("button", name="Back").click()
    expect(page.locator(box)).to_contain_text("Step 2 of 5")
    assert re.search(r"[?&]step=2\b", page.url), page.url
    page.locator(box).get_by_role("button", name="Back").click()
    expect(page.locator(box)).to_contain_text("Step 1 of 5")
    expect(page.locator(box).get_by_role("button", name="Back")).to_be_disabled()
    # an out-of-range step opens the last one
    page.goto(f"{server}/spectral-bias?step=99")
    expect(page.locator(box)).to_contain_text("Step 5 of 5", timeout=60_000)
    expect(page.locator(box).get_by_role("button", name="Next")).to_be_disabled()


def test_lesson_steps_in_the_presenter_view_leave_the_figure_in_view(server, projector, output_path):
    page = projector.new_page()
    page.goto(f"{server}/eos?lecture=1&step=2")
    bar = page.locator(".st-key-lesson_steps_bar")
    expect(bar).to_contain_text("Step 2 of 5: Sharpness climbs to the edge", timeout=60_000)
    expect(page.locator("[data-testid='stPlotlyChart'] .main-svg").first).to_be_visible(timeout=60_000)
    page.wait_for_timeout(1500)
    box = page.evaluate(MAIN_BOX)
    assert box["bottom"] <= H, f"eos presenter view with steps: the first figure ends at {box['bottom']}"
    title = page.get_by_role("heading", name="Edge of stability").bounding_box()
    b = bar.bounding_box()
    assert b["y"] + b["height"] <= title["y"] + 8, "the step bar must not cover the page title"
    shot(page, output_path, "eos-presenter-steps")
    bar.get_by_role("button", name="Details").click()
    expect(page.get_by_text("press Start.")).to_be_visible()
    shot(page, output_path, "eos-presenter-step-details")
    page.keyboard.press("Escape")
    bar.get_by_role("button", name="Next").click()
    expect(bar).to_contain_text("Step 3 of 5")
    assert "lecture=1" in page.url and re.search(r"[?&]step=3\b", page.url), page.url


def test_movie_from_the_surface_page_downloads(server, projector, output_path):
    import imageio.v3 as iio

    page = projector.new_page()
    # the movie's settings come from the link, like every other setting
    page.goto(f"{server}/surface?surface_movie_format=GIF&surface_movie_frames=2")
    wait_main_figure(page)
    page.get_by_text("Make a movie", exact=True).first.click()  # open the expander
    make = page.locator(".st-key-surface_movie_make button")
    expect(make).to_be_visible()
    t0 = time.perf_counter()
    make.click()
    download = page.locator(".st-key-surface_movie_download button")
    try:
        expect(download).to_be_visible(timeout=180_000)
    except AssertionError:  # say what the movie box showed instead
        raise AssertionError(page.locator("[data-testid='stExpander']").last.inner_text()) from None
    seconds = time.perf_counter() - t0
    shot(page, output_path, "surface-movie-ready")
    with page.expect_download() as info:
        download.click()
    d = info.value
    assert d.suggested_filename == "digits-mlp-movie.gif"
    blob = Path(d.path()).read_bytes()
    assert blob[:6] in (b"GIF87a", b"GIF89a")
    frames = iio.imread(blob, index=None, extension=".gif")
    assert frames.shape[0] == 2 and frames.shape[2] >= 800, frames.shape
    print(f"movie: 2-frame GIF from the surface page in {seconds:.1f} s ({len(blob)} bytes)")
    # the settings are still those of the link
    assert "surface_movie_format=GIF" in page.url and "surface_movie_frames=2" in page.url


def test_movie_error_is_one_line_and_keeps_the_settings(server, projector):
    page = projector.new_page()
    # a custom model before any training: no trajectory yet
    page.goto(f"{server}/live?mode=Custom&c_widths=16&live_movie_frames=12")
    expect(page.get_by_role("heading", name="Live training")).to_be_visible(timeout=60_000)
    expect(page.locator("[data-testid='stPlotlyChart']").first).to_be_visible(timeout=60_000)
    page.get_by_text("Make a movie", exact=True).first.click()
    page.locator(".st-key-live_movie_make button").click()
    alert = page.locator("[data-testid='stAlertContentError']").filter(has_text="3 snapshots")
    expect(alert).to_be_visible(timeout=60_000)
    assert len(alert.inner_text().strip().splitlines()) == 1, alert.inner_text()
    assert "mode=Custom" in page.url and "c_widths=16" in page.url and "live_movie_frames=12" in page.url


def test_movie_cancel_keeps_the_settings(server, projector):
    page = projector.new_page()
    page.goto(f"{server}/surface?surface_movie_format=MP4&surface_movie_frames=240&surface_movie_view=3-D")
    wait_main_figure(page)
    page.get_by_text("Make a movie", exact=True).first.click()
    page.locator(".st-key-surface_movie_make button").click()
    cancel = page.locator(".st-key-surface_movie_cancel button")
    expect(cancel).to_be_visible(timeout=30_000)
    cancel.click()
    alert = page.locator("[data-testid='stAlertContentError']").filter(has_text="Cancelled")
    expect(alert).to_be_visible(timeout=30_000)
    assert len(alert.inner_text().strip().splitlines()) == 1, alert.inner_text()
    expect(page.locator(".st-key-surface_movie_download")).to_have_count(0)
    for kept in ("surface_movie_format=MP4", "surface_movie_frames=240", "surface_movie_view=3-D"):
        assert kept in page.url, page.url
    # the same settings make the movie when asked again (the box stays open)
    expect(page.locator(".st-key-surface_movie_make button")).to_be_visible()
