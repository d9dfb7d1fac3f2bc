"""The Hessian report against ground truth on a model small enough for the exact Hessian."""

import numpy as np
import pytest
import torch

from landscape.core import data, models
from landscape.core.errors import Cancelled, LandscapeError
from landscape.core.params import Layout, flat_params
from landscape.core.train import TrainConfig, train
from landscape.hessian import report as spectrum


@pytest.fixture(scope="module")
def tiny():
    d = data.load_builtin("gaussians", n=120, classes=3, dim=4, seed=0)
    spec = {"name": "mlp", "args": {"in_dim": 4, "out_dim": 3, "widths": [8]}}
    tr = train(models.build(spec, seed=0), d,
               TrainConfig("gd", lr=0.2, steps=40, batch_size=None, snapshot_every=4))
    return tr, d


def exact_hessian(model, d):
    lay = Layout.of(model)
    m = model.double()
    w0 = flat_params(m)

    def loss(theta):
        out = torch.func.functional_call(m, lay.to_dict(theta), (d.X.double(),))
        return torch.nn.functional.cross_entropy(out, d.y)

    return torch.autograd.functional.hessian(loss, w0).numpy()


def test_report_matches_the_exact_hessian(tiny):
    tr, d = tiny
    H = exact_hessian(tr.model, d)
    ev = np.sort(np.linalg.eigvalsh(H))[::-1]
    rep = spectrum.compute_report(tr.model, d, "cross_entropy", trace="hutchpp", probes=60,
                                  density=True, layers=True, smallest=True)
    k = len(rep.eig.eigenvalues)
    np.testing.assert_allclose(rep.eig.eigenvalues, ev[:k], rtol=1e-6)
    assert abs(rep.trace.trace - np.trace(H)) <= 3 * rep.trace.stderr + 1e-9
    assert rep.split is not None and rep.split.verdict in ("clean", "gap only", "no separation")
    assert len(rep.layers.names) == 4 and np.all(np.isfinite(rep.layers.top_eigenvalue))
    assert abs(np.trapezoid(rep.density.density, rep.density.grid) - 1) < 1e-3
    assert rep.meta["hvps"] > 0 and rep.meta["n_params"] == H.shape[0]
    assert abs(rep.smallest.eigenvalues[0] - ev[-1]) < 1e-6 * abs(ev[0])


def test_pyhessian_backend_agrees_on_the_top_eigenvalue(tiny):
    tr, d = tiny
    ours = spectrum.compute_report(tr.model, d, "cross_entropy", density=False)
    theirs = spectrum.compute_report(tr.model, d, "cross_entropy", backend="pyhessian",
                                     top_k=2)
    assert abs(theirs.eig.eigenvalues[0] - ours.eig.eigenvalues[0]) < 1e-2 * ours.eig.eigenvalues[0]
    assert theirs.split is None and theirs.density is None


def test_spectrum_over_training_uses_first_middle_last(tiny):
    tr, d = tiny
    traj = (tr.trajectory.steps, tr.trajectory.params)
    ts = spectrum.spectrum_over_training(tr.model, d, "cross_entropy", traj, n=3, top_k=2)
    assert ts.steps.tolist() == [0, tr.trajectory.steps[len(tr.trajectory) // 2], 40]
    assert ts.top.shape == (3, 2) and len(ts.densities) == 3
    # At the final snapshot the operator sits at the trained model: same top eigenvalue.
    last = spectrum.compute_report(tr.model, d, "cross_entropy", top_k=2, outliers=False,
                                   density=False, trace="none")
    assert abs(ts.top[-1, 0] - last.eig.eigenvalues[0]) < 1e-6 * last.eig.eigenvalues[0]


def test_top_directions_are_unit_eigenvectors(tiny):
    tr, d = tiny
    u1, u2, vals = spectrum.top_directions(tr.model, d, "cross_entropy")
    H = exact_hessian(tr.model, d)
    assert abs(np.linalg.norm(u1) - 1) < 1e-9 and abs(u1 @ u2) < 1e-6
    assert np.linalg.norm(H @ u1 - vals[0] * u1) < 1e-6 * vals[0]


def test_bad_requests_and_cancel(tiny):
    tr, d = tiny
    with pytest.raises(LandscapeError, match="backend"):
        spectrum.compute_report(tr.model, d, "cross_entropy", backend="magic")
    stop = __import__("threading").Event()
    stop.set()
    with pytest.raises(Cancelled):
        spectrum.compute_report(tr.model, d, "cross_entropy", cancel=stop)
