"""End to end in Chromium: lessons, Play / Pause, the trajectory moving, shared URLs, Cancel."""

import re
import time
from pathlib import Path

from playwright.sync_api import expect


def wait_ready(page, timeout=60_000):
    """The app has rendered: stApp present, no skeleton, not running."""
    expect(page.locator("[data-testid='stApp']")).to_be_visible(timeout=timeout)
    expect(page.locator("[data-testid='stSkeleton']")).to_have_count(0, timeout=timeout)


def shot(page, output_path, name: str) -> Path:
    """A screenshot under the test's output folder (pytest-playwright's ``--output``)."""
    path = Path(output_path) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=False)
    return path


def trajectory(page) -> list:
    """The (x, y) points of the drawn trajectory, read from the live Plotly figure."""
    return page.evaluate("""() => {
        const el = document.querySelector("[data-testid='stPlotlyChart'] .js-plotly-plot");
        const t = el && el._fullData ? el._fullData.find(d => d.name === "trajectory") : null;
        return t ? Array.from(t.x).map((x, i) => [x, t.y[i]]) : [];
    }""")


def wait_for(read, ok, seconds=15.0):
    """Poll ``read()`` until ``ok(value)``; return the last value (the caller asserts)."""
    end = time.perf_counter() + seconds
    value = read()
    while not ok(value) and time.perf_counter() < end:
        time.sleep(0.2)
        value = read()
    assert ok(value), value
    return value


def step_count(page) -> int:
    text = page.locator("[data-testid='stMetricValue']").first.inner_text()
    return int(text.split("/")[0].strip())


def test_lesson_play_pause_and_the_trajectory_moves(server, page, output_path):
    page.goto(server)
    wait_ready(page)
    # The first page of a fresh server imports torch and warms up: allow for a slow machine.
    expect(page.get_by_role("heading", name="landscape")).to_be_visible(timeout=90_000)
    shot(page, output_path, "home")
    # One click on a lesson opens the live page with its preset.
    page.locator("a[href*='preset=moons-mlp']").first.click()
    wait_ready(page)
    expect(page.get_by_role("heading", name="Live training")).to_be_visible(timeout=30_000)
    expect(page.locator("[data-testid='stMetricValue']").first).to_contain_text("0 /",
                                                                               timeout=30_000)
    assert "preset=moons-mlp" in page.url
    expect(page.locator("[data-testid='stPlotlyChart']").first).to_be_visible(timeout=30_000)
    before = wait_for(lambda: trajectory(page), lambda t: len(t) == 1)  # the initial weights
    t0 = time.perf_counter()
    page.get_by_role("button", name=re.compile("Play")).click()
    # Within 5 s of Play the step counter moves and the plot changes.
    deadline = t0 + 5
    while time.perf_counter() < deadline and step_count(page) < 10:
        time.sleep(0.2)
    assert step_count(page) >= 10, "training did not start within 5 s of Play"
    # ... and the trajectory on the landscape has moved, also within those 5 s.
    wait_for(lambda: trajectory(page), lambda t: len(t) > 3 and t[-1] != before[0],
             seconds=max(0.5, deadline - time.perf_counter()))
    shot(page, output_path, "live-playing")
    page.get_by_role("button", name=re.compile("Pause")).click()
    page.wait_for_timeout(1200)
    paused_at = step_count(page)
    page.wait_for_timeout(1500)
    assert step_count(page) - paused_at <= 1, "Pause did not stop training within a second"
    assert paused_at < 400  # it really paused mid-run (moons-mlp has 400 steps)


def test_shared_url_reproduces_the_settings(server, page, output_path):
    page.goto(f"{server}/surface?preset=moons-mlp&grid=11&dirs=pca&log=true")
    wait_ready(page)
    expect(page.get_by_role("heading", name="Loss surface")).to_be_visible(timeout=30_000)
    expect(page.get_by_role("combobox", name="Preset")).to_have_value("moons-mlp")
    expect(page.locator("[data-testid='stMetricValue']").first).to_be_visible(timeout=90_000)
    expect(page.locator("[data-testid='stPlotlyChart']").first).to_be_visible()
    assert "PC1" in page.locator("[data-testid='stPlotlyChart']").first.inner_text()
    shot(page, output_path, "surface-pca")
    assert page.locator("[data-testid='stException']").count() == 0


def test_lecture_link_hides_controls(server, page, output_path):
    page.goto(f"{server}/live?preset=moons-mlp&lecture=1")
    wait_ready(page)
    expect(page.get_by_role("heading", name="Live training")).to_be_visible(timeout=30_000)
    expect(page.locator("section[data-testid='stSidebar']")).to_be_hidden()
    shot(page, output_path, "lecture")


def test_upload_the_example_checkpoint_and_see_its_surface(server, page, output_path):
    example = Path(__file__).resolve().parents[2] / "assets" / "examples" / "digits-cnn-bn.pt2"
    page.goto(f"{server}/inspect?i_grid=11&i_samples=200")
    wait_ready(page)
    expect(page.get_by_role("heading", name="Inspect a checkpoint")).to_be_visible(timeout=30_000)
    page.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files(str(example))
    expect(page.get_by_text("digits-cnn-bn.pt2: pt2")).to_be_visible(timeout=60_000)
    chart = page.locator("[data-testid='stPlotlyChart']").first
    expect(chart).to_be_visible(timeout=240_000)
    expect(page.locator("[data-testid='stMetricValue']").first).to_be_visible()
    assert page.locator("[data-testid='stException']").count() == 0
    shot(page, output_path, "inspect-upload")


def test_opposing_run_shows_progress_and_cancels_within_a_second(server, page, output_path):
    # 3,000 steps (the slider's most, bound to the URL): long enough to cancel mid-run.
    page.goto(f"{server}/opposing?op_steps=3000&op_seed=5")
    wait_ready(page)
    expect(page.get_by_role("heading", name="Opposing signals")).to_be_visible(timeout=90_000)
    progress = page.locator("[data-testid='stProgress']")
    expect(progress).to_be_visible(timeout=90_000)
    # in progress: training steps are counting up (past the data and the first sharpness)
    expect(progress).to_contain_text(re.compile(r"training: step [1-9]"), timeout=60_000)
    shot(page, output_path, "opposing-running")
    t0 = time.perf_counter()
    page.get_by_role("button", name=re.compile("Cancel")).click()
    expect(progress).to_have_count(0, timeout=10_000)
    expect(page.get_by_text(re.compile("Run cancelled"))).to_be_visible(timeout=10_000)
    seconds = time.perf_counter() - t0
    shot(page, output_path, "opposing-cancelled")
    assert seconds < 5, f"the run took {seconds:.1f} s to stop after Cancel"
    assert "stopped at step" in page.get_by_text(re.compile("Run cancelled")).inner_text()
    # the settings stay: in the URL and in the sidebar; no traceback, no results drawn
    assert "op_steps=3000" in page.url and "op_seed=5" in page.url
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.locator("[data-testid='stPlotlyChart']").count() == 0
    page.wait_for_timeout(1500)  # and it does not start again by itself
    assert progress.count() == 0
