"""Two browser tabs on one server at different CPU threads and seeds: each gets, bit for bit,
the surface it gets alone.

The server runs with its result cache off (``LANDSCAPE_RESULT_CACHE_MB=0``), so the concurrent
phase computes again rather than reading what the tabs computed alone; its own preset cache is
a fresh folder (filled in the first, single-tab phase)."""

import os

import pytest
from playwright.sync_api import expect

SETTINGS = {"a": {"threads": 1, "seed": 3}, "b": {"threads": 2, "seed": 5}}


@pytest.fixture(scope="module")
def server_env(tmp_path_factory):
    """Environment for this module's server (set before conftest's ``server`` starts it)."""
    saved = {k: os.environ.get(k) for k in ("LANDSCAPE_CACHE", "LANDSCAPE_RESULT_CACHE_MB")}
    os.environ["LANDSCAPE_CACHE"] = str(tmp_path_factory.mktemp("preset-cache"))
    os.environ["LANDSCAPE_RESULT_CACHE_MB"] = "0"
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def server(server_env, server):  # conftest's server, started with this module's environment
    return server


def surface_url(server, tab: str) -> str:
    s = SETTINGS[tab]
    return f"{server}/surface?grid=11&threads={s['threads']}&seed={s['seed']}"


def open_tab(browser, server, tab: str):
    ctx = browser.new_context(viewport={"width": 1300, "height": 900})
    page = ctx.new_page()
    page.goto(surface_url(server, tab))
    return ctx, page


def read_surface(page, timeout=180_000) -> list:
    """The finished contour's z values, read from the Plotly figure in the page."""
    expect(page.get_by_text("Lowest loss on the grid")).to_be_visible(timeout=timeout)
    expect(page.locator("[data-testid='stException']")).to_have_count(0)
    # The metric can show before Plotly has drawn the figure: wait for the contour itself.
    handle = page.wait_for_function("""() => {
        for (const el of document.querySelectorAll("[data-testid='stPlotlyChart'] .js-plotly-plot")) {
            const t = (el._fullData || []).find(d => d.type === "contour");
            if (t) return Array.from(t.z, row => Array.from(row));
        }
        return null;
    }""", timeout=timeout)
    return handle.json_value()


def test_two_tabs_with_their_own_threads_and_seeds_get_what_they_get_alone(server, browser):
    alone = {}
    for tab in ("a", "b"):  # each tab alone, one after the other
        ctx, page = open_tab(browser, server, tab)
        alone[tab] = read_surface(page)
        ctx.close()
    assert alone["a"] and alone["b"] and len(alone["a"]) == 11 and len(alone["a"][0]) == 11
    assert alone["a"] != alone["b"]  # the seeds give different directions
    # now both at once, on one server
    tabs = {tab: open_tab(browser, server, tab) for tab in ("a", "b")}
    try:
        together = {tab: read_surface(page) for tab, (_, page) in tabs.items()}
        for tab, (_, page) in tabs.items():
            threads = page.get_by_role("spinbutton", name="CPU threads").input_value()
            assert threads == str(SETTINGS[tab]["threads"])
    finally:
        for ctx, _ in tabs.values():
            ctx.close()
    assert together == alone  # bit for bit
