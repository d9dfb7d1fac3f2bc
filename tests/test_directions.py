import numpy as np
import pytest
import torch

from landscape.core import models
from landscape.core.errors import LandscapeError
from landscape.core.params import Layout, flat_params
from landscape.surface import directions as dirs

CNN_BN = {"name": "cnn", "args": {"channels": [4, 8], "batchnorm": True}}
MLP = {"name": "mlp", "args": {"in_dim": 64, "out_dim": 10, "widths": [32, 16]}}


def per_filter_norms(flat, layout):
    out = {}
    for (name, sl), shape in zip(layout.slices().items(), layout.shapes):
        t = flat[sl].view(shape)
        out[name] = t.reshape(shape[0], -1).norm(dim=1) if len(shape) >= 2 else t
    return out


@pytest.mark.parametrize("spec", [CNN_BN, MLP])
def test_every_filter_has_the_norm_of_its_weights(spec):
    m = models.build(spec, seed=0)
    lay, w = Layout.of(m), flat_params(m)
    d = dirs.random_direction(w, lay, seed=7)
    dn, wn = per_filter_norms(d, lay), per_filter_norms(w, lay)
    checked = 0
    for name, shape in zip(lay.names, lay.shapes):
        if len(shape) >= 2:
            torch.testing.assert_close(dn[name], wn[name], rtol=1e-5, atol=1e-7)
            checked += 1
    assert checked >= 3


@pytest.mark.parametrize("spec", [CNN_BN, MLP])
def test_bias_and_batchnorm_directions_are_zero_under_biasbn(spec):
    m = models.build(spec, seed=0)
    lay, w = Layout.of(m), flat_params(m)
    d = dirs.random_direction(w, lay, seed=1)
    mask = lay.biasbn_mask()
    assert mask.any() and torch.all(d[mask] == 0) and torch.all(d[~mask] != 0)
    keep = dirs.random_direction(w, lay, seed=1, ignore="none")
    assert torch.equal(keep[mask], w[mask])  # the original code's d = w for 1-D tensors


def test_layer_and_no_normalization():
    m = models.build(MLP, seed=0)
    lay, w = Layout.of(m), flat_params(m)
    d = dirs.random_direction(w, lay, seed=2, norm="layer")
    for (_name, sl), shape in zip(lay.slices().items(), lay.shapes):
        if len(shape) >= 2:
            assert abs(d[sl].norm() - w[sl].norm()) / w[sl].norm() < 1e-5
    raw = dirs.random_direction(w, lay, seed=2, norm="none")
    g = torch.Generator().manual_seed(2)
    expect = torch.randn(w.shape, generator=g, dtype=torch.float64).float()
    mask = lay.biasbn_mask()
    assert torch.equal(raw[~mask], expect[~mask])


def test_noise_is_gaussian_not_uniform():
    m = models.build({"name": "mlp", "args": {"in_dim": 64, "out_dim": 10, "widths": [256]}})
    lay, w = Layout.of(m), flat_params(m)
    raw = dirs.random_direction(w, lay, seed=0, norm="none", ignore="none")[~lay.biasbn_mask()]
    z = (raw - raw.mean()) / raw.std()
    kurtosis = float((z ** 4).mean())
    assert abs(kurtosis - 3.0) < 0.15  # uniform noise has kurtosis 1.8


def test_two_directions_are_nearly_orthogonal_and_orthogonalize_works():
    m = models.build(MLP, seed=0)
    lay, w = Layout.of(m), flat_params(m)
    dx, dy = dirs.random_plane(w, lay, seed=0)
    assert abs(dirs.cosine(dx, dy)) < 0.05
    ox, oy = dirs.random_plane(w, lay, seed=0, orthogonalize=True)
    assert abs(dirs.cosine(ox, oy)) < 1e-6 and abs(oy.norm() - dy.norm()) < 1e-4


def test_pca_recovers_a_planar_trajectory_and_puts_the_final_model_at_the_origin():
    m = models.build(MLP, seed=0)
    lay = Layout.of(m)
    P = lay.n_params
    rng = np.random.default_rng(0)
    mask = lay.biasbn_mask().numpy()
    u = rng.normal(size=P) * ~mask
    v = rng.normal(size=P) * ~mask
    v -= v @ u / (u @ u) * u
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    final = rng.normal(size=P)
    a = np.linspace(3, 0, 12)
    b = np.sin(np.linspace(0, 3, 12)) * 0.5
    b -= b[-1]
    snaps = final + a[:, None] * u + b[:, None] * v
    plane = dirs.pca_directions(snaps, lay)
    np.testing.assert_allclose(plane.coords[-1], [0, 0], atol=1e-9)
    np.testing.assert_allclose(plane.off_plane, 0, atol=1e-8)
    assert abs(plane.explained.sum() - 1) < 1e-9 and plane.explained[0] >= plane.explained[1]
    # Distances between snapshots are preserved by the in-plane coordinates.
    d_true = np.linalg.norm(snaps[0] - snaps[5])
    d_plane = np.linalg.norm(plane.coords[0] - plane.coords[5])
    assert abs(d_true - d_plane) < 1e-8
    assert abs(float(plane.dx.double().norm()) - 1) < 1e-6


def test_pca_on_a_real_trajectory(trained_mlp):
    tr = trained_mlp
    lay = Layout.of(tr.model)
    plane = dirs.pca_directions(tr.trajectory.params, lay, tr.trajectory.steps)
    assert np.allclose(plane.coords[-1], 0, atol=1e-6)
    assert 0 < plane.explained[1] <= plane.explained[0] < 1
    assert np.all(plane.off_plane >= 0) and plane.off_plane[-1] < 1e-5
    assert torch.all(plane.dx[lay.biasbn_mask()] == 0)
    with pytest.raises(LandscapeError, match="at least 3"):
        dirs.pca_directions(tr.trajectory.params[:2], lay)


def test_barrier_height_of_a_known_path():
    ts = np.linspace(-0.5, 1.5, 41)
    losses = 1.0 + 0.5 * ts + 2.0 * ts * (1 - ts)  # line from 1 to 1.5 plus a bump of height 0.5
    assert abs(dirs.barrier_height(ts, losses) - 0.5) < 1e-12
    assert dirs.barrier_height(ts, 1.0 + 0.5 * ts) < 1e-12
    assert dirs.barrier_height(ts, 1.0 + 0.5 * ts - ts * (1 - ts)) == 0.0  # convex: no barrier


def test_plane_through_three_models():
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(50, generator=g, dtype=torch.float64) for _ in range(3))
    pl = dirs.plane_through(a, b, c)
    assert abs(float(pl.dx @ pl.dy)) < 1e-12
    for point, (x, y) in zip((a, b, c), pl.coords):
        torch.testing.assert_close(pl.origin + x * pl.dx + y * pl.dy, point)
    with pytest.raises(LandscapeError, match="one line"):
        dirs.plane_through(a, b, a + 2 * (b - a))
