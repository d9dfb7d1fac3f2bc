"""Spectral bias measured on the CPU, the FFT bookkeeping, Neural Redshift at
init, determinism, bad input, and the page under AppTest."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from helpers import lesson_args, lesson_page, release_page_job

from landscape.cli import spectral_bias as spectral_bias_cli
from landscape.core.errors import LandscapeError
from landscape.lessons import redshift as rs
from landscape.lessons import spectral_bias as sb

torch.set_num_threads(1)

# Raw input, k = 1..10 cycles per unit x (bins 2..20), 2,000 steps: about 4 s a seed.
# (The CPU recipe's k = 2..20 at 2,000 steps leaves 6-8 frequencies short of half
# amplitude, Spearman 0.70-0.75; see the report.)
QUICK = sb.PRESETS["quick"]


@pytest.fixture(scope="module")
def raw_runs():
    return {seed: sb.train(dataclasses.replace(QUICK, seed=seed)) for seed in (0, 1)}


# --------------------------------------------------------------------------- the phenomenon

@pytest.mark.parametrize("seed", [0, 1])
def test_raw_input_learns_low_frequencies_first(raw_runs, seed):
    res = raw_runs[seed]
    assert res.spearman is not None and res.spearman >= 0.8, (res.spearman, res.half_amplitude_step)
    assert res.half_amplitude_step[0] is not None  # the lowest frequency is learned
    err = res.final_rel_error
    assert err[-1] > err[0], err
    assert res.steps[-1] == QUICK.steps and res.amplitude.shape == (len(res.steps), 10)


def test_raw_input_relu_regions_are_intervals_along_x(raw_runs):
    res = raw_runs[0]
    assert res.region_ids.shape == (len(res.steps), QUICK.region_points)
    for ids, count in zip(res.region_ids, res.n_regions):
        # In 1-D a ReLU activation region is an interval: ids (numbered by first
        # appearance) never go back, and the count is the number of pieces along x.
        assert np.all(np.diff(ids) >= 0)
        assert count == int(np.count_nonzero(np.diff(ids))) + 1
    assert res.n_regions.min() >= 2


@pytest.mark.parametrize("encoding,extra", [("pe", {}), ("rff", {"sigma": 10.0})])
def test_encodings_reach_half_amplitude_within_150_steps(encoding, extra):
    for seed in (0, 1):
        cfg = sb.preset("cpu", encoding=encoding, seed=seed, steps=150, record_every=5,
                        region_points=0, **extra)
        res = sb.train(cfg)
        assert list(res.frequencies) == list(range(2, 21, 2))
        assert all(h is not None and h <= 150 for h in res.half_amplitude_step), res.half_amplitude_step


# --------------------------------------------------------------------------- bookkeeping

def test_fft_bookkeeping_single_sine():
    n = 200
    x = -1.0 + 2.0 * np.arange(n) / n
    freqs = [1, 3, 7, 20]
    f = 2.5 * np.sin(2 * np.pi * 3 * x + 0.7)
    amp = sb.normalized_amplitude(f, freqs, [2.5] * 4)
    assert amp[1] == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.delete(amp, 1) < 1e-12)
    assert sb.relative_error(f, f, [3])[0] == pytest.approx(0.0, abs=1e-12)
    assert sb.relative_error(np.zeros(n), f, [3])[0] == pytest.approx(1.0)
    assert sb.relative_error(-f, f, [3])[0] == pytest.approx(2.0)  # the phase counts
    assert list(sb.fft_bins(freqs, n)) == [2, 6, 14, 40]
    # the built-in target puts each k on bin 2k with its amplitude
    cfg = sb.SpectralConfig(n=n, frequencies=(2, 5), amplitudes=(1.0, 0.5), seed=3)
    _, y = sb.target(cfg)
    assert sb.normalized_amplitude(y, [2, 5], [1.0, 0.5]) == pytest.approx([1.0, 1.0], abs=1e-9)


def test_half_amplitude_step_and_spearman():
    steps = np.array([0, 10, 20, 30])
    amp = np.array([[0.0, 0.0, 0.0], [0.6, 0.1, 0.0], [0.9, 0.5, 0.2], [1.0, 0.7, 0.4]])
    assert sb.half_amplitude_steps(steps, amp) == [10, 20, None]
    assert sb.spearman([1, 2, 3], [10, 20, None]) == pytest.approx(1.0)
    assert sb.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert sb.spearman([1, 2, 3], [10, 10, 10]) is None


def test_pattern_ids_number_by_first_appearance():
    p = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [0, 1]], bool)
    assert list(sb.pattern_ids(p)) == [0, 0, 1, 2, 1]


def test_events_and_partial_results():
    run = sb.SpectralBiasRun(sb.SpectralConfig(steps=40, record_every=10, region_points=50))
    events = list(run.run(steps=25))
    assert [e.step for e in events] == list(range(1, 26))
    assert [e.step for e in events if e.recorded] == [10, 20]
    assert events[9].amplitude.shape == (10,) and events[9].n_regions >= 1
    part = run.result()
    assert list(part.steps) == [0, 10, 20] and not part.meta["complete"]
    list(run.run())
    full = run.result()
    assert list(full.steps) == [0, 10, 20, 30, 40] and full.meta["complete"]
    assert len(full.loss) == 41 and full.outputs.shape == (5, 200)


def test_background_job_publishes_partial_results_and_keeps_them_when_cancelled():
    import time

    job = sb.spectral_job(sb.SpectralConfig(steps=100_000, record_every=10, region_points=0),
                          snapshot_every=2, threads=1)
    t0 = time.perf_counter()
    while not job.poll().partial:
        assert time.perf_counter() - t0 < 30 and job.running, job.poll()
        time.sleep(0.01)
    part = job.poll().partial[0]
    assert part.steps[-1] % 20 == 0 and not part.meta["complete"]
    job.cancel()
    st = job.join(10)
    assert st.state == "cancelled" and not job.running
    assert st.result.meta["steps_done"] == st.done < 100_000 and len(st.result.steps) >= len(part.steps)
    done = sb.spectral_job(sb.SpectralConfig(steps=30, record_every=10, region_points=0)).join(30)
    assert done.state == "done" and done.result.meta["complete"] and done.partial[0].meta["complete"]
    with pytest.raises(LandscapeError, match="steps"):
        sb.spectral_job(sb.SpectralConfig(steps=0))


def test_save_and_load_round_trip(tmp_path):
    res = sb.train(sb.SpectralConfig(steps=30, record_every=10, region_points=20))
    for suffix in (".npz", ".json"):
        back = sb.load(sb.save(res, tmp_path / f"r{suffix}"))
        np.testing.assert_allclose(back.amplitude, res.amplitude)
        assert back.half_amplitude_step == res.half_amplitude_step
        assert back.meta["config"] == res.meta["config"]


def test_figures_have_titles_and_axis_labels():
    res = sb.train(sb.SpectralConfig(steps=30, record_every=10, region_points=20))
    figs = [sb.fig_heatmap(res), sb.fig_error_curves(res), sb.fig_function(res, 10),
            sb.fig_loss(res), sb.fig_regions(res, 20)]
    rres = rs.compute(rs.RedshiftConfig(grid=16, depth=2, width=16))
    figs += [rs.fig_redshift_image(rres), rs.fig_redshift_spectrum(rres), rs.fig_redshift_radial(rres),
             rs.fig_redshift_sweep(rs.sweep(rs.RedshiftConfig(grid=16, width=16), depths=(1, 2), seeds=(0,)))]
    for fig in figs:
        lay = fig.layout
        assert lay.title.text
        assert lay.xaxis.title.text and lay.yaxis.title.text
    z = figs[0].data[0].z
    assert np.nanmax(z) <= 1.0 and np.nanmin(z) >= 0.0
    assert figs[1].layout.yaxis.type == "log"


# --------------------------------------------------------------------------- determinism

def test_deterministic_for_a_seed():
    cfg = sb.SpectralConfig(steps=60, record_every=20, region_points=100, encoding="rff", features=16)
    a, b = sb.train(cfg), sb.train(cfg)
    np.testing.assert_array_equal(a.outputs, b.outputs)
    np.testing.assert_array_equal(a.loss, b.loss)
    np.testing.assert_array_equal(a.region_ids, b.region_ids)
    c = sb.train(dataclasses.replace(cfg, seed=1))
    assert not np.array_equal(a.outputs, c.outputs)
    r1, r2 = rs.compute(rs.RedshiftConfig(grid=16, seed=4)), rs.compute(rs.RedshiftConfig(grid=16, seed=4))
    np.testing.assert_array_equal(r1.f, r2.f)
    assert not np.array_equal(r1.f, rs.compute(rs.RedshiftConfig(grid=16, seed=5)).f)


def test_threads_only_when_asked():
    before = torch.get_num_threads()
    sb.train(sb.SpectralConfig(steps=2, region_points=0), threads=2)
    assert torch.get_num_threads() == before


# --------------------------------------------------------------------------- Neural Redshift

def _mf(**kw):
    """Mean frequency of one setting, per seed 0, 1, 2 (grid 64, width 128)."""
    return np.array([rs.compute(rs.RedshiftConfig(grid=64, seed=s, **kw)).mean_frequency for s in (0, 1, 2)])


def test_redshift_deep_relu_is_lower_frequency_than_sine_or_high_gain():
    relu = _mf(activation="relu", depth=8)
    relu_gain = _mf(activation="relu", depth=8, init_scale=4.0)
    sine = _mf(activation="sin", depth=8, init_scale=2.0)
    tanh_gain = _mf(activation="tanh", depth=8, init_scale=4.0)
    tanh = _mf(activation="tanh", depth=8, init_scale=1.0)
    # Teney et al. 2024: sine and high-gain tanh networks are high-frequency at init ...
    assert np.all(sine > relu) and np.all(tanh_gain > relu) and np.all(sine > relu_gain)
    assert sine.mean() > 2 * relu.mean() and tanh_gain.mean() > 2 * relu.mean(), (relu, sine, tanh_gain)
    # ... frequency rises with the weight scale for tanh, but not for ReLU.
    assert tanh_gain.mean() > 3 * tanh.mean()
    assert relu_gain.mean() < 1.5 * relu.mean()


def test_redshift_mean_frequency_of_known_signals():
    n = 64
    x = rs.grid_points(n)
    X, Y = np.meshgrid(x, x)
    assert rs.mean_frequency(np.ones((n, n))) == 0.0
    # a pure cosine with 4 cycles per unit along x: the Hann window spreads it over
    # u = 3.5, 4, 4.5 and v = -0.5, 0, 0.5 cycles per unit with weights 1/4, 1/2, 1/4 each
    w = {-0.5: 0.25, 0.0: 0.5, 0.5: 0.25}
    expected = sum(wu * wv * math.hypot(4 + du, dv) for du, wu in w.items() for dv, wv in w.items())
    assert rs.mean_frequency(np.cos(2 * np.pi * 4 * X)) == pytest.approx(expected, rel=1e-9)
    assert rs.mean_frequency(np.cos(2 * np.pi * 4 * X), window="none") == pytest.approx(4.0, rel=1e-9)
    low, high = rs.mean_frequency(np.cos(2 * np.pi * 2 * Y)), rs.mean_frequency(np.cos(2 * np.pi * 8 * Y))
    assert low < high


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kw,words", [
    ({"frequencies": (2, 60)}, "Nyquist"),
    ({"frequencies": (2, 50)}, "Nyquist"),
    ({"steps": 0}, "steps"),
    ({"steps": -5}, "steps"),
    ({"encoding": "wavelet"}, "encoding"),
    ({"sigma": 0.0}, "sigma"),
    ({"frequencies": (2, 2)}, "distinct"),
    ({"frequencies": (0, 2)}, "positive"),
    ({"amplitudes": (1.0,)}, "amplitudes"),
    ({"lr": -1.0}, "learning rate"),
    ({"widths": ()}, "widths"),
])
def test_bad_spectral_input_raises_landscape_error(kw, words):
    with pytest.raises(LandscapeError, match=words):
        sb.SpectralBiasRun(sb.SpectralConfig(**kw))


@pytest.mark.parametrize("kw", [{"activation": "swish"}, {"depth": 0}, {"init_scale": -1.0},
                                {"grid": 4}, {"window": "kaiser"}])
def test_bad_redshift_input_raises_landscape_error(kw):
    with pytest.raises(LandscapeError):
        rs.compute(rs.RedshiftConfig(**kw))


def _cli(*argv):
    return lesson_args(spectral_bias_cli, *argv)


def test_cli_functions(tmp_path, capsys):
    out = tmp_path / "sb.json"
    res = spectral_bias_cli.run(_cli("--steps", "100", "--encoding", "rff", "--sigma", "5", "--seed", "2",
                          "--out", str(out), "--json"))
    for key in ("frequencies", "half_amplitude_step", "final_rel_error", "seconds"):
        assert key in res
    assert res["frequencies"] == list(range(1, 11)) and res["encoding"] == "rff"
    assert len(res["half_amplitude_step"]) == len(res["final_rel_error"]) == 10
    json.dumps(res)  # plain JSON, None where never reached
    assert json.loads(out.read_text())["meta"]["config"]["sigma"] == 5.0
    assert capsys.readouterr().out == ""  # --json: the caller prints
    with pytest.raises(LandscapeError, match="Nyquist"):
        spectral_bias_cli.run(_cli("--frequencies", "2", "70"))
    with pytest.raises(LandscapeError, match="steps"):
        spectral_bias_cli.run(_cli("--steps", "0"))
    with pytest.raises(LandscapeError, match=r"\.npz or \.json"):
        spectral_bias_cli.run(_cli("--out", str(tmp_path / "x.txt")))
    with pytest.raises(LandscapeError, match="preset"):
        spectral_bias_cli.run(_cli("--preset", "nope"))


# --------------------------------------------------------------------------- the page

def test_page_runs_a_short_run_and_shows_charts():
    at = lesson_page("spectral_bias", sb_steps="300")
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    specs = [c.proto.spec.replace(" ", "") for c in at.get("plotly_chart")]
    assert len(specs) >= 8
    assert '"type":"heatmap"' in specs[0] and "Spearman" in specs[0]
    assert '"type":"log"' in specs[1]
    assert any("Learnedfunctionatstep300" in s for s in specs)
    assert any("Meanfrequency" in s or "meanfrequency" in s for s in specs)
    # scrub the learned function back to an earlier step; switch the encoding
    at.slider(key="show_step_300_10").set_value(100).run()
    assert not at.exception
    assert any("Learnedfunctionatstep100" in c.proto.spec.replace(" ", "") for c in at.get("plotly_chart"))
    at.sidebar.radio(key="sb_encoding").set_value("pe").run()
    assert not at.exception and not at.error
    values = {m.label: m.value for m in at.metric}
    assert values["Frequencies at half amplitude"] == "10 of 10"
    at.selectbox(key="rs_activation").set_value("sin").run()
    assert not at.exception and not at.error
    assert math.isfinite(float(values["Mean frequency (cycles per unit input)"]))


JOB_THREAD = "landscape-job-spectral-bias"  # the page's background job


def test_page_long_run_trains_live_and_stops():
    import threading
    import time

    at = lesson_page("spectral_bias", sb_steps="6000")
    try:
        at.run()
        assert not at.exception, at.exception
        assert at.get("progress") and at.button(key="stop")
        time.sleep(0.5)
        at.run()
        at.button(key="stop").click().run()
        assert not at.exception and not at.error
        stopped = [i.value for i in at.info]
        assert stopped and stopped[0].startswith("Stopped at step")
        assert len(at.get("plotly_chart")) >= 8  # the partial result is drawn in full
        assert not any(t.name == JOB_THREAD for t in threading.enumerate())
    finally:  # on failure, stop the page's job (its on_release stops it) and wait for it
        release_page_job(JOB_THREAD)
