"""Edge of stability (Cohen et al. 2021) measured on the CPU: the signature at eta = 0.4 and 0.2, the
stability thresholds on quadratics, the tracked eigenvalues against dense Hessians, the cost
of tracking, the 1-D lesson, the loss along u_1, the CLI and the page under AppTest."""

import json
import math
import threading
import time

import numpy as np
import pytest
import torch
from helpers import join_jobs, lesson_args, lesson_page, release_page_job
from torch import nn

from landscape.cli import eos as eos_cli
from landscape.core.data import from_arrays
from landscape.core.device import warm_up
from landscape.core.errors import LandscapeError
from landscape.lessons import eos

torch.set_num_threads(1)
JOB_THREAD = "landscape-job-eos"  # the thread of eos.start_job


@pytest.fixture(scope="module", autouse=True)
def _warm():
    warm_up()  # the first double-backward of a process (about 0.5 s) is not the run's cost


@pytest.fixture(scope="module")
def fast_run():
    """eos-tanh at eta = 0.4, 500 steps: crosses 0.95 x 2/eta at step 175 (about 2 s)."""
    return eos.train(eos.preset("eos-tanh-fast", steps=500))


@pytest.fixture(scope="module")
def design_run():
    """The canonical recipe eos-tanh as is: eta = 0.2, 1,500 steps, eigenvalues every 25 (about 4 s)."""
    return eos.train(eos.preset("eos-tanh"))


# --------------------------------------------------------------------------- the phenomenon

def _signature(res, lo=0.9, hi=1.25):
    thr = res.threshold
    c = res.crossing_step
    assert c is not None
    # the sharpness rises from well below the threshold, crosses 2/eta ...
    assert res.ratio[0] < 0.6, res.ratio[:3]
    assert res.sharpness.max() >= thr
    # ... and over the second half stays at the edge
    r_lo, r_hi = res.ratio_range()
    assert lo <= r_lo and r_hi <= hi, (r_lo, r_hi)
    # the loss falls monotonically before the crossing, and not after it
    assert np.all(np.diff(res.loss[:c + 1]) < 0)
    before, after = res.loss_up_share()
    assert before == 0.0 and after >= 0.1, (before, after)
    assert res.loss[-1] < 0.5 * res.loss[c]  # ... while still going down overall
    return c


def test_eos_signature_eta_04(fast_run):
    res = fast_run
    assert res.threshold == pytest.approx(5.0)
    c = _signature(res)
    assert 100 <= c <= 250, c
    # at the edge the top two eigenvalues nearly coincide
    late = res.eig_steps >= 250
    assert np.all(res.eigenvalues[late, 1] >= 0.85 * res.eigenvalues[late, 0])
    # and the gradient points along the sharp direction: its curvature is near 2/eta too
    assert np.median(res.grad_curvature[late] / res.threshold) > 0.8
    assert np.all(res.residuals <= 1e-2 * np.abs(res.eigenvalues) + 1e-12)


def test_eos_signature_design_recipe_and_tracking_cost(design_run):
    res = design_run
    c = _signature(res)
    assert 425 <= c <= 575, c  # near step 500
    # Tracking cost at eig-every 25: at most half the training time. Thread CPU seconds (the
    # wall clock on this shared 2-core machine counts other people's work).
    m = res.meta
    assert m["eig_cpu_seconds"] <= 0.5 * m["train_cpu_seconds"], (m["eig_cpu_seconds"], m["train_cpu_seconds"])
    # load-independent: HVPs per measurement (each costs about one training step)
    assert res.hvps[1:].mean() <= 8, res.hvps
    assert m["eig_methods"].get("lanczos", 0) == 0


# --------------------------------------------------------------------------- thresholds

def test_threshold_formulas():
    assert eos.threshold("gd", 0.2) == pytest.approx(10.0)
    assert eos.threshold("momentum", 0.1, momentum=0.9) == pytest.approx(38.0)
    assert eos.threshold("adam", 4e-3, beta1=0.9) == pytest.approx(38 / 4e-3)
    assert eos.EosConfig(lr=0.4).threshold == pytest.approx(5.0)


@pytest.mark.parametrize("optimizer,kw", [
    ("gd", {}), ("momentum", {"momentum": 0.9}), ("momentum", {"momentum": 0.5}),
    ("adam", {"beta1": 0.9, "precond": 2.0}), ("adam", {"beta1": 0.5, "precond": 0.25}),
])
def test_quadratic_converges_just_below_and_diverges_just_above_the_threshold(optimizer, kw):
    lr = 0.1
    thr = eos.threshold(optimizer, lr, kw.get("momentum", 0.9), kw.get("beta1", 0.9))
    crit = thr * kw.get("precond", 1.0)  # lambda at which lambda / P hits the threshold
    # a diagonal quadratic: one easy direction and one at 0.99 / 1.01 of the critical curvature
    below = eos.quadratic_iterates([0.3 * crit, 0.99 * crit], lr, steps=2000, optimizer=optimizer, **kw)
    above = eos.quadratic_iterates([0.3 * crit, 1.01 * crit], lr, steps=2000, optimizer=optimizer, **kw)
    assert np.all(np.isfinite(above.x))
    assert below.rate < 1 < above.rate
    assert np.abs(below.x[-1]).max() < 1e-3
    assert np.abs(above.x[-1]).max() > 1e3
    assert "diverges" in above.regime and "diverges" not in below.regime


def test_gd_regimes_of_the_1d_lesson():
    lam = 4.0
    mono = eos.quadratic_iterates(lam, 0.2, steps=20)          # eta < 1/lambda
    osc = eos.quadratic_iterates(lam, 0.4, steps=20)           # 1/lambda < eta < 2/lambda
    edge = eos.quadratic_iterates(lam, 0.5, steps=20)          # eta = 2/lambda
    div = eos.quadratic_iterates(lam, 0.6, steps=20)           # eta > 2/lambda
    t = np.arange(21)
    for q, eta in ((mono, 0.2), (osc, 0.4), (div, 0.6)):
        np.testing.assert_allclose(q.x, (1 - eta * lam) ** t, rtol=1e-12)
        np.testing.assert_allclose(q.f, 0.5 * lam * q.x ** 2, rtol=1e-12)
    assert np.all(mono.x > 0) and np.all(np.diff(mono.x) < 0) and "monotonically" in mono.regime
    assert np.all(np.sign(osc.x[1:]) == -np.sign(osc.x[:-1])) and abs(osc.x[-1]) < 1e-2
    assert "oscillating" in osc.regime
    np.testing.assert_allclose(np.abs(edge.x), 1.0)
    assert "period-2" in edge.regime
    assert abs(div.x[-1]) > 100 and "diverges" in div.regime
    assert mono.threshold == pytest.approx(10.0)  # 2 / eta
    assert "one step" in eos.quadratic_iterates(lam, 0.25, steps=3).regime


def _linear(lam: float, n_out: int = 1):
    """A one-parameter model whose loss is exactly lambda w^2 / 2 (squared loss, target 0)."""
    torch.manual_seed(0)
    m = nn.Linear(1, n_out, bias=False)
    with torch.no_grad():
        m.weight.fill_(1.0)
    d = from_arrays(np.array([[math.sqrt(lam)]]), np.zeros((1, n_out)))
    return m, d


@pytest.mark.parametrize("optimizer", ["gd", "momentum"])
def test_training_loop_is_stable_exactly_below_its_threshold(optimizer):
    lam = 3.0
    thr_lr = eos.threshold(optimizer, 1.0, momentum=0.9) / lam  # the lr at which lam = threshold
    m, d = _linear(lam)
    kw = {"optimizer": optimizer, "momentum": 0.9, "steps": 3000, "eig_every": 1000}
    ok = eos.train(eos.EosConfig(lr=0.98 * thr_lr, **kw), model=m, data=d)
    assert ok.loss[-1] < 1e-6 * ok.loss[0]
    assert ok.eigenvalues[0, 0] == pytest.approx(lam, rel=1e-6)  # the Hessian of lam w^2 / 2
    assert ok.sharpness[0] < ok.threshold
    with pytest.raises(LandscapeError, match="diverged"):
        eos.train(eos.EosConfig(lr=1.02 * thr_lr, **kw), model=m, data=d)


# --------------------------------------------------------------------------- against dense Hessians

def _tiny(activation="tanh", seed=0):
    from landscape.core import models

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40, 5))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    m = models.build({"name": "mlp", "args": {"in_dim": 5, "out_dim": 3, "widths": [6],
                                              "activation": activation}}, seed=seed)
    return m, from_arrays(X, y)


def _dense(model, data, theta, loss="mse"):
    """Exact Hessian [P, P] and gradient [P] of the full-batch loss at theta (float64)."""
    from torch.func import functional_call

    from landscape.core import losses

    m = model.double()
    names = [n for n, _ in m.named_parameters()]
    shapes = [p.shape for _, p in m.named_parameters()]
    sizes = [p.numel() for _, p in m.named_parameters()]
    X = data.X.double()

    def L(flat):
        parts = dict(zip(names, (t.view(s) for t, s in zip(torch.split(flat, sizes), shapes))))
        return losses.loss(functional_call(m, parts, (X,)), data.y, loss)

    th = torch.as_tensor(theta, dtype=torch.float64)
    H = torch.autograd.functional.hessian(L, th)
    g = torch.autograd.functional.jacobian(L, th)
    return H.numpy(), g.numpy()


@pytest.mark.parametrize("eig_dtype,rtol", [("float64", 1e-9), ("float32", 1e-4)])
def test_tracked_sharpness_matches_dense_eigvalsh(eig_dtype, rtol):
    m, d = _tiny()
    cfg = eos.EosConfig(lr=0.5, steps=30, eig_every=10, eig_tol=1e-7, eig_maxdim=80, eig_dtype=eig_dtype)
    res = eos.train(cfg, model=m, data=d)
    assert list(res.eig_steps) == [0, 10, 20, 30]
    for i in range(len(res.eig_steps)):
        H, g = _dense(m, d, res.params[i])
        w = np.linalg.eigvalsh(0.5 * (H + H.T))[::-1]
        np.testing.assert_allclose(res.eigenvalues[i], w[:2], rtol=rtol)
        np.testing.assert_allclose(res.grad_curvature[i], g @ H @ g / (g @ g), rtol=10 * rtol)
        u = res.u1[i].astype(np.float64)
        assert abs(u @ H @ u / (u @ u) - w[0]) <= 1e-4 * w[0]
    # the default tolerance: each tracked value is within its residual of the exact one
    loose = eos.train(eos.EosConfig(lr=0.5, steps=30, eig_every=10), model=m, data=d)
    for i in range(len(loose.eig_steps)):
        H, _ = _dense(m, d, loose.params[i])
        w = np.linalg.eigvalsh(0.5 * (H + H.T))[::-1]
        assert np.all(np.abs(loose.eigenvalues[i] - w[:2]) <= loose.residuals[i] + 1e-5 * w[0])


def test_preconditioned_sharpness_matches_dense_computation():
    m, d = _tiny(seed=1)
    cfg = eos.EosConfig(optimizer="adam", lr=0.01, steps=12, eig_every=4, eig_tol=1e-7,
                        eig_maxdim=80, eig_dtype="float64")
    run = eos.EosRun(cfg, model=m, data=d)
    checked = 0
    for ev in run.run():
        if not ev.measured or ev.step == cfg.steps:
            continue  # the last point takes no update, so it has no preconditioner
        P = run.preconditioner()  # the P of the update just taken from theta_(ev.step)
        res = run.result()
        H, _ = _dense(m, d, res.params[-1])
        Dm = np.diag(1 / np.sqrt(P))
        w = np.linalg.eigvalsh(Dm @ H @ Dm)[::-1]
        # the same spectrum as the (non-symmetric) P^-1 H
        w_ns = np.sort(np.linalg.eigvals(np.diag(1 / P) @ H).real)[::-1]
        np.testing.assert_allclose(w[:2], w_ns[:2], rtol=1e-8)
        np.testing.assert_allclose(ev.precond, w[:2], rtol=1e-8)
        checked += 1
    assert checked == 3
    res = run.result()
    assert res.threshold == pytest.approx(38 / 0.01)
    np.testing.assert_array_equal(res.sharpness, res.precond[:, 0])


def test_adam_preconditioner_by_hand():
    lam = 4.0  # sqrt(lam) = 2 is exact in the float32 data
    m, d = _linear(lam)
    run = eos.EosRun(eos.EosConfig(optimizer="adam", lr=0.01, steps=3, eig_every=1,
                                   eig_dtype="float64"), model=m, data=d)
    evs = list(run.run(steps=2))
    # by hand: g_t = lam w_t, v_t = (1 - b2) sum b2^(t-i) g_i^2, P = (1 - b1^t)(sqrt(v_t / (1 - b2^t)) + eps)
    w0 = 1.0
    g0 = lam * w0
    v1 = 0.001 * g0 ** 2
    P1 = (1 - 0.9) * (math.sqrt(v1 / (1 - 0.999)) + 1e-8)  # = 0.1 (|g0| + 1e-8)
    assert evs[0].precond[0] == pytest.approx(lam / P1, rel=1e-10)
    assert evs[0].eigenvalues[0] == pytest.approx(lam, rel=1e-10)
    w1 = w0 - 0.01 * (0.1 * g0 / 0.1) / (math.sqrt(v1 / 0.001) + 1e-8)   # m_hat = g0
    g1 = lam * w1
    v2 = 0.999 * v1 + 0.001 * g1 ** 2
    P2 = (1 - 0.9 ** 2) * (math.sqrt(v2 / (1 - 0.999 ** 2)) + 1e-8)
    assert evs[1].loss == pytest.approx(0.5 * lam * w1 ** 2, rel=1e-12)
    assert evs[1].precond[0] == pytest.approx(lam / P2, rel=1e-10)


# --------------------------------------------------------------------------- loss along u_1

def test_eigen_slice_is_centred_on_the_iterate_with_the_measured_curvature(fast_run):
    res = fast_run
    i = res.index_of(400)
    sl = eos.eigen_slice(res, [int(res.eig_steps[i])], radius=1e-3, points=5)
    assert list(sl.steps) == [int(res.eig_steps[i])] and sl.loss.shape == (1, 5)
    assert sl.loss[0, 2] == pytest.approx(res.loss[res.eig_steps[i]], rel=1e-9)
    h = sl.t[3] - sl.t[2]
    curv = (sl.loss[0, 3] - 2 * sl.loss[0, 2] + sl.loss[0, 1]) / h ** 2
    assert curv == pytest.approx(res.hessian_sharpness[i], rel=2e-3)
    slope = (sl.loss[0, 3] - sl.loss[0, 1]) / (2 * h)
    assert slope == pytest.approx(res.grad_dot_u1[i], rel=1e-2, abs=1e-6)
    wide = eos.eigen_slice(res, [0, 175, 500])
    assert list(wide.steps) == [0, 175, 500] and wide.loss.shape == (3, 41)
    assert np.all(np.isfinite(wide.loss)) and wide.t[0] == -wide.t[-1]


# --------------------------------------------------------------------------- events, results, figures

def test_events_pause_resume_and_determinism():
    cfg = eos.preset("eos-tanh-fast", steps=40, eig_every=10)
    run = eos.EosRun(cfg)
    first = list(run.run(steps=15))
    assert [e.step for e in first] == list(range(15))
    assert [e.step for e in first if e.measured] == [0, 10]
    assert first[10].eigenvalues.shape == (2,) and math.isnan(first[10].precond[0])
    part = run.result()
    assert not part.meta["complete"] and list(part.eig_steps) == [0, 10] and len(part.loss) == 15
    rest = list(run.run())
    assert [e.step for e in rest] == list(range(15, 41)) and run.done
    full = run.result()
    assert list(full.eig_steps) == [0, 10, 20, 30, 40] and len(full.loss) == 41
    again = eos.train(cfg)
    np.testing.assert_array_equal(full.loss, again.loss)
    np.testing.assert_array_equal(full.eigenvalues, again.eigenvalues)
    other = eos.train(eos.preset("eos-tanh-fast", steps=40, eig_every=10, seed=1))
    assert not np.array_equal(full.loss, other.loss)
    m = full.meta
    assert m["hvps"] == int(full.hvps.sum()) > 0
    assert m["train_seconds"] > 0 and m["eig_seconds"] > 0 and m["complete"]


def test_job_runs_pauses_resumes_and_stops():
    job = eos.start_job(eos.preset("eos-tanh-fast", steps=3000, eig_every=50))
    try:
        deadline = time.time() + 30
        while not job.poll().partial and time.time() < deadline:
            time.sleep(0.05)
        assert job.poll().partial, "no partial result within 30 s"
        job.pause()
        time.sleep(0.3)  # the step in flight ends, then the job holds
        st = job.poll()
        assert st.state == "paused" and job.running and not st.finished
        step = st.done
        time.sleep(0.3)
        assert job.poll().done == step  # paused: no step is taken
        job.resume()
        deadline = time.time() + 30
        while job.poll().done == step and time.time() < deadline:
            time.sleep(0.05)
        assert job.poll().state == "running" and job.poll().done > step
        job.cancel()
        st = job.join(30)
        assert st.finished and st.state == "cancelled" and st.error is None
        res = st.result  # a stopped run keeps its partial result
        assert res is not None and not res.meta["complete"] and len(res.eig_steps) >= 1
        assert res.meta["steps_done"] > step
    finally:
        job.cancel()
        job.join(30)
    assert not any(t.name == JOB_THREAD for t in threading.enumerate())


def test_save_and_load_round_trip(tmp_path, fast_run):
    for suffix in (".npz", ".json"):
        back = eos.load(eos.save(fast_run, tmp_path / f"r{suffix}"))
        np.testing.assert_allclose(back.eigenvalues, fast_run.eigenvalues)
        np.testing.assert_allclose(back.loss, fast_run.loss)
        assert back.crossing_step == fast_run.crossing_step
        assert back.meta["config"] == fast_run.meta["config"]
    assert back.params.size == 0  # .json leaves the snapshots out
    with pytest.raises(LandscapeError, match="snapshots"):
        eos.eigen_slice(back, [0])


def test_hessian_labels():
    from landscape.core import models

    relu = models.build({"name": "mlp", "args": {"activation": "relu"}})
    tanh = models.build({"name": "mlp", "args": {"activation": "tanh"}})
    assert eos.hessian_label(tanh) == (True, "Hessian")
    ok, label = eos.hessian_label(relu)
    assert not ok and label.startswith("a.e. Hessian") and "ReLU" in label
    cnn = eos.build_model(eos.EosConfig(model={"name": "cnn", "args": {"activation": "tanh"}}))
    assert not eos.hessian_label(cnn)[0] and "MaxPool2d" in eos.hessian_label(cnn)[1]
    avg = eos.build_model(eos.EosConfig(model={"name": "cnn", "args": {"activation": "tanh"}}, pool="avg"))
    assert eos.hessian_label(avg)[0]
    res = eos.train(eos.preset("eos-tanh-fast", steps=10, eig_every=5,
                               model={"name": "mlp", "args": {"in_dim": 64, "out_dim": 10, "widths": [32],
                                                              "activation": "relu"}}))
    assert not res.meta["twice_differentiable"] and "a.e." in res.meta["hessian_label"]
    assert "a.e. Hessian" in eos.fig_loss_sharpness(res).layout.title.text


def test_figures_have_titles_and_axis_labels(fast_run):
    res = fast_run
    figs = [eos.fig_loss_sharpness(res), eos.fig_curvature(res),
            eos.fig_slice(eos.eigen_slice(res, [100, 400])),
            eos.fig_quadratic(eos.quadratic_iterates(4.0, 0.45))]
    for fig in figs:
        lay = fig.layout
        assert lay.title.text
        assert lay.xaxis.title.text and lay.yaxis.title.text
    notes = [a.text for a in figs[0].layout.annotations]
    assert any(n.startswith("threshold 2 / lr = 5") for n in notes), notes
    assert figs[0].layout.yaxis.type == "log"
    assert figs[0].layout.xaxis2.title.text and figs[0].layout.yaxis2.title.text
    assert figs[3].layout.xaxis2.title.text and figs[3].layout.yaxis2.title.text


def test_presets_are_valid_and_cpu_ones_fit_a_minute():
    for name, cfg in eos.PRESETS.items():
        cfg.validate()
        assert name in eos.PRESET_NOTES
    assert eos.PRESETS["eos-tanh"].lr == 0.2 and eos.PRESETS["eos-tanh-fast"].lr == 0.4
    assert eos.PRESETS["eos-adam"].optimizer == "adam" and eos.PRESETS["eos-cnn-gpu"].device == "auto"
    assert eos.PRESETS["eos-cnn-gpu"].model["name"] == "cnn"


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kw,words", [
    ({"lr": 0.0}, "learning rate"), ({"lr": -1.0}, "learning rate"), ({"lr": float("nan")}, "learning rate"),
    ({"optimizer": "sgd"}, "optimizer"), ({"steps": 0}, "steps"), ({"eig_every": 0}, "eig-every"),
    ({"momentum": 1.0}, "momentum"), ({"beta1": -0.1}, "beta1"), ({"n_eigs": 0}, "n_eigs"),
    ({"eig_tol": 0.0}, "eig_tol"), ({"dtype": "float16"}, "dtype"), ({"pool": "min"}, "pool"),
    ({"loss": "hinge"}, "loss"),
])
def test_bad_config_raises_landscape_error(kw, words):
    with pytest.raises(LandscapeError, match=words):
        eos.EosRun(eos.EosConfig(**kw))


def test_bad_inputs_elsewhere():
    with pytest.raises(LandscapeError, match="preset"):
        eos.preset("nope")
    with pytest.raises(LandscapeError, match="diverged"):
        eos.train(eos.preset("eos-tanh-fast", lr=3.0, steps=100))
    with pytest.raises(LandscapeError, match="lambda"):
        eos.quadratic_iterates(-1.0, 0.1)
    with pytest.raises(LandscapeError, match="learning rate"):
        eos.quadratic_iterates(1.0, 0.0)
    with pytest.raises(LandscapeError, match="outputs"):
        eos.EosRun(eos.EosConfig(model={"name": "mlp", "args": {"in_dim": 64, "out_dim": 3}}))


def _cli(*argv):
    return lesson_args(eos_cli, *argv)


def test_cli_functions(tmp_path, capsys):
    out = tmp_path / "eos.json"
    res = eos_cli.run(_cli("--preset", "eos-tanh-fast", "--steps", "60", "--eig-every", "20",
                           "--seed", "0", "--out", str(out), "--json"))
    for key in ("threshold", "steps", "sharpness", "loss", "crossing_step", "seconds",
                "train_seconds", "eig_seconds", "hvps"):
        assert key in res
    assert res["threshold"] == pytest.approx(5.0) and res["steps"] == 60
    assert [s for s, _ in res["sharpness"]] == [0, 20, 40, 60]
    assert [s for s, _ in res["loss"]] == list(range(61))
    assert res["crossing_step"] is None  # too short to reach the edge
    json.dumps(res)
    assert json.loads(out.read_text())["meta"]["config"]["lr"] == 0.4
    assert capsys.readouterr().out == ""
    mom = eos_cli.run(_cli("--optimizer", "momentum", "--momentum", "0.5", "--lr", "0.1",
                           "--steps", "20", "--eig-every", "10", "--json"))
    assert mom["threshold"] == pytest.approx(3.0 / 0.1) and mom["optimizer"] == "momentum"
    with pytest.raises(LandscapeError, match=r"\.npz or \.json"):
        eos_cli.run(_cli("--out", str(tmp_path / "x.txt")))
    with pytest.raises(LandscapeError, match="preset"):
        eos_cli.run(_cli("--preset", "nope"))
    with pytest.raises(LandscapeError, match="steps"):
        eos_cli.run(_cli("--steps", "0"))
    with pytest.raises(LandscapeError, match="learning rate"):
        eos_cli.run(_cli("--lr", "-0.1"))


# --------------------------------------------------------------------------- the page

def test_page_lesson_short_run_and_error():
    at = lesson_page("eos", eos_steps="100")
    try:
        at.run()
        assert not at.exception, at.exception
        specs = {c.key: c.proto.spec.replace(" ", "") for c in at.get("plotly_chart")}
        assert "quad_fig" in specs and "convergeswhileoscillating" in specs["quad_fig"]
        at.slider(key="q_eta").set_value(0.6).run()
        assert "diverges" in {c.key: c.proto.spec for c in at.get("plotly_chart")}["quad_fig"]
        at.button(key="start").click().run()
        assert not at.exception, at.exception
        join_jobs(JOB_THREAD)
        at.run()
        at.run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        specs = {c.key: c.proto.spec.replace(" ", "") for c in at.get("plotly_chart")}
        assert {"main_fig", "curv_fig", "slice_fig", "quad_fig"} <= set(specs)
        assert "threshold2\\u002flr=5" in specs["main_fig"] and '"type":"log"' in specs["main_fig"]
        values = {m.label: m.value for m in at.metric}
        assert values["Stability threshold (loss / parameter unit^2)"] == "5"
        # a learning rate far above the edge: the run diverges and says so in one line
        at.select_slider(key="eos_lr").set_value(3.0).run()
        at.button(key="start").click().run()
        join_jobs(JOB_THREAD)
        at.run()
        assert not at.exception
        assert any("diverged" in e.value for e in at.error), [e.value for e in at.error]
        # a preset button sets the widgets
        at.button(key="preset_eos-adam").click().run()
        assert not at.exception and at.radio(key="eos_opt").value == "adam"
        assert at.select_slider(key="eos_lr_adam").value == pytest.approx(4e-3)
    finally:
        release_page_job(JOB_THREAD)
    assert not any(t.name == JOB_THREAD for t in threading.enumerate())


def test_page_live_run_pauses_resumes_and_stops():
    at = lesson_page("eos", eos_steps="5000")
    try:
        at.run()
        at.button(key="start").click().run()
        assert not at.exception, at.exception
        assert at.get("progress") and at.button(key="pause")  # the live panel while it trains
        deadline = time.time() + 30  # AppTest does not tick run_every: poll by rerunning
        while not any(c.key == "live_fig" for c in at.get("plotly_chart")) and time.time() < deadline:
            time.sleep(0.2)
            at.run()
        assert any(c.key == "live_fig" for c in at.get("plotly_chart"))
        at.button(key="pause").click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        paused = [i.value for i in at.info]
        assert paused and paused[0].startswith("Paused at step"), paused
        assert any(c.key == "main_fig" for c in at.get("plotly_chart"))  # the partial result
        at.button(key="resume").click().run()
        assert at.button(key="stop")
        at.button(key="stop").click().run()
        assert not at.exception and not at.error
        stopped = [i.value for i in at.info]
        assert stopped and stopped[0].startswith("Stopped at step"), stopped
        assert not any(t.name == JOB_THREAD for t in threading.enumerate())
    finally:
        release_page_job(JOB_THREAD)
