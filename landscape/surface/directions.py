"""Directions in parameter space: random filter-normalized, PCA of a trajectory,
interpolation between models, and the plane through three models.

All directions are flat vectors of shape ``[P]`` in the order of a :class:`~landscape.core.params.Layout`.

Filter normalization (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets"):
draw ``d ~ N(0, I)`` shaped like each parameter tensor ``w``; then

- ``norm="filter"``: for every tensor with 2+ dims and every index ``i`` of dim 0 (a conv
  filter ``[in, kh, kw]`` or a row of a linear weight), ``d[i] <- d[i] * ||w[i]|| / (||d[i]|| + 1e-10)``;
- ``norm="layer"``: the same with the whole tensor as one unit;
- ``norm="none"``: the raw Gaussian;
- 1-D tensors (biases, BatchNorm scale/shift): zero under ``ignore="biasbn"`` (default);
  otherwise ``d = w`` (the original code's choice).

So every filter of the direction has the norm of the matching filter of the weights, and
the surface ``L(w + a dx + b dy)`` is comparable across networks of different scale.

PCA of a trajectory: with snapshots ``theta_0..theta_T`` (final ``theta_T``), the matrix
``M = [theta_i - theta_T]`` (biases/BN columns zeroed under biasbn) is centred over rows as
PCA does; its top two right singular vectors are the unit directions. A snapshot's
coordinates are ``(<theta_i - theta_T, u1>, <theta_i - theta_T, u2>)``, so the final model
sits at (0, 0), and its off-plane distance is the norm of what the plane misses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from landscape.core.errors import LandscapeError
from landscape.core.params import Layout

NORMS = ("filter", "layer", "none")
IGNORES = ("biasbn", "none")


def check_options(norm: str, ignore: str) -> None:
    """A one-line error for an unknown normalization or ignore rule."""
    if norm not in NORMS:
        raise LandscapeError(f"unknown normalization {norm!r}; choose one of {NORMS}")
    if ignore not in IGNORES:
        raise LandscapeError(f"unknown ignore rule {ignore!r}; choose one of {IGNORES}")


def normalize_direction(d: torch.Tensor, w: torch.Tensor, layout: Layout,
                        norm: str = "filter", ignore: str = "biasbn") -> torch.Tensor:
    """Apply the normalization and bias/BN rule of the module docstring to a raw flat ``d``."""
    check_options(norm, ignore)
    out = torch.empty_like(d)
    for sl, shape in zip(layout.slices().values(), layout.shapes):
        di = d[sl].view(shape)
        wi = w[sl].view(shape)
        oi = out[sl].view(shape)
        if len(shape) < 2:
            if ignore == "biasbn":
                oi.zero_()
            else:
                oi.copy_(wi)
            continue
        if norm == "none":
            oi.copy_(di)
        elif norm == "layer":
            oi.copy_(di * (wi.norm() / (di.norm() + 1e-10)))
        else:
            dn = di.reshape(shape[0], -1).norm(dim=1)
            wn = wi.reshape(shape[0], -1).norm(dim=1)
            scale = (wn / (dn + 1e-10)).view(-1, *([1] * (len(shape) - 1)))
            oi.copy_(di * scale)
    return out


def random_direction(w: torch.Tensor, layout: Layout, seed: int = 0, norm: str = "filter",
                     ignore: str = "biasbn") -> torch.Tensor:
    """A Gaussian direction for the parameter point ``w`` [P], normalized as documented."""
    check_options(norm, ignore)
    g = torch.Generator().manual_seed(int(seed))
    d = torch.randn(w.shape, generator=g, dtype=torch.float64).to(dtype=w.dtype, device=w.device)
    return normalize_direction(d, w, layout, norm, ignore)


def random_plane(w: torch.Tensor, layout: Layout, seed: int = 0, norm: str = "filter",
                 ignore: str = "biasbn", orthogonalize: bool = False):
    """Two random directions ``(dx, dy)`` from seeds ``seed`` and ``seed + 1``.

    With ``orthogonalize`` ``dy`` loses its component along ``dx`` after normalization and
    is rescaled to its former norm (filter norms then hold only approximately)."""
    dx = random_direction(w, layout, seed, norm, ignore)
    dy = random_direction(w, layout, seed + 1, norm, ignore)
    if orthogonalize:
        n = dy.norm()
        dy = dy - (dy @ dx) / (dx @ dx) * dx
        dy = dy * (n / (dy.norm() + 1e-30))
    return dx, dy


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """cos of the angle between two flat vectors (0 for a zero vector)."""
    na, nb = a.norm().item(), b.norm().item()
    if na == 0 or nb == 0:
        return 0.0
    return float((a.double() @ b.double()).item() / (na * nb))


@dataclass
class PCAPlane:
    """Top-2 PCA directions of a trajectory and where each snapshot sits.

    ``dx``, ``dy``: unit directions [P]; ``explained`` [2]: explained variance ratios;
    ``coords`` [T, 2]; ``off_plane`` [T]: distance of each snapshot from the plane through
    the final model; ``steps`` [T]."""

    dx: torch.Tensor
    dy: torch.Tensor
    explained: np.ndarray
    coords: np.ndarray
    off_plane: np.ndarray
    steps: np.ndarray
    meta: dict = field(default_factory=dict)


def pca_directions(snapshots, layout: Layout, steps=None, ignore: str = "biasbn") -> PCAPlane:
    """PCA plane of a trajectory ``snapshots`` [T, P] whose last row is the final model."""
    check_options("filter", ignore)
    S = torch.as_tensor(np.asarray(snapshots), dtype=torch.float64)
    if S.ndim != 2 or S.shape[0] < 3:
        raise LandscapeError(f"PCA directions need at least 3 snapshots, got {S.shape[0] if S.ndim else 0}")
    if S.shape[1] != layout.n_params:
        raise LandscapeError(f"snapshots have {S.shape[1]} parameters, the model {layout.n_params}")
    final = S[-1]
    M = S - final
    if ignore == "biasbn":
        M[:, layout.biasbn_mask()] = 0.0
    Mc = M - M.mean(0, keepdim=True)
    _, sv, Vh = torch.linalg.svd(Mc, full_matrices=False)
    var = sv ** 2
    total = var.sum().item()
    if total == 0:
        raise LandscapeError("the trajectory does not move: all snapshots are equal")
    u1, u2 = Vh[0], Vh[1]
    # Sign convention: the first snapshot has non-negative coordinates.
    if (M[0] @ u1) < 0:
        u1 = -u1
    if (M[0] @ u2) < 0:
        u2 = -u2
    coords = torch.stack([M @ u1, M @ u2], 1)
    resid = M - coords[:, :1] * u1 - coords[:, 1:] * u2
    full = S - final  # off-plane distance of the real snapshot, biases included
    off = (full - (full @ u1)[:, None] * u1 - (full @ u2)[:, None] * u2).norm(dim=1)
    del resid
    explained = (var[:2] / total).numpy()
    steps = np.arange(S.shape[0]) if steps is None else np.asarray(steps)
    return PCAPlane(u1.to(torch.float32), u2.to(torch.float32), explained, coords.numpy(),
                    off.numpy(), steps, {"ignore": ignore, "n_snapshots": int(S.shape[0])})


def project(thetas, final: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor):
    """Coordinates of points ``thetas`` [T, P] in the plane ``final + a dx + b dy``.

    Solves the 2x2 least-squares system (dx, dy need not be orthogonal or unit). Returns
    ``coords`` [T, 2] and ``off_plane`` [T] distances."""
    T = torch.as_tensor(np.asarray(thetas), dtype=torch.float64) - final.double()
    D = torch.stack([dx.double(), dy.double()], 1)
    G = D.T @ D
    coords = torch.linalg.solve(G, D.T @ T.T).T
    off = (T - coords @ D.T).norm(dim=1)
    return coords.numpy(), off.numpy()


def interpolation_direction(theta_a: torch.Tensor, theta_b: torch.Tensor) -> torch.Tensor:
    """``theta_b - theta_a``: the line ``theta_a + t d`` passes A at t=0 and B at t=1."""
    if theta_a.shape != theta_b.shape:
        raise LandscapeError(f"the two models have {theta_a.numel()} and {theta_b.numel()} "
                             "parameters; interpolation needs the same architecture")
    return theta_b - theta_a


def barrier_height(ts, losses) -> float:
    """max over t in [0, 1] of ``L(t) - ((1 - t) L(0) + t L(1))`` (linear-interpolation
    barrier; 0 when the path is convex between the endpoints). ``ts`` must include 0 and 1."""
    ts = np.asarray(ts, float)
    ls = np.asarray(losses, float)
    i0 = int(np.argmin(np.abs(ts)))
    i1 = int(np.argmin(np.abs(ts - 1)))
    if abs(ts[i0]) > 1e-9 or abs(ts[i1] - 1) > 1e-9:
        raise LandscapeError("the interpolation grid must contain t = 0 and t = 1")
    inside = (ts >= -1e-12) & (ts <= 1 + 1e-12)
    line = (1 - ts) * ls[i0] + ts * ls[i1]
    return float(max(0.0, np.max(ls[inside] - line[inside])))


@dataclass
class ThreeModelPlane:
    """The plane through models A, B, C: origin A, orthonormal ``dx`` (towards B) and
    ``dy`` (Gram-Schmidt of C - A); ``coords`` [3, 2] are A, B, C in that basis."""

    origin: torch.Tensor
    dx: torch.Tensor
    dy: torch.Tensor
    coords: np.ndarray


def plane_through(theta_a, theta_b, theta_c) -> ThreeModelPlane:
    """Gram-Schmidt plane through three parameter points of the same architecture."""
    if not (theta_a.shape == theta_b.shape == theta_c.shape):
        raise LandscapeError("the three models must have the same architecture")
    a, b, c = (t.double() for t in (theta_a, theta_b, theta_c))
    u = b - a
    nu = u.norm()
    if nu == 0:
        raise LandscapeError("models A and B are identical; no plane is defined")
    u = u / nu
    v = (c - a) - ((c - a) @ u) * u
    nv = v.norm()
    if nv < 1e-12 * max(1.0, (c - a).norm().item()):
        raise LandscapeError("the three models lie on one line; no plane is defined")
    v = v / nv
    coords = np.array([[0.0, 0.0], [nu.item(), 0.0],
                       [((c - a) @ u).item(), ((c - a) @ v).item()]])
    dt = theta_a.dtype
    return ThreeModelPlane(theta_a.clone(), u.to(dt), v.to(dt), coords)
