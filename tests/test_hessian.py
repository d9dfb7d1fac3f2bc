"""Tests of the Hessian wing against ground truth: exact Hessians of tiny float64 models
(``oracles.exact_hessian``, dense ``eigvalsh``), analytic quadratics, and the outlier recipes
of Papyan (2019, 2020): class-structured mixtures and random labels."""

from __future__ import annotations

import copy
import math
import threading

import numpy as np
import pytest
import torch
from helpers import gd
from oracles import exact_hessian
from torch import nn

from landscape import hessian as hs
from landscape.core.data import load_builtin
from landscape.core.errors import Cancelled, LandscapeError
from landscape.core.losses import loss
from landscape.core.models import build

# torch.func.hessian (the ground truth) loads forward-AD decompositions via torch.jit.script
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Small models on 2 cores: one torch thread."""


# --------------------------------------------------------------------------- helpers


def mixture(random_labels=False, seed=0, classes=4, dim=10, separation=2.0):
    """A Gaussian mixture: N = 300, class means ``separation`` apart on average."""
    ds = load_builtin("gaussians", n=300, classes=classes, dim=dim, separation=separation,
                      random_labels=random_labels, seed=seed)
    return ds.X.to(torch.float64), ds.y


def mlp(widths, act, seed=0, in_dim=10, out_dim=4):
    return build({"name": "mlp", "args": {"in_dim": in_dim, "out_dim": out_dim,
                                          "widths": widths, "activation": act}},
                 seed=seed, dtype=torch.float64)


@pytest.fixture(scope="module")
def tiny():
    """A trained tanh MLP 10-16-4 (244 parameters) with its exact Hessian and spectrum."""
    X, y = mixture(seed=0)
    model = mlp([16], "tanh")
    gd(model, X, y, 150, 0.1)
    H = exact_hessian(model, X, y, "cross_entropy")
    ev = np.linalg.eigvalsh(H)[::-1]
    return {"model": model, "X": X, "y": y, "H": H, "ev": ev}


@pytest.fixture()
def op(tiny):
    return hs.HessianOperator(tiny["model"], tiny["X"], tiny["y"], "cross_entropy")


# --------------------------------------------------------------------------- HVPs


@pytest.mark.parametrize("kind", ["cross_entropy", "mse"])
def test_hvp_equals_exact_hessian_times_v(tiny, kind):
    X, y, model = tiny["X"], tiny["y"], tiny["model"]
    H = tiny["H"] if kind == "cross_entropy" else exact_hessian(model, X, y, kind)
    o = hs.HessianOperator(model, X, y, kind)
    assert o.n_params == H.shape[0] == sum(p.numel() for p in model.parameters())
    assert o.names == [n for n, _ in model.named_parameters()]
    assert o.shapes == [tuple(p.shape) for p in model.parameters()]
    rng = np.random.default_rng(1)
    for _ in range(3):
        v = rng.standard_normal(o.n_params)
        Hv = o.matvec(v)
        assert Hv.shape == (o.n_params,) and Hv.dtype == np.float64
        np.testing.assert_allclose(Hv, H @ v, rtol=0, atol=1e-12 * np.abs(H @ v).max())
    assert o.hvps == 3
    V = rng.standard_normal((4, o.n_params))
    np.testing.assert_allclose(o.matmat(V), V @ H, atol=1e-12 * np.abs(H).max() * 10)
    np.testing.assert_allclose(o.matmat(V, batched=True), V @ H,
                               atol=1e-12 * np.abs(H).max() * 10)
    assert o.hvps == 11
    np.testing.assert_allclose(o.dense(), H, atol=1e-13)
    lin = o.as_linear_operator()
    assert lin.shape == H.shape
    np.testing.assert_allclose(lin @ V[0], H @ V[0], atol=1e-12)


def test_gradient_graph_built_once_and_rebuilt_on_move(tiny):
    X, y, model = tiny["X"], tiny["y"], tiny["model"]
    o = hs.HessianOperator(model, X, y, "cross_entropy")
    forwards = []
    o._model.register_forward_hook(lambda *a: forwards.append(1))
    v = np.random.default_rng(0).standard_normal(o.n_params)
    for _ in range(10):
        o.matvec(v)
    assert forwards == [] and o.graph_builds == 1 and o.hvps == 10

    theta = o.point()
    new = theta + 0.05 * np.random.default_rng(2).standard_normal(theta.size)
    o.set_point(new)
    assert len(forwards) == 1 and o.graph_builds == 2
    np.testing.assert_array_equal(o.point(), new)
    moved = copy.deepcopy(model)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.from_numpy(new), moved.parameters())
    H_new = exact_hessian(moved, X, y, "cross_entropy")
    assert np.abs(H_new - tiny["H"]).max() > 1e-4  # it is a different point
    np.testing.assert_allclose(o.matvec(v), H_new @ v, atol=1e-12 * np.abs(H_new @ v).max())
    with pytest.raises(LandscapeError):
        o.set_point(new[:-1])


def test_chunked_graphs_sum_to_full_batch(tiny, op):
    o = hs.HessianOperator(tiny["model"], tiny["X"], tiny["y"], "cross_entropy", batch_size=64)
    assert len(o._graphs) == 5  # 300 = 4 x 64 + 44, one cached graph each
    v = np.random.default_rng(3).standard_normal(o.n_params)
    np.testing.assert_allclose(o.matvec(v), op.matvec(v), atol=1e-13)
    assert o.hvps == 1
    assert o.loss_value == pytest.approx(op.loss_value, rel=1e-13)
    np.testing.assert_allclose(o.gradient(), op.gradient(), atol=1e-14)


def test_class_mean_gradients(tiny, op):
    X, y, model = tiny["X"], tiny["y"], tiny["model"]
    G = op.class_mean_gradients()
    assert G.shape == (4, op.n_params)
    for c in range(4):
        m = copy.deepcopy(model)
        g = torch.autograd.grad(loss(m(X[y == c]), y[y == c], "cross_entropy"),
                                list(m.parameters()))
        np.testing.assert_allclose(G[c], torch.cat([t.reshape(-1) for t in g]).numpy(),
                                   atol=1e-14)
    counts = np.bincount(y.numpy(), minlength=4) / len(y)
    np.testing.assert_allclose(counts @ G, op.gradient(), atol=1e-14)


# --------------------------------------------------------------------------- top-k


def test_top5_match_dense_eigvalsh(tiny, op):
    ev, H = tiny["ev"], tiny["H"]
    r = hs.top_eigenpairs(op, 5)
    assert r.eigenvalues.shape == (5,) and r.eigenvectors.shape == (5, op.n_params)
    assert np.all(np.diff(r.eigenvalues) <= 0)
    np.testing.assert_allclose(r.eigenvalues, ev[:5], rtol=1e-6)
    tol = r.meta["tol"]
    assert np.all(r.residuals <= tol * abs(ev[0]))
    true_res = np.linalg.norm(r.eigenvectors @ H - r.eigenvalues[:, None] * r.eigenvectors, axis=1)
    np.testing.assert_allclose(r.residuals, true_res, atol=1e-13)
    _, U = np.linalg.eigh(H)
    overlaps = np.abs(np.sum(r.eigenvectors * U[:, ::-1][:, :5].T, axis=1))
    np.testing.assert_allclose(overlaps, 1.0, atol=1e-8)
    assert r.hvps == op.hvps == r.meta["hvps"] == r.meta["hvps_lanczos"] + 5
    assert r.hvps <= 60 and r.meta["converged"]
    assert r.meta["n_params"] == op.n_params and r.meta["dtype"] == "float64"
    assert r.seconds > 0


def test_warm_start_saves_hvps():
    X, y = mixture(seed=0)
    model = mlp([64, 64], "relu")
    gd(model, X, y, 300, 0.1)
    first = hs.top_eigenpairs(hs.HessianOperator(model, X, y, "cross_entropy"), 11)
    gd(model, X, y, 3, 0.1)  # a nearby point, as along a trajectory
    o = hs.HessianOperator(model, X, y, "cross_entropy")
    cold = hs.top_eigenpairs(o, 11, seed=5)
    warm = hs.top_eigenpairs(o, 11, v0=first.eigenvectors)
    np.testing.assert_allclose(warm.eigenvalues, cold.eigenvalues, rtol=1e-10)
    assert warm.meta["hvps_lanczos"] < cold.meta["hvps_lanczos"]


def test_smallest_eigenvalue(tiny, op):
    ev = tiny["ev"]
    assert ev[-1] < 0  # a trained-but-not-converged net has negative curvature
    r = hs.smallest_eigenvalue(op)
    assert r.meta["converged"]
    assert r.eigenvalues[0] == pytest.approx(ev[-1], rel=1e-6)
    assert r.residuals[0] < 1e-6 * abs(ev[0])


def test_analytic_quadratic_known_eigenvalues():
    """Linear least squares, loss = mean 0.5 (x_i . w - t_i)^2, so H = X^T X / N exactly:
    with X = U diag(s) V^T built with chosen singular values, eig(H) = s^2 / N."""
    rng = np.random.default_rng(0)
    N, P = 200, 30
    s = np.linspace(1.0, 12.0, P)
    U, _ = np.linalg.qr(rng.standard_normal((N, P)))
    V, _ = np.linalg.qr(rng.standard_normal((P, P)))
    X = torch.from_numpy(U @ np.diag(s) @ V.T)
    t = torch.from_numpy(rng.standard_normal(N))
    model = nn.Linear(P, 1, bias=False).double()
    o = hs.HessianOperator(model, X, t, "mse")
    known = np.sort(s ** 2 / N)[::-1]
    r = hs.top_eigenpairs(o, 5)
    np.testing.assert_allclose(r.eigenvalues, known[:5], rtol=1e-10)
    np.testing.assert_allclose(np.abs(r.eigenvectors @ V[:, ::-1][:, :5]).diagonal(), 1, atol=1e-8)
    assert hs.smallest_eigenvalue(o).eigenvalues[0] == pytest.approx(known[-1], rel=1e-8)
    d = hs.slq_density(o, probes=2, lanczos_steps=P, seed=0)  # m = P: quadrature is exact
    np.testing.assert_allclose(np.sort(d.nodes[0]), np.sort(known), rtol=1e-8)
    np.testing.assert_allclose(d.weights.sum(1), 1.0, atol=1e-12)
    # with an exact quadrature, sum_j tau_j theta_j is the probe's Rayleigh quotient
    z = np.random.default_rng(0).integers(0, 2, size=(1, P)) * 2.0 - 1.0
    Hd = X.numpy().T @ X.numpy() / N
    assert (d.nodes[0] * d.weights[0]).sum() == pytest.approx(z[0] @ Hd @ z[0] / P, rel=1e-10)


def test_indefinite_dense_operator():
    rng = np.random.default_rng(1)
    lam = np.concatenate([[50.0, 20.0, 10.0, 5.0, 4.0], rng.uniform(-1.0, 1.0, 195)])
    Q, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    A = (Q * lam) @ Q.T
    o = hs.DenseOperator(A)
    r = hs.top_eigenpairs(o, 5)
    np.testing.assert_allclose(r.eigenvalues, lam[:5], rtol=1e-10)
    assert hs.smallest_eigenvalue(o).eigenvalues[0] == pytest.approx(lam.min(), rel=1e-6)
    lm = hs.top_eigenpairs(o, 2, which="LM")
    np.testing.assert_allclose(lm.eigenvalues, [50.0, 20.0], rtol=1e-10)


# --------------------------------------------------------------------------- trace


def test_traces_within_three_standard_errors(tiny, op):
    exact = float(np.trace(tiny["H"]))
    for r in (hs.hutchinson_trace(op, probes=100, seed=0), hs.hutchpp_trace(op, probes=99, seed=0)):
        assert r.stderr > 0
        assert abs(r.trace - exact) <= 3 * r.stderr, (r.method, r.trace, exact, r.stderr)
        assert r.hvps == r.meta["hvps"] == r.meta["probes"]
    assert op.hvps == 199
    again = hs.hutchinson_trace(op, probes=100, seed=0)
    assert again.trace == hs.hutchinson_trace(op, probes=100, seed=0).trace  # seeded


def test_trace_standard_errors_are_calibrated():
    """Over many seeds, |estimate - truth| <= 2 se about 95% of the time, for both methods;
    and Hutch++ beats Hutchinson on a matrix with a few dominant eigenvalues."""
    rng = np.random.default_rng(2)
    lam = np.concatenate([[40.0, 25.0, 15.0], rng.exponential(0.5, 97)])
    Q, _ = np.linalg.qr(rng.standard_normal((100, 100)))
    A = (Q * lam) @ Q.T
    truth = lam.sum()
    cover = {"hutchinson": 0, "hutch++": 0}
    se = {"hutchinson": [], "hutch++": []}
    n = 200
    for seed in range(n):
        for r in (hs.hutchinson_trace(A, probes=30, seed=seed),
                  hs.hutchpp_trace(A, probes=30, seed=seed)):
            cover[r.method] += abs(r.trace - truth) <= 2 * r.stderr
            se[r.method].append(r.stderr)
    assert cover["hutchinson"] / n >= 0.88 and cover["hutch++"] / n >= 0.88, cover
    assert np.median(se["hutch++"]) < 0.5 * np.median(se["hutchinson"])


# --------------------------------------------------------------------------- density


def test_slq_density_close_to_exact_spectrum(tiny, op):
    ev = tiny["ev"]
    d = hs.slq_density(op, probes=5, lanczos_steps=60, seed=0)
    assert d.hvps == 5 * 60 and d.nodes.shape == d.weights.shape == (5, 60)
    np.testing.assert_allclose(d.weights.sum(1), 1.0, atol=1e-12)
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, abs=1e-9)
    assert np.all(d.density >= 0)
    assert d.sigma == pytest.approx((d.nodes.max() - d.nodes.min()) / 120)
    # Ritz values lie inside the spectrum, and the extreme ones converge first
    assert d.nodes.min() >= ev[-1] - 1e-10 and d.nodes.max() <= ev[0] + 1e-10
    assert d.nodes.max() == pytest.approx(ev[0], rel=1e-8)
    spread, span = ev.std(), ev[0] - ev[-1]
    nodes, w = d.discrete()
    w1 = hs.wasserstein1(nodes, ev, w)
    w1_smooth = hs.wasserstein1(d.grid, ev, d.density / d.density.sum())
    assert w1 < 0.1 * spread, (w1, spread)
    assert w1_smooth < 0.02 * span, (w1_smooth, span)
    # a smeared-out spectrum of the same range is much farther away: the check has teeth
    assert hs.wasserstein1(np.linspace(ev[-1], ev[0], 200), ev) > 10 * w1
    assert d.meta["trace_estimate"] == pytest.approx(np.sum(ev), rel=0.1)


# --------------------------------------------------------------------------- safety


def _stochastic_net(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(12, 4)).to(dtype)


def _snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [m.training for m in model.modules()],
            [p.grad for p in model.parameters()])


def _assert_same(model, snap):
    state, modes, grads = snap
    now = model.state_dict()
    assert now.keys() == state.keys()
    for k in state:
        assert now[k].dtype == state[k].dtype and torch.equal(now[k], state[k]), k
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters()) and all(g is None for g in grads)


def test_caller_model_bit_identical_and_mode_unchanged(tiny):
    X, y = tiny["X"], tiny["y"]
    net = _stochastic_net().eval()
    with torch.no_grad():  # non-trivial running statistics
        net[1].running_mean.uniform_(-0.5, 0.5)
    snap = _snapshot(net)
    for mode in (None, "eval", "train"):
        o = hs.HessianOperator(net, X, y, "cross_entropy", mode=mode)
        o.matvec(np.ones(o.n_params))
        hs.top_eigenpairs(o, 2)
        o.class_mean_gradients()
        o.set_point(o.point() * 1.01)
        _assert_same(net, snap)
    assert not net.training and not net[1].training
    hs.pyhessian_top_eigenvalues(net, X, y, "cross_entropy", k=1, max_iter=5)
    hs.pyhessian_trace(net, X, y, "cross_entropy", max_iter=3)
    _assert_same(net, snap)
    assert torch.get_default_dtype() == torch.float32

    trained = tiny["model"]
    snap = _snapshot(trained)
    hs.layer_spectra(hs.HessianOperator(trained, X, y, "cross_entropy"), probes=10)
    _assert_same(trained, snap)


def test_refuses_train_mode_dropout_and_batchnorm(tiny):
    X, y = tiny["X"], tiny["y"]
    for layer in (nn.Dropout(0.2), nn.BatchNorm1d(12)):
        net = nn.Sequential(nn.Linear(10, 12), layer, nn.Linear(12, 4)).double().train()
        with pytest.raises(LandscapeError, match="train mode"):
            hs.HessianOperator(net, X, y, "cross_entropy")
        assert net.training and layer.training  # nothing was switched
        o_eval = hs.HessianOperator(net, X, y, "cross_entropy", mode="eval")
        o_train = hs.HessianOperator(net, X, y, "cross_entropy", mode="train")
        assert not o_eval._model.training and o_train._model[1].training
        assert net.training and layer.training
        v = np.random.default_rng(0).standard_normal(o_train.n_params)
        np.testing.assert_array_equal(o_train.matvec(v), o_train.matvec(v))  # fixed graph
        assert not np.allclose(o_train.matvec(v), o_eval.matvec(v))
    # a train-mode model without stochastic layers is deterministic: accepted, mode kept
    plain = mlp([8], "relu").train()
    o = hs.HessianOperator(plain, X, y, "cross_entropy")
    assert o._model.training and plain.training


def test_bad_input_raises_landscape_error(tiny):
    X, y, model = tiny["X"], tiny["y"], tiny["model"]
    with pytest.raises(LandscapeError):
        hs.HessianOperator(model, X, y, "hinge")
    with pytest.raises(LandscapeError):
        hs.HessianOperator(model, X[:10], y, "cross_entropy")
    with pytest.raises(LandscapeError):
        hs.HessianOperator(model, X[:, :5], y, "cross_entropy")  # wrong input width
    with pytest.raises(LandscapeError):
        hs.HessianOperator(model, X, y, "cross_entropy", mode="training")
    o = hs.HessianOperator(model, X, y, "cross_entropy")
    with pytest.raises(LandscapeError):
        o.matvec(np.ones(3))
    with pytest.raises(LandscapeError):
        hs.top_eigenpairs(o, 0)
    with pytest.raises(LandscapeError):
        o.block("nope")


def test_float32_operator(tiny, op):
    o32 = hs.HessianOperator(tiny["model"], tiny["X"], tiny["y"], "cross_entropy",
                             dtype=torch.float32)
    assert o32._params[0].dtype == torch.float32 and o32.dtype_name == "float32"
    r = hs.top_eigenpairs(o32, 3)
    assert r.eigenvalues.dtype == np.float64 and r.meta["dtype"] == "float32"
    np.testing.assert_allclose(r.eigenvalues, tiny["ev"][:3], rtol=1e-4)


def test_progress_and_cancel(op):
    seen = []
    hs.hutchinson_trace(op, probes=20, seed=0, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (20, 20) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    ev = threading.Event()

    def stop_after_5(done, total):
        if done >= 5:
            ev.set()

    with pytest.raises(Cancelled):
        hs.slq_density(op, probes=3, lanczos_steps=40, progress=stop_after_5, cancel=ev)
    with pytest.raises(Cancelled):
        hs.top_eigenpairs(op, 5, cancel=lambda: True)


# --------------------------------------------------------------------------- per layer


def test_layer_spectra_match_exact_blocks(tiny, op):
    H = tiny["H"]
    res = hs.layer_spectra(op, probes=20, seed=0)
    assert res.names == op.names
    for i, (s, e) in enumerate(zip(op.offsets[:-1], op.offsets[1:])):
        block = H[s:e, s:e]
        assert res.top_eigenvalue[i] == pytest.approx(np.linalg.eigvalsh(block)[-1], rel=1e-6)
        if e - s <= 20:
            assert res.trace_stderr[i] == 0
            assert res.trace[i] == pytest.approx(np.trace(block), rel=1e-10)
        else:
            assert abs(res.trace[i] - np.trace(block)) <= 3 * res.trace_stderr[i]
    b = op.block(op.names[2])
    v = np.random.default_rng(0).standard_normal(b.n_params)
    s, e = op.offsets[2], op.offsets[3]
    np.testing.assert_allclose(b.matvec(v), H[s:e, s:e] @ v, atol=1e-13)


# --------------------------------------------------------------------------- outliers


def test_outlier_split_rule_on_constructed_overlaps():
    P = 40
    I = np.eye(P)
    G = I[:3] * np.array([[2.0], [1.0], [0.5]])  # span = first 3 coordinates
    vals = np.array([10.0, 8.0, 7.0, 3.0, 2.9, 2.8, 2.7])
    vecs = I[[0, 1, 2, 5, 6, 7, 8]]
    r = hs.outlier_split(vals, vecs, G)
    assert r.clean and r.verdict == "clean" and r.n_outliers == 3 and r.run_length == 3
    np.testing.assert_allclose(r.rho, [1, 1, 1, 0, 0, 0, 0], atol=1e-12)
    assert r.gap_at_split == pytest.approx(7 / 3) and r.max_gap_after == 3

    # a later eigenvector with rho = 0.3 spoils the clean run; the 7/3 gap remains
    leaky = vecs.copy()
    leaky[4] = math.sqrt(0.3) * I[2] + math.sqrt(0.7) * I[9]
    leaky[2] = I[3]  # and the third one leaves the span: the leading run is 2 long
    r = hs.outlier_split(vals, leaky, G)
    assert r.run_length == 2 and not r.clean
    assert r.rho[4] == pytest.approx(0.3)
    assert r.verdict == "gap only" and r.n_outliers == 3

    flat = np.array([10.0, 9.5, 9.0, 8.6, 8.2, 7.9, 7.6])  # every ratio < 1.2
    r = hs.outlier_split(flat, leaky, G)
    assert r.verdict == "no separation" and r.n_outliers == 0 and not r.clean

    # the run stops at the first rho < 0.5 even if a later one is large
    mixed = vecs.copy()
    mixed[1] = I[10]
    r = hs.outlier_split(vals, mixed, G)
    assert r.run_length == 1 and not r.clean


def test_outlier_messages_say_count_gap_and_overlap_in_plain_words():
    P = 40
    I = np.eye(P)
    G = I[:3] * np.array([[2.0], [1.0], [0.5]])  # span = first 3 coordinates
    vals = np.array([10.0, 8.0, 6.0, 2.0, 1.9, 1.8, 1.7])
    vecs = I[[0, 1, 2, 5, 6, 7, 8]].copy()
    vecs[1] = math.sqrt(0.9) * I[1] + math.sqrt(0.1) * I[20]  # 90% in the span
    r = hs.outlier_split(vals, vecs, G)
    assert r.verdict == "clean" and r.n_outliers == 3
    assert r.meta["bulk_edge"] == 2.0 and r.meta["edge_ratio"] == pytest.approx(3.0)
    assert r.message == ("3 outliers above the bulk: λ3 = 6 is 3.00 times λ4 = 2, the top of the "
                         "bulk. Their eigenvectors lie 90-100% in the span of the 3 class-mean "
                         "gradients; the bulk's at most 0%.")

    leaky = vecs.copy()
    leaky[4] = math.sqrt(0.3) * I[2] + math.sqrt(0.7) * I[9]  # a bulk vector 30% in the span
    r = hs.outlier_split(vals, leaky, G)
    assert r.verdict == "gap only" and r.n_outliers == 3
    assert r.message.startswith("3 outliers by the largest gap among the top 3: λ3 = 6 is 3.00 "
                                "times λ4 = 2")
    assert "eigenvector 5, below them, still lies 30% in it, so the split is not clean" in r.message

    flat = np.array([10.0, 9.5, 9.0, 8.6, 8.2, 7.9, 7.6])
    r = hs.outlier_split(flat, leaky, G)
    assert r.verdict == "no separation" and r.meta["edge_ratio"] is None
    assert r.message.startswith("No outliers: no eigenvalue among the top 3 stands out")
    assert "1.06, after λ2" in r.message

    for msg in (hs.outlier_split(v, u, G).message for v, u in ((vals, vecs), (vals, leaky),
                                                                 (flat, leaky))):
        for jargon in ("overlap run", "leading run", "rho", "verdict"):
            assert jargon not in msg, msg


def _recipe(act, train, random_labels=False, seed=0):
    X, y = mixture(random_labels=random_labels, seed=seed)
    model = mlp([64, 64], act, seed=seed)
    if train:
        gd(model, X, y, 300, 0.1)
    o = hs.HessianOperator(model, X, y, "cross_entropy")
    split, eig = hs.bulk_and_outliers(o)
    assert len(eig.eigenvalues) == 2 * 4 + 5
    assert eig.residuals.max() <= 1e-6 * eig.eigenvalues[0]
    return split


@pytest.mark.parametrize("random_labels", [False, True], ids=["a_true_labels", "b_random_labels"])
def test_outlier_recipe_relu_gives_c_minus_1_clean_outliers(random_labels):
    """Papyan's outliers, true (a) and random (b) labels: 4-class mixture, ReLU 10-64-64-4, GD lr 0.1 x 300, CE:
    k = C - 1 = 3 with rho >= 0.8 in the run, <= 0.1 after, eigen-gap >= 1.5 at the split."""
    s = _recipe("relu", train=True, random_labels=random_labels)
    assert s.verdict == "clean" and s.clean, s.message
    assert s.n_outliers == 3
    assert s.rho[:3].min() >= 0.8 and s.rho[3:].max() <= 0.1, s.rho
    assert s.gap_at_split >= 1.5


def test_outlier_recipe_tanh_at_init_gives_no_separation():
    """(c) No outliers: a tanh network at initialisation, zero-mean features."""
    s = _recipe("tanh", train=False)
    assert s.verdict == "no separation" and not s.clean and s.n_outliers == 0, s.message
    assert s.max_gap_ratio < 1.2


# --------------------------------------------------------------------------- PyHessian


def test_pyhessian_cross_check(tiny, op):
    ev = tiny["ev"]
    p = hs.pyhessian_top_eigenvalues(tiny["model"], tiny["X"], tiny["y"], "cross_entropy", k=2)
    assert p.eigenvalues == pytest.approx(ev[:2], rel=2e-2)
    assert p.eigenvectors.shape == (2, op.n_params)
    assert p.hvps == p.meta["hvps"] and 4 <= p.hvps <= 200
    ours = hs.top_eigenpairs(op, 2)
    assert ours.eigenvalues == pytest.approx(p.eigenvalues, rel=2e-2)
    t = hs.pyhessian_trace(tiny["model"], tiny["X"], tiny["y"], "cross_entropy")
    assert t.hvps == len(t.samples) >= 2
    assert t.trace == pytest.approx(np.trace(tiny["H"]), rel=0.15)


# --------------------------------------------------------------------------- re-pointing


def test_tensor_hvp_and_set_point_match_the_exact_hessian_at_the_new_point(tiny):
    """``set_point`` takes any float tensor or array; ``hvp`` stays in torch; both agree with
    the dense Hessian at the new point, and the caller's model never moves."""
    X, y, model = tiny["X"], tiny["y"], tiny["model"]
    before = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    o = hs.HessianOperator(model, X, y, "cross_entropy")
    v = torch.from_numpy(np.random.default_rng(4).standard_normal(o.n_params))
    Hv = o.hvp(v)
    assert isinstance(Hv, torch.Tensor) and Hv.dtype == torch.float64 and o.hvps == 1
    np.testing.assert_allclose(Hv.numpy(), tiny["H"] @ v.numpy(), atol=1e-12 * np.abs(tiny["H"]).max())
    new = before + 0.1 * torch.randn(o.n_params, generator=torch.Generator().manual_seed(5),
                                     dtype=before.dtype)
    o.set_point(new.float())  # a float32 tensor: converted into the float64 buffer
    moved = copy.deepcopy(model)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(new.float().double(), moved.parameters())
    H_new = exact_hessian(moved, X, y, "cross_entropy")
    np.testing.assert_array_equal(o.point(), new.float().double().numpy())
    np.testing.assert_allclose(o.hvp(v).numpy(), H_new @ v.numpy(), atol=1e-12 * np.abs(H_new).max())
    np.testing.assert_allclose(o.matvec(v.numpy()), H_new @ v.numpy(), atol=1e-12 * np.abs(H_new).max())
    assert o.hvps == 3 and o.graph_builds == 2
    assert torch.equal(torch.nn.utils.parameters_to_vector(model.parameters()), before)
    with pytest.raises(LandscapeError):
        o.hvp(v[:-1])


# --------------------------------------------------------------------------- saving


def _same(a, b):
    """Dataclass results equal field by field (arrays exactly, NaN == NaN)."""
    assert type(a) is type(b)
    for k, va in vars(a).items():
        vb = getattr(b, k)
        if isinstance(va, np.ndarray):
            np.testing.assert_array_equal(np.asarray(vb), va)
        elif isinstance(va, float) and math.isnan(va):
            assert math.isnan(vb)
        elif k != "meta":
            assert vb == va, k
    assert set(b.meta) == set(a.meta)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_every_result_type_round_trips(tiny, op, tmp_path, suffix):
    eig = hs.top_eigenpairs(op, 3)
    results = [eig, hs.hutchpp_trace(op, probes=12), hs.slq_density(op, probes=2, lanczos_steps=8),
               hs.outlier_split(eig.eigenvalues, eig.eigenvectors, op.class_mean_gradients()),
               hs.layer_spectra(op, probes=10)]
    for i, r in enumerate(results):
        path = r.save(tmp_path / f"r{i}{suffix}")
        back = type(r).load(path)
        _same(r, back)
        assert back.meta.get("hvps") == r.meta.get("hvps")
    lay = hs.LayerResult.load(tmp_path / f"r4{suffix}")
    assert lay.shapes == op.shapes and lay.names == op.names
    with pytest.raises(LandscapeError, match="not a EigenResult"):
        hs.EigenResult.load(tmp_path / f"r1{suffix}")
