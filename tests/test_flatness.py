"""The flatness lesson: large-batch minima are sharper (Keskar et al. 2017), and the views."""

import json
import threading

import numpy as np
import pytest

from landscape.cli.main import main
from landscape.core.errors import Cancelled, LandscapeError
from landscape.lessons import flatness as fl
from landscape.lessons.flatness import figures


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_large_batch_minimum_is_sharper(seed):
    res = fl.train(fl.preset("sharpness", seed=seed), threads=1)
    small, large = res.eig("small-batch SGD"), res.eig("large-batch SGD")
    # both runs fit the digits; measured ratios 2.0-2.6 on seeds 0-2
    assert res.final_loss.max() < 0.15 and res.final_acc.min() > 0.95
    assert large > 1.5 * small, (seed, small, large)
    assert res.sharpness_ratio == pytest.approx(large / small)


@pytest.fixture(scope="module")
def tiny():
    cfg = fl.FlatnessConfig(steps=40, line_points=9, grid=5, span=0.5)
    return fl.train(cfg, threads=1)


def test_tiny_run_has_every_view(tiny, tmp_path):
    r = tiny
    assert list(r.names) == ["small-batch SGD", "large-batch SGD", "small-batch SAM", "large-batch SAM"]
    assert list(r.batch) == [16, 1797, 16, 1797] and list(r.sam) == [0, 0, 1, 1]
    assert r.top_eig.shape == (4,) and np.all(r.top_eig > 0)
    assert r.train_loss.shape == (4, 40) and r.slices.shape == (4, 9) and r.surfaces.shape == (4, 5, 5)
    assert r.interp.shape == (2, 9) and list(r.interp_names) == ["small -> large batch (SGD)",
                                                               "SGD -> SAM (large batch)"]
    # the centre of each slice and surface is the model itself: its full-data loss
    assert np.allclose(r.slices[:, 4], r.final_loss, rtol=1e-4)
    assert np.allclose(r.surfaces[:, 2, 2], r.final_loss, rtol=1e-4)
    # t = 0 and t = 1 of the interpolation are the two endpoints (t grid -0.5..1.5 in steps of 0.25)
    t = r.interp_t
    i0, i1 = int(np.argmin(abs(t))), int(np.argmin(abs(t - 1)))
    assert r.interp[0, i0] == pytest.approx(r.final_loss[0], rel=1e-3)
    assert r.interp[0, i1] == pytest.approx(r.final_loss[1], rel=1e-3)
    assert r.meta["complete"] and r.meta["units_done"] == fl.unit_count(fl.FlatnessConfig(steps=40))
    for suffix in (".npz", ".json"):
        back = fl.load(fl.save(r, tmp_path / f"r{suffix}"))
        assert back.summary() == r.summary() and np.allclose(back.surfaces, r.surfaces)


def test_figures_share_one_colour_scale(tiny):
    fig = figures.fig_surfaces(tiny)
    contours = [t for t in fig.data if t.type == "contour"]
    assert len(contours) == 4 and len({(c.zmin, c.zmax) for c in contours}) == 1
    lo, hi = figures.surface_range(tiny)
    assert contours[0].zmin == lo and contours[0].zmax == hi
    assert all(f"{v:.3g}" in a.text for v, a in zip(tiny.top_eig, fig.layout.annotations))
    for f in (figures.fig_eigenvalues, figures.fig_interpolation, figures.fig_slices, figures.fig_training,
              figures.fig_surfaces):
        g = f(tiny)
        assert g.layout.title.text and (g.layout.xaxis.title.text and g.layout.yaxis.title.text)


def test_cancel_keeps_partial_and_bad_settings_are_one_line():
    stop = threading.Event()

    def cb(ev):
        if ev.step == 25:
            stop.set()

    with pytest.raises(Cancelled) as e:
        fl.train(fl.FlatnessConfig(steps=40, grid=0, line_points=0), cancel=stop, callback=cb)
    assert e.value.partial.train_loss.shape[0] == 1 and not e.value.partial.meta["complete"]
    for bad, msg in (({"large_batch": 8}, "larger than the small"), ({"lr": -1}, "learning rate"),
                     ({"grid": 3}, "grid"), ({"line_points": 7}, "4k \\+ 1"), ({"widths": ()}, "widths")):
        with pytest.raises(LandscapeError, match=msg):
            fl.FlatnessConfig(**bad).validate()


def test_cli(tmp_path, capsys):
    out = tmp_path / "f.json"
    assert main(["flatness", "--preset", "sharpness", "--steps", "30", "--out", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["runs"] == ["small-batch SGD", "large-batch SGD"] and len(s["top_eigenvalue"]) == 2
    assert fl.load(out).summary()["runs"] == s["runs"]
    assert main(["flatness", "--no-sam", "--steps", "0"]) == 2
    assert "steps must be" in capsys.readouterr().err


def test_page_shows_metrics_and_one_colour_scale():
    import time

    from helpers import lesson_page

    at = lesson_page("flatness", fl_preset="sharpness", fl_steps="250")
    at.run()
    t0 = time.time()
    while not at.metric and time.time() - t0 < 90:
        assert not at.exception, at.exception
        time.sleep(0.5)
        at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    labels = [m.label for m in at.metric]
    assert labels == ["λmax, small-batch SGD", "λmax, large-batch SGD"]
    keys = {c.key for c in at.get("plotly_chart")}
    assert {"fl_surfaces", "fl_interp", "fl_slices", "fl_eigs", "fl_training"} <= keys
