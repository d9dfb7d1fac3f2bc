"""A surface in one call: directions by kind, then the loss on a grid around the model.

``compute(model, data, config)`` picks the directions (:mod:`landscape.surface.directions`)
by ``config.directions``, then :func:`surface` evaluates ``L(center + x dx + y dy)`` on the
grid of ``config`` (Li et al. 2018) with :func:`landscape.surface.evaluate.evaluate_grid`
(or a ``grid_fn`` of the same signature, e.g. a Ray executor) and returns a
:class:`~landscape.surface.result.SurfaceResult`: arrays ``(ny, nx)`` indexed ``[j, i]``
for the point ``(x_i, y_j)``, or ``(nx,)`` for a 1-D slice; ``(0, 0)`` is the model
whenever the range contains 0. With ``config.samples`` the grid is evaluated on a fixed
subset and the subset's loss error against the full data is measured at the centre and
the four corners. :func:`trajectory_losses` gives the real loss of training snapshots.

Progress, cancel (:class:`~landscape.core.errors.Cancelled` with the partial result) and
the coarse-to-fine order come from :mod:`landscape.surface.evaluate`; the caller's model is
never changed (checked by fingerprint).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from landscape.core import models
from landscape.core.data import Dataset, check_fits
from landscape.core.errors import LandscapeError
from landscape.core.params import Layout, fingerprint, flat_params
from landscape.surface import directions as dirs
from landscape.surface.evaluate import evaluate_grid
from landscape.surface.evaluators import PlaneTask, build_evaluator
from landscape.surface.plan import (  # noqa: F401 - also importable from here
    BN_MODES,
    DIRECTIONS,
    MAX_POINTS,
    SurfaceConfig,
    coarse_to_fine,
)
from landscape.surface.result import SurfaceResult


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        return p.dtype
    return torch.float32


def make_task(model: nn.Module, data: Dataset, dx: torch.Tensor, dy: torch.Tensor | None,
              config: SurfaceConfig, w: torch.Tensor | None = None, device=None) -> PlaneTask:
    """The :class:`PlaneTask` of a plane through ``w`` (default: the model's parameters)
    along ``dx``/``dy`` [P] (``dy`` None: all zero), in the model's dtype, on ``device``
    (a private copy of the model there; None keeps it where it is)."""
    dtype = _model_dtype(model)
    w = flat_params(model) if w is None else w
    dy = torch.zeros_like(dx) if dy is None else dy
    d = data.to(dtype=dtype, device=device)
    mv = model if device is None else copy.deepcopy(model).to(device)
    w, dx, dy = (t.to(dtype=dtype, device=device) for t in (w, dx, dy))
    return PlaneTask(mv, w, dx, dy, d.X, d.y, config.loss, config.bn, None, config.method)


def surface(model: nn.Module, data: Dataset, dx: torch.Tensor, dy: torch.Tensor | None,
            config: SurfaceConfig, *, progress=None, cancel=None, device=None,
            center: torch.Tensor | None = None, extra_meta: dict | None = None,
            grid_fn=None) -> SurfaceResult:
    """Evaluate the surface ``L(center + x dx + y dy)`` on ``config``'s grid.

    ``center`` defaults to the model's parameters. ``data`` is the full evaluation set; with
    ``config.samples`` a fixed subset is used and its loss error against the full data is
    measured at the centre and the four corners (``meta["subset_max_abs_error"]``)."""
    config.validate()
    check_fits(models.output_size(model, data.input_shape, _model_dtype(model)), data)
    if data.is_classification is False and config.loss == "cross_entropy":
        raise LandscapeError("cross-entropy needs class labels; use loss 'mse' for regression data")
    xs, ys = config.coordinates()
    if config.dims == 2 and dy is None:
        raise LandscapeError("a 2-D surface needs two directions")
    layout = Layout.of(model)
    if dx.numel() != layout.n_params or (dy is not None and dy.numel() != layout.n_params):
        raise LandscapeError(f"directions have {dx.numel()} entries, the model {layout.n_params}")
    eval_data = data.subset(config.samples, config.sample_seed)
    bn_data = eval_data.X
    task = make_task(model, eval_data, dx, dy if config.dims == 2 else None, config, w=center,
                     device=device)
    task.bn_data = bn_data.to(task.X.dtype) if config.bn == "recompute" else None
    fp_before = fingerprint(model)
    loss, acc, info = (grid_fn or evaluate_grid)(task, xs, ys, workers=config.workers,
                                                 progress=progress, cancel=cancel, device=device)
    meta = {
        "recipe": config.to_dict(),
        "n_params": layout.n_params,
        "model_hash": fp_before,
        "data": data.meta,
        "data_hash": data.fingerprint(),
        "n_eval": eval_data.n,
        "n_data": data.n,
        "cos_dx_dy": dirs.cosine(dx, dy) if dy is not None and config.dims == 2 else None,
        "dx_norm": float(dx.norm()),
        "dy_norm": float(dy.norm()) if dy is not None and config.dims == 2 else None,
        **info,
    }
    meta["points_per_second"] = loss.size / max(info["seconds"], 1e-9)
    if eval_data.n < data.n:
        meta.update(_subset_error(model, data, task, xs, ys, loss, config))
    c = _center_value(xs, ys, loss)
    if c is None:  # the grid misses (0, 0): evaluate the model itself
        c = build_evaluator(task)(0.0, 0.0)[0]
    meta["loss_center"] = c
    meta["loss_min"] = float(np.nanmin(loss))
    meta["loss_max"] = float(np.nanmax(loss))
    if extra_meta:
        meta.update(extra_meta)
    assert fingerprint(model) == fp_before, "surface evaluation changed the caller's model"
    return SurfaceResult(xs, ys, loss, acc, dx.detach().cpu().float().numpy(),
                         None if (dy is None or config.dims == 1) else dy.detach().cpu().float().numpy(),
                         list(layout.names), [list(s) for s in layout.shapes], meta)


def _center_value(xs, ys, loss):
    i = int(np.argmin(np.abs(xs)))
    if ys is None:
        return float(loss[i]) if abs(xs[i]) < 1e-12 else None
    j = int(np.argmin(np.abs(ys)))
    return float(loss[j, i]) if abs(xs[i]) < 1e-12 and abs(ys[j]) < 1e-12 else None


def _subset_error(model, data, task, xs, ys, loss, config) -> dict:
    """Full-data loss at the centre and corners against the subset's values there."""
    full = make_task(model, data, task.dx.cpu(), task.dy.cpu(), config, w=task.w.cpu())
    full.bn_data = full.X if config.bn == "recompute" else None
    ev = build_evaluator(full)
    pts = [(int(np.argmin(np.abs(xs))), None if ys is None else int(np.argmin(np.abs(ys))))]
    pts += [(i, j) for i in (0, len(xs) - 1) for j in ((None,) if ys is None else (0, len(ys) - 1))]
    errs, rels = [], []
    for i, j in pts:
        a, b = float(xs[i]), 0.0 if j is None else float(ys[j])
        sub = loss[i] if j is None else loss[j, i]
        full_value = ev(a, b)[0]
        errs.append(abs(full_value - sub))
        rels.append(abs(full_value - sub) / max(abs(full_value), 1e-12))
    return {"subset_max_abs_error": float(max(errs)), "subset_max_rel_error": float(max(rels)),
            "subset_check_points": len(pts)}


# ---------------------------------------------------------------------------------------
# Recipes: directions + grid in one call


def compute(model: nn.Module, data: Dataset, config: SurfaceConfig, *, trajectory=None,
            model_b: nn.Module | None = None, model_c: nn.Module | None = None,
            hessian_vectors=None, progress=None, cancel=None, device=None,
            grid_fn=None, directions=None, test_data: Dataset | None = None) -> SurfaceResult:
    """Directions by ``config.directions``, then the surface:

    - ``random``: filter-normalized Gaussian directions (seeds ``seed``, ``seed + 1``);
    - ``pca``: top-2 PCA directions of ``trajectory`` (snapshots [T, P], the last one the
      model); the snapshots' plane coordinates, off-plane distances are attached, and the
      grid range is widened to hold the trajectory when ``xrange`` is the default;
    - ``interpolate``: 1-D line from the model (t=0) to ``model_b`` (t=1), with the
      barrier height in ``meta``; a 2-D grid adds a random filter-normalized ``dy``;
    - ``plane``: the plane through the model, ``model_b`` and ``model_c``;
    - ``hessian``: ``hessian_vectors`` (two flat unit vectors, e.g. top eigenvectors).

    ``grid_fn`` replaces :func:`evaluate_grid` (same signature and result), e.g.
    :class:`landscape.surface.executors.ray.RayGridEvaluator` to evaluate the grid on a Ray cluster.

    ``directions``: given flat directions ``(dx, dy)`` [P] (e.g. read from a directions file;
    ``dy`` None for 1-D) replace ``config.directions`` (``meta["directions"] = "file"``).
    ``test_data``: the same grid is evaluated on it too (``test_loss``/``test_acc``).
    """
    config.validate()
    layout = Layout.of(model)
    w = flat_params(model)
    extra: dict = {"directions": config.directions}
    center = None
    traj_info = None
    kind = config.directions
    if directions is not None:
        kind = "file"
        dx = torch.as_tensor(np.asarray(directions[0]), dtype=w.dtype)
        dy = None if directions[1] is None else torch.as_tensor(np.asarray(directions[1]), dtype=w.dtype)
        extra["directions"] = "file"
    elif kind == "random":
        dx, dy = dirs.random_plane(w, layout, config.seed, config.norm, config.ignore,
                                   config.orthogonalize)
    elif kind == "pca":
        if trajectory is None:
            raise LandscapeError("PCA directions need a training trajectory (train first)")
        steps, snaps = trajectory
        last = torch.as_tensor(np.asarray(snaps)[-1], dtype=torch.float64)
        if last.numel() != w.numel() or (last - w.double()).norm() > 1e-3 * (w.double().norm() + 1e-12):
            raise LandscapeError("the trajectory's last snapshot is not this model; PCA "
                                 "directions need the trajectory that ended at it")
        plane = dirs.pca_directions(snaps, layout, steps, config.ignore)
        dx, dy = plane.dx.to(w.dtype), plane.dy.to(w.dtype)
        extra["explained_variance"] = plane.explained.tolist()
        traj_info = {"steps": np.asarray(plane.steps).tolist(), "coords": plane.coords.tolist(),
                     "off_plane": plane.off_plane.tolist()}
        if tuple(config.xrange) == (-1.0, 1.0) and config.yrange is None:
            c = plane.coords
            pad = 0.15
            lo, hi = c.min(0), c.max(0)
            span = np.maximum(hi - lo, 1e-3)
            config = SurfaceConfig(**{**config.to_dict(), "grid": tuple(config.grid),
                                      "xrange": (float(lo[0] - pad * span[0]), float(hi[0] + pad * span[0])),
                                      "yrange": (float(lo[1] - pad * span[1]), float(hi[1] + pad * span[1]))})
    elif kind == "interpolate":
        if model_b is None:
            raise LandscapeError("interpolation needs a second model (--checkpoint2)")
        wb = flat_params(model_b).to(w.dtype)
        dx = dirs.interpolation_direction(w, wb)
        dy = dirs.random_direction(w, layout, config.seed, config.norm, config.ignore) \
            if config.dims == 2 else None
        if tuple(config.xrange) == (-1.0, 1.0):
            config = SurfaceConfig(**{**config.to_dict(), "grid": tuple(config.grid),
                                      "xrange": (-0.5, 1.5)})
        extra["distance_ab"] = float(dx.norm())
    elif kind == "plane":
        if model_b is None or model_c is None:
            raise LandscapeError("a plane through three models needs --checkpoint2 and --checkpoint3")
        pl = dirs.plane_through(w, flat_params(model_b).to(w.dtype), flat_params(model_c).to(w.dtype))
        dx, dy = pl.dx, pl.dy
        extra["model_coords"] = pl.coords.tolist()
    else:  # hessian: (u1, u2[, eigenvalues]) unit eigenvectors
        if hessian_vectors is None:
            raise LandscapeError("Hessian directions need the top eigenvectors")
        dx = torch.as_tensor(np.asarray(hessian_vectors[0]), dtype=w.dtype)
        dy = torch.as_tensor(np.asarray(hessian_vectors[1]), dtype=w.dtype)
        if len(hessian_vectors) > 2:
            extra["hessian_eigenvalues"] = [float(v) for v in hessian_vectors[2]]
    if config.dims == 1:
        dy = None
    res = surface(model, data, dx, dy, config, progress=progress, cancel=cancel, device=device,
                  center=center, extra_meta=extra, grid_fn=grid_fn)
    if kind == "interpolate":
        ts, ls = res.x, (res.loss if res.dims == 1 else res.loss[int(np.argmin(np.abs(res.y)))])
        if np.any(np.isclose(ts, 0)) and np.any(np.isclose(ts, 1)):
            i0, i1 = int(np.argmin(np.abs(ts))), int(np.argmin(np.abs(ts - 1)))
            grid_ts = ts.copy()
            grid_ts[i0], grid_ts[i1] = 0.0, 1.0
            res.meta["barrier_height"] = dirs.barrier_height(grid_ts, ls)
            res.meta["loss_a"], res.meta["loss_b"] = float(ls[i0]), float(ls[i1])
    if traj_info is not None:
        res.trajectory = traj_info
    if test_data is not None:
        t = surface(model, test_data, dx, dy, config, cancel=cancel, device=device, center=center,
                    grid_fn=grid_fn)
        res.test_loss, res.test_acc = t.loss, t.acc
        res.meta["test_loss_center"], res.meta["test_n_data"] = t.meta["loss_center"], test_data.n
    return res


def trajectory_losses(model: nn.Module, data: Dataset, snapshots, loss_kind: str) -> list[float]:
    """The real loss of each snapshot [T, P] (not the plane's value under it)."""
    task = make_task(model, data, torch.zeros(Layout.of(model).n_params), None,
                     SurfaceConfig(loss=loss_kind))
    out = []
    for theta in np.asarray(snapshots):
        w = torch.as_tensor(theta, dtype=task.w.dtype)
        ev = build_evaluator(PlaneTask(task.model, w, task.dx, task.dy, task.X, task.y, loss_kind))
        out.append(ev(0.0, 0.0)[0])
    return out
