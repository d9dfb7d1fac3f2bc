r"""Flatness readouts beside a spectrum, each with what a reparameterisation does to it.

Dinh, Pascanu, Bengio & Bengio (2017), *Sharp minima can generalize for deep nets*: a ReLU
network's function is unchanged by ``W_l -> a W_l``, ``W_{l+1} -> W_{l+1} / a``, yet that
move scales the Hessian's blocks by ``1/a^2`` and ``a^2``, so any measure in raw parameter
units can be made as sharp or as flat as one likes. The readouts (for the operator ``A`` in
use: ``H``, ``G`` or the empirical Fisher):

- ``top_eigenvalue`` ``lambda_1(A)`` (loss / parameter^2);
- ``trace`` ``tr A`` (loss / parameter^2), from the report's estimator;
- ``adaptive_sharpness``: ``lambda_1(T A T)`` with ``T = diag(|theta|)`` (loss units): the
  second-order form of adaptive sharpness (Kwon et al. 2021; Andriushchenko et al. 2023),
  ``max_{||delta / |theta| || <= rho} L(theta + delta) - L(theta) ~ rho^2/2 lambda_1(T H T)``;
  it is unchanged by the rescalings above (``T`` scales by ``a`` where ``A`` scales by
  ``1/a^2``);
- ``basin_width``: along the unit top eigenvector ``u`` of ``A``, the distance
  ``t_- + t_+`` between the first points on either side where ``L(theta + t u)`` reaches
  ``L(theta) + delta`` (``delta = 0.1`` loss units; doubling from the quadratic guess
  ``sqrt(2 delta / lambda_1)``, then 40 bisections), in parameter units; ``inf`` on a side
  where the loss never rises that much within ``t_max``. ``basin_quadratic`` is
  ``2 sqrt(2 delta / lambda_1)``, the width a quadratic with that curvature would have.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from landscape.hessian.lanczos import top_eigenpairs
from landscape.hessian.results import Stored, result_meta
from landscape.hessian.tracking import ScaledOperator

__all__ = ["NOTES", "FlatnessResult", "basin_width", "adaptive_sharpness", "flatness_readouts"]

#: What a function-preserving reparameterisation does to each readout (Dinh et al. 2017).
NOTES = {
    "top_eigenvalue": "Not invariant: rescaling one ReLU layer by a and the next by 1/a keeps "
                      "the function but can make λ1 as large as you like.",
    "trace": "Not invariant: the same layer rescaling multiplies each block's trace by 1/a² "
             "or a², so the sum can be made arbitrarily large.",
    "adaptive_sharpness": "Invariant to those layer and neuron rescalings (|θ| scales "
                          "opposite to the curvature), though not to every "
                          "reparameterisation.",
    "basin_width": "Not invariant: measured in parameter units along one direction, so a "
                   "rescaling stretches or squeezes it; compare only within one "
                   "parameterisation.",
}


@dataclass
class FlatnessResult(Stored):
    """The readouts of the module docstring. ``ts`` [S] offsets along the top eigenvector
    (parameter units) and ``losses`` [S] the loss there: the slice the basin is read from."""

    ARRAYS: ClassVar[tuple[str, ...]] = ("ts", "losses")

    ts: np.ndarray
    losses: np.ndarray
    operator: str
    top_eigenvalue: float
    trace: float | None
    adaptive_sharpness: float
    adaptive_residual: float
    basin_width: float
    basin_left: float
    basin_right: float
    basin_quadratic: float
    delta: float
    loss: float
    meta: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """The readouts as JSON-able scalars (``inf`` as None), with :data:`NOTES`."""
        def f(x):
            return None if x is None or not math.isfinite(x) else float(x)
        return {"operator": self.operator, "top_eigenvalue": f(self.top_eigenvalue),
                "trace": f(self.trace), "adaptive_sharpness": f(self.adaptive_sharpness),
                "basin_width": f(self.basin_width), "basin_left": f(self.basin_left),
                "basin_right": f(self.basin_right), "basin_quadratic": f(self.basin_quadratic),
                "basin_delta": self.delta, "notes": NOTES}


def _crossing(loss_at, theta, u, level, t0, sign, t_max, iters=40):
    """Smallest ``t`` found with ``loss(theta + sign t u) >= level``: doubling, then bisection."""
    lo, t = 0.0, t0
    while loss_at(theta + sign * t * u) < level:
        lo, t = t, 2 * t
        if t > t_max:
            return math.inf
    hi = t
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if loss_at(theta + sign * mid * u) >= level:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def basin_width(op, u: np.ndarray, lam: float, delta: float = 0.1,
                t_max: float = 1e3) -> tuple[float, float, float]:
    """``(width, t_-, t_+)`` of the basin along the unit vector ``u`` [P] at ``L + delta``
    (parameter units); ``op`` needs ``point()`` and ``loss_at(theta)``."""
    theta = op.point()
    u = np.asarray(u, dtype=np.float64).reshape(-1)
    u = u / np.linalg.norm(u)
    level = op.loss_at(theta) + delta
    t0 = 0.25 * math.sqrt(2 * delta / lam) if lam > 0 else 0.25
    left = _crossing(op.loss_at, theta, u, level, t0, -1.0, t_max)
    right = _crossing(op.loss_at, theta, u, level, t0, 1.0, t_max)
    return left + right, left, right


def adaptive_sharpness(op, seed: int = 0, cancel=None) -> tuple[float, float]:
    """``(lambda_1(T A T), its residual)`` with ``T = diag(|theta|)`` (loss units)."""
    scaled = ScaledOperator(op, np.abs(op.point()))
    e = top_eigenpairs(scaled, k=1, seed=seed, cancel=cancel)
    return float(e.eigenvalues[0]), float(e.residuals[0])


def flatness_readouts(op, top_eigenvalue: float, top_vector: np.ndarray, trace: float | None = None,
             operator: str = "hessian", delta: float = 0.1, slice_points: int = 41,
             seed: int = 0, cancel=None) -> FlatnessResult:
    """The four readouts for ``op`` at its point, given its top eigenpair (from the report)
    and its trace estimate."""
    t0, h0 = time.perf_counter(), op.hvps
    lam = float(top_eigenvalue)
    adapt, adapt_res = adaptive_sharpness(op, seed=seed, cancel=cancel)
    width, left, right = basin_width(op, top_vector, lam, delta)
    quad = 2 * math.sqrt(2 * delta / lam) if lam > 0 else math.inf
    span = max(x for x in (left, right, quad, 1e-3) if math.isfinite(x))
    ts = np.linspace(-1.5 * span, 1.5 * span, int(slice_points))
    theta = op.point()
    u = np.asarray(top_vector, dtype=np.float64) / np.linalg.norm(top_vector)
    losses = np.array([op.loss_at(theta + t * u) for t in ts])
    meta = result_meta(op, op.hvps - h0, time.perf_counter() - t0, adaptive_residual=adapt_res)
    return FlatnessResult(ts, losses, operator, lam, None if trace is None else float(trace),
                          adapt, adapt_res, width, left, right, quad, float(delta),
                          float(op.loss_at(theta)), meta)
