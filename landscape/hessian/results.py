"""The Hessian algorithms' results: dataclasses of numpy arrays plus a ``meta`` dict, each
saved and loaded through the one result store (:mod:`landscape.io.results`).

Units: eigenvalues, traces, residuals and Ritz nodes are in loss units per squared parameter
unit; eigenvectors are unit rows in parameter space ([k, P], ``named_parameters()`` order);
densities are eigenvalues per unit eigenvalue, normalised to integrate to 1 on their grid.
Every ``meta`` carries at least ``hvps``, ``seconds``, ``dtype`` and ``n_params``.

A file holds a result's array fields (``ARRAYS``) as arrays and everything else as JSON in
the store's ``meta``: ``{"type": class name, "fields": the scalar fields, "meta": meta}``.
:meth:`Stored.parts` / :meth:`Stored.from_parts` give that split with a key prefix, so a
report can put several results in one file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from types import SimpleNamespace
from typing import ClassVar

import numpy as np

from landscape.core.errors import LandscapeError
from landscape.io import results as store

__all__ = ["Stored", "EigenResult", "TraceResult", "DensityResult", "OutlierResult",
           "LayerResult", "result_meta", "save_parts"]


def result_meta(op, hvps: int, seconds: float, **extra) -> dict:
    """The ``meta`` every result carries: HVPs, seconds, the operator's dtype and ``P``."""
    return {"hvps": int(hvps), "seconds": float(seconds),
            "dtype": getattr(op, "dtype_name", "float64"), "n_params": int(op.n_params),
            **extra}


def save_parts(path, arrays: dict, meta: dict):
    """Write ``arrays`` (name -> array) and ``meta`` through the result store."""
    return store.save(SimpleNamespace(meta=meta, **arrays), path, list(arrays))


class Stored:
    """``save(path)`` / ``load(path)`` (``.npz`` or ``.json``) for a result dataclass whose
    array fields are named in ``ARRAYS``; the other fields must be JSON-able."""

    ARRAYS: ClassVar[tuple[str, ...]] = ()

    def parts(self, prefix: str = "") -> tuple[dict, dict]:
        """``({prefix + name: array}, {"type", "fields", "meta"})`` for one file."""
        arrays = {prefix + k: np.asarray(getattr(self, k)) for k in self.ARRAYS}
        scalars = {f.name: getattr(self, f.name) for f in fields(self)
                   if f.name not in self.ARRAYS and f.name != "meta"}
        return arrays, {"type": type(self).__name__, "fields": scalars, "meta": self.meta}

    @classmethod
    def array_keys(cls, prefix: str = "") -> list[str]:
        return [prefix + k for k in cls.ARRAYS]

    @classmethod
    def from_parts(cls, arrays: dict, info: dict, prefix: str = ""):
        if info.get("type") != cls.__name__:
            raise LandscapeError(f"the file holds a {info.get('type') or 'different result'}, "
                                 f"not a {cls.__name__}")
        kw = {k: np.asarray(arrays[prefix + k]) for k in cls.ARRAYS}
        return cls(**kw, **info["fields"], meta=info.get("meta", {}))

    def save(self, path):
        """Write this result to ``path`` (.npz or .json); returns the path."""
        arrays, info = self.parts()
        return save_parts(path, arrays, info)

    @classmethod
    def load(cls, path):
        """The result written by :meth:`save`."""
        arrays, info = store.load(path, (), optional=cls.array_keys())
        missing = [k for k, v in arrays.items() if v is None]
        if missing and info.get("type") == cls.__name__:
            raise LandscapeError(f"result file {path} lacks {', '.join(missing)}")
        return cls.from_parts(arrays, info)


@dataclass
class EigenResult(Stored):
    """Top (or bottom) eigenpairs of ``H``.

    eigenvalues [k] descending (loss / param^2); eigenvectors [k, P] unit rows;
    residuals [k] ``||H u_i - lambda_i u_i||`` (same units as the eigenvalues);
    hvps: HVPs used in total (Lanczos + residual check); seconds: wall time.
    """

    ARRAYS: ClassVar[tuple[str, ...]] = ("eigenvalues", "eigenvectors", "residuals")

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residuals: np.ndarray
    hvps: int
    seconds: float
    meta: dict = field(default_factory=dict)

    @property
    def warm_start(self) -> np.ndarray:
        """A start vector for the next call nearby: the sum of the eigenvectors [P]."""
        return self.eigenvectors.sum(0)


@dataclass
class TraceResult(Stored):
    """A stochastic trace estimate ``trace`` (loss / param^2) with its standard error
    ``stderr``; ``samples`` [m] are the per-probe quadratic forms the estimate averages."""

    ARRAYS: ClassVar[tuple[str, ...]] = ("samples",)

    trace: float
    stderr: float
    samples: np.ndarray
    method: str
    hvps: int
    seconds: float
    meta: dict = field(default_factory=dict)


@dataclass
class DensityResult(Stored):
    """SLQ spectral density.

    grid [G] eigenvalue axis; density [G] (per unit eigenvalue, integrates to 1 over the grid);
    nodes [n_probes, m] Ritz values; weights [n_probes, m] Gauss weights (each row sums to 1;
    unused slots of an early-terminated probe have weight 0); sigma: the Gaussian width used.
    """

    ARRAYS: ClassVar[tuple[str, ...]] = ("grid", "density", "nodes", "weights")

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float
    hvps: int
    seconds: float
    meta: dict = field(default_factory=dict)

    def discrete(self) -> tuple[np.ndarray, np.ndarray]:
        """The quadrature measure averaged over probes: (nodes [n], weights [n], sum 1)."""
        w = self.weights.reshape(-1) / self.weights.shape[0]
        keep = w > 0
        return self.nodes.reshape(-1)[keep], w[keep]


@dataclass
class OutlierResult(Stored):
    """Bulk/outlier split of the top eigenvectors by overlap with the class-mean gradients.

    eigenvalues [k] descending; rho [k] overlaps in [0, 1]; gap_ratios [k-1]
    ``lambda_i / lambda_{i+1}`` (NaN where lambda_{i+1} <= 0); n_outliers; clean;
    verdict: ``"clean"``, ``"gap only"`` or ``"no separation"``; message: one sentence.
    """

    ARRAYS: ClassVar[tuple[str, ...]] = ("rho", "eigenvalues", "gap_ratios")

    n_outliers: int
    rho: np.ndarray
    eigenvalues: np.ndarray
    gap_ratios: np.ndarray
    run_length: int
    clean: bool
    verdict: str
    message: str
    gap_at_split: float
    max_gap_ratio: float
    max_gap_after: int
    meta: dict = field(default_factory=dict)


@dataclass
class LayerResult(Stored):
    """Per-parameter-tensor top eigenvalue and trace of the diagonal blocks ``H_bb``.

    names [L], sizes [L], top_eigenvalue [L], residual [L], trace [L], trace_stderr [L]
    (0 where the block trace was computed exactly from unit vectors)."""

    ARRAYS: ClassVar[tuple[str, ...]] = ("sizes", "top_eigenvalue", "residual", "trace",
                                         "trace_stderr")

    names: list
    shapes: list
    sizes: np.ndarray
    top_eigenvalue: np.ndarray
    residual: np.ndarray
    trace: np.ndarray
    trace_stderr: np.ndarray
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_parts(cls, arrays: dict, info: dict, prefix: str = ""):
        res = super().from_parts(arrays, info, prefix)
        res.names = [str(n) for n in res.names]
        res.shapes = [tuple(int(d) for d in s) for s in res.shapes]
        return res
