"""AppTest: the pages run, compute, and show results and errors without tracebacks."""

from streamlit.testing.v1 import AppTest


def test_surface_page_shows_a_surface_and_metrics():
    at = AppTest.from_file("../app.py", default_timeout=180)
    at.run()
    assert not at.exception
    assert at.title[0].value == "Loss surface"
    at.sidebar.selectbox(key="preset").set_value("moons-mlp")
    at.sidebar.slider(key="grid").set_value(9)
    at.run()
    assert not at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    assert '"type":"contour"' in charts[0].proto.spec.replace(" ", "")
    values = [m.value for m in at.metric]
    assert float(values[1]) <= float(values[0])  # the grid's lowest loss <= the model's


def test_surface_page_pca_directions():
    at = AppTest.from_file("../app.py", default_timeout=180)
    at.run()
    at.sidebar.selectbox(key="preset").set_value("moons-mlp")
    at.sidebar.radio(key="directions").set_value("pca")
    at.sidebar.slider(key="grid").set_value(7)
    at.run()
    assert not at.exception
    assert "PC1" in at.get("plotly_chart")[0].proto.spec
