"""Cross-checks against PyHessian 0.1 (Yao, Gholami, Keutzer & Mahoney 2020), the reference
the field uses: its top-k by power iteration with deflation and its early-stopped Hutchinson
trace, on a private copy of the model, with its HVP calls counted.

Units as everywhere here: eigenvalues and traces in loss / parameter^2. PyHessian's
``density()`` is not wrapped: it calls the removed ``torch.eig``.
"""

from __future__ import annotations

import copy
import math
import sys
import time
import warnings
from contextlib import contextmanager

import numpy as np
import torch

from landscape.core.errors import LandscapeError
from landscape.core.losses import LOSSES
from landscape.core.losses import loss as loss_fn
from landscape.hessian.operator import as_tensor
from landscape.hessian.results import EigenResult, TraceResult

__all__ = ["pyhessian_top_eigenvalues", "pyhessian_trace"]


@contextmanager
def _pyhessian_counted(dtype: torch.dtype, seed: int):
    """Import PyHessian, count its HVP calls, run under a forked RNG seeded with ``seed`` and
    with torch's default dtype set to ``dtype`` (PyHessian draws its vectors with
    ``torch.randn(size)``, in the default dtype)."""
    try:
        import pyhessian  # noqa: F401
    except ImportError as e:  # pragma: no cover - pyhessian is a dependency
        raise LandscapeError(f"PyHessian is not installed: {e}") from None
    mod = sys.modules["pyhessian.hessian"]  # the package re-exports the class under this name
    counter = {"hvps": 0}
    orig_hvp = mod.hessian_vector_product

    def counted(gradsH, params, v):
        counter["hvps"] += 1
        return orig_hvp(gradsH, params, v)

    old_dtype = torch.get_default_dtype()
    mod.hessian_vector_product = counted
    try:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            # PyHessian builds its graph with backward(create_graph=True), which warns
            warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph")
            torch.manual_seed(seed)
            torch.set_default_dtype(dtype)
            yield mod, counter
    finally:
        torch.set_default_dtype(old_dtype)
        mod.hessian_vector_product = orig_hvp


def _drop_grads(model) -> None:
    """Break the param <-> .grad reference cycle PyHessian's ``create_graph`` backward leaves."""
    for p in model.parameters():
        p.grad = None


def _pyhessian_setup(model, X, y, loss_kind, dtype):
    if loss_kind not in LOSSES:
        raise LandscapeError(f"unknown loss {loss_kind!r}; choose one of {LOSSES}")
    m = copy.deepcopy(model).to(dtype)
    Xt = as_tensor(X, dtype)
    yt = as_tensor(y)
    if yt.is_floating_point():
        yt = yt.to(dtype)

    def criterion(out, target):
        return loss_fn(out, target, loss_kind)

    return m, Xt, yt, criterion


def pyhessian_top_eigenvalues(model, X, y, loss_kind: str = "cross_entropy", k: int = 5,
                              max_iter: int = 100, tol: float = 1e-3,
                              dtype: torch.dtype = torch.float64, seed: int = 0) -> EigenResult:
    """PyHessian 0.1's top-k by power iteration with deflation (its ``eigenvalues``), on a
    private copy of ``model`` (PyHessian forces eval mode and writes ``.grad``).

    Returns an :class:`EigenResult` sorted descending, eigenvectors flattened [k, P] in
    ``parameters()`` order; ``residuals`` are NaN (PyHessian does not report them; measure
    them with our operator if needed); ``hvps`` counts PyHessian's HVP calls (its
    construction's gradient graph is built once, as ours is).
    """
    m, Xt, yt, criterion = _pyhessian_setup(model, X, y, loss_kind, dtype)
    t0 = time.perf_counter()
    with _pyhessian_counted(dtype, seed) as (mod, counter):
        h = mod.hessian(m, criterion, data=(Xt, yt), cuda=False)
        vals, vecs = h.eigenvalues(maxIter=max_iter, tol=tol, top_n=int(k))
    seconds = time.perf_counter() - t0
    flat = np.stack([torch.cat([t.detach().reshape(-1) for t in v]).double().numpy()
                     for v in vecs])
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)
    _drop_grads(m)
    vals = np.asarray(vals, dtype=np.float64)
    order = np.argsort(-vals)
    del h
    meta = {"hvps": counter["hvps"], "seconds": seconds, "dtype": str(dtype).replace("torch.", ""),
            "n_params": int(flat.shape[1]), "max_iter": max_iter, "tol": tol, "k": int(k),
            "method": "pyhessian power iteration", "raw_order": vals.tolist()}
    return EigenResult(vals[order], flat[order], np.full(len(vals), np.nan), counter["hvps"],
                       seconds, meta)


def pyhessian_trace(model, X, y, loss_kind: str = "cross_entropy", max_iter: int = 100,
                    tol: float = 1e-3, dtype: torch.dtype = torch.float64,
                    seed: int = 0) -> TraceResult:
    """PyHessian 0.1's Hutchinson trace (Rademacher, stops when the running mean changes by
    less than ``tol`` relative). ``stderr`` = std of its samples / sqrt(count)."""
    m, Xt, yt, criterion = _pyhessian_setup(model, X, y, loss_kind, dtype)
    t0 = time.perf_counter()
    with _pyhessian_counted(dtype, seed) as (mod, counter):
        h = mod.hessian(m, criterion, data=(Xt, yt), cuda=False)
        samples = np.asarray(h.trace(maxIter=max_iter, tol=tol), dtype=np.float64)
    seconds = time.perf_counter() - t0
    n_params = sum(p.numel() for p in m.parameters() if p.requires_grad)
    _drop_grads(m)
    del h
    se = float(samples.std(ddof=1) / math.sqrt(len(samples))) if len(samples) > 1 else float("nan")
    meta = {"hvps": counter["hvps"], "seconds": seconds, "dtype": str(dtype).replace("torch.", ""),
            "n_params": int(n_params), "probes": len(samples), "max_iter": max_iter, "tol": tol,
            "method": "pyhessian hutchinson"}
    return TraceResult(float(samples.mean()), se, samples, "pyhessian", counter["hvps"], seconds,
                       meta)
