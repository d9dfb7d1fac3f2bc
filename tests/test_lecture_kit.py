"""The lecture kit without a browser: the presenter view's figure style, the guided lesson steps
(data, ``?step=k``, Next / Back) and the server's page addresses."""

import asyncio
import threading

import plotly.graph_objects as go
from streamlit.testing.v1 import AppTest

from landscape.core import style
from ui import steps
from ui.nav import PAGE


def _figure():
    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    fig.update_layout(title="Sharpness against the threshold 2/eta over a long run of gradient descent")
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="lambda_max")
    return fig


def test_presenter_view_has_larger_type_and_wraps_titles_sooner():
    normal = style.apply(_figure(), presenter_view=False)
    with style.presenter_view(True):
        big = style.apply(_figure())
        assert style.presenter()
    assert not style.presenter()  # the block ends, the answer with it
    assert normal.layout.xaxis.title.font.size == style.AXIS_TITLE_PX
    assert big.layout.xaxis.title.font.size >= 18 and big.layout.yaxis.title.font.size >= 18
    assert big.layout.xaxis.tickfont.size > normal.layout.xaxis.tickfont.size
    assert big.layout.title.font.size > normal.layout.title.font.size
    lines = [max(len(line) for line in f.layout.title.text.split("<br>")) for f in (normal, big)]
    assert lines[0] <= style.TITLE_CHARS and lines[1] <= style.PRESENTER_TITLE_CHARS
    assert big.layout.yaxis.title.text == "λ_max"  # symbols as before
    # a taller title keeps its room above the plot
    assert big.layout.margin.t >= normal.layout.margin.t


def test_presenter_source_is_asked_and_a_failing_one_means_no():
    try:
        style.set_presenter_source(lambda: True)
        assert style.apply(_figure()).layout.xaxis.title.font.size == style.PRESENTER_AXIS_TITLE_PX
        with style.presenter_view(False):  # an explicit answer wins over the source
            assert not style.presenter()

        def broken():
            raise RuntimeError("no page")

        style.set_presenter_source(broken)
        assert not style.presenter()
    finally:
        style.set_presenter_source(None)
    assert not style.presenter()


def test_every_lesson_has_three_to_five_complete_steps_on_a_page():
    assert set(steps.LESSON_STEPS) >= {"eos", "spectral", "opposing", "flatness"}
    for lesson, items in steps.LESSON_STEPS.items():
        assert lesson in PAGE, lesson
        assert 3 <= len(items) <= 5, lesson
        for s in items:
            assert s.title and len(s.look) > 10 and len(s.change) > 5 and len(s.expect) > 20, s
    text = " ".join(s.expect for s in steps.LESSON_STEPS["eos"])
    assert "2/η" in text and "hovers" in text
    assert any("anti-phase" in s.expect for s in steps.LESSON_STEPS["opposing"])
    assert any("Fourier" in s.change for s in steps.LESSON_STEPS["spectral"])
    assert any("SAM" in s.title for s in steps.LESSON_STEPS["flatness"])


def _step_box(at) -> str:
    return " ".join(m.value for m in at.markdown if "Step " in m.value and " of " in m.value)


def test_step_link_opens_that_step_and_next_back_move_the_url():
    at = AppTest.from_file("../app.py", default_timeout=120)
    at.query_params["step"] = "3"
    at.switch_page("pages/eos.py")
    at.run()
    assert not at.exception
    n = len(steps.LESSON_STEPS["eos"])
    assert f"Step 3 of {n}: {steps.LESSON_STEPS['eos'][2].title}" in _step_box(at)
    at.button(key="step_next").click().run()
    assert f"Step 4 of {n}" in _step_box(at) and at.query_params["step"] == "4"
    at.button(key="step_back").click().run()
    at.button(key="step_back").click().run()
    assert f"Step 2 of {n}" in _step_box(at) and at.query_params["step"] == "2"
    at.query_params["step"] = "banana"  # a bad link opens the first step
    at.run()
    assert f"Step 1 of {n}" in _step_box(at) and at.button(key="step_back").disabled


def test_server_serves_every_page_address_with_the_base_setting():
    from starlette.applications import Starlette

    from ui import server

    html = server.index_html()
    assert html.index(server.BASE_SCRIPT) < html.index("<script", html.index(server.BASE_SCRIPT) + 10)
    assert set(server.page_paths()) >= {"live", "surface", "spectral-bias", "eos", "home"}
    app = Starlette(routes=server.page_routes())

    def get(path):
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
                 "query_string": b"lecture=1", "headers": [], "scheme": "http",
                 "server": ("test", 80), "client": ("test", 1), "root_path": "", "http_version": "1.1"}
        # its own thread: a browser test earlier in the session may hold this thread's loop
        worker = threading.Thread(target=lambda: asyncio.run(app(scope, receive, send)))
        worker.start()
        worker.join(30)
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return start["status"], body.decode()

    for path in ("/live", "/spectral-bias", "/home"):
        status, body = get(path)
        assert status == 200 and "BACKEND_BASE_URL" in body and 'id="root"' in body
    assert get("/no-such-page")[0] == 404


def test_app_file_is_an_app_for_the_server_and_a_script_in_a_session():
    from pathlib import Path

    from streamlit.web.server.app_discovery import discover_asgi_app

    from ui import server

    found = discover_asgi_app(Path(__file__).resolve().parents[1] / "app.py")
    assert found.is_asgi_app and found.import_string == "app:app"  # `streamlit run app.py` serves it
    assert [r.path.strip("/") for r in server.page_routes()] == server.page_paths()
