import copy
import threading

import numpy as np
import pytest
import torch
from torch.func import functional_call

from landscape import surface
from landscape.core import data, models
from landscape.core.errors import Cancelled, LandscapeError
from landscape.core.params import Layout, flat_params
from landscape.surface import directions as dirs
from landscape.surface.evaluators import PlaneTask, evaluate_points_vmap

CNN_BN = {"name": "cnn", "args": {"channels": [4, 8], "batchnorm": True}}


def direct_loss(model, d, theta, kind="cross_entropy"):
    """The slow, obvious way: functional_call with the parameter point as a dict."""
    lay = Layout.of(model)
    dtype = next(model.parameters()).dtype
    params = lay.to_dict(theta.to(dtype))
    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        out = functional_call(m, (params, dict(m.named_buffers())), (d.X.to(dtype),))
    if kind == "cross_entropy":
        return torch.nn.functional.cross_entropy(out, d.y).item()
    return (0.5 * (out - torch.nn.functional.one_hot(d.y, out.shape[1])).pow(2).sum(1)).mean().item()


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("workers", [1, 2])
def test_non_square_grid_entries_match_direct_evaluation(trained_mlp, small_digits, workers):
    model = trained_mlp.model
    before, mode = state(model), model.training
    cfg = surface.SurfaceConfig(grid=(9, 5), xrange=(-1.0, 0.6), yrange=(-0.4, 0.8), seed=3,
                                workers=workers)
    res = surface.compute(model, small_digits, cfg)
    assert res.loss.shape == (5, 9) and res.acc.shape == (5, 9)
    assert res.meta["workers"] == workers  # 2: the worker-process pool did the work
    assert len(res.x) == 9 and len(res.y) == 5
    w = flat_params(model)
    dx, dy = torch.as_tensor(res.dx), torch.as_tensor(res.dy)
    for j, i in [(0, 0), (0, 8), (4, 0), (4, 8), (2, 3), (1, 7), (3, 1)]:
        theta = w + res.x[i] * dx + res.y[j] * dy
        expect = direct_loss(model, small_digits, theta)
        assert abs(res.loss[j, i] - expect) <= 1e-5 * max(1.0, abs(expect)), (j, i)
    # The caller's model is bit-identical and in the same mode afterwards.
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and model.training == mode


def test_centre_is_the_models_own_loss_and_accuracy(trained_mlp, small_digits):
    model = trained_mlp.model
    res = surface.compute(model, small_digits, surface.SurfaceConfig(grid=(7, 7), workers=1))
    own_loss, own_acc = trained_mlp.evaluate(small_digits)
    assert abs(res.loss[3, 3] - own_loss) < 1e-6 and res.meta["loss_center"] == res.loss[3, 3]
    assert abs(res.acc[3, 3] - own_acc) < 1e-9
    assert res.meta["loss_min"] <= own_loss + 1e-9
    assert abs(res.meta["cos_dx_dy"]) < 0.1


def test_fast_mlp_path_equals_the_generic_path(trained_mlp, small_digits):
    model = trained_mlp.model
    cfg = dict(grid=(6, 4), xrange=(-2.0, 2.0), seed=1, workers=1)
    fast = surface.compute(model, small_digits, surface.SurfaceConfig(method="mlp", **cfg))
    slow = surface.compute(model, small_digits, surface.SurfaceConfig(method="module", **cfg))
    assert fast.meta["method"] == "mlp" and slow.meta["method"] == "module"
    np.testing.assert_allclose(fast.loss, slow.loss, rtol=1e-5)
    np.testing.assert_array_equal(fast.acc, slow.acc)


def test_fast_path_tanh_mse_float64_and_moving_biases(small_digits):
    m = models.build({"name": "mlp", "args": {"in_dim": 64, "out_dim": 10, "widths": [12, 12],
                                              "activation": "tanh"}}, seed=0, dtype=torch.float64)
    cfg = dict(grid=(5, 3), loss="mse", ignore="none", workers=1)
    fast = surface.compute(m, small_digits, surface.SurfaceConfig(method="mlp", **cfg))
    slow = surface.compute(m, small_digits, surface.SurfaceConfig(method="module", **cfg))
    np.testing.assert_allclose(fast.loss, slow.loss, rtol=1e-12)
    w = flat_params(m)
    theta = w + fast.x[0] * torch.as_tensor(fast.dx, dtype=torch.float64) \
        + fast.y[2] * torch.as_tensor(fast.dy, dtype=torch.float64)
    # dx/dy are stored as float32: compare against the direction actually used.
    assert abs(fast.loss[2, 0] - direct_loss(m, small_digits, theta, "mse")) < 1e-5


def test_one_dimensional_slice(trained_mlp, small_digits):
    res = surface.compute(trained_mlp.model, small_digits,
                          surface.SurfaceConfig(grid=(11,), xrange=(-1, 1), workers=1))
    assert res.dims == 1 and res.loss.shape == (11,) and res.dy is None
    assert abs(res.loss[5] - trained_mlp.evaluate(small_digits)[0]) < 1e-6


def test_interpolation_ends_are_the_two_models(small_digits):
    from landscape.core.train import TrainConfig, train

    spec = {"name": "mlp", "args": {"in_dim": 64, "out_dim": 10, "widths": [16]}}
    a = train(models.build(spec, seed=0), small_digits, TrainConfig("adam", lr=1e-2, steps=30))
    b = train(models.build(spec, seed=1), small_digits, TrainConfig("adam", lr=1e-2, steps=30))
    cfg = surface.SurfaceConfig(directions="interpolate", grid=(21,), workers=1)
    res = surface.compute(a.model, small_digits, cfg, model_b=b.model)
    assert res.x[0] == -0.5 and res.x[-1] == 1.5
    assert abs(res.meta["loss_a"] - a.evaluate(small_digits)[0]) < 1e-5
    assert abs(res.meta["loss_b"] - b.evaluate(small_digits)[0]) < 1e-5
    assert res.meta["barrier_height"] > 0.05  # two independent solutions: a real barrier


def test_pca_surface_carries_the_trajectory(trained_mlp, small_digits):
    tr = trained_mlp
    cfg = surface.SurfaceConfig(directions="pca", grid=(7, 6), workers=1)
    res = surface.compute(tr.model, small_digits, cfg,
                          trajectory=(tr.trajectory.steps, tr.trajectory.params))
    coords = np.asarray(res.trajectory["coords"])
    assert np.allclose(coords[-1], 0, atol=1e-6)
    assert res.x.min() <= coords[:, 0].min() and res.x.max() >= coords[:, 0].max()
    assert res.y.min() <= coords[:, 1].min() and res.y.max() >= coords[:, 1].max()
    ev = res.meta["explained_variance"]
    assert 0 < ev[1] <= ev[0] < 1
    assert abs(res.meta["loss_center"] - tr.evaluate(small_digits)[0]) < 1e-6


def test_exported_batchnorm_cnn_gives_the_same_centre(tmp_path, small_digits):
    from landscape.core.train import TrainConfig, train
    from landscape.io import checkpoints as checkpoint

    tr = train(models.build(CNN_BN, seed=0), small_digits, TrainConfig("adam", lr=1e-2, steps=15))
    m = tr.model.eval()
    ep = torch.export.export(m, (small_digits.X[:4],),
                             dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, tmp_path / "cnn.pt2")
    loaded = checkpoint.load(tmp_path / "cnn.pt2")
    cfg = surface.SurfaceConfig(grid=(3, 3), workers=1)
    a = surface.compute(m, small_digits, cfg)
    b = surface.compute(loaded.model, small_digits, cfg)
    own = tr.evaluate(small_digits)[0]
    assert abs(a.meta["loss_center"] - own) < 1e-5 and abs(b.meta["loss_center"] - own) < 1e-5
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-4)


def test_batchnorm_statistics_recomputed_at_each_point(small_digits):
    m = models.build(CNN_BN, seed=0)
    with torch.no_grad():  # stale statistics: far from the data's
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.fill_(3.0)
                mod.running_var.fill_(0.1)
    d = small_digits  # 300 examples: one statistics batch
    keep = surface.compute(m, d, surface.SurfaceConfig(grid=(3,), workers=1))
    rec = surface.compute(m, d, surface.SurfaceConfig(grid=(3,), bn="recompute", workers=1))
    # Ground truth at the centre: statistics of the data, then eval mode.
    ref = copy.deepcopy(m)
    for mod in ref.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None
    ref.train()
    with torch.no_grad():
        ref(d.X)
    ref.eval()
    with torch.no_grad():
        expect = torch.nn.functional.cross_entropy(ref(d.X), d.y).item()
    assert abs(rec.loss[1] - expect) < 1e-5
    assert abs(keep.loss[1] - expect) > 0.1
    assert m.bn1.running_mean[0].item() == 3.0  # the caller's statistics are untouched


def test_subset_error_is_measured(trained_mlp, digits):
    cfg = surface.SurfaceConfig(grid=(5, 5), samples=200, workers=1)
    res = surface.compute(trained_mlp.model, digits, cfg)
    assert res.meta["n_eval"] == 200 and res.meta["n_data"] == 1797
    full, _ = trained_mlp.evaluate(digits)
    assert res.meta["subset_max_abs_error"] >= abs(res.loss[2, 2] - full) - 1e-7


def test_progress_is_coarse_to_fine_and_cancel_stops(trained_mlp, small_digits):
    order = surface.coarse_to_fine(9, 5)
    assert sorted(order.tolist()) == list(range(45))
    first = set(order[:6].tolist())
    assert {0, 8, 4 * 9, 4 * 9 + 8} <= first  # the corners come first
    seen = []

    def progress(done, total, loss, acc):
        seen.append((done, int(np.isnan(loss).sum())))

    surface.compute(trained_mlp.model, small_digits,
                    surface.SurfaceConfig(grid=(9, 5), workers=1), progress=progress)
    assert seen[-1] == (45, 0) and [s[0] for s in seen] == sorted(s[0] for s in seen)
    stop = threading.Event()

    def cancel_early(done, total, loss, acc):
        if done >= 1:
            stop.set()

    with pytest.raises(Cancelled) as info:
        surface.compute(trained_mlp.model, small_digits,
                        surface.SurfaceConfig(grid=(40, 40), workers=1),
                        progress=cancel_early, cancel=stop)
    loss, _ = info.value.partial
    assert np.isnan(loss).any() and not np.isnan(loss).all()


def test_vmap_batched_points_equal_per_point(trained_mlp, small_digits):
    m = trained_mlp.model
    lay, w = Layout.of(m), flat_params(m)
    dx, dy = dirs.random_plane(w, lay, seed=0)
    task = PlaneTask(m, w, dx, dy, small_digits.X, small_digits.y)
    pts = [(0.0, 0.0), (0.5, -0.25), (-1.0, 1.0)]
    losses, accs = evaluate_points_vmap(task, pts, batch=2)
    for (a, b), val in zip(pts, losses):
        assert abs(val - direct_loss(m, small_digits, w + a * dx + b * dy)) < 1e-5


def test_bad_surface_requests_name_the_problem(trained_mlp, small_digits):
    m = trained_mlp.model
    with pytest.raises(LandscapeError, match="grid"):
        surface.compute(m, small_digits, surface.SurfaceConfig(grid=(0, 5)))
    with pytest.raises(LandscapeError, match="range"):
        surface.compute(m, small_digits, surface.SurfaceConfig(xrange=(1.0, -1.0)))
    with pytest.raises(LandscapeError, match="trajectory"):
        surface.compute(m, small_digits, surface.SurfaceConfig(directions="pca"))
    moons = data.load_builtin("moons")
    with pytest.raises(LandscapeError, match="does not accept inputs"):
        surface.compute(m, moons, surface.SurfaceConfig(grid=(3, 3)))
    three = models.build({"name": "mlp", "args": {"in_dim": 64, "out_dim": 3}})
    with pytest.raises(LandscapeError, match="3 outputs but the labels have 10 classes"):
        surface.compute(three, small_digits, surface.SurfaceConfig(grid=(3, 3)))



def test_mlp_row_cache_gives_the_same_values_in_any_order(trained_mlp, small_digits):
    m = trained_mlp.model
    lay, w = Layout.of(m), flat_params(m)
    dx, dy = dirs.random_plane(w, lay, seed=4)
    from landscape.surface.evaluators import MLPEvaluator

    ev = MLPEvaluator(PlaneTask(m, w, dx, dy, small_digits.X, small_digits.y))
    pts = [(0.5, 0.25), (-0.5, 0.25), (0.5, -1.0), (0.0, 0.0), (0.5, 0.25)]
    vals = [ev(a, b)[0] for a, b in pts]
    fresh = [MLPEvaluator(PlaneTask(m, w, dx, dy, small_digits.X, small_digits.y))(a, b)[0]
             for a, b in pts]
    assert vals == fresh and vals[0] == vals[-1]


def test_fast_path_only_for_plain_alternating_stacks(small_digits):
    from torch import nn

    from landscape.surface.evaluators import is_fast_mlp

    two_acts = nn.Sequential(nn.Linear(64, 8), nn.Tanh(), nn.ReLU(), nn.Linear(8, 10))
    shared = nn.Linear(10, 10)
    tied = nn.Sequential(nn.Linear(64, 10), nn.ReLU(), shared, nn.ReLU(), shared)
    assert not is_fast_mlp(two_acts) and not is_fast_mlp(tied)
    assert is_fast_mlp(nn.Sequential(nn.Linear(64, 8), nn.GELU(), nn.Linear(8, 10)))
    for m in (two_acts, tied):
        res = surface.compute(m, small_digits, surface.SurfaceConfig(grid=(3, 3), workers=1))
        assert res.meta["method"] == "module"
        w = flat_params(m)
        theta = w + res.x[0] * torch.as_tensor(res.dx) + res.y[2] * torch.as_tensor(res.dy)
        assert abs(res.loss[2, 0] - direct_loss(m, small_digits, theta)) < 1e-5


def test_pca_refuses_a_trajectory_of_another_model(trained_mlp, small_digits):
    tr = trained_mlp
    other = tr.trajectory.params.copy()
    other[-1] += 1.0
    with pytest.raises(LandscapeError, match="last snapshot is not this model"):
        surface.compute(tr.model, small_digits, surface.SurfaceConfig(directions="pca"),
                        trajectory=(tr.trajectory.steps, other))


def test_batchnorm_recompute_off_the_cpu_is_refused_alike_by_every_executor(small_digits, monkeypatch):
    """One rule, decided before any point runs: recomputing BatchNorm statistics needs the
    per-point CPU evaluators. A local GPU, a batched executor and Ray GPU workers all refuse
    it with the same message (no GPU needed: the refusal comes first)."""
    from landscape.core import ray as cluster
    from landscape.surface.executors.ray import RayExecutor
    from landscape.surface.executors.vmap import VmapExecutor

    m = models.build(CNN_BN, seed=0)
    lay, w = Layout.of(m), flat_params(m)
    dx, dy = dirs.random_plane(w, lay, seed=0)
    task = surface.make_task(m, small_digits, dx, dy, surface.SurfaceConfig(bn="recompute"))
    task.bn_data = task.X
    plan = surface.GridPlan.of(np.linspace(-1, 1, 3), np.linspace(-1, 1, 3))
    errors = []
    for device, batched in (("cuda", False), ("cuda", True), ("mps", False), ("cpu", True)):
        with pytest.raises(LandscapeError) as e:
            surface.check_options(task, device, batched)
        errors.append(str(e.value))
    # the local path with a GPU device (the grid function every caller uses) ...
    with pytest.raises(LandscapeError) as e:
        surface.evaluate_grid(task, plan.xs, plan.ys, workers=1, device="cuda")
    errors.append(str(e.value))
    with pytest.raises(LandscapeError) as e:
        surface.evaluate(task, plan, VmapExecutor("cpu"))
    errors.append(str(e.value))
    # ... and Ray on a cluster whose tasks get GPUs (the cluster faked: nothing is started)
    monkeypatch.setattr(cluster, "init", lambda *a, **k: 0.0)
    monkeypatch.setattr(cluster, "cluster_slots", lambda gpus_per_task=None: (2, 1.0))
    with pytest.raises(LandscapeError) as e:
        surface.evaluate(task, plan, RayExecutor())
    errors.append(str(e.value))
    assert len(set(errors)) == 1 and "BatchNorm" in errors[0]
    # on a CPU, per point, it is accepted (and keeping the statistics is accepted anywhere)
    surface.check_options(task, "cpu", False)
    keep = surface.PlaneTask(**{**task.__dict__, "bn": "keep"})
    for device, batched in (("cuda", False), ("cuda", True), ("cpu", True)):
        surface.check_options(keep, device, batched)


def test_evaluate_with_the_local_executor_equals_evaluate_grid(trained_mlp, small_digits):
    from landscape.surface.executors.local import LocalExecutor

    m = trained_mlp.model
    dx, dy = dirs.random_plane(flat_params(m), Layout.of(m), seed=1)
    task = surface.make_task(m, small_digits, dx, dy, surface.SurfaceConfig())
    xs, ys = np.linspace(-1, 1, 6), np.linspace(-0.5, 0.5, 3)
    a_loss, a_acc, a_info = surface.evaluate(task, surface.GridPlan.of(xs, ys), LocalExecutor())
    b_loss, b_acc, b_info = surface.evaluate_grid(task, xs, ys, workers=1)
    np.testing.assert_array_equal(a_loss, b_loss)
    np.testing.assert_array_equal(a_acc, b_acc)
    assert a_info["method"] == b_info["method"] == "mlp" and a_info["workers"] == 1
