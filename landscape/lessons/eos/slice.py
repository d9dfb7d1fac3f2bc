r"""The loss along the top Hessian eigenvector: ``L(theta_s + t u_1(s))`` at measured steps.

At the edge of stability the iterate sits across a valley whose curvature along ``u_1`` is
about the threshold and jumps from side to side: the slice's curvature at ``t = 0`` is the
sharpness ``lambda_1``, its slope ``g . u_1``, and the update moves to ``t = d . u_1``.
``t`` is in parameter units along the unit vector ``u_1``; the loss in loss units.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from landscape.core import losses
from landscape.core.device import DTYPES
from landscape.core.errors import LandscapeError
from landscape.lessons.eos.config import EosConfig, build_model, is_positive, is_whole, load_data
from landscape.lessons.eos.result import EosResult


@dataclass
class SliceResult:
    """``loss`` [J, M]: the full-batch loss at ``theta_s + t u_1(s)`` for ``t`` in ``t`` [M]
    (parameter units along the unit top eigenvector) at each step of ``steps`` [J];
    ``sharpness`` [J] (lambda_1 there: the curvature of the slice at t = 0), ``grad_dot_u1``
    [J] (its slope at t = 0) and ``next_t`` [J] (where the update moved along u_1)."""

    t: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    sharpness: np.ndarray
    grad_dot_u1: np.ndarray
    next_t: np.ndarray
    threshold: float
    meta: dict = field(default_factory=dict)


def eigen_slice(result: EosResult, steps, radius: float | None = None, points: int = 41,
                model: nn.Module | None = None, data=None) -> SliceResult:
    """Loss along the top Hessian eigenvector at measured steps (nearest to each of ``steps``).

    ``radius`` (parameter units) defaults to ``max(4 max |next_t|, 2 sqrt(2 L_0 / lambda_1))``
    over the chosen steps, so the slice shows both the step taken and the bowl. The model and
    data are rebuilt from the result's config unless given (pass the same ones as the run).
    """
    if result.params.size == 0:
        raise LandscapeError("this result holds no parameter snapshots (read from .json?); "
                             "rerun it or load the .npz")
    if not is_whole(points) or points < 3:
        raise LandscapeError(f"a slice needs at least 3 points, got {points}")
    idx = sorted({result.index_of(int(s)) for s in np.atleast_1d(steps)})
    if not idx:
        raise LandscapeError("choose at least one step")
    cfg = EosConfig.from_dict(result.meta["config"])
    dtype = DTYPES[cfg.dtype]
    m = copy.deepcopy(model) if model is not None else build_model(cfg)
    d = data if data is not None else load_data(cfg)
    m = m.to(dtype).eval()
    X, y = d.X.to(dtype), d.y
    if y.is_floating_point():
        y = y.to(dtype)
    params = [p for p in m.parameters() if p.requires_grad]
    sizes = [p.numel() for p in params]
    if sum(sizes) != result.params.shape[1]:
        raise LandscapeError("the model does not match the result's parameter count")
    next_t = result.update_dot_u1[idx]
    lam = result.hessian_sharpness[idx]
    if radius is None:
        bowl = [2 * math.sqrt(2 * max(result.loss[min(int(result.eig_steps[i]), len(result.loss) - 1)],
                                      1e-12) / lv) if lv > 0 else 1.0 for i, lv in zip(idx, lam)]
        radius = max(4 * float(np.max(np.abs(next_t))), float(min(bowl)))
    if not is_positive(radius):
        raise LandscapeError(f"the slice radius must be a positive number, got {radius}")
    t = np.linspace(-radius, radius, int(points))
    out = np.empty((len(idx), len(t)))
    with torch.no_grad():
        for j, i in enumerate(idx):
            theta = torch.as_tensor(result.params[i], dtype=torch.float64)
            u = torch.as_tensor(result.u1[i], dtype=torch.float64)
            u = u / u.norm()
            for c, tc in enumerate(t):
                vec = (theta + tc * u).to(dtype)
                s = 0
                for p, n in zip(params, sizes):
                    p.copy_(vec[s:s + n].view_as(p))
                    s += n
                out[j, c] = losses.loss(m(X), y, cfg.loss).item()
    return SliceResult(t=t, steps=result.eig_steps[idx].copy(), loss=out, sharpness=lam,
                       grad_dot_u1=result.grad_dot_u1[idx], next_t=next_t,
                       threshold=result.threshold,
                       meta={"radius": float(radius), "points": int(points),
                             "hessian_label": result.meta.get("hessian_label")})
