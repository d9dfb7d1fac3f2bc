r"""The 1-D lesson: an optimizer on the quadratic ``f(x) = sum_i lambda_i x_i^2 / 2``.

Where the thresholds come from. GD: ``x <- (1 - eta lambda) x``, so ``|1 - eta lambda| < 1``
iff ``lambda < 2 / eta``: monotone convergence below ``eta = 1/lambda``, oscillating up to
``2/lambda``, a period-2 orbit at it, divergence above. Heavy ball and Adam-style EMA momentum
(with a frozen diagonal preconditioner ``P``) are linear maps of the state ``(x, v)`` per
step; the spectral radius of that 2x2 matrix (the ``rate``) is below 1 iff ``lambda`` is below
:func:`~landscape.lessons.eos.config.threshold` (for Adam: ``lambda / P``).

Units: ``x`` in parameter units, ``f`` in loss units, ``lambda`` in loss per squared
parameter unit. Pure numpy, instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from landscape.core.errors import LandscapeError
from landscape.lessons.eos.config import OPTIMIZERS, is_whole, threshold


@dataclass
class QuadraticResult:
    """Iterates on ``f(x) = sum_i lambda_i x_i^2 / 2``: ``t`` [T+1], ``x`` [T+1] (1-D) or
    [T+1, d], ``f`` [T+1], the ``threshold`` on lambda (divided by the preconditioner for
    adam), the ``rate`` (spectral radius of the linear iteration; < 1 converges) and a
    plain-words ``regime``."""

    t: np.ndarray
    x: np.ndarray
    f: np.ndarray
    lam: np.ndarray
    lr: float
    optimizer: str
    threshold: float
    rate: float
    regime: str
    meta: dict = field(default_factory=dict)


def _iteration_matrix(optimizer: str, a: float, lr: float, beta: float) -> np.ndarray:
    """Linear map of the state per step for one curvature ``a`` (already preconditioned)."""
    if optimizer == "gd":
        return np.array([[1.0 - lr * a]])
    if optimizer == "momentum":  # state (x, v): v' = beta v + a x; x' = x - lr v'
        return np.array([[1.0 - lr * a, -lr * beta], [a, beta]])
    # adam with a frozen preconditioner: m' = beta m + (1 - beta) a x; x' = x - lr m'
    return np.array([[1.0 - lr * (1 - beta) * a, -lr * beta], [(1 - beta) * a, beta]])


def quadratic_iterates(lam, lr: float, steps: int = 30, x0=1.0, optimizer: str = "gd",
                       momentum: float = 0.9, beta1: float = 0.9, precond=1.0) -> QuadraticResult:
    """Iterate an optimizer on ``f(x) = sum_i lambda_i x_i^2 / 2`` from ``x0``.

    ``gd``: ``x <- (1 - lr lambda) x``: monotone convergence for ``lr < 1/lambda``, oscillating
    convergence up to ``2/lambda``, a period-2 orbit at it, divergence above.
    ``momentum``: heavy ball ``v <- beta v + g, x <- x - lr v``; stable iff
    ``lambda < (2 + 2 beta)/lr``. ``adam``: Adam-style EMA momentum with a *frozen* diagonal
    preconditioner ``P`` (``precond``): ``m <- beta1 m + (1 - beta1) g, x <- x - lr m / P``;
    stable iff ``lambda / P < (2 + 2 beta1)/((1 - beta1) lr)``. Pure numpy, instant.
    """
    if optimizer not in OPTIMIZERS:
        raise LandscapeError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    lam_arr = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    if lam_arr.ndim != 1 or lam_arr.size == 0 or not np.all(np.isfinite(lam_arr)):
        raise LandscapeError(f"lambda must be one or more finite numbers, got {lam}")
    if np.any(lam_arr < 0):
        raise LandscapeError("this lesson needs lambda >= 0 (a bowl, not a saddle)")
    thr = threshold(optimizer, lr, momentum, beta1)
    if not is_whole(steps) or not 1 <= steps <= 100_000:
        raise LandscapeError(f"steps must be 1..100000, got {steps}")
    pre = np.broadcast_to(np.asarray(precond, np.float64), lam_arr.shape).copy()
    if optimizer == "adam" and not np.all(pre > 0):
        raise LandscapeError("the preconditioner must be positive")
    if optimizer != "adam":
        pre[:] = 1.0
    a = lam_arr / pre
    x = np.broadcast_to(np.asarray(x0, np.float64), lam_arr.shape).astype(np.float64).copy()
    beta = momentum if optimizer == "momentum" else beta1
    buf = np.zeros_like(x)
    xs = [x.copy()]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(int(steps)):
            g = lam_arr * x
            if optimizer == "gd":
                x = x - lr * g
            elif optimizer == "momentum":
                buf = beta * buf + g
                x = x - lr * buf
            else:
                buf = beta * buf + (1 - beta) * g
                x = x - lr * buf / pre
            xs.append(x.copy())
    X = np.asarray(xs)
    f = 0.5 * (lam_arr * X ** 2).sum(1) if X.size else np.zeros(0)
    rate = max(float(np.max(np.abs(np.linalg.eigvals(_iteration_matrix(optimizer, ai, lr, beta)))))
               for ai in a)
    regime = _regime(optimizer, float(a.max()), lr, thr, rate)
    return QuadraticResult(t=np.arange(len(X)), x=X[:, 0] if lam_arr.size == 1 else X, f=f,
                           lam=lam_arr, lr=float(lr), optimizer=optimizer, threshold=thr, rate=rate,
                           regime=regime, meta={"precond": pre.tolist(), "momentum": momentum,
                                                "beta1": beta1, "x0": np.asarray(x0).tolist()})


def _regime(optimizer: str, a: float, lr: float, thr: float, rate: float) -> str:
    close = 1e-9 * max(1.0, thr)
    if abs(a - thr) <= close:
        return "at the threshold: a period-2 oscillation that neither grows nor shrinks"
    if a > thr:
        return "diverges: lambda is above the threshold, each step overshoots further"
    if optimizer == "gd":
        if abs(lr * a - 1.0) <= 1e-9:
            return "converges in one step (eta = 1/lambda)"
        if lr * a < 1:
            return "converges monotonically (eta < 1/lambda)"
        return "converges while oscillating (1/lambda < eta < 2/lambda)"
    return f"converges (rate {rate:.3f} per step)"
