"""Opposing signals (Rosenfeld & Risteski 2023) measured on digits with a planted feature against its
control, the bookkeeping on hand-made inputs, the toy, determinism, bad input, the CLI
functions and the page under AppTest."""

import dataclasses
import json
import threading

import numpy as np
import pytest
import torch
from helpers import lesson_args

from landscape.cli import opposing as opposing_cli
from landscape.core.errors import Cancelled, LandscapeError
from landscape.lessons import opposing as opp

torch.set_num_threads(1)

# A short planted run (about 2-4 s) for the plumbing tests; the phenomenon tests use the
# full presets (1,500 steps, statistics over the last 400).
SHORT = opp.preset("opposing-planted", steps=200, window=100, controls=50)


@pytest.fixture(scope="module")
def planted():
    return opp.train(opp.preset("opposing-planted", seed=0))


@pytest.fixture(scope="module")
def control():
    return opp.train(opp.preset("opposing-control", seed=0))


@pytest.fixture(scope="module")
def short():
    return opp.train(SHORT)


# --------------------------------------------------------------------------- the phenomenon

def test_planted_examples_are_found_label_free(planted):
    m = planted.metrics
    assert len(planted.planted) == 35 and m["chance_precision"] == pytest.approx(35 / 1797)
    assert m["precision_at_m"] >= 0.75, m["precision_at_m"]
    assert {m["label_a"], m["label_b"]} == {3, 8}
    assert m["purity"] >= 0.7
    # the label-free phase split (first principal component) agrees with the label split
    assert m["phase_agreement"] >= 0.8
    assert len(planted.group_a) + len(planted.group_b) <= len(planted.detected) == 35


def test_planted_groups_swing_in_anti_phase_while_the_whole_set_stays_low(planted):
    m = planted.metrics
    assert m["planted_amplitude_ratio"] >= 8, m["planted_amplitude_ratio"]
    assert m["amplitude_ratio"] >= 8, m["amplitude_ratio"]
    assert m["group_loss_corr"] <= -0.9
    W = m["window"]
    for curve in (planted.loss_a, planted.loss_b):
        late = curve[-W:]
        assert late.max() - late.min() > 0.1  # swings by more than 0.1 loss ...
    assert m["overall_loss_late"] < 0.05      # ... while the whole set stays near 0.02
    assert m["overall_amplitude"] < 0.1 * m["amplitude"]
    # every group curve is the mean of its rows of the loss matrix
    np.testing.assert_allclose(planted.loss_a, planted.loss_matrix[:, planted.group_a].mean(1), rtol=1e-6)


def test_vote_share_is_the_planted_feature_only_when_planted(planted, control):
    assert planted.metrics["vote_share"] >= 0.7, planted.metrics["vote_share"]
    assert control.metrics["vote_share"] <= 0.25, control.metrics["vote_share"]


def test_both_runs_sit_at_the_edge_of_stability(planted, control):
    for res in (planted, control):
        r = res.metrics["sharpness_ratio"]
        assert 0.8 <= r <= 1.4, r
        assert res.meta["lr"] == pytest.approx(0.5 * 2 / res.meta["lambda_0"])
        assert res.sharpness[0] == pytest.approx(res.meta["lambda_0"])
        assert res.sharpness[-1] > 1.5 * res.sharpness[0]  # progressive sharpening happened


def test_control_falls_to_chance_on_the_specific_statistics(planted, control):
    c = control.metrics
    np.testing.assert_array_equal(control.planted, planted.planted)  # the same examples, faint patch
    assert c["precision_at_m"] <= 0.15, c["precision_at_m"]
    assert c["planted_amplitude_ratio"] <= 4, c["planted_amplitude_ratio"]
    # The detected groups of the control oscillate too (selected by movement in the same
    # window: about 10x its matched controls) but far less than the planted pair.
    assert c["amplitude_ratio"] < 0.5 * planted.metrics["amplitude_ratio"]


def test_anti_correlation_alone_is_not_specific(planted, control):
    # Matched random pairs of the same classes are anti-correlated as well: the statistic
    # shows the oscillation, not its cause.
    assert planted.metrics["control_corr_median"] <= -0.5
    assert control.metrics["group_loss_corr"] <= -0.9


def test_spikes_are_marked_early(planted):
    assert len(planted.spikes) >= 1 and planted.spikes[0] < 200
    t = int(planted.spikes[0])
    assert planted.loss[t] >= 1.1 * np.median(planted.loss[max(0, t - opp.SPIKE_LOOKBACK):t])


# --------------------------------------------------------------------------- bookkeeping

def test_loss_matrix_rows_equal_a_direct_per_example_evaluation():
    cfg = dataclasses.replace(SHORT, steps=20, window=10, sharpness_every=10, controls=10)
    run = opp.OpposingRun(cfg)
    X = torch.as_tensor(run.data.X, dtype=torch.float32)
    y = torch.as_tensor(run.data.y)
    fresh = opp.build_model(cfg, 64, 10)
    with torch.no_grad():
        row0 = opp.per_example_losses(fresh, X, y).numpy()
    first = list(run.run(steps=7))
    assert [e.step for e in first] == list(range(1, 8))
    with torch.no_grad():
        row7 = opp.per_example_losses(run.model, X, y).numpy()
    rest = list(run.run())
    assert [e.step for e in rest] == list(range(8, 21))
    with torch.no_grad():
        row20 = opp.per_example_losses(run.model, X, y).numpy()
    res = run.result()
    L = res.loss_matrix
    assert L.shape == (21, 1797)
    np.testing.assert_allclose(L[0], row0, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(L[7], row7, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(L[20], row20, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(res.loss, L.astype(np.float64).mean(1))
    # each event's risers/fallers are the loss matrix's per-step movers
    ev = first[3]  # step 3 -> 4
    rise, fall = opp.step_movers(L, 3, cfg.top_k)
    np.testing.assert_array_equal(ev.rise, rise)
    np.testing.assert_array_equal(ev.fall, fall)
    assert np.all(np.diff(ev.rise_delta) <= 0) and ev.rise_delta[0] >= ev.fall_delta[0]
    assert [e.step for e in first + rest if e.sharpness is not None] == [10, 20]
    assert list(res.sharpness_steps) == [0, 10, 20]


def test_ranking_and_movers_on_a_hand_made_loss_matrix():
    L = np.array([[1.0, 1.0, 1.0, 1.0, 1.0],
                  [2.0, 1.0, 0.5, 1.0, 1.1],
                  [1.0, 1.0, 1.0, 1.0, 1.2],
                  [2.0, 1.0, 0.5, 3.0, 1.3]])
    order, score = opp.rank_by_movement(L, window=3)
    np.testing.assert_allclose(score, [3.0, 0.0, 1.5, 2.0, 0.3])
    assert list(order) == [0, 3, 2, 4, 1]
    _, score2 = opp.rank_by_movement(L, window=1)  # only the last change
    np.testing.assert_allclose(score2, [1.0, 0.0, 0.5, 2.0, 0.1])
    _, score_all = opp.rank_by_movement(L, window=99)  # clipped to the run
    np.testing.assert_allclose(score_all, score)
    rise, fall = opp.step_movers(L, 0, 2)
    assert list(rise) == [0, 4] and list(fall) == [2, 1]  # ties keep the lower index
    assert opp.precision_at(order, np.array([0, 3, 4])) == pytest.approx(2 / 3)
    assert opp.precision_at(order, np.array([], np.int64)) is None
    y = np.array([5, 5, 7, 7, 5, 9, 9, 9])
    a, b, A, B = opp.split_by_label(np.array([2, 0, 5, 3, 6, 7, 1]), y)
    assert (a, b) == (9, 7) and list(A) == [5, 6, 7] and list(B) == [2, 3]  # tie 7 vs 5: 7 first seen
    with pytest.raises(LandscapeError, match="one label"):
        opp.split_by_label(np.array([0, 1]), y)
    with pytest.raises(LandscapeError, match="no next step"):
        opp.step_movers(L, 3, 2)


def test_matched_controls_draw_the_same_classes_and_sizes():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    group = np.concatenate([np.flatnonzero(y == 1)[:5], np.flatnonzero(y == 3)[:2]])
    exclude = np.flatnonzero(y == 1)[5:20]
    subs = opp.matched_subsets(y, group, 50, np.random.default_rng(1), exclude=exclude)
    assert subs.shape == (50, 7)
    want = sorted(y[group].tolist())
    for row in subs:
        assert sorted(y[row].tolist()) == want
        assert len(set(row.tolist())) == 7
        assert not np.isin(row, group).any() and not np.isin(row, exclude).any()
    again = opp.matched_subsets(y, group, 50, np.random.default_rng(1), exclude=exclude)
    np.testing.assert_array_equal(subs, again)
    assert len({tuple(r) for r in subs.tolist()}) > 40  # the draws differ
    with pytest.raises(LandscapeError, match="too few"):
        opp.matched_subsets(y, np.flatnonzero(y == 2), 3, np.random.default_rng(0))


def test_pair_statistics_on_a_synthetic_anti_phase_pair():
    rng = np.random.default_rng(0)
    T, N = 101, 120
    y = np.repeat([0, 1, 2], 40)
    L = 0.05 + 0.001 * rng.standard_normal((T, N))
    A, B = np.arange(0, 6), np.arange(40, 46)
    swing = 0.2 * (np.arange(T) % 2)
    L[:, A] += swing[:, None]
    L[:, B] += (0.2 - swing)[:, None]
    st = opp.pair_statistics(L, y, A, B, 100, np.random.default_rng(1))
    assert st["corr"] < -0.99
    assert st["amplitude_ratio"] > 50
    assert abs(st["control_corr_median"]) < 0.5  # noise pairs are not correlated
    assert st["corr_percentile"] == 0.0
    assert opp.phase_agreement(L, A, B) == 1.0
    band = opp.control_band(L, st["control_a"])
    assert band.shape == (2, T) and np.all(band[0] <= band[1]) and band[1].max() < 0.06
    assert opp.amplitude(swing) == pytest.approx(0.2, rel=1e-3)


def test_vote_share_definition():
    t = np.arange(21)[:, None]
    rest = np.sin(0.3 * t) * np.ones((1, 4))
    patch = 0.5 * (-1.0) ** t * np.ones((1, 4))
    assert opp.vote_share(rest + patch + 2.0, rest + 2.0) == pytest.approx(
        float((np.diff(patch, axis=0) * np.diff(rest + patch, axis=0)).sum()
              / (np.diff(rest + patch, axis=0) ** 2).sum()))
    assert opp.vote_share(patch, np.zeros_like(patch)) == pytest.approx(1.0)   # the feature alone
    assert opp.vote_share(rest, rest) == pytest.approx(0.0)                   # the feature idle
    assert opp.vote_share(np.ones((5, 2)), np.zeros((5, 2))) is None          # nothing moves


def test_find_spikes():
    loss = np.array([1.0, 0.9, 0.8, 0.7, 2.0, 0.6, 0.5, 0.52, 0.45])
    assert list(opp.find_spikes(loss, 1.1)) == [4]  # 0.52 is a local max, not 1.1x the median
    assert len(opp.find_spikes(np.linspace(1, 0.1, 50))) == 0


def test_planted_digits_protocol():
    d = opp.planted_digits(alpha=16.0, seed=0)
    assert d.X.shape == (1797, 64) and len(d.planted) == 35
    ys = d.y[d.planted]
    assert (ys == 3).sum() == 18 and (ys == 8).sum() == 17  # round(10% of 183) + round(10% of 174)
    patch = d.X[np.ix_(d.planted, opp.PATCH_PIXELS)]
    np.testing.assert_allclose(patch, 8.0)
    np.testing.assert_allclose(np.linalg.norm(patch, axis=1), 16.0)
    others = np.setdiff1d(np.arange(1797), d.planted)
    np.testing.assert_array_equal(d.X[others], d.X_clean[others])
    Z = d.X_clean * 8.0  # standardised per pixel (constant pixels stay 0)
    np.testing.assert_allclose(Z.mean(0), 0.0, atol=1e-12)
    assert set(np.round(Z.std(0), 9)) <= {0.0, 1.0}
    c = opp.planted_digits(alpha=1.0, seed=0)
    np.testing.assert_array_equal(c.planted, d.planted)
    np.testing.assert_allclose(np.linalg.norm(c.X[np.ix_(c.planted, opp.PATCH_PIXELS)], axis=1), 1.0)
    assert len(opp.planted_digits(alpha=0.0).planted) == 0
    assert not np.array_equal(opp.planted_digits(seed=1).planted, d.planted)
    assert d.images.min() >= 0 and d.images.max() <= 1
    assert np.all(d.images[np.ix_(d.planted, opp.PATCH_PIXELS)] == 1.0)


def test_planted_gaussians_protocol():
    g = opp.planted_gaussians(alpha=16.0, seed=0)
    assert g.X.shape == (1800, 64) and g.n_classes == 10 and g.images is None
    ys = g.y[g.planted]
    assert (ys == 3).sum() == 18 and (ys == 8).sum() == 18
    np.testing.assert_allclose(np.linalg.norm(g.X[np.ix_(g.planted, opp.PATCH_PIXELS)], axis=1), 16.0)
    np.testing.assert_allclose((g.X_clean * 8.0).std(0), 1.0)
    others = np.setdiff1d(np.arange(1800), g.planted)
    np.testing.assert_array_equal(g.X[others], g.X_clean[others])
    cfg = opp.preset("opposing-gaussian")
    assert cfg.data == "gaussians" and opp.make_data(cfg).planted.tolist() == g.planted.tolist()


# --------------------------------------------------------------------------- the toy

def test_linear_toy_converges_or_diverges_without_an_anti_phase_regime():
    res = opp.train(opp.preset("opposing-toy"))
    m = res.metrics
    assert res.meta["lr"] == pytest.approx(2 / res.meta["lambda_0"])
    assert m["sharpness_ratio"] < 0.95                   # below the edge of stability
    assert m["overall_amplitude"] < 1e-5                 # converged: nothing oscillates
    assert m["planted_amplitude_ratio"] < 4
    assert len(res.planted) == 40 and res.X.shape == (400, 21)
    with pytest.raises(LandscapeError, match="diverged"):
        opp.train(opp.preset("opposing-toy", lr_factor=2.5, steps=100, window=50))


# --------------------------------------------------------------------------- plumbing

def test_deterministic_for_a_seed(short):
    again = opp.train(SHORT)
    np.testing.assert_array_equal(short.loss_matrix, again.loss_matrix)
    np.testing.assert_array_equal(short.sharpness, again.sharpness)
    np.testing.assert_array_equal(short.control_corrs, again.control_corrs)
    other = opp.train(dataclasses.replace(SHORT, seed=1, steps=20, window=10))
    assert not np.array_equal(other.loss_matrix[:21], short.loss_matrix[:21])
    assert not np.array_equal(other.planted, short.planted)


def test_events_cancel_and_partial_results():
    cancel = threading.Event()
    seen = []

    def cb(ev):
        seen.append(ev.step)
        if ev.step == 15:
            cancel.set()

    with pytest.raises(Cancelled) as info:
        opp.train(dataclasses.replace(SHORT, steps=60, window=10, controls=10), cancel=cancel, callback=cb)
    part = info.value.partial
    assert seen == list(range(1, 16))
    assert part.loss_matrix.shape == (16, 1797) and not part.meta["complete"]
    assert part.metrics["window"] == 10 and part.metrics["precision_at_m"] is not None


def test_progress_streams_the_run_so_far_for_a_live_figure():
    """A page draws the loss and the sharpness while the run trains: ``progress`` carries the
    run so far every PREVIEW_EVERY updates, equal to what the finished run reports."""
    cfg = dataclasses.replace(SHORT, steps=120, window=40, controls=10)
    calls = []
    res = opp.train(cfg, progress=lambda done, total, *partial: calls.append((done, total, partial)))
    assert calls[0][:2] == (0, 120) and calls[-1][:2] == (120, 120)
    lives = {done: partial[1] for done, _, partial in calls if len(partial) > 1 and partial[1]}
    assert sorted(lives)[0] == opp.run.PREVIEW_EVERY
    for done, live in lives.items():
        assert isinstance(calls[done][2][0], str) and "training: step" in calls[done][2][0]
        t = (done // opp.run.PREVIEW_EVERY) * opp.run.PREVIEW_EVERY
        if done == cfg.steps:
            t = done
        # the overall loss at steps 0..t-1 and every sharpness measured up to step t
        np.testing.assert_allclose(live["loss"], res.loss[:t], rtol=1e-6)
        keep = res.sharpness_steps <= t
        np.testing.assert_array_equal(live["sharpness_steps"], res.sharpness_steps[keep])
        np.testing.assert_allclose(live["sharpness"], res.sharpness[keep])
        assert live["lr"] == res.lr and live["steps"] == cfg.steps
    fig = opp.fig_progress(lives[cfg.steps])
    assert [t.name for t in fig.data] == ["all examples", "sharpness", "2 / lr"]
    assert fig.layout.yaxis.type == "log" and fig.layout.xaxis2.title.text
    assert len(fig.data[0].y) == cfg.steps and fig.data[2].y[0] == pytest.approx(2 / res.lr)


def test_remove_and_retrain():
    res = opp.train(dataclasses.replace(SHORT, steps=60, window=30, controls=20, retrain=True))
    assert res.retrain_loss.shape == res.kept_loss.shape == (61,)
    # the same initial weights on the same kept examples: identical at step 0
    assert res.retrain_loss[0] == pytest.approx(res.kept_loss[0], rel=1e-6)
    keep = np.setdiff1d(np.arange(1797), res.detected)
    np.testing.assert_allclose(res.kept_loss, res.loss_matrix[:, keep].astype(np.float64).mean(1), rtol=1e-6)
    assert res.metrics["removed"] == res.detected.tolist()
    assert not np.allclose(res.retrain_loss[1:], res.kept_loss[1:])


def test_save_and_load_round_trip(short, tmp_path):
    for suffix in (".npz", ".json"):
        back = opp.load(opp.save(short, tmp_path / f"r{suffix}"))
        np.testing.assert_allclose(back.loss_matrix, short.loss_matrix)
        np.testing.assert_array_equal(back.group_a, short.group_a)
        assert back.summary() == short.summary()
    with pytest.raises(LandscapeError, match=r"\.npz or \.json"):
        opp.save(short, tmp_path / "r.txt")
    with pytest.raises(LandscapeError, match="not found"):
        opp.load(tmp_path / "missing.npz")


def test_figures_have_titles_and_axis_labels(short):
    toy = opp.train(opp.preset("opposing-toy", steps=40, window=20))
    figs = [opp.fig_zoom(short, 150), opp.fig_gallery(short, 150), opp.fig_members(short),
            opp.fig_controls(short), opp.fig_vote(short), opp.fig_gallery(toy, 10), opp.fig_members(toy),
            opp.fig_retrain(short)]
    for fig in figs:
        assert fig.layout.title.text
        assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    ov = opp.fig_overview(short, 150)
    assert ov.layout.title.text and "cursor at step 150" in ov.layout.title.text
    for ax in ("yaxis", "yaxis2", "yaxis3", "xaxis3"):
        assert ov.layout[ax].title.text
    assert ov.layout.yaxis.type == "log"
    names = [t.name for t in ov.data]
    assert "2 / lr" in names and any("matched random" in (n or "") for n in names)
    gal = opp.fig_gallery(short, 150)
    assert sum(t.type == "heatmap" for t in gal.data) == 16
    assert sum(t.type == "bar" for t in opp.fig_gallery(toy, 10).data) == 16


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kw,words", [
    ({"steps": 1}, "steps"),
    ({"window": 1}, "window"),
    ({"window": 300, "steps": 200}, "longer than the run"),
    ({"alpha": -1.0}, "alpha"),
    ({"plant_classes": (3, 3)}, "plant_classes"),
    ({"plant_classes": (3, 12)}, "plant_classes"),
    ({"fraction": 0.0}, "fraction"),
    ({"lr": -0.1}, "learning rate"),
    ({"lr_factor": float("nan")}, "lr_factor"),
    ({"widths": ()}, "widths"),
    ({"activation": "swish"}, "activation"),
    ({"data": "cifar"}, "data"),
    ({"controls": 3}, "controls"),
    ({"dtype": "float16"}, "dtype"),
    ({"data": "gaussians", "gauss_dim": 4}, "gauss_dim"),
    ({"data": "toy", "plant_classes": (3, 8)}, "plant_classes"),
])
def test_bad_input_raises_landscape_error(kw, words):
    with pytest.raises(LandscapeError, match=words):
        opp.OpposingRun(dataclasses.replace(SHORT, **kw))


def test_unknown_options_and_presets():
    with pytest.raises(LandscapeError, match="unknown opposing-signals options"):
        opp.OpposingConfig.from_dict({"steps": 10, "nope": 1})
    with pytest.raises(LandscapeError, match="preset"):
        opp.preset("opposing-nope")
    cfg = opp.OpposingConfig.from_dict(opp.PRESETS["opposing-toy"].to_dict())
    assert cfg == opp.PRESETS["opposing-toy"]


def _cli(*argv):
    return lesson_args(opposing_cli, *argv)


def test_cli_functions(tmp_path, capsys):
    out = tmp_path / "op.json"
    res = opposing_cli.run(_cli("--steps", "200", "--window", "100", "--seed", "0", "--out", str(out), "--json"))
    for key in ("group_a", "group_b", "group_loss_corr", "planted", "precision_at_m", "seconds",
                "amplitude_ratio", "planted_amplitude_ratio", "vote_share", "sharpness_ratio"):
        assert key in res, key
    assert len(res["planted"]) == 35 and res["steps"] == 200 and res["preset"] == "opposing-planted"
    assert isinstance(res["label_a"], int) and res["label_a"] != res["label_b"]
    assert not set(res["group_a"]) & set(res["group_b"])
    json.dumps(res)
    assert json.loads(out.read_text())["meta"]["config"]["window"] == 100
    assert capsys.readouterr().out == ""  # --json: the caller prints
    lr = opposing_cli.run(_cli("--preset", "opposing-digits", "--steps", "30", "--window", "10", "--lr", "0.3"))
    assert lr["lr"] == 0.3 and "planted" not in lr and lr["precision_at_m"] is None
    assert "opposing signals (opposing-digits" in capsys.readouterr().out
    with pytest.raises(LandscapeError, match=r"\.npz or \.json"):
        opposing_cli.run(_cli("--out", str(tmp_path / "x.txt")))
    with pytest.raises(LandscapeError, match="preset"):
        opposing_cli.run(_cli("--preset", "nope"))
    with pytest.raises(LandscapeError, match="longer than the run"):
        opposing_cli.run(_cli("--steps", "100"))
    with pytest.raises(LandscapeError, match="learning rate"):
        opposing_cli.run(_cli("--lr", "-1"))


# --------------------------------------------------------------------------- the page

def _page(**params):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file("../pages/opposing.py", default_timeout=180)
    for k, v in params.items():
        at.query_params[k] = str(v)
    return at


def _rerun_until(at, ok, seconds=180.0):
    """The run is a background job that AppTest does not tick: rerun until ``ok(at)``."""
    import time

    end = time.perf_counter() + seconds
    at.run()
    while not ok(at):
        assert not at.exception, at.exception
        assert time.perf_counter() < end, "the page never got there"
        time.sleep(0.25)
        at.run()
    return at


def test_page_renders_charts_and_gallery_and_shows_errors():
    # the finished run (its metrics), not the live preview drawn while it trains
    at = _rerun_until(_page(op_steps=300, op_window=100), lambda at: len(at.metric) > 0)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(figs) >= 6
    titles = [f["layout"]["title"]["text"] for f in figs]
    assert all(titles)
    overview = [f for f, t in zip(figs, titles) if t.startswith("Loss, sharpness and groups")]
    assert overview and "2 / lr" in [tr.get("name") for tr in overview[0]["data"]]
    gallery = [f for f, t in zip(figs, titles) if t.startswith("Top-moving examples from step 299 to 300")]
    assert gallery and sum(tr["type"] == "heatmap" for tr in gallery[0]["data"]) == 16
    values = {m.label: m.value for m in at.metric}
    assert values["Opposing groups"] in ("3s vs 8s", "8s vs 3s")
    assert float(values["Precision@m (planted found)"]) >= 0.75
    # move the cursor: the gallery follows
    at.slider(key="op_cursor_300").set_value(120).run()
    assert not at.exception
    assert any(json.loads(c.proto.spec)["layout"]["title"]["text"].startswith(
        "Top-moving examples from step 120 to 121") for c in at.get("plotly_chart"))
    # a window longer than the run: one clear error, no traceback
    at.slider(key="op_window").set_value(400).run()
    assert not at.exception
    assert len(at.error) == 1 and "longer than the run" in at.error[0].value


def test_page_run_is_a_background_job_that_cancels_and_keeps_the_settings():
    import time

    at = _page(op_steps=3000, op_seed=7)
    at.run()
    assert not at.exception, at.exception
    job = at.session_state["opposing_job"]["job"]
    for _ in range(200):  # wait until it trains
        if job.poll().done > 0:
            break
        time.sleep(0.1)
    status = job.poll()
    assert status.state == "running" and 0 < status.done < status.total == 3000, status
    t0 = time.perf_counter()
    job.cancel()
    assert job.join(10).state == "done"  # the page's function returns the cancellation
    assert time.perf_counter() - t0 < 3.0
    _rerun_until(at, lambda at: len(at.warning) > 0, seconds=30)
    assert "Run cancelled" in at.warning[0].value, at.warning[0].value
    assert not at.get("plotly_chart") and not at.error
    assert at.session_state["op_steps"] == 3000 and at.session_state["op_seed"] == 7
    # the cancelled run stays cancelled (no restart) until "Run again"
    at.run()
    assert at.session_state["opposing_job"] is None and "Run cancelled" in at.warning[0].value
    at.button(key="op_run_again").click().run()
    assert not at.exception
    again = at.session_state["opposing_job"]["job"]
    assert again is not job and again.poll().state == "running"
    again.cancel()
    again.join(10)
