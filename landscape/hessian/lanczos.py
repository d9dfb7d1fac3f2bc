"""Extreme eigenpairs of ``H`` by implicitly restarted Lanczos, and the HVP :class:`Watch`.

- :func:`top_eigenpairs`: the k algebraically largest (or smallest, or largest-magnitude)
  eigenpairs by ARPACK's implicitly restarted Lanczos (``scipy.sparse.linalg.eigsh``),
  warm-startable from previous eigenvectors. The residuals ``||H u - lambda u||`` are then
  measured with k explicit HVPs, so they are true residuals, not ARPACK's estimates; an
  eigenvalue's error is about ``residual^2 / gap``. Units: loss / parameter^2.
- :func:`smallest_eigenvalue`: the most negative eigenpair (slow: it sits in the bulk).
- :class:`Watch`: counts one run's HVPs, reports ``progress(done, total)`` and raises
  :class:`~landscape.core.errors.Cancelled` when ``cancel`` is set (every algorithm uses it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse.linalg as spla

from landscape.core.errors import Cancelled, LandscapeError
from landscape.hessian.operator import as_operator
from landscape.hessian.results import EigenResult, result_meta

__all__ = ["ProgressFn", "Watch", "is_cancelled", "residuals", "start_vector", "default_tol",
           "top_eigenpairs", "smallest_eigenvalue"]

ProgressFn = Callable[[int, int], None]


def is_cancelled(cancel) -> bool:
    """Whether ``cancel`` (None, an Event-like object or a callable) asks to stop."""
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


class Watch:
    """Counts HVPs for one algorithm run, reports progress and honours cancellation.

    ``progress(done, total)`` receives HVPs done and the expected total (an estimate for
    Lanczos); ``cancel`` is a ``threading.Event``-like object or a no-argument callable.
    """

    def __init__(self, op, total: int, progress=None, cancel=None, what: str = ""):
        self.op, self.total, self.progress, self.cancel, self.what = op, total, progress, cancel, what
        self.start_hvps = op.hvps
        self.t0 = time.perf_counter()

    @property
    def hvps(self) -> int:
        return self.op.hvps - self.start_hvps

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    def check(self, partial=None) -> None:
        if is_cancelled(self.cancel):
            raise Cancelled(f"{self.what} cancelled after {self.hvps} HVPs", partial=partial)

    def report(self) -> None:
        if self.progress is not None:
            self.progress(self.hvps, max(self.total, self.hvps))

    def matvec(self, v):
        self.check()
        out = self.op.matvec(v)
        self.report()
        return out

    def matmat(self, V):
        self.check()
        out = self.op.matmat(V)
        self.report()
        return out


def residuals(op, vals: np.ndarray, vecs: np.ndarray, watch: Watch) -> np.ndarray:
    """``||H u_i - lambda_i u_i||`` [k] for unit rows ``vecs`` [k, P]; k HVPs through ``watch``."""
    if len(vals) == 0:
        return np.zeros(0)
    HV = watch.matmat(vecs)
    return np.linalg.norm(HV - vals[:, None] * vecs, axis=1)


def start_vector(P: int, v0, seed: int) -> np.ndarray:
    """A Lanczos start [P]: ``v0`` (rows [j, P] are summed) or, if unusable, a seeded Gaussian."""
    if v0 is None:
        return np.random.default_rng(seed).standard_normal(P)
    v = np.asarray(v0, dtype=np.float64)
    if v.ndim == 2:  # several previous eigenvectors: start in their span
        v = v.sum(0)
    v = v.reshape(-1)
    if v.size != P:
        raise LandscapeError(f"start vector has {v.size} numbers, the operator {P}")
    if not np.all(np.isfinite(v)) or np.linalg.norm(v) == 0:
        return np.random.default_rng(seed).standard_normal(P)
    return v


def default_tol(op) -> float:
    """ARPACK's default relative tolerance for the operator's precision."""
    return 1e-8 if getattr(op, "dtype_name", "float64") == "float64" else 1e-5


def top_eigenpairs(op, k: int = 5, tol: float | None = None, v0=None, which: str = "LA",
                   progress: ProgressFn | None = None, cancel=None, ncv: int | None = None,
                   maxiter: int | None = None, seed: int = 0) -> EigenResult:
    """The k algebraically largest (``which="LA"``), smallest (``"SA"``) or largest-magnitude
    (``"LM"``) eigenpairs of ``H`` by implicitly restarted Lanczos (ARPACK ``eigsh``).

    Args:
        op: a :class:`HessianOperator` (or any operator with ``n_params``/``matvec``/``hvps``).
        k: number of eigenpairs.
        tol: ARPACK's relative tolerance: it stops when every Ritz pair has an estimated
            residual ``<= tol * |lambda|``. Default 1e-8 (float64) or 1e-5 (float32).
            Eigenvalue errors are about ``residual^2 / gap``, far below ``tol``.
        v0: warm start, a vector [P] or previous eigenvectors [j, P] (their sum is used);
            default a seeded Gaussian vector.
        ncv: Lanczos basis size (default ARPACK's ``max(2k+1, 20)``, capped at P).
        maxiter: bound on ARPACK restarts (default 200; each adds about ``ncv - k`` HVPs).
            Unconverged, the converged pairs found so far come back with
            ``meta["converged"] = False``.
        progress, cancel: see :class:`Watch`; a cancel raises :class:`Cancelled`.

    Returns an :class:`EigenResult`, eigenvalues sorted descending; residuals measured with k
    extra HVPs (included in ``hvps``; ``meta["hvps_lanczos"]`` is the Lanczos part).
    Degenerate sizes (``k >= P - 1``) fall back to the dense matrix from P HVPs.
    """
    op = as_operator(op)
    P = op.n_params
    k = int(k)
    if k < 1 or k > P:
        raise LandscapeError(f"k must be between 1 and the parameter count {P}, got {k}")
    if which not in ("LA", "SA", "LM"):
        raise LandscapeError(f"which must be 'LA', 'SA' or 'LM', got {which!r}")
    tol = default_tol(op) if tol is None else float(tol)
    if ncv is None:
        ncv = max(2 * k + 1, 20)
    ncv = int(min(max(ncv, k + 2), P))
    watch = Watch(op, total=ncv + 2 * k, progress=progress, cancel=cancel, what="top eigenpairs")
    converged = True
    if k >= P - 1 or ncv <= k + 1:
        H = watch.matmat(np.eye(P))
        ev, U = np.linalg.eigh(0.5 * (H + H.T))
        order = {"LA": np.argsort(-ev), "SA": np.argsort(ev),
                 "LM": np.argsort(-np.abs(ev))}[which][:k]
        vals, vecs = ev[order], U[:, order].T
        method = "dense"
    else:
        L = spla.LinearOperator((P, P), matvec=watch.matvec, dtype=np.float64)
        start = start_vector(P, v0, seed)
        try:
            vals, V = spla.eigsh(L, k=k, which=which, tol=tol, v0=start, ncv=ncv,
                                 maxiter=200 if maxiter is None else int(maxiter))
        except spla.ArpackNoConvergence as e:
            converged = False
            vals, V = e.eigenvalues, e.eigenvectors
            if len(vals) == 0:
                raise LandscapeError(
                    f"Lanczos did not converge to any eigenpair within {watch.hvps} HVPs; "
                    "raise maxiter or tol") from None
        vecs = np.asarray(V).T
        method = "lanczos"
    order = np.argsort(-vals)
    vals, vecs = np.asarray(vals, dtype=np.float64)[order], vecs[order]
    vecs = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    hvps_lanczos = watch.hvps
    res = residuals(op, vals, vecs, watch)
    meta = result_meta(op, watch.hvps, watch.seconds, hvps_lanczos=hvps_lanczos,
                 hvps_residuals=watch.hvps - hvps_lanczos, tol=tol, which=which, ncv=ncv,
                 method=method, converged=converged, k=k)
    return EigenResult(vals, vecs, res, watch.hvps, watch.seconds, meta)


def smallest_eigenvalue(op, tol: float | None = None, v0=None, progress=None, cancel=None,
                        ncv: int | None = None, maxiter: int | None = None,
                        seed: int = 0) -> EigenResult:
    """The most negative (algebraically smallest) eigenpair of ``H`` (``which="SA"``).

    The low edge of a network Hessian sits in its dense bulk, so Lanczos converges slowly
    there; the default basis is larger (``ncv=40``) and ``maxiter`` bounds the work. When
    ARPACK stops unconverged the best Ritz pair is returned with ``meta["converged"] =
    False``; its measured residual says how far it is from an eigenpair.
    """
    op = as_operator(op)
    return top_eigenpairs(op, k=1, tol=tol, v0=v0, which="SA", progress=progress, cancel=cancel,
                          ncv=ncv if ncv is not None else min(40, op.n_params),
                          maxiter=maxiter if maxiter is not None else 50, seed=seed)
