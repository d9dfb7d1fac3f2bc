"""The Hessian report against ground truth on a model small enough for the exact Hessian."""

import copy
import json

import numpy as np
import pytest
from oracles import exact_hessian

from landscape.core import data, models
from landscape.core.errors import Cancelled, LandscapeError
from landscape.core.train import TrainConfig, train
from landscape.hessian import report as spectrum

# torch.func.hessian (the ground truth) loads forward-AD decompositions via torch.jit.script
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")


@pytest.fixture(scope="module")
def tiny():
    d = data.load_builtin("gaussians", n=120, classes=3, dim=4, seed=0)
    spec = {"name": "mlp", "args": {"in_dim": 4, "out_dim": 3, "widths": [8]}}
    tr = train(models.build(spec, seed=0), d,
               TrainConfig("gd", lr=0.2, steps=40, batch_size=None, snapshot_every=4))
    return tr, d


def exact(model, d):
    """The dense Hessian of the mean cross-entropy, in float64, of a copy of ``model``."""
    return exact_hessian(copy.deepcopy(model).double(), d.X.double(), d.y, "cross_entropy")


def test_report_matches_the_exact_hessian(tiny):
    tr, d = tiny
    H = exact(tr.model, d)
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
    H = exact(tr.model, d)
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


def _same_report(a, b):
    for part in ("eig", "trace", "split", "density", "layers", "smallest"):
        ra, rb = getattr(a, part), getattr(b, part)
        assert (ra is None) == (rb is None), part
        if ra is None:
            continue
        for k in type(ra).ARRAYS:
            np.testing.assert_array_equal(np.asarray(getattr(rb, k)), np.asarray(getattr(ra, k)))
        for k, v in vars(ra).items():
            if k not in type(ra).ARRAYS and k != "meta" and v == v:  # NaN fields checked apart
                assert getattr(rb, k) == v, (part, k)
    assert b.meta == json.loads(json.dumps(a.meta))


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_report_and_training_spectra_round_trip(tiny, tmp_path, suffix):
    tr, d = tiny
    rep = spectrum.compute_report(tr.model, d, "cross_entropy", probes=12, layers=True,
                                  smallest=True)
    _same_report(rep, spectrum.SpectrumReport.load(rep.save(tmp_path / f"rep{suffix}")))
    bare = spectrum.compute_report(tr.model, d, "cross_entropy", trace="none", density=False,
                                   outliers=False, top_k=2)
    back = spectrum.SpectrumReport.load(bare.save(tmp_path / f"bare{suffix}"))
    assert back.trace is None and back.split is None and back.density is None
    _same_report(bare, back)
    traj = (tr.trajectory.steps, tr.trajectory.params)
    ts = spectrum.spectrum_over_training(tr.model, d, "cross_entropy", traj, n=2, top_k=2)
    ts2 = spectrum.TrainingSpectra.load(ts.save(tmp_path / f"ts{suffix}"))
    np.testing.assert_array_equal(ts2.steps, ts.steps)
    np.testing.assert_array_equal(ts2.top, ts.top)
    assert len(ts2.densities) == 2 and ts2.meta == ts.meta
    for a, b in zip(ts.densities, ts2.densities):
        np.testing.assert_array_equal(b.density, a.density)
        assert b.sigma == a.sigma
    with pytest.raises(LandscapeError, match="not a Hessian report"):
        spectrum.SpectrumReport.load(rep.eig.save(tmp_path / f"eig{suffix}"))


def test_cli_out_file_loads_back_into_the_computed_report(tiny, tmp_path, capsys):
    """``landscape hessian --out X.npz``: the arrays old readers use are still there, and the
    file loads into a report whose numbers equal those the command printed."""
    from landscape.cli.main import main
    from landscape.io import checkpoints

    tr, d = tiny
    ck = checkpoints.save(tr.model, tmp_path / "tiny.safetensors")
    np.savez(tmp_path / "data.npz", X=d.X.numpy(), y=d.y.numpy())
    out = tmp_path / "h.npz"
    code = main(["hessian", "--checkpoint", str(ck), "--data", str(tmp_path / "data.npz"),
                 "--top-k", "3", "--density", "--probes", "12", "--smallest", "--out", str(out),
                 "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed["out"] == str(out)
    with np.load(out, allow_pickle=False) as z:
        for key in ("eigenvalues", "residuals", "rho", "density_grid", "density", "meta_json"):
            assert key in z.files, key
        legacy = json.loads(str(z["meta_json"]))
        np.testing.assert_array_equal(z["eigenvalues"][:3], printed["top_eigenvalues"])
    for key, v in printed.items():
        if key != "out":
            assert legacy[key] == v, key
    rep = spectrum.SpectrumReport.load(out)
    assert rep.eig.eigenvalues[:3].tolist() == printed["top_eigenvalues"]
    assert rep.eig.residuals[:3].tolist() == printed["residuals"]
    assert rep.trace.trace == printed["trace"] and rep.trace.stderr == printed["trace_stderr"]
    assert rep.split.n_outliers == printed["n_outliers"] and rep.split.rho.tolist() == printed["rho"]
    assert rep.density.sigma == printed["density_sigma"]
    assert rep.smallest.eigenvalues[0] == printed["smallest_eigenvalue"]
    assert rep.meta["hvps"] == printed["hvps"] and rep.meta["n_params"] == printed["n_params"]
    assert rep.eig.eigenvectors.shape == (len(rep.eig.eigenvalues), printed["n_params"])


def test_top_first_then_the_rest_is_the_whole_report(tiny):
    """What the page computes in two jobs (the top eigenpairs and the split, then the rest)
    equals the one-call report, number for number."""
    tr, d = tiny
    whole = spectrum.compute_report(tr.model, d, "cross_entropy", probes=12, layers=True,
                                    samples=80, seed=3)
    seen = []
    top = spectrum.compute_top(tr.model, d, "cross_entropy", samples=80, seed=3,
                               progress=lambda done, total, what: seen.append(what))
    assert top.trace is None and top.density is None and top.flatness is None
    assert top.split is not None and seen and all("Lanczos" in w for w in seen)
    np.testing.assert_array_equal(top.eig.eigenvalues, whole.eig.eigenvalues)
    rest = spectrum.complete_report(top, tr.model, d, "cross_entropy", probes=12, layers=True,
                                    samples=80, seed=3)
    for part in ("eig", "trace", "split", "density", "layers"):
        a, b = getattr(whole, part), getattr(rest, part)
        assert b is not None, part
        for k in type(a).ARRAYS:
            np.testing.assert_array_equal(np.asarray(getattr(b, k)), np.asarray(getattr(a, k)))
        for k, v in vars(a).items():  # every number but the wall-clock time
            if k not in (*type(a).ARRAYS, "meta", "seconds") and v == v:
                assert getattr(b, k) == v, (part, k)
    assert rest.meta["hvps"] == whole.meta["hvps"] > top.meta["hvps"]
    assert rest.flatness.top_eigenvalue == whole.flatness.top_eigenvalue
    # the rest on other examples than the top's is refused, not silently mixed
    with pytest.raises(LandscapeError, match="same samples"):
        spectrum.complete_report(top, tr.model, d, "cross_entropy", samples=60, seed=3)


def _page_default(page: str) -> str:
    """The value of ``DEFAULT = "..."`` in a page's source."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parents[1] / "pages" / page).read_text())
    return next(node.value.value for node in tree.body if isinstance(node, ast.Assign)
                and any(getattr(t, "id", None) == "DEFAULT" for t in node.targets))


def test_hessian_page_default_shows_c_minus_1_outliers_with_a_clear_gap():
    """The Hessian page's default preset, at the page's defaults (1,000 examples, seed 0):
    C - 1 = 9 outliers (Papyan) whose eigenvectors lie in the span of the class-mean
    gradients, a clear gap to the bulk, and a message that says so in plain words."""
    from landscape import presets

    name = _page_default("hessian.py")
    run = presets.train_preset(name)
    assert run.data.n_classes == 10
    rep = spectrum.compute_top(run.model, run.data, presets.get(name).train.loss, samples=1000,
                               seed=0)
    s, vals = rep.split, rep.eig.eigenvalues
    C = run.data.n_classes
    assert C - 1 <= s.n_outliers <= C, s.message
    n = s.n_outliers
    assert s.verdict == "clean", s.message
    assert vals[n - 1] / vals[n] >= 2.0, vals[:n + 2]  # a gap a reader sees at once
    assert s.meta["edge_ratio"] == pytest.approx(vals[n - 1] / vals[n])
    assert s.rho[:n].min() >= 0.8 and s.rho[n:].max() < 0.1, s.rho
    # the message: the count, the ratio to the top of the bulk, the overlaps; no jargon
    assert s.message.startswith(f"{n} outliers above the bulk"), s.message
    assert f"{vals[n - 1] / vals[n]:.2f} times" in s.message
    lo, hi = 100 * s.rho[:n].min(), 100 * s.rho[:n].max()
    assert f"lie {lo:.0f}-{hi:.0f}% in the span of the 10 class-mean gradients" in s.message
    for jargon in ("overlap run", "leading run", "rho", "verdict"):
        assert jargon not in s.message
