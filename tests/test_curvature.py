"""Gauss-Newton, empirical Fisher, ``H = G + R``, Papyan's split and the flatness readouts,
against dense brute force in float64 (``oracles.exact_hessian``, ``exact_ggn``,
``exact_empirical_fisher``: ``torch.func`` Jacobians and Hessians, one example at a time)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from helpers import gd
from oracles import exact_empirical_fisher, exact_ggn, exact_hessian
from torch import nn

from landscape import hessian as hs
from landscape.cli.main import main
from landscape.core.data import from_arrays, load_builtin
from landscape.core.errors import LandscapeError
from landscape.core.models import build
from landscape.hessian import report as spectrum

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")

ORACLES = {"hessian": exact_hessian, "ggn": exact_ggn, "empirical-fisher": exact_empirical_fisher}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Small models on 2 cores: one torch thread."""


def mixture(n=300, classes=4, dim=10, seed=0):
    ds = load_builtin("gaussians", n=n, classes=classes, dim=dim, separation=2.0, seed=seed)
    return ds.X.to(torch.float64), ds.y


def mlp(widths, act, in_dim=10, out_dim=4, seed=0):
    return build({"name": "mlp", "args": {"in_dim": in_dim, "out_dim": out_dim, "widths": widths,
                                          "activation": act}}, seed=seed, dtype=torch.float64)




@pytest.fixture(scope="module")
def small():
    """A tanh MLP 4-6-3 (51 parameters) on 60 examples of a 3-class mixture."""
    X, y = mixture(n=60, classes=3, dim=4)
    return mlp([6], "tanh", in_dim=4, out_dim=3), X, y


@pytest.fixture(scope="module")
def relu_trained():
    """A ReLU MLP 10-16-4 trained by full-batch GD on a 4-class Gaussian mixture, and its
    initialisation."""
    X, y = mixture()
    init = mlp([16], "relu")
    model = copy.deepcopy(init)
    gd(model, X, y, 300, 0.1)
    return init, model, X, y


# --------------------------------------------------------------------------- operators


@pytest.mark.parametrize("kind", ["cross_entropy", "mse"])
@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("operator", ["ggn", "empirical-fisher"])
def test_operator_matches_dense_brute_force(small, kind, act, operator):
    _, X, y = small
    model = mlp([6], act, in_dim=4, out_dim=3, seed=1)
    exact = ORACLES[operator](model, X, y, kind)
    for bs in (None, 25):
        op = hs.curvature_operator(operator, model, X, y, kind, batch_size=bs)
        D = op.dense()
        assert np.abs(D - exact).max() <= 1e-12 * np.abs(exact).max()
    # positive semi-definite, and the gradient and loss are the Hessian operator's
    assert np.linalg.eigvalsh(exact).min() > -1e-12 * np.abs(exact).max()
    h = hs.HessianOperator(model, X, y, kind)
    np.testing.assert_allclose(op.gradient(), h.gradient(), rtol=0, atol=1e-14)
    assert op.loss_value == pytest.approx(h.loss_value, rel=1e-14)
    v = np.random.default_rng(0).standard_normal(op.n_params)
    hv = op.hvp(torch.from_numpy(v)).numpy()
    np.testing.assert_allclose(hv, exact @ v, rtol=0, atol=1e-12 * np.abs(hv).max())


@pytest.mark.parametrize("operator", ["ggn", "empirical-fisher"])
def test_top5_lanczos_within_1e6_of_dense(small, operator):
    model, X, y = small
    op = hs.curvature_operator(operator, model, X, y, "cross_entropy")
    e = hs.top_eigenpairs(op, k=5)
    ev = np.linalg.eigvalsh(ORACLES[operator](model, X, y, "cross_entropy"))[::-1][:5]
    assert np.max(np.abs(e.eigenvalues - ev) / np.abs(ev)) < 1e-6
    assert e.residuals.max() < 1e-8


def test_set_point_moves_the_gauss_newton_operator(small):
    model, X, y = small
    op = hs.GaussNewtonOperator(model, X, y, "cross_entropy")
    other = mlp([6], "tanh", in_dim=4, out_dim=3, seed=5)
    op.set_point(torch.cat([p.detach().reshape(-1) for p in other.parameters()]))
    assert np.abs(op.dense() - exact_ggn(other, X, y, "cross_entropy")).max() < 1e-12


def test_algorithms_run_on_every_operator(small):
    """Trace, density, per-layer and outliers take any of the three operators."""
    model, X, y = small
    for name in hs.OPERATORS:
        op = hs.curvature_operator(name, model, X, y, "cross_entropy")
        A = ORACLES[name](model, X, y, "cross_entropy")
        assert op.diagonal().sum() == pytest.approx(np.trace(A), rel=1e-10)
        tr = hs.hutchpp_trace(op, probes=3 * op.n_params // 2)
        assert tr.trace == pytest.approx(np.trace(A), rel=0.05)
        lay = hs.layer_spectra(op, probes=200)
        for i in range(len(op.names)):
            s, e = op.offsets[i], op.offsets[i + 1]
            assert lay.top_eigenvalue[i] == pytest.approx(np.linalg.eigvalsh(A[s:e, s:e])[-1],
                                                          rel=1e-6, abs=1e-10)
        d = hs.slq_density(op, probes=2, lanczos_steps=op.n_params)
        ev = np.linalg.eigvalsh(A)       # Ritz values lie inside the spectrum
        nodes = d.nodes[d.weights > 0]
        assert ev[0] - 1e-9 <= nodes.min() and nodes.max() <= ev[-1] + 1e-9
        split, _ = hs.bulk_and_outliers(op)
        assert split.rho.shape[0] == min(2 * 3 + 5, op.n_params - 2)


def test_curvature_operator_rejects_unknown(small):
    model, X, y = small
    with pytest.raises(LandscapeError, match="unknown operator"):
        hs.curvature_operator("kfac", model, X, y)
    with pytest.raises(LandscapeError, match="kind must be"):
        hs.GaussNewtonOperator(model, X, y, kind="hessian")


# --------------------------------------------------------------------------- H = G + R


def test_decompose_against_dense(small):
    model, X, y = small
    for kind in ("cross_entropy", "mse"):
        d = hs.decompose_hessian(model, X, y, kind, probes=2)
        H, G = exact_hessian(model, X, y, kind), exact_ggn(model, X, y, kind)
        ev = np.linalg.eigvalsh(H - G)
        assert abs(d.residual_top_eigenvalue - np.abs(ev).max()) < 1e-4
        assert abs(d.residual_top_signed) == pytest.approx(d.residual_top_eigenvalue)
        np.testing.assert_allclose(d.top_g, np.linalg.eigvalsh(G)[::-1][:2], rtol=1e-6)
        np.testing.assert_allclose(d.top_h, np.linalg.eigvalsh(H)[::-1][:2], rtol=1e-6)
        Uh = np.linalg.eigh(H)[1][:, ::-1][:, :2].T
        Ug = np.linalg.eigh(G)[1][:, ::-1][:, :2].T
        assert d.overlap == pytest.approx(hs.subspace_overlap(Uh, Ug)[0], abs=1e-6)
        # three densities on one grid, each a probability density
        for dens in (d.density_h, d.density_g, d.density_r):
            assert dens.shape == d.grid.shape
            assert np.trapezoid(dens, d.grid) == pytest.approx(1.0, rel=1e-6)


def test_papyan_parts_sum_to_the_ggn(small):
    model, X, y = small
    for kind in ("cross_entropy", "mse"):
        op = hs.HessianOperator(model, X, y, kind)
        vecs, n = hs.papyan_vectors(op)
        S = sum(v.T @ v for v in vecs.values())
        G = exact_ggn(model, X, y, kind)
        assert n == 60
        assert np.abs(S - G).max() <= 1e-12 * np.abs(G).max()
        split = hs.papyan_split(op)
        C, P = 3, op.n_params
        assert split["class_means"]["rank"] <= C
        assert split["cross_class"]["rank"] <= C * (C - 1)
        assert split["within_class"]["rank"] <= min(60 * C - C * C, P)
        for part, V in vecs.items():   # the rank rule: singular values above sqrt(m eps)
            sv = np.linalg.svd(V, compute_uv=False)
            assert split[part]["rank"] == int((sv > math.sqrt(max(V.shape) * 2.3e-16)
                                               * sv.max()).sum())
        assert sum(split[p]["trace"] for p in ("class_means", "cross_class", "within_class")) == \
            pytest.approx(np.trace(G), rel=1e-10)


def test_subspace_overlap_limits():
    rng = np.random.default_rng(0)
    U = np.linalg.qr(rng.standard_normal((50, 3)))[0].T
    assert hs.subspace_overlap(U, U[::-1] * -2.0)[0] == pytest.approx(1.0)
    W = np.linalg.qr(rng.standard_normal((50, 50)))[0].T
    assert hs.subspace_overlap(W[:3], W[3:6])[0] == pytest.approx(0.0, abs=1e-12)


def test_trained_relu_mixture_top3_overlap_of_h_and_g(relu_trained):
    """Papyan: after training the C - 1 = 3 leading directions of H are G's (>= 0.9); the
    residual is small next to the outliers, less so at initialisation."""
    init, model, X, y = relu_trained
    d = hs.decompose_hessian(model, X, y, probes=1, lanczos_steps=40)
    assert d.overlap_k == 3
    assert d.overlap >= 0.9
    d0 = hs.decompose_hessian(init, X, y, probes=1, lanczos_steps=40, papyan=False)
    assert d.residual_top_eigenvalue / d.top_h[0] < d0.residual_top_eigenvalue / d0.top_h[0]
    assert d.overlap > d0.overlap
    assert d.papyan["class_means"]["rank"] <= 4 and d.papyan["cross_class"]["rank"] <= 12


# --------------------------------------------------------------------------- flatness


def test_adaptive_sharpness_is_invariant_to_layer_rescaling(relu_trained):
    """Dinh et al. 2017: scaling a ReLU layer by a and the next by 1/a keeps the function;
    lambda_1 changes, lambda_1(|theta| H |theta|) does not (biases scale with their layer)."""
    _, model, X, y = relu_trained
    scaled = copy.deepcopy(model)
    lin = [m for m in scaled.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        lin[0].weight.mul_(4.0)
        lin[0].bias.mul_(4.0)
        lin[1].weight.div_(4.0)
    a = hs.HessianOperator(model, X, y)
    b = hs.HessianOperator(scaled, X, y)
    assert a.loss_value == pytest.approx(b.loss_value, rel=1e-12)
    la, lb = hs.top_eigenpairs(a, 1).eigenvalues[0], hs.top_eigenpairs(b, 1).eigenvalues[0]
    assert abs(la - lb) > 0.2 * la
    sa = hs.adaptive_sharpness(a)[0]
    sb = hs.adaptive_sharpness(b)[0]
    assert sa == pytest.approx(sb, rel=1e-6)


def test_basin_width_crossings_and_quadratic_limit(small):
    model, X, y = small
    op = hs.HessianOperator(model, X, y)
    e = hs.top_eigenpairs(op, 1)
    f = hs.flatness_readouts(op, e.eigenvalues[0], e.eigenvectors[0], operator="hessian")
    theta, u, L0 = op.point(), e.eigenvectors[0], op.loss_value
    for t in (-f.basin_left, f.basin_right):
        assert op.loss_at(theta + t * u) == pytest.approx(L0 + 0.1, abs=1e-9)
    assert f.basin_width == pytest.approx(f.basin_left + f.basin_right)
    assert f.loss == pytest.approx(L0)
    assert set(f.summary()["notes"]) == {"top_eigenvalue", "trace", "adaptive_sharpness",
                                         "basin_width"}


def test_basin_width_of_an_exact_quadratic():
    """A linear model under the squared loss at its least-squares solution: the loss is
    exactly quadratic, so the width at L + delta is 2 sqrt(2 delta / lambda_1)."""
    rng = np.random.default_rng(3)
    X = torch.from_numpy(rng.standard_normal((40, 4)))
    T = torch.from_numpy(rng.standard_normal((40, 2)))
    lin = nn.Linear(4, 2).double()
    Xa = torch.cat([X, torch.ones(40, 1, dtype=torch.float64)], 1)
    W = torch.linalg.lstsq(Xa, T).solution                      # [5, 2]
    with torch.no_grad():
        lin.weight.copy_(W[:4].T)
        lin.bias.copy_(W[4])
    op = hs.HessianOperator(lin, X, T, "mse")
    assert np.abs(op.gradient()).max() < 1e-12
    e = hs.top_eigenpairs(op, 1)
    f = hs.flatness_readouts(op, e.eigenvalues[0], e.eigenvectors[0])
    assert f.basin_width == pytest.approx(f.basin_quadratic, rel=1e-9)
    assert f.basin_left == pytest.approx(f.basin_right, rel=1e-9)


# --------------------------------------------------------------------------- report and CLI


def test_report_with_operator_flatness_and_decompose_round_trips(small, tmp_path):
    model, X, y = small
    d = from_arrays(X, y, "mix")
    rep = spectrum.compute_report(model, d, "cross_entropy", operator="empirical-fisher",
                                  probes=20, decomposition=True)
    F = exact_empirical_fisher(model, X, y, "cross_entropy")
    assert rep.eig.eigenvalues[0] == pytest.approx(np.linalg.eigvalsh(F)[-1], rel=1e-8)
    assert rep.meta["operator"] == "empirical-fisher"
    assert rep.flatness.operator == "empirical-fisher"
    back = spectrum.SpectrumReport.load(rep.save(tmp_path / "r.npz"))
    assert back.flatness.adaptive_sharpness == rep.flatness.adaptive_sharpness
    assert back.decompose.residual_top_eigenvalue == rep.decompose.residual_top_eigenvalue
    np.testing.assert_array_equal(back.decompose.density_r, rep.decompose.density_r)
    assert back.decompose.papyan == rep.decompose.papyan
    with pytest.raises(LandscapeError, match="pyhessian"):
        spectrum.compute_report(model, d, "cross_entropy", backend="pyhessian", operator="ggn")


def test_cli_ggn_on_a_pt2_model_matches_dense(tmp_path, capsys):
    """The issue's check: a tanh MLP we never saw, exported as .pt2, data as .npz."""
    torch.manual_seed(7)
    net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6), nn.Tanh(),
                        nn.Linear(6, 3)).eval()
    Xn = np.random.default_rng(1).standard_normal((80, 5)).astype(np.float32)
    yn = ((Xn[:, 0] > 0).astype(np.int64) + (Xn[:, 1] > 0.5)).astype(np.int64)
    np.savez(tmp_path / "D.npz", X=Xn, y=yn)
    ep = torch.export.export(net, (torch.zeros(4, 5),),
                             dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, tmp_path / "M.pt2")
    code = main(["hessian", "--checkpoint", str(tmp_path / "M.pt2"), "--data",
                 str(tmp_path / "D.npz"), "--operator", "ggn", "--top-k", "5", "--dtype",
                 "float64", "--decompose", "--json"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and out["operator"] == "ggn"
    ref = copy.deepcopy(net).double()
    X, y = torch.from_numpy(Xn).double(), torch.from_numpy(yn)
    G, H = exact_ggn(ref, X, y, "cross_entropy"), exact_hessian(ref, X, y, "cross_entropy")
    ev = np.linalg.eigvalsh(G)[::-1][:5]
    assert np.max(np.abs(np.asarray(out["top_eigenvalues"]) - ev) / ev) < 1e-6
    assert abs(out["residual_top_eigenvalue"] - np.abs(np.linalg.eigvalsh(H - G)).max()) < 1e-4
    dec = out["decompose"]
    assert {"subspace_overlap", "principal_cosines", "papyan", "density_grid", "density_h",
            "density_g", "density_r", "top_h", "top_g"} <= set(dec)
    assert set(dec["papyan"]) >= {"class_means", "cross_class", "within_class"}
    assert out["flatness"]["adaptive_sharpness"] > 0


def test_hessian_page_shows_the_why_c_outliers_panel_at_initialisation():
    """The page: Gauss-Newton operator, flatness readouts and the H = G + R panel, at the
    first snapshot of the preset's run."""
    import time
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=240)
    for k, v in dict(h_preset="moons-mlp", h_samples="200", h_operator="ggn", h_decompose="true",
                     h_point="initialisation", h_density="false").items():
        at.query_params[k] = v
    at.switch_page("pages/hessian.py")
    for _ in range(240):
        at.run()
        assert not at.exception
        if any(m.label.startswith("Top-") for m in at.metric):
            break
        time.sleep(0.25)
    keys = {c.key for c in at.get("plotly_chart")}
    assert {"h_top", "h_flat_fig", "h_decompose_fig", "h_papyan_fig"} <= keys
    values = {m.label: m.value for m in at.metric}
    assert 0 <= float(values["Top-1 overlap of H and G"]) <= 1
    assert float(values["Adaptive sharpness λ1(|θ|A|θ|)"]) > 0
    assert any("true Fisher equals the Gauss-Newton" in i.value for i in at.info), [i.value for i in at.info]
