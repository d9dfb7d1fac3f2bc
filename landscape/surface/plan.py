"""The plan of a surface: the recipe, its grid coordinates and the order points are evaluated in.

A grid has ``nx`` x-coordinates ``xs`` and, for 2-D, ``ny`` y-coordinates ``ys`` (in units
of the directions). Grid point ``(x_i, y_j)`` has the flat index ``k = j * nx + i``; result
arrays are shaped ``(ny, nx)`` and indexed ``[j, i]`` (the original loss-landscape layout,
non-square grids included), or ``(nx,)`` for a 1-D slice (``ys`` None, ``y = 0``).

Points are evaluated coarse-to-fine (:func:`coarse_to_fine`): every 2^k-th point first, so
a caller drawing the partial result sees the whole picture early. A *position* is an index
into that order (position 0 is the first point evaluated); executors cut the positions into
chunks (:meth:`GridPlan.chunks`) and report results by position.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from landscape.core.errors import LandscapeError
from landscape.surface import directions as dirs

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
        check_bn(self.bn)
        dirs.check_options(self.norm, self.ignore)

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


def check_bn(bn: str) -> None:
    if bn not in BN_MODES:
        raise LandscapeError(f"unknown BatchNorm mode {bn!r}; choose one of {BN_MODES}")


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


@dataclass
class GridPlan:
    """The coordinates ``xs`` [nx] and ``ys`` [ny] (None for 1-D) and the coarse-to-fine
    ``order`` [n] of flat indices."""

    xs: np.ndarray
    ys: np.ndarray | None
    order: np.ndarray = field(repr=False)

    @classmethod
    def of(cls, xs, ys=None) -> GridPlan:
        xs = np.asarray(xs, dtype=np.float64)
        ys = None if ys is None else np.asarray(ys, dtype=np.float64)
        if xs.ndim != 1 or len(xs) < 1 or (ys is not None and (ys.ndim != 1 or len(ys) < 1)):
            raise LandscapeError("the grid is empty")
        return cls(xs, ys, coarse_to_fine(len(xs), 1 if ys is None else len(ys)))

    @property
    def nx(self) -> int:
        return len(self.xs)

    @property
    def ny(self) -> int:
        return 1 if self.ys is None else len(self.ys)

    @property
    def n(self) -> int:
        return self.nx * self.ny

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.nx,) if self.ys is None else (self.ny, self.nx)

    def points(self, positions) -> list[tuple[float, float]]:
        """The ``(a, b)`` coordinates of these positions (indices into ``order``)."""
        nx, xs, ys = self.nx, self.xs, self.ys
        ks = self.order[np.asarray(positions, dtype=np.int64)].tolist()
        if ys is None:
            return [(float(xs[k]), 0.0) for k in ks]
        return [(float(xs[k % nx]), float(ys[k // nx])) for k in ks]

    @staticmethod
    def chunks(positions, size: int) -> list[np.ndarray]:
        """``positions`` cut into consecutive chunks of ``size`` (the last may be shorter),
        so the coarse points stay first."""
        positions = np.asarray(positions, dtype=np.int64)
        return [positions[s:s + size] for s in range(0, len(positions), max(1, int(size)))]


def auto_chunk(n: int, slots: int, lo: int = 16, hi: int = 512, per_slot: int = 8) -> int:
    """About ``per_slot`` chunks per worker slot (even load, steady progress), ``lo`` to
    ``hi`` points each (a Ray task costs about a millisecond of overhead, a digits-MLP point
    about 0.7 ms)."""
    return int(min(hi, max(lo, math.ceil(n / (per_slot * max(1, slots))))))
