"""A computed surface, and its files (``.h5``/``.npz``, see :mod:`landscape.io.surfaces`).

``loss``/``acc``: ``(ny, nx)`` for 2-D, ``[j, i]`` the point ``(x_i, y_j)``, or ``(nx,)``
for a 1-D slice; accuracies are fractions in [0, 1] (files in percent are converted on
reading); ``test_loss``/``test_acc`` the same on held-out data, or None; ``x`` [nx] and
``y`` [ny] (None for 1-D) in units of the directions; ``dx``/``dy`` the flat directions [P]
(float32; ``dy`` None for 1-D; empty when a file holds none) in the order of the parameter
layout ``names``/``shapes``; ``trajectory`` optional ``{"steps", "coords" [T, 2],
"off_plane", "loss"}``; ``meta`` the recipe and measurements (timings, method, errors);
``info`` what a loaded file held (origin, datasets, layout, accuracy units; None when
computed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from landscape.io import paper
from landscape.io import surfaces as store


@dataclass
class SurfaceResult:
    """One surface: see the module docstring for the fields."""

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
    test_loss: np.ndarray | None = None
    test_acc: np.ndarray | None = None
    info: dict | None = None

    @property
    def dims(self) -> int:
        return 1 if self.y is None else 2

    def direction_dict(self, which: str = "x") -> dict[str, np.ndarray]:
        """The direction ``dx`` (``which="x"``) or ``dy`` as one array per parameter name."""
        return store.split_flat(self.dx if which == "x" else self.dy, self.names, self.shapes)

    def minimum(self) -> tuple[float, list[float]]:
        """The lowest finite loss on the grid and where: ``(loss, [x, y])`` (``[x]`` in 1-D)."""
        z = np.asarray(self.loss, float)
        if not np.isfinite(z).any():
            return float("nan"), []
        k = int(np.nanargmin(z))
        if self.dims == 1:
            return float(z[k]), [float(self.x[k])]
        j, i = np.unravel_index(k, z.shape)
        return float(z[j, i]), [float(self.x[i]), float(self.y[j])]

    def attach_projection(self, source, filename: str | None = None) -> None:
        """Draw the paper's PCA projection file (``proj_xcoord``, ``proj_ycoord``) as this
        surface's trajectory (its coordinates are in the units of the plane's directions).
        ``source``: a path, or the uploaded file's bytes with its ``filename``."""
        if isinstance(source, (bytes, bytearray)):
            name = filename or "projection.h5"
            coords = store.read_bytes(bytes(source), name, paper.read_projection, "projection file")
        else:
            name, coords = str(source), paper.read_projection(source)
        self.trajectory = _projected(coords, name)


def _projected(coords: np.ndarray, source: str) -> dict:
    """A projection's coordinates [T, 2] as a trajectory (snapshot index as the step)."""
    return {"steps": list(range(len(coords))), "coords": coords.tolist(), "off_plane": None,
            "source": source}


def summary(res: SurfaceResult) -> dict:
    """What ``landscape show --json`` prints and the "Open a surface file" page shows:
    ``grid`` ``[nx, ny]`` (``[nx]`` in 1-D), ``min_at`` ``[x, y]`` and ``min_loss`` (the lowest
    finite loss), ``loss_center`` (at (0, 0) when on the grid), accuracies as a percentage,
    and from ``info`` the origin, datasets, layout and accuracy units found in the file."""
    info = res.info or {}
    lo, at = res.minimum()
    z = np.asarray(res.loss, float)
    acc = np.asarray(res.acc, float)
    grid = [len(res.x)] if res.dims == 1 else [len(res.x), len(res.y)]
    center = None
    i = int(np.argmin(np.abs(res.x)))
    if res.dims == 1 and abs(res.x[i]) < 1e-12:
        center = float(z[i])
    elif res.dims == 2:
        j = int(np.argmin(np.abs(res.y)))
        if abs(res.x[i]) < 1e-12 and abs(res.y[j]) < 1e-12:
            center = float(z[j, i])
    k = int(np.nanargmin(z)) if np.isfinite(z).any() else None
    out = {"grid": grid, "dims": res.dims, "min_at": at, "min_loss": lo,
           "max_loss": float(np.nanmax(z)) if np.isfinite(z).any() else None,
           "loss_center": center,
           "acc_at_min_percent": None if k is None or not np.isfinite(acc.reshape(-1)[k])
           else 100 * float(acc.reshape(-1)[k]),
           "acc_max_percent": 100 * float(np.nanmax(acc)) if np.isfinite(acc).any() else None,
           "origin": info.get("origin"), "datasets": info.get("datasets"),
           "layout": info.get("layout"), "acc_units": info.get("acc_units"),
           "acc_units_from": info.get("acc_units_from"),
           "unfilled_points": info.get("unfilled_points", 0),
           "has_directions": bool(np.size(res.dx)), "dir_file": info.get("dir_file"),
           "trajectory_points": 0 if res.trajectory is None else len(res.trajectory["coords"])}
    if res.test_loss is not None:
        out["test_min_loss"] = float(np.nanmin(res.test_loss))
    return out


def save(result: SurfaceResult, path) -> Path:
    """Write ``result`` to ``.h5`` or ``.npz`` (by suffix); returns the path."""
    return store.save(result, path)


def load(path, projection=None) -> SurfaceResult:
    """Read a surface file of either origin (ours, any version, or the original
    loss-landscape code's); ``projection``: a PCA projection file drawn as the trajectory."""
    res = SurfaceResult(**store.load(path))
    if projection is not None:
        res.attach_projection(projection)
    return res


def load_bytes(raw: bytes, filename: str) -> SurfaceResult:
    """:func:`load` on an uploaded file's bytes (checked for type and size first)."""
    return store.read_bytes(raw, filename, load)
