r"""The eigenvalue density of ``H`` by stochastic Lanczos quadrature (SLQ; Golub & Meurant
2010; Ghorbani, Krishnan & Xiao 2019).

For a unit probe ``v`` and ``m`` Lanczos steps with full reorthogonalisation, the tridiagonal
``T_m = S diag(theta) S^T`` gives the Gauss quadrature ``v^T f(H) v ~ sum_j tau_j f(theta_j)``
with ``tau_j = S[0, j]^2``: the spectral measure seen from ``v`` as m weighted nodes. Averaging
over Rademacher probes and replacing each node by a Gaussian of width ``sigma`` gives a smooth
density (eigenvalues per unit eigenvalue, normalised to integrate to 1; eigenvalues in loss /
parameter^2). Costs ``probes * m`` HVPs.

- :func:`lanczos_quadrature`: one probe's nodes and weights.
- :func:`slq_sigma`: the width rule ``(max node - min node) / (2 m)``.
- :func:`slq_smooth`: per-probe quadratures to a density on a grid (shared with the
  distributed SLQ, so both agree for the same probes).
- :func:`slq_density`: the whole thing on an operator.
- :func:`wasserstein1`: a distance between two weighted point sets, to score a density
  against an exact spectrum.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg

from landscape.core.errors import LandscapeError
from landscape.hessian.lanczos import Watch
from landscape.hessian.operator import as_operator
from landscape.hessian.results import DensityResult, result_meta
from landscape.hessian.trace import rademacher

__all__ = ["lanczos_quadrature", "slq_sigma", "slq_density", "slq_smooth", "wasserstein1"]


def lanczos_quadrature(watch: Watch, v: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """m steps of Lanczos with full reorthogonalisation from unit ``v``; returns the Ritz
    nodes [j] and Gauss weights [j] (j <= m; fewer on an invariant subspace)."""
    P = v.size
    V = np.zeros((m, P))
    V[0] = v / np.linalg.norm(v)
    alpha, beta = [], []
    for j in range(m):
        w = watch.matvec(V[j])
        a = float(V[j] @ w)
        alpha.append(a)
        if j == m - 1:
            break
        w = w - a * V[j] - (beta[-1] * V[j - 1] if j > 0 else 0.0)
        for _ in range(2):  # "twice is enough" (Kahan/Parlett)
            w = w - V[:j + 1].T @ (V[:j + 1] @ w)
        b = float(np.linalg.norm(w))
        scale = max(abs(a), *(abs(x) for x in beta), 1e-300)
        if b <= 1e-10 * scale:  # invariant subspace: the quadrature is exact already
            break
        beta.append(b)
        V[j + 1] = w / b
    alpha_arr = np.asarray(alpha)
    beta_arr = np.asarray(beta[:len(alpha) - 1])
    if len(alpha_arr) == 1:
        return alpha_arr, np.ones(1)
    theta, S = scipy.linalg.eigh_tridiagonal(alpha_arr, beta_arr)
    return theta, S[0] ** 2


def slq_sigma(nodes: np.ndarray, lanczos_steps: int) -> float:
    """The smoothing width rule: ``sigma = (theta_max - theta_min) / (2 m)``.

    m Lanczos steps give a Gauss quadrature that is exact for polynomials of degree up to
    ``2m - 1``, and a Gaussian of width sigma over a spectrum of range R needs a polynomial of
    degree about ``R / sigma`` to be represented; so ``R / (2m)`` is the narrowest kernel the
    Krylov space can integrate faithfully. Narrower kernels only show the m quadrature spikes
    per probe; wider ones blur what the Krylov space did resolve. More steps, narrower kernel.
    (The smoothing moves mass by about ``0.8 sigma`` in Wasserstein-1.)
    """
    nodes = np.asarray(nodes, dtype=np.float64).reshape(-1)
    spread = float(nodes.max() - nodes.min()) if nodes.size else 0.0
    if spread <= 0:
        spread = max(abs(float(nodes.max())) if nodes.size else 1.0, 1e-12)
    return spread / (2 * max(int(lanczos_steps), 1))


def slq_density(op, probes: int = 5, lanczos_steps: int = 80, seed: int = 0, grid=None,
                sigma: float | None = None, grid_points: int = 2001, progress=None,
                cancel=None) -> DensityResult:
    """Spectral density of ``H`` by stochastic Lanczos quadrature.

    Each of ``probes`` Rademacher probes (normalised) runs ``lanczos_steps`` (m) Lanczos steps
    with full reorthogonalisation (m HVPs; m is capped at P). The density is
    ``phi(t) = (1/n_probes) sum_p sum_j tau_pj N(t; theta_pj, sigma^2)``, with ``sigma`` from
    :func:`slq_sigma` unless given, evaluated on ``grid`` (default ``grid_points`` points over
    ``[min theta - 5 sigma, max theta + 5 sigma]``) and renormalised to integrate to 1 on it
    (trapezoid rule). Plot it on a log y-axis: the outliers carry weights around ``1/P``.

    ``meta["trace_estimate"] = P * mean_p sum_j tau_pj theta_pj`` is the SLQ trace estimate.
    """
    op = as_operator(op)
    P = op.n_params
    n_v = int(probes)
    m = min(int(lanczos_steps), P)
    if n_v < 1 or m < 1:
        raise LandscapeError("SLQ needs at least one probe and one Lanczos step")
    watch = Watch(op, total=n_v * m, progress=progress, cancel=cancel, what="SLQ density")
    rng = np.random.default_rng(seed)
    nodes = np.zeros((n_v, m))
    weights = np.zeros((n_v, m))
    for p in range(n_v):
        z = rademacher(rng, 1, P)[0]
        theta, tau = lanczos_quadrature(watch, z, m)
        nodes[p, :len(theta)] = theta
        nodes[p, len(theta):] = theta[-1] if len(theta) else 0.0
        weights[p, :len(tau)] = tau
    grid, dens, sig, extra = slq_smooth(nodes, weights, m, P, grid, sigma, grid_points)
    meta = result_meta(op, watch.hvps, watch.seconds, probes=n_v, lanczos_steps=m, seed=seed, **extra)
    return DensityResult(grid, dens, nodes, weights, sig, watch.hvps, watch.seconds, meta)


def slq_smooth(nodes: np.ndarray, weights: np.ndarray, lanczos_steps: int, n_params: int,
               grid=None, sigma: float | None = None, grid_points: int = 2001):
    """Combine per-probe Gauss quadratures (``nodes``/``weights`` [n_probes, m]) into a
    smoothed density: returns ``(grid, density, sigma, meta)``. Shared by the local and the
    distributed SLQ, so both give the same answer for the same probes."""
    n_v = nodes.shape[0]
    used = weights > 0
    sig = slq_sigma(nodes[used], lanczos_steps) if sigma is None else float(sigma)
    if not sig > 0:
        raise LandscapeError(f"sigma must be positive, got {sig}")
    if grid is None:
        lo, hi = nodes[used].min() - 5 * sig, nodes[used].max() + 5 * sig
        grid = np.linspace(lo, hi, int(grid_points))
    grid = np.asarray(grid, dtype=np.float64)
    dens = np.zeros_like(grid)
    for th, w in zip(nodes[used], weights[used]):
        dens += w * np.exp(-0.5 * ((grid - th) / sig) ** 2)
    dens /= n_v * sig * math.sqrt(2 * math.pi)
    area = float(np.trapezoid(dens, grid)) if len(grid) > 1 else 0.0
    if area > 0:
        dens = dens / area
    meta = {"sigma": sig,
            "sigma_rule": "(max node - min node) / (2 lanczos_steps)" if sigma is None else "given",
            "trace_estimate": float(n_params * np.mean((nodes * weights).sum(1))),
            "mass_on_grid_before_renorm": area}
    return grid, dens, sig, meta


def wasserstein1(values_a, values_b, weights_a=None, weights_b=None) -> float:
    """Wasserstein-1 distance between two weighted 1-D point sets (eigenvalue units); e.g. an
    SLQ quadrature (:meth:`DensityResult.discrete`) against an exact spectrum."""
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(np.asarray(values_a).reshape(-1),
                                      np.asarray(values_b).reshape(-1), weights_a, weights_b))
