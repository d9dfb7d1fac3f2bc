"""Every executor and fast path against the slow obvious point evaluation (tests/oracles.py),
in float64: the first-layer factorisation, BatchNorm folding, exported programs shipped to
worker processes as bytes, and the vmap chunk size estimate."""

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from oracles import flat_params, surface_point
from torch import nn

from landscape.io import checkpoints
from landscape.surface.evaluate import evaluate
from landscape.surface.evaluators import ModuleEvaluator, PlaneTask, build_evaluator
from landscape.surface.executors.local import LocalExecutor
from landscape.surface.executors.pool import PoolExecutor
from landscape.surface.executors.vmap import VmapExecutor, chunk_for_memory, point_bytes
from landscape.surface.plan import GridPlan

XS, YS = np.linspace(-1.0, 1.0, 5), np.linspace(-0.8, 0.6, 4)


class ResBN(nn.Module):
    """A small residual CNN with BatchNorm on 8x8 digits (flat 64 inputs)."""

    def __init__(self, c=4):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        h = torch.relu(self.b1(self.c1(x.view(-1, 1, 8, 8))))
        h = torch.relu(h + self.b2(self.c2(h)))
        return self.fc(h.mean((2, 3)))


class TwoLayer(nn.Module):
    """Not an nn.Sequential, so the hand-written MLP path does not apply."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(64, 16), nn.Linear(16, 10)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


class ScaledInput(nn.Module):
    """A moving parameter before the first Linear: the factorisation must not apply."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(64))
        self.a, self.b = nn.Linear(64, 16), nn.Linear(16, 10)

    def forward(self, x):
        return self.b(torch.relu(self.a(x * self.scale)))


def _bn_stats(model):
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            for t, lo, hi in ((m.running_mean, -0.2, 0.2), (m.running_var, 0.5, 1.5),
                              (m.weight.data, 0.5, 1.5), (m.bias.data, -0.2, 0.2)):
                t.copy_(torch.rand(t.shape, generator=g, dtype=t.dtype) * (hi - lo) + lo)
    return model.eval()


def _module(kind):
    torch.manual_seed(0)
    m = {"cnn": ResBN, "two": TwoLayer, "scaled": ScaledInput}[kind]().double()
    return _bn_stats(m)


def _export(model, tmp_path, name, static=False):
    x = torch.randn(8, 64, dtype=torch.float64)
    dyn = None if static else ({0: torch.export.Dim("batch")},)
    path = tmp_path / f"{name}.pt2"
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=dyn), str(path))
    return checkpoints.load(path).model


@pytest.fixture(scope="module")
def data(small_digits):
    return small_digits.X[:200].double(), small_digits.y[:200]


def _task(model, data, seed=1):
    X, y = data
    w = flat_params(model)
    g = torch.Generator().manual_seed(seed)
    dx = torch.randn(w.shape, generator=g, dtype=w.dtype) * 0.3
    dy = torch.randn(w.shape, generator=g, dtype=w.dtype) * 0.3
    return PlaneTask(model, w, dx, dy, X, y)


def _oracle_grid(task):
    return np.array([[surface_point(task.model, task.X, task.y, "cross_entropy", task.w, task.dx,
                                    task.dy, float(a), float(b))[0] for a in XS] for b in YS])


def _check(loss, exact):
    rel = np.abs(loss - exact) / np.abs(exact)
    assert np.all(np.isfinite(loss)) and rel.max() < 1e-6, rel.max()


@pytest.mark.parametrize("kind,fast", [("cnn", "first-layer+bn-fold+in-place"), ("two", "first-layer"),
                                       ("scaled", "in-place")])
def test_module_fast_paths_equal_the_oracle(data, kind, fast):
    task = _task(_module(kind), data)
    ev = ModuleEvaluator(task)
    assert ev.fast_path == fast
    exact = _oracle_grid(task)
    got = np.array([[ev(float(a), float(b))[0] for a in XS] for b in YS])
    _check(got, exact)


def test_exported_cnn_folds_batchnorm_and_factors_the_first_conv(data, tmp_path):
    task = _task(_export(_module("cnn"), tmp_path, "cnn"), data)
    ev = ModuleEvaluator(task)
    assert ev.fast_path == "first-layer+bn-fold+in-place"
    assert ModuleEvaluator(task, fast=False).fast_path == "none"
    _check(np.array([[ev(float(a), float(b))[0] for a in XS] for b in YS]), _oracle_grid(task))


def test_first_layer_falls_back_when_its_input_moves(data):
    """The factored layer checks its input at every call; the evaluator then returns to the
    plain forward and still gives the oracle's value."""
    from landscape.surface.rewrites import NotFactorable, install_first_layer

    task = _task(_module("two"), data)
    ev = ModuleEvaluator(task, fast=False)
    model = ev.model
    first, skip = install_first_layer(model, task, ev.slices)
    assert first is not None and set(skip) == {"a.weight", "a.bias"}
    with torch.no_grad():
        model(task.X)
        with pytest.raises(NotFactorable):
            model(task.X * 2)
    ev = ModuleEvaluator(task)
    assert ev.fast_path == "first-layer"
    ev.X = task.X * 1.5  # the layer's input is no longer the one it was factored for
    got = ev(0.4, -0.3)[0]
    exact = surface_point(task.model, ev.X, task.y, "cross_entropy", task.w, task.dx, task.dy, 0.4, -0.3)[0]
    assert ev.fast_path == "none" and abs(got - exact) <= 1e-6 * abs(exact)


class FlatMLP(nn.Module):
    """What a user writes: not an ``nn.Sequential``, a flatten first, GELU and tanh."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(64, 24), nn.Linear(24, 16), nn.Linear(16, 10)

    def forward(self, x):
        return self.c(torch.tanh(self.b(nn.functional.gelu(self.a(x.flatten(1))))))


class ResidualMLP(FlatMLP):
    def __init__(self):
        super().__init__()
        self.b = nn.Linear(24, 24)
        self.c = nn.Linear(24, 10)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.c(h + torch.relu(self.b(h)))


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static-batch"])
def test_exported_mlp_runs_as_layers_and_equals_the_oracle(data, tmp_path, static):
    """An exported MLP program is read back as Linear/activation layers (any batch size,
    the hand-written evaluator) and gives the oracle's values to 1e-6."""
    from landscape.surface.evaluators import MLPEvaluator

    torch.manual_seed(0)
    task = _task(_export(FlatMLP().double(), tmp_path, "flat", static=static), data)
    ev = build_evaluator(task)
    assert isinstance(ev, MLPEvaluator) and ev.fast_path == "mlp-from-graph+first-layer"
    _check(np.array([[ev(float(a), float(b))[0] for a in XS] for b in YS]), _oracle_grid(task))


def test_a_graph_that_is_not_a_plain_mlp_keeps_the_module_path(data, tmp_path):
    from landscape.surface.rewrites import mlp_from_graph

    torch.manual_seed(0)
    model = _export(ResidualMLP().double(), tmp_path, "res")
    assert mlp_from_graph(model, 64) is None
    ev = build_evaluator(_task(model, data))
    assert isinstance(ev, ModuleEvaluator) and "in-place" in ev.fast_path
    _check(np.array([[ev(float(a), float(b))[0] for a in XS] for b in YS]), _oracle_grid(_task(model, data)))


def test_first_layer_sees_data_changed_in_place(data):
    """The cheap same-input check (same memory, same version counter) notices an in-place
    change of the evaluation data, and a fresh tensor with equal values still passes."""
    from landscape.surface.rewrites import NotFactorable, install_first_layer

    task = _task(_module("two"), data)
    X = task.X.clone()
    model = ModuleEvaluator(task, fast=False).model
    first, _ = install_first_layer(model, task, ModuleEvaluator(task, fast=False).slices)
    with torch.no_grad():
        before = model(X).clone()
        assert torch.equal(model(X.clone()), before)  # other memory, same values
        X.mul_(1.5)
        with pytest.raises(NotFactorable):
            model(X)


@pytest.mark.parametrize("make", ["module", "pt2", "pt2-static", "mlp-pt2"])
def test_every_executor_equals_the_oracle(data, tmp_path, make):
    if make == "mlp-pt2":
        torch.manual_seed(0)
        model = _export(FlatMLP().double(), tmp_path, make)
    elif make == "module":  # a zoo model: worker processes import its class
        from landscape.core import models

        model = _bn_stats(models.build({"name": "cnn", "args": {"channels": [4, 8], "batchnorm": True}},
                                       seed=0, dtype=torch.float64))
    else:
        model = _export(_module("cnn"), tmp_path, make, static=make == "pt2-static")
    task = _task(model, data)
    exact = _oracle_grid(task)
    plan = GridPlan.of(XS, YS)
    for ex in (LocalExecutor(), PoolExecutor(2), VmapExecutor("cpu")):
        loss, _, info = evaluate(task, plan, ex)
        _check(loss, exact)
        if isinstance(ex, PoolExecutor):
            assert info["workers"] == 2 and info["executor"] == "pool" and info["threads_per_worker"] == 1


@pytest.mark.parametrize("margin,chosen", [(1e9, "vmap"), (0.0, "per-point")])
@pytest.mark.parametrize("workers", [1, 2])
def test_without_a_fast_path_per_point_or_vmap_is_chosen_by_timing(data, monkeypatch, margin, chosen, workers):
    """A model the first-layer factorisation does not apply to: both strategies are timed on the first points, the
    choice and both times are reported, and either way every value equals the oracle's."""
    from landscape.surface.executors import pool

    monkeypatch.setattr(pool, "VMAP_MARGIN", margin)
    torch.manual_seed(0)  # LayerNorm first: no rewrite applies; built-in modules travel to workers
    model = nn.Sequential(nn.LayerNorm(64), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10)).double()
    task = _task(model, data)
    xs, ys = np.linspace(-1, 1, 12), np.linspace(-0.8, 0.6, 12)
    loss, _, info = evaluate(task, GridPlan.of(xs, ys), PoolExecutor(workers))
    assert "first-layer" not in info["fast_path"] and info["choice"]["chosen"] == chosen
    assert info["choice"]["per_point_ms"] > 0 and info["choice"]["vmap_ms"] > 0
    assert info["method"] == ("vmap" if chosen == "vmap" else "module")
    assert info["executor"] == ("pool" if workers == 2 else "local")
    exact = np.array([[surface_point(task.model, task.X, task.y, "cross_entropy", task.w, task.dx,
                                     task.dy, float(a), float(b))[0] for a in xs] for b in ys])
    _check(loss, exact)


def test_exported_task_travels_as_bytes_and_keeps_buffers(data, tmp_path):
    model = _export(_module("cnn"), tmp_path, "ship")
    assert isinstance(model.landscape_pt2, bytes)
    with torch.no_grad():  # a buffer changed after loading must travel too
        dict(model.named_buffers())["b1.running_mean"].add_(0.5)
    task = _task(model, data)
    back = pickle.loads(pickle.dumps(task))
    assert isinstance(back.model, nn.Module) and back.model is not model
    for (k, a), (_, b) in zip(model.named_buffers(), back.model.named_buffers()):
        assert torch.equal(a, b), k
    a, b = ModuleEvaluator(task)(0.3, -0.2), ModuleEvaluator(back)(0.3, -0.2)
    assert a == b


def test_vmap_chunk_fits_memory(data):
    assert chunk_for_memory(1000, 10_000_000) == 1024  # capped
    assert chunk_for_memory(1000, 100_000) == 50  # half of the free bytes
    assert chunk_for_memory(10**9, 10**6) == 1
    task = _task(_module("cnn"), data)
    X = task.X
    # at least the parameters, the input's view, the first conv's output and the logits
    floor = (task.w.numel() + X.numel() + X.shape[0] * 4 * 64 + X.shape[0] * 10) * 8
    est = point_bytes(task)
    assert floor <= est < 100 * floor


def test_cli_reports_what_ran_without_warnings(tmp_path, small_digits):
    model = _module("cnn").float()
    path = tmp_path / "cnn.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(4, 64),),
                                          dynamic_shapes=({0: torch.export.Dim("batch")},)), str(path))
    out = subprocess.run([sys.executable, "-W", "default", "-m", "landscape", "surface", "--checkpoint",
                          str(path), "--data", "digits", "--grid", "9", "--samples", "300",
                          "--workers", "2", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["executor"] == "pool" and res["workers"] == 2 and res["threads_per_worker"] == 1
    assert res["device"] == "cpu" and res["points_per_second"] > 0
    assert res["fast_path"] == "first-layer+bn-fold+in-place"
    assert "Warning" not in out.stderr, out.stderr


def test_hessian_of_an_exported_bn_cnn_equals_the_modules(data, tmp_path):
    """The one Hessian operator on an exported program (BatchNorm in eval mode inside the
    graph) gives the module's Hessian-vector products to float64 rounding."""
    from landscape.hessian.operator import HessianOperator

    module = _module("cnn")
    program = _export(module, tmp_path, "hess")
    X, y = data
    a, b = HessianOperator(module, X, y), HessianOperator(program, X, y)
    assert a.n_params == b.n_params and a.names == b.names
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        v = torch.randn(a.n_params, generator=g, dtype=torch.float64)
        ha, hb = a.hvp(v), b.hvp(v)
        assert torch.allclose(ha, hb, rtol=1e-9, atol=1e-9 * float(ha.abs().max())), (ha - hb).abs().max()


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(64, 16), nn.Linear(16, 10)

    def forward(self, x):
        h = self.a(x)
        return self.b(torch.relu(h) if bool(h.mean() > -1e9) else h)


class TwoPaths(nn.Module):
    """``F.relu(..., inplace=False)`` and a layer used twice: traced, ``tanh`` made in place."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(64, 10), nn.Linear(64, 10)

    def forward(self, x):
        return self.b(x) * 0.5 + torch.tanh(self.b(x)) + nn.functional.relu(self.a(x), inplace=False)


def test_traced_zoo_cnn_folds_batchnorm_and_an_untraceable_module_keeps_its_forward(data):
    from landscape.core import models

    zoo = _bn_stats(models.build({"name": "cnn", "args": {"channels": [4, 8], "batchnorm": True}},
                                 seed=0, dtype=torch.float64))
    torch.manual_seed(0)
    for model, fast in ((zoo, "first-layer+bn-fold+in-place"), (Branchy().double(), "first-layer"),
                        (TwoPaths().double(), "in-place")):
        task = _task(model, data)
        ev = ModuleEvaluator(task)
        assert ev.fast_path == fast
        _check(np.array([[ev(float(a), float(b))[0] for a in XS] for b in YS]), _oracle_grid(task))
