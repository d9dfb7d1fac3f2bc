"""AppTest: every page runs, computes, shows results, and shows errors without tracebacks."""

import time

from streamlit.testing.v1 import AppTest

APP = "../app.py"


def app(**params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    for k, v in params.items():
        at.query_params[k] = v
    return at


def wait_for_surface(at: AppTest, tries: int = 120) -> AppTest:
    """The surface is computed in a background job; rerun until it is shown."""
    for _ in range(tries):
        at.run()
        assert not at.exception, at.exception
        if any(c.key == "main_fig" or c.key == "cmp_a" for c in at.get("plotly_chart")):
            return at
        time.sleep(0.25)
    raise AssertionError("the surface never appeared")


def test_home_lists_lessons_that_link_to_pages():
    at = app()
    at.run()
    assert not at.exception
    assert at.title[0].value == "landscape"
    from ui.nav import LESSONS

    links = at.get("page_link")
    assert len(links) == len(LESSONS) >= 10
    assert any("preset=moons-mlp" in str(link.proto) for link in links)


def test_shared_sidebar_reads_the_url():
    at = app(seed="7", threads="1")
    at.run()
    assert at.sidebar.number_input(key="seed").value == 7
    assert any("Found:" in c.value for c in at.sidebar.caption)


def test_surface_page_contour_metrics_and_recipe():
    at = app(preset="moons-mlp", grid="11")
    at.switch_page("pages/surface.py")
    wait_for_surface(at)
    fig = next(c for c in at.get("plotly_chart") if c.key == "main_fig")
    assert '"type":"contour"' in fig.proto.spec.replace(" ", "")
    values = {m.label: m.value for m in at.metric}
    assert float(values["Lowest loss on the grid"]) <= float(values["Loss at the model"])
    assert any("cos(dx, dy)" in c.value for c in at.caption)
    assert at.get("download_button")


def test_surface_page_views_and_pca():
    at = app(preset="moons-mlp", grid="11", dirs="pca", view="1-D")
    at.switch_page("pages/surface.py")
    wait_for_surface(at)
    spec = next(c for c in at.get("plotly_chart") if c.key == "main_fig").proto.spec
    assert "accuracy (%)" in spec and "PC1" in spec
    at.segmented_control(key="view").set_value("3-D")
    wait_for_surface(at)
    spec = next(c for c in at.get("plotly_chart") if c.key == "main_fig").proto.spec
    assert '"type":"surface"' in spec.replace(" ", "")


def test_surface_compare_uses_one_colour_scale():
    at = app(preset="moons-mlp", preset_b="moons-mlp", view="Compare", grid="11", norm="layer")
    at.switch_page("pages/surface.py")
    wait_for_surface(at)
    a = next(c for c in at.get("plotly_chart") if c.key == "cmp_a").proto.spec
    b = next(c for c in at.get("plotly_chart") if c.key == "cmp_b").proto.spec
    import json

    za = json.loads(a)["data"][0]
    zb = json.loads(b)["data"][0]
    assert za["zmin"] == zb["zmin"] and za["zmax"] == zb["zmax"]


def test_live_page_play_advances_and_pause_stops():
    at = app(preset="moons-mlp", speed="200")
    at.switch_page("pages/live.py")
    at.run()
    assert not at.exception
    step0 = at.metric[0].value
    assert step0.startswith("0 /")
    at.button(key="btn_play").click().run()
    s1 = 0
    for _ in range(40):  # AppTest does not tick run_every: rerun by hand
        time.sleep(0.25)
        at.run()
        s1 = int(at.metric[0].value.split("/")[0])
        if s1 > 20:
            break
    assert s1 > 20
    at.button(key="btn_pause").click().run()
    s2 = int(at.metric[0].value.split("/")[0])
    time.sleep(0.6)
    at.run()
    assert int(at.metric[0].value.split("/")[0]) - s2 <= 2
    at.button(key="btn_step").click().run()
    time.sleep(0.3)
    at.run()
    assert int(at.metric[0].value.split("/")[0]) >= s2 + 1
    spec = next(c for c in at.get("plotly_chart") if c.key == "live_surface").proto.spec
    assert "trajectory" in spec
    at.button(key="btn_reset").click().run()
    assert at.metric[0].value.startswith("0 /")
    at.session_state["live_holder"]["run"].close()


def test_live_page_bad_custom_setting_is_an_error_not_a_traceback():
    at = app(mode="Custom", c_widths="64,banana")
    at.switch_page("pages/live.py")
    at.run()
    assert not at.exception
    assert at.error and "hidden widths" in at.error[0].value
    assert at.text_input(key="c_widths").value == "64,banana"  # nothing the user set is lost


def test_lecture_link_hides_the_sidebar():
    at = app(lecture="1")
    at.run()
    assert not at.exception
    assert any("stSidebar" in m.value and "display: none" in m.value for m in at.markdown)
    plain = app()
    plain.run()
    assert not any("stSidebar" in m.value for m in plain.markdown)


def test_hessian_page_shows_spectrum_outliers_and_layers():
    at = app(h_preset="moons-mlp", h_layers="true", h_samples="200")
    at.switch_page("pages/hessian.py")
    for _ in range(120):
        at.run()
        assert not at.exception
        if at.metric:
            break
        time.sleep(0.25)
    keys = [c.key for c in at.get("plotly_chart")]
    assert {"h_top", "h_rho", "h_density_fig", "h_layers_fig"} <= set(keys)
    values = {m.label: m.value for m in at.metric}
    assert float(values["λ1 (sharpness)"]) > 0 and int(values["HVPs"]) > 0
    assert any(b.label == "Figure .html" for b in at.get("download_button"))
    # The PyHessian backend is selectable and reports the same top eigenvalue roughly.
    at.radio(key="h_backend").set_value("pyhessian")
    for _ in range(120):
        at.run()
        assert not at.exception
        if at.metric and "h_rho" not in [c.key for c in at.get("plotly_chart")]:
            break
        time.sleep(0.25)
    ours = float(values["λ1 (sharpness)"])
    theirs = float({m.label: m.value for m in at.metric}["λ1 (sharpness)"])
    assert abs(theirs - ours) / ours < 0.05


def test_surface_page_hessian_directions():
    at = app(preset="moons-mlp", grid="11", dirs="hessian", range="0.5")
    at.switch_page("pages/surface.py")
    wait_for_surface(at)
    spec = next(c for c in at.get("plotly_chart") if c.key == "main_fig").proto.spec
    assert "top Hessian eigenvector" in spec


def test_every_lesson_link_sets_valid_widget_values():
    """A lesson's query parameters must be values its page accepts (invalid ones are
    silently dropped by Streamlit, which would open the wrong view)."""
    from ui.nav import LESSONS

    for lesson in LESSONS:
        if not lesson.params:
            continue
        at = AppTest.from_file(APP, default_timeout=240)
        at.switch_page(lesson.file)
        for k, v in lesson.params.items():
            at.query_params[k] = str(v)
        at.run()
        assert not at.exception, lesson.title
        for k, v in lesson.params.items():
            widget = at.session_state[k]
            assert str(widget).lower() == str(v).lower(), (lesson.title, k, widget, v)
        holder = at.session_state["live_holder"] if "live_holder" in at.session_state else None
        if holder and holder.get("run") is not None:
            holder["run"].close()
        job = at.session_state["surface_job"] if "surface_job" in at.session_state else None
        if job:
            job["job"].cancel()


def test_leaving_the_live_page_pauses_training():
    at = app(preset="moons-mlp", speed="60")
    at.switch_page("pages/live.py")
    at.run()
    at.button(key="btn_play").click().run()
    run = at.session_state["live_holder"]["run"]
    assert run.playing
    at.switch_page("pages/home.py")
    at.run()
    assert not run.playing
    step = run.state().step
    time.sleep(0.5)
    assert run.state().step - step <= 1
    run.close()
