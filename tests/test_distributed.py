"""Surfaces and Hessian spectra on Ray (landscape.core.ray, landscape.surface.executors.ray,
landscape.hessian.ray), against a local Ray with two
CPUs started once for the module (Ray itself takes about 10 s to start on 2 cores and each
worker about 5 s to import torch, so everything shares one instance)."""

import os
import threading
import time

import numpy as np
import pytest
import ray  # the `distributed` extra, part of the `test` extra
import torch

from landscape import hessian, surface
from landscape.core import ray as session
from landscape.core.errors import Cancelled, LandscapeError
from landscape.core.params import Layout, flat_params
from landscape.hessian import ray as hray
from landscape.surface.directions import random_plane
from landscape.surface.evaluators import build_evaluator
from landscape.surface.executors import ray as dist


@pytest.fixture(scope="module")
def cluster():
    session.shutdown()
    started = session.init(num_cpus=2)
    session.warm()
    yield started
    session.shutdown()
    if ray.is_initialized():
        ray.shutdown()
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def task(trained_mlp, small_digits):
    model = trained_mlp.model
    w = flat_params(model)
    dx, dy = random_plane(w, Layout.of(model), seed=4)
    return surface.make_task(model, small_digits, dx, dy, surface.SurfaceConfig())


def grid(nx, ny):
    return np.linspace(-1.0, 0.8, nx), np.linspace(-0.6, 1.0, ny)


def positions_logged(log_dir):
    files = [f for f in os.listdir(log_dir) if f.endswith(".npy")]
    return files, (np.concatenate([np.load(os.path.join(log_dir, f)) for f in files])
                   if files else np.zeros(0, np.int64))


# --------------------------------------------------------------------------- pure helpers


def test_app_hook_reports_ray_and_reads_the_configured_address():
    ok, msg = session.ray_available()
    assert ok and msg.startswith(f"Ray {ray.__version__}")
    assert session.configured_address({session.ENV_ADDRESS: " ray://head:10001 "}) == "ray://head:10001"
    assert session.configured_address({session.ENV_ADDRESS: "  "}) is None
    assert session.configured_address({}) is None


def test_task_key_follows_the_task_and_the_grid(task):
    xs, ys = grid(5, 4)
    k = dist.task_key(task, xs, ys)
    assert k == dist.task_key(task, xs.copy(), ys.copy())
    assert k != dist.task_key(task, xs, ys + 1e-9)
    assert k != dist.task_key(task, xs, None)
    moved = surface.PlaneTask(task.model, task.w, task.dx * 1.0001, task.dy, task.X, task.y)
    assert k != dist.task_key(moved, xs, ys)
    # the workers' chunk code, without Ray: the local evaluator's values
    loss, acc, name = dist.evaluate_chunk(task, [(0.5, -0.25), (0.0, 0.0)])
    ev = build_evaluator(task)
    assert name == "mlp" and loss.tolist() == [ev(0.5, -0.25)[0], ev(0.0, 0.0)[0]]
    assert acc.tolist() == [ev(0.5, -0.25)[1], ev(0.0, 0.0)[1]]


# --------------------------------------------------------------------------- surfaces


@pytest.mark.parametrize("method", ["auto", "module"])
def test_surface_equals_the_local_path(cluster, task, method):
    t = surface.PlaneTask(**{**task.__dict__, "method": method})
    xs, ys = grid(13, 9)  # non-square
    ref_loss, ref_acc, ref_info = surface.evaluate_grid(t, xs, ys, workers=1)
    seen = []
    loss, acc, info = dist.evaluate_grid_ray(
        t, xs, ys, chunk_size=10, progress=lambda d, n, l, a: seen.append((d, n, int(np.isnan(l).sum()))))
    assert loss.shape == (9, 13) and acc.shape == (9, 13)
    np.testing.assert_allclose(loss, ref_loss, rtol=0, atol=1e-6)
    assert np.abs(loss - ref_loss).max() == 0.0  # the same evaluator: bit for bit here
    np.testing.assert_array_equal(acc, ref_acc)
    assert info["method"] == ref_info["method"] == ("mlp" if method == "auto" else "module")
    assert info["backend"] == "ray" and info["workers"] == 2 and info["chunks"] == 12
    assert info["points_computed"] == 117 and info["points_resumed"] == 0
    done = [d for d, _, _ in seen]
    assert done == sorted(done) and done[-1] == 117 and all(n == 117 for _, n, _ in seen)
    assert all(d + nan == 117 for d, _, nan in seen)  # NaN exactly where pending
    # a 1-D slice through the drop-in for evaluate_grid
    l1, a1, _ = dist.RayGridEvaluator()(t, xs, None, workers=1, progress=None, cancel=None,
                                         device=None)
    r1, ra1, _ = surface.evaluate_grid(t, xs, None, workers=1)
    assert l1.shape == (13,)
    np.testing.assert_array_equal(l1, r1)
    np.testing.assert_array_equal(a1, ra1)


def test_a_killed_worker_is_retried_and_nothing_is_lost(cluster, task, tmp_path):
    xs, ys = grid(11, 7)
    ref_loss, ref_acc, _ = surface.evaluate_grid(task, xs, ys, workers=1)
    marker = tmp_path / "crashed"
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    hooks = {"crash_chunk": 2, "marker": str(marker), "log_dir": str(log_dir)}
    loss, acc, info = dist.evaluate_grid_ray(task, xs, ys, chunk_size=8, hooks=hooks)
    assert marker.exists()  # the worker really died (os._exit) on chunk 2's first attempt
    assert int(marker.read_text()) > 0
    np.testing.assert_array_equal(loss, ref_loss)
    np.testing.assert_array_equal(acc, ref_acc)
    assert info["points_computed"] == 77
    files, pos = positions_logged(log_dir)
    assert sorted(pos.tolist()) == list(range(77))  # each point evaluated once (chunk 2 on retry)
    assert len(files) == info["chunks"] == 10


def test_cancel_stops_the_tasks_and_a_rerun_resumes_from_the_checkpoint(cluster, task, tmp_path):
    xs, ys = grid(13, 11)
    n = 143
    ref_loss, ref_acc, _ = surface.evaluate_grid(task, xs, ys, workers=1)
    ckpt = tmp_path / "out.npz.ray-checkpoint"
    assert dist.default_checkpoint_path(tmp_path / "out.npz") == ckpt
    log1 = tmp_path / "log1"
    log1.mkdir()
    cancel = threading.Event()
    when = {}

    def progress(done, total, loss, acc):
        if done >= 16 and not cancel.is_set():
            when["t"] = time.perf_counter()
            cancel.set()

    with pytest.raises(Cancelled) as exc:
        dist.evaluate_grid_ray(task, xs, ys, chunk_size=8, progress=progress, cancel=cancel,
                               checkpoint_path=ckpt,
                               hooks={"delay": 0.25, "log_dir": str(log1)})
    assert time.perf_counter() - when["t"] < 2.0  # raised promptly
    ploss, pacc = exc.value.partial
    assert ploss.shape == (11, 13) and pacc.shape == (11, 13)
    finished = np.isfinite(ploss)
    assert 16 <= finished.sum() < n
    np.testing.assert_array_equal(ploss[finished], ref_loss[finished])
    np.testing.assert_array_equal(pacc[finished], ref_acc[finished])
    # the run stopped: nothing is submitted after the cancel; at most the in-flight window
    # (2 per worker) still finishes in the background, and its results are dropped
    time.sleep(2.0)
    files1, _ = positions_logged(log1)
    chunks_done = int(finished.sum()) // 8
    assert chunks_done <= len(files1) <= chunks_done + 4 < 18
    key = dist.task_key(task, xs, ys)
    parts = list((ckpt / key).glob("part-*.npz"))
    assert parts and sum(len(np.load(p)["positions"]) for p in parts) == finished.sum()

    # rerun: the finished chunks come from the checkpoint, the rest is computed once
    log2 = tmp_path / "log2"
    log2.mkdir()
    seen = []
    loss, acc, info = dist.evaluate_grid_ray(task, xs, ys, chunk_size=8, checkpoint_path=ckpt,
                                             progress=lambda d, t, l, a: seen.append(d),
                                             hooks={"log_dir": str(log2)})
    np.testing.assert_array_equal(loss, ref_loss)
    np.testing.assert_array_equal(acc, ref_acc)
    assert info["points_resumed"] == finished.sum()
    assert info["points_computed"] == n - finished.sum()
    assert seen[0] == finished.sum()  # the resumed picture is shown first
    _, pos2 = positions_logged(log2)
    order = surface.coarse_to_fine(13, 11)
    recomputed = np.zeros(n, bool)
    recomputed[order[pos2]] = True
    assert len(pos2) == n - finished.sum()  # no point evaluated twice
    assert not (recomputed & finished.reshape(-1)).any()  # none of the resumed ones
    assert not ckpt.exists()  # removed after the complete run


@pytest.mark.parametrize("arch", ["mlp", "bn_cnn"])
def test_every_cpu_executor_gives_the_oracle_grid(cluster, small_digits, arch):
    """Local, worker processes, Ray and vmap on a CPU: the same grid as the dense oracle
    evaluated point by point (float64, 1e-6 relative); BatchNorm statistics kept."""
    from oracles import surface_point

    from landscape.core import models
    from landscape.surface.executors.local import LocalExecutor
    from landscape.surface.executors.pool import PoolExecutor
    from landscape.surface.executors.vmap import VmapExecutor

    spec = ({"name": "mlp", "args": {"in_dim": 64, "out_dim": 10, "widths": [16]}} if arch == "mlp"
            else {"name": "cnn", "args": {"channels": [4, 8], "batchnorm": True}})
    model = models.build(spec, seed=0, dtype=torch.float64).eval()
    if arch == "bn_cnn":  # non-trivial statistics, so keeping them matters
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
    d = small_digits.subset(120, 0)
    w = flat_params(model)
    dx, dy = random_plane(w, Layout.of(model), seed=2)
    task = surface.make_task(model, d, dx, dy, surface.SurfaceConfig())
    xs, ys = np.linspace(-1.0, 0.5, 5), np.linspace(-0.5, 1.0, 4)
    X = d.X.to(torch.float64)
    expect = np.array([[surface_point(model, X, d.y, "cross_entropy", task.w, task.dx, task.dy, a, b)
                        for a in xs] for b in ys])  # [ny, nx, (loss, acc)]
    executors = {"local": LocalExecutor(), "pool": PoolExecutor(2), "ray": dist.RayExecutor(chunk_size=4),
                 "vmap": VmapExecutor("cpu")}
    for name, ex in executors.items():
        loss, acc, info = surface.evaluate(task, surface.GridPlan.of(xs, ys), ex)
        assert loss.shape == (4, 5), name
        np.testing.assert_allclose(loss, expect[..., 0], rtol=1e-6, atol=0, err_msg=name)
        np.testing.assert_allclose(acc, expect[..., 1], rtol=1e-6, atol=0, err_msg=name)
        if name == "pool":
            assert info["workers"] == 2  # the worker processes did the work
        if name == "ray":
            assert info["backend"] == "ray" and info["points_computed"] == 20


# --------------------------------------------------------------------------- Hessian


@pytest.fixture(scope="module")
def op(trained_mlp, small_digits):
    return hessian.HessianOperator(trained_mlp.model, small_digits.X, small_digits.y)


def test_hutchinson_on_ray_equals_the_local_estimate(cluster, op):
    local = hessian.hutchinson_trace(op, probes=20, seed=3)
    seen = []
    remote = hray.hutchinson_trace_ray(op, probes=20, seed=3, probes_per_task=6,
                                       progress=lambda d, t: seen.append((d, t)))
    np.testing.assert_allclose(remote.samples, local.samples, rtol=1e-10, atol=0)
    assert abs(remote.trace - local.trace) <= 1e-10 * abs(local.trace)
    assert abs(remote.stderr - local.stderr) <= 1e-10 * abs(local.stderr)
    assert remote.hvps == 20 and remote.meta["backend"] == "ray"
    assert sorted(seen) == seen and seen[-1] == (20, 20) and len(seen) == 4
    # another seed gives other probes
    other = hray.hutchinson_trace_ray(op, probes=20, seed=4)
    assert abs(other.trace - local.trace) > 1e-6


def test_slq_on_ray_equals_the_local_density(cluster, op, trained_mlp, small_digits):
    local = hessian.slq_density(op, probes=3, lanczos_steps=20, seed=5)
    spec = hray.HessianSpec(trained_mlp.model, small_digits.X, small_digits.y)
    remote = hray.slq_density_ray(spec, probes=3, lanczos_steps=20, seed=5)
    np.testing.assert_allclose(remote.nodes, local.nodes, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(remote.weights, local.weights, rtol=1e-10, atol=1e-14)
    assert abs(remote.sigma - local.sigma) <= 1e-10 * local.sigma
    np.testing.assert_allclose(remote.grid, local.grid, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(remote.density, local.density, rtol=1e-8,
                               atol=1e-10 * local.density.max())
    assert abs(remote.meta["trace_estimate"] - local.meta["trace_estimate"]) <= \
        1e-10 * abs(local.meta["trace_estimate"])
    assert remote.hvps == local.hvps == 60


def test_hessian_cancel_and_bad_input_come_back_as_themselves(cluster, op, small_digits):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled) as exc:
        hray.hutchinson_trace_ray(op, probes=8, seed=0, cancel=cancel)
    assert exc.value.partial.shape == (8,)
    # train-mode Dropout: the worker's operator refuses it; not retried, same error type
    model = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.Dropout(0.5),
                                torch.nn.Linear(16, 10)).double()
    spec = hray.HessianSpec(model, small_digits.X, small_digits.y)
    t0 = time.perf_counter()
    with pytest.raises(LandscapeError, match="train mode"):
        hray.hutchinson_trace_ray(spec, probes=4, seed=0)
    assert time.perf_counter() - t0 < 10


def test_cli_surface_on_ray_equals_the_local_run(cluster, tmp_path, capsys):
    import json

    from landscape.cli.main import main
    from landscape.core import data, models
    from landscape.io import checkpoints as checkpoint

    m = models.build({"name": "mlp", "args": {"in_dim": 2, "out_dim": 2, "widths": [8]}}, seed=0)
    (tmp_path / "m.safetensors").write_bytes(checkpoint.to_bytes(m, data="moons"))
    args = ["surface", "--checkpoint", str(tmp_path / "m.safetensors"), "--grid", "7", "5",
            "--workers", "1", "--json"]
    assert main(args) == 0
    local = json.loads(capsys.readouterr().out)
    assert main(args + ["--ray", "--out", str(tmp_path / "s.npz")]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert remote["method"] == local["method"] and remote["shape"] == [5, 7]
    res = surface.load(tmp_path / "s.npz")
    assert res.meta["backend"] == "ray"
    assert abs(remote["loss_min"] - local["loss_min"]) == 0.0
    assert data.load_builtin("moons").n == res.meta["n_eval"]
