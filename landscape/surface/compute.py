"""Loss and accuracy on 1-D and 2-D grids around a model (Li et al. 2018).

The value at grid point ``(x_i, y_j)`` is the loss at ``w + x_i dx + y_j dy`` where ``w`` is
the model's parameter vector; arrays are indexed ``[j, i]`` with shape ``(ny, nx)`` (the
layout of the original loss-landscape code, non-square grids included). A 1-D slice has
shape ``(nx,)``. The grid is centred on the model: ``(0, 0)`` is the model itself whenever
the range contains 0.

Points are evaluated coarse-to-fine (every 2^k-th point first), so a caller drawing the
partial result sees the whole picture early; the ``progress`` callback receives the live
arrays (NaN where pending) and a ``cancel`` event stops the work between chunks, raising
:class:`~landscape.core.errors.Cancelled` with the partial result. The caller's model is never
changed: evaluation happens on private copies (see :mod:`landscape.surface.evaluators`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from landscape.core import models
from landscape.core.data import Dataset, check_fits
from landscape.core.device import cpu_count
from landscape.core.errors import Cancelled, LandscapeError
from landscape.core.params import Layout, fingerprint, flat_params
from landscape.surface import directions as dirs
from landscape.surface.evaluators import PlaneTask, build_evaluator, evaluate_points_vmap

DIRECTIONS = ("random", "pca", "interpolate", "hessian", "plane")
BN_MODES = ("keep", "recompute")
MAX_POINTS = 1_000_000


@dataclass
class SurfaceConfig:
    """One surface recipe. ``grid`` is ``(nx,)`` for a 1-D slice or ``(nx, ny)``;
    ``xrange``/``yrange`` are ``(lo, hi)`` in units of the direction (filter-normalized:
    1.0 moves every filter by its own norm). ``samples``: evaluate on a fixed random subset
    of that many examples (its error against the full data is measured and reported)."""

    directions: str = "random"
    grid: tuple[int, ...] = (41, 41)
    xrange: tuple[float, float] = (-1.0, 1.0)
    yrange: tuple[float, float] | None = None
    norm: str = "filter"
    ignore: str = "biasbn"
    seed: int = 0
    orthogonalize: bool = False
    samples: int | None = None
    sample_seed: int = 0
    bn: str = "keep"
    loss: str = "cross_entropy"
    workers: int | None = None
    method: str = "auto"

    def validate(self) -> None:
        if self.directions not in DIRECTIONS:
            raise LandscapeError(f"unknown directions {self.directions!r}; choose one of {DIRECTIONS}")
        if len(self.grid) not in (1, 2) or any(int(g) < 1 for g in self.grid):
            raise LandscapeError(f"the grid must be N or NX NY with positive sizes, got {list(self.grid)}")
        if np.prod([int(g) for g in self.grid]) > MAX_POINTS:
            raise LandscapeError(f"grid of {np.prod(self.grid)} points is over the {MAX_POINTS} limit")
        for r in (self.xrange, self.yrange):
            if r is not None and (len(r) != 2 or not np.all(np.isfinite(r)) or r[0] > r[1]):
                raise LandscapeError(f"a range must be LO HI with LO <= HI, got {list(r)}")
        if self.bn not in BN_MODES:
            raise LandscapeError(f"unknown BatchNorm mode {self.bn!r}; choose one of {BN_MODES}")
        dirs._check(self.norm, self.ignore)

    @property
    def dims(self) -> int:
        return len(self.grid)

    def coordinates(self) -> tuple[np.ndarray, np.ndarray | None]:
        nx = int(self.grid[0])
        xs = np.linspace(self.xrange[0], self.xrange[1], nx)
        if self.dims == 1:
            return xs, None
        yr = self.yrange if self.yrange is not None else self.xrange
        return xs, np.linspace(yr[0], yr[1], int(self.grid[1]))

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("grid", "xrange", "yrange"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d


@dataclass
class SurfaceResult:
    """``loss``/``acc``: ``(ny, nx)`` for 2-D (``[j, i]`` is the point ``(x_i, y_j)``) or
    ``(nx,)`` for 1-D; ``x`` [nx], ``y`` [ny] or None; ``dx``/``dy`` flat directions [P]
    (``dy`` None for 1-D); ``names``/``shapes`` the parameter layout; ``trajectory``
    optional ``{"steps", "coords" [T, 2], "off_plane", "loss"}``; ``meta`` the recipe."""

    x: np.ndarray
    y: np.ndarray | None
    loss: np.ndarray
    acc: np.ndarray
    dx: np.ndarray
    dy: np.ndarray | None
    names: list[str]
    shapes: list[list[int]]
    meta: dict = field(default_factory=dict)
    trajectory: dict | None = None

    @property
    def dims(self) -> int:
        return 1 if self.y is None else 2

    def direction_dict(self, which: str = "x") -> dict[str, np.ndarray]:
        flat = self.dx if which == "x" else self.dy
        out, start = {}, 0
        for n, s in zip(self.names, self.shapes):
            k = int(np.prod(s)) if len(s) else 1
            out[n] = flat[start:start + k].reshape(s)
            start += k
        return out


def coarse_to_fine(nx: int, ny: int = 1) -> np.ndarray:
    """Flat indices ``j * nx + i`` ordered coarse-to-fine: the points on the stride-2^k
    sub-lattice first (largest k), then each finer level; every index once. Inside a level
    the order is row-major, so evaluators that cache per-row work (the MLP path's
    ``XW + b XDy``) reuse it."""
    order, seen = [], np.zeros(nx * ny, bool)
    stride = 1
    while stride * 2 < max(nx, ny):
        stride *= 2
    while stride >= 1:
        ii = list(range(0, nx, stride)) + ([nx - 1] if (nx - 1) % stride else [])
        jj = list(range(0, ny, stride)) + ([ny - 1] if (ny - 1) % stride else [])
        for j in jj:
            for i in ii:
                k = j * nx + i
                if not seen[k]:
                    seen[k] = True
                    order.append(k)
        stride //= 2
    return np.asarray(order, dtype=np.int64)


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        return p.dtype
    return torch.float32


def evaluate_grid(task: PlaneTask, xs: np.ndarray, ys: np.ndarray | None, *, workers: int | None = None,
                  progress=None, cancel: threading.Event | None = None, device=None):
    """Loss and accuracy on the grid; returns ``(loss, acc, info)`` with arrays shaped as
    documented in the module docstring and ``info`` holding the method and timings."""
    nx = len(xs)
    ny = 1 if ys is None else len(ys)
    shape = (nx,) if ys is None else (ny, nx)
    loss = np.full(nx * ny, np.nan)
    acc = np.full(nx * ny, np.nan)
    order = coarse_to_fine(nx, ny)
    pts = [(float(xs[k % nx]), 0.0 if ys is None else float(ys[k // nx])) for k in order]
    t0 = time.perf_counter()
    done = 0

    def report():
        if progress is not None:
            progress(done, len(order), loss.reshape(shape), acc.reshape(shape))

    def check_cancel():
        if cancel is not None and cancel.is_set():
            raise Cancelled("surface cancelled", partial=(loss.reshape(shape), acc.reshape(shape)))

    if device is not None and torch.device(device).type != "cpu":
        if task.bn == "recompute":
            raise LandscapeError("recomputing BatchNorm statistics at each point runs on the "
                                 "CPU path; choose device cpu or keep the statistics")
        info = {"method": "vmap", "workers": 1, "device": str(device)}
        chunk = 256
        for s in range(0, len(order), chunk):
            check_cancel()
            l, a = evaluate_points_vmap(task, pts[s:s + chunk])
            loss[order[s:s + chunk]] = l
            acc[order[s:s + chunk]] = a
            done = min(len(order), s + chunk)
            report()
        info["seconds"] = time.perf_counter() - t0
        return loss.reshape(shape), acc.reshape(shape), info

    ev = build_evaluator(task)
    info = {"method": ev.name, "device": "cpu"}
    # Time the first point locally to decide whether worker processes pay off.
    t1 = time.perf_counter()
    loss[order[0]], acc[order[0]] = ev(*pts[0])
    per_point = time.perf_counter() - t1
    done = 1
    report()
    n_workers = cpu_count() if workers is None else max(1, min(int(workers), cpu_count()))
    remaining = len(order) - 1
    from landscape.surface import pool as wk

    # Workers pay off when the serial work exceeds their start-up (about 2.5 s when cold).
    # An explicit worker count is obeyed; ``None`` decides by the first point's time.
    startup = 0.25 if wk.is_warm(n_workers) else 3.0
    worth_it = workers is not None or per_point * remaining > startup
    use_pool = n_workers > 1 and remaining >= 4 * n_workers and worth_it
    if use_pool:
        try:

            shipped = wk.ShippedTask(task)
        except Exception:  # a module that cannot be pickled: evaluate here
            use_pool = False
    if not use_pool:
        info["workers"] = 1
        last = time.perf_counter()
        for s in range(1, len(order)):
            loss[order[s]], acc[order[s]] = ev(*pts[s])
            done = s + 1
            if time.perf_counter() - last > 0.1 or done == len(order):
                check_cancel()
                report()
                last = time.perf_counter()
        info["seconds"] = time.perf_counter() - t0
        return loss.reshape(shape), acc.reshape(shape), info

    chunk = max(1, min(64, remaining // (n_workers * 6) or 1))
    starts = list(range(1, len(order), chunk))  # coarse points first: order is coarse-to-fine
    chunks = [pts[s:s + chunk] for s in starts]

    def on_result(i, vals):
        nonlocal done
        idx = order[starts[i]:starts[i] + chunk]
        loss[idx] = [v[0] for v in vals]
        acc[idx] = [v[1] for v in vals]
        done += len(idx)
        report()

    try:
        pool = wk.get_pool(n_workers)
        info["workers"] = pool.n
        pool.run(shipped.token, shipped.path, chunks, on_result, cancel)
    except wk.WorkerDied:  # finish what is missing here, with the same evaluator
        info["workers"] = 1
        for s in range(1, len(order)):
            if np.isnan(loss[order[s]]):
                check_cancel()
                loss[order[s]], acc[order[s]] = ev(*pts[s])
                done += 1
        report()
    finally:
        shipped.close()
    check_cancel()
    info["seconds"] = time.perf_counter() - t0
    return loss.reshape(shape), acc.reshape(shape), info


def make_task(model: nn.Module, data: Dataset, dx: torch.Tensor, dy: torch.Tensor | None,
              config: SurfaceConfig, w: torch.Tensor | None = None, device=None) -> PlaneTask:
    dtype = _model_dtype(model)
    w = flat_params(model) if w is None else w
    dy = torch.zeros_like(dx) if dy is None else dy
    d = data.to(dtype=dtype, device=device)
    mv = model if device is None else _private_to(model, device)
    w, dx, dy = (t.to(dtype=dtype, device=device) for t in (w, dx, dy))
    return PlaneTask(mv, w, dx, dy, d.X, d.y, config.loss, config.bn, None, config.method)


def _private_to(model, device):
    import copy

    return copy.deepcopy(model).to(device)


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
                                                 progress=progress,
                                    cancel=cancel, device=device)
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
            grid_fn=None) -> SurfaceResult:
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
    :class:`landscape.surface.ray.RayGridEvaluator` to evaluate the grid on a Ray cluster.
    """
    config.validate()
    layout = Layout.of(model)
    w = flat_params(model)
    extra: dict = {"directions": config.directions}
    center = None
    traj_info = None
    kind = config.directions
    if kind == "random":
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
