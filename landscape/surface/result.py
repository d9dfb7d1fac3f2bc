"""A computed surface, and its files (``.h5``/``.npz``, see :mod:`landscape.io.surfaces`).

``loss``/``acc``: ``(ny, nx)`` for 2-D, ``[j, i]`` the point ``(x_i, y_j)``, or ``(nx,)``
for a 1-D slice; ``x`` [nx] and ``y`` [ny] (None for 1-D) in units of the directions;
``dx``/``dy`` the flat directions [P] (float32; ``dy`` None for 1-D) in the order of the
parameter layout ``names``/``shapes``; ``trajectory`` optional ``{"steps", "coords" [T, 2],
"off_plane", "loss"}``; ``meta`` the recipe and measurements (timings, method, errors).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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

    @property
    def dims(self) -> int:
        return 1 if self.y is None else 2

    def direction_dict(self, which: str = "x") -> dict[str, np.ndarray]:
        """The direction ``dx`` (``which="x"``) or ``dy`` as one array per parameter name."""
        return store.split_flat(self.dx if which == "x" else self.dy, self.names, self.shapes)


def save(result: SurfaceResult, path) -> Path:
    """Write ``result`` to ``.h5`` or ``.npz`` (by suffix); returns the path."""
    return store.save(result, path)


def load(path) -> SurfaceResult:
    """Read a surface file written by :func:`save` (or by the original loss-landscape code)."""
    return SurfaceResult(**store.load(path))
