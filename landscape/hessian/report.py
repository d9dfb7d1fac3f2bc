"""One Hessian report for one model and data set: what the Hessian page and CLI show.

``compute_report`` runs, on one :class:`~landscape.hessian.operator.HessianOperator` (the gradient
graph built once):

1. the top ``2C + 5`` eigenpairs by Lanczos and the bulk/outlier split (classification), or
   the top ``k`` (regression, or ``outliers=False``);
2. the trace (Hutch++ by default, with its standard error);
3. the eigenvalue density by stochastic Lanczos quadrature (optional);
4. per-layer top eigenvalue and trace (optional);
5. the most negative eigenvalue (optional; slow to converge inside the bulk, so its residual
   is reported with it);
6. the flatness readouts (:mod:`.flatness`: top eigenvalue, trace, adaptive sharpness, basin
   width at loss + 0.1; on by default);
7. the ``H = G + R`` decomposition and Papyan's split of ``G`` (:mod:`.decompose`; optional).

``operator`` picks the curvature matrix of steps 1-6: ``"hessian"`` (default),
``"ggn"`` (Gauss-Newton) or ``"empirical-fisher"`` (:mod:`.ggn`); all share one interface.

With ``backend="pyhessian"`` steps 1 and 2 use PyHessian 0.1's power iteration and its
early-stopping Hutchinson instead (the reference the field uses; no residuals, no outlier
split, no density: its ``density()`` calls the removed ``torch.eig``).

``compute_top`` is step 1 alone and ``complete_report`` adds steps 2-7 to it: a page shows the
top eigenvalues first and streams the rest in (``compute_report`` is the two in a row).

``spectrum_over_training`` repeats the top eigenvalues and density at a few trajectory
snapshots (initialisation, middle, end) by moving the same operator to each point.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from landscape import hessian as hs
from landscape.core.data import Dataset
from landscape.core.device import DTYPES
from landscape.core.errors import LandscapeError
from landscape.hessian.decompose import DecompositionResult, decompose_hessian
from landscape.hessian.flatness import FlatnessResult, flatness_readouts
from landscape.hessian.ggn import OPERATORS, curvature_operator
from landscape.hessian.results import save_parts
from landscape.io import results as store

BACKENDS = ("landscape", "pyhessian")


#: The report's parts and their result types, in file order.
PARTS = {"eig": hs.EigenResult, "trace": hs.TraceResult, "split": hs.OutlierResult,
         "density": hs.DensityResult, "layers": hs.LayerResult, "smallest": hs.EigenResult,
         "flatness": FlatnessResult, "decompose": DecompositionResult}
#: Arrays stored under their historical names (what ``landscape hessian --out`` always wrote).
LEGACY_KEYS = {("eig", "eigenvalues"): "eigenvalues", ("eig", "residuals"): "residuals",
               ("split", "rho"): "rho", ("density", "grid"): "density_grid",
               ("density", "density"): "density"}


def _key(part: str, name: str) -> str:
    return LEGACY_KEYS.get((part, name), f"{part}_{name}")


def _write(path, parts: dict, meta: dict, summary: dict | None, extra: dict | None = None):
    """Write named results (``parts``: name -> result or None) as one file: each part's arrays
    under ``_key(part, name)``, their JSON under ``meta["report"]["parts"]``, plus the
    arrays ``extra`` (name -> array) as they are."""
    arrays, infos = dict(extra or {}), {}
    for part, res in parts.items():
        if res is None:
            continue
        a, info = res.parts()
        arrays.update({_key(part, k): v for k, v in a.items()})
        infos[part] = info
    file_meta = {**(summary or {}), "report": {"meta": meta, "parts": infos}}
    return save_parts(path, arrays, file_meta)


def _read(path, types) -> tuple[dict, dict, dict]:
    """``(parts, report meta, file meta)`` from a file written by :func:`_write`;
    ``types(part)`` is the result type of a part."""
    _, file_meta = store.load(path, ())
    rep = file_meta.get("report")
    if not isinstance(rep, dict) or not isinstance(rep.get("parts"), dict):
        raise LandscapeError(f"{path} is not a Hessian report file")
    try:
        kinds = {part: types(part) for part in rep["parts"]}
    except KeyError as e:
        raise LandscapeError(f"{path} holds an unknown report part {e}") from None
    arrays, _ = store.load(path, [_key(p, k) for p, cls in kinds.items() for k in cls.ARRAYS])
    parts = {p: cls.from_parts({k: arrays[_key(p, k)] for k in cls.ARRAYS}, rep["parts"][p])
             for p, cls in kinds.items()}
    return parts, rep.get("meta", {}), file_meta


@dataclass
class SpectrumReport:
    """The parts of one Hessian report (see the module docstring); absent parts are None.

    ``save(path)`` writes every part through the result store (.npz or .json); the top
    eigenvalues, residuals, overlaps ``rho`` and the density keep the array names
    ``eigenvalues``, ``residuals``, ``rho``, ``density_grid``, ``density``, and ``summary``
    (e.g. the CLI's JSON) is merged into the top of the file's meta.
    """

    eig: hs.EigenResult
    trace: hs.TraceResult | None
    split: hs.OutlierResult | None = None
    density: hs.DensityResult | None = None
    layers: hs.LayerResult | None = None
    smallest: hs.EigenResult | None = None
    meta: dict = field(default_factory=dict)
    flatness: FlatnessResult | None = None
    decompose: DecompositionResult | None = None

    def save(self, path, summary: dict | None = None):
        """Write the report to ``path`` (.npz or .json); returns the path."""
        return _write(path, {p: getattr(self, p) for p in PARTS}, self.meta, summary)

    @classmethod
    def load(cls, path) -> SpectrumReport:
        """The report written by :meth:`save`."""
        parts, meta, _ = _read(path, PARTS.__getitem__)
        if "eig" not in parts:
            raise LandscapeError(f"{path} holds no eigenvalues")
        return cls(**{p: parts.get(p) for p in PARTS}, meta=meta)


def _progress(progress, stage: int, stages: int, name: str):
    """Map an algorithm's (done, total) onto the report's overall progress."""
    if progress is None:
        return None

    def report(done, total):
        frac = min(1.0, done / total) if total else 0.0
        progress(int(1000 * (stage + frac)), 1000 * stages, name)

    return report


def _check(backend: str, dtype: str, top_k: int, probes: int, operator: str) -> None:
    if backend not in BACKENDS:
        raise LandscapeError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if dtype not in DTYPES:
        raise LandscapeError(f"dtype must be one of {sorted(DTYPES)}")
    if top_k < 1 or probes < 1:
        raise LandscapeError("top-k and probes must be at least 1")
    if operator not in OPERATORS:
        raise LandscapeError(f"unknown operator {operator!r}; choose one of {OPERATORS}")
    if backend == "pyhessian" and operator != "hessian":
        raise LandscapeError("the pyhessian backend has the Hessian only; use backend "
                             "'landscape' for the Gauss-Newton or empirical-Fisher operator")


def _stages(trace: str, density: bool, layers: bool, decomposition: bool) -> int:
    """The progress stages of the rest of a report (after the top eigenpairs)."""
    return (trace != "none") + bool(density) + bool(layers) + bool(decomposition)


def compute_report(model, data: Dataset, loss: str, *, top_k: int = 5, outliers: bool = True,
                   trace: str = "hutchpp", probes: int = 60, density: bool = True,
                   layers: bool = False, smallest: bool = False, backend: str = "landscape",
                   dtype: str = "float64",
                   samples: int | None = None, seed: int = 0, progress=None,
                   cancel=None, operator: str = "hessian", flat: bool = True,
                   decomposition: bool = False) -> SpectrumReport:
    """The curvature report of ``model`` on ``data`` (a fixed subset of ``samples`` examples
    when given) for the ``operator`` named (one of :data:`OPERATORS`); ``flat`` adds the
    flatness readouts, ``decomposition`` the ``H = G + R`` split.
    ``progress(done, total, stage_name)`` and ``cancel`` as in :mod:`landscape.core.jobs`.

    The same as :func:`compute_top` followed by :func:`complete_report` (what a page does in
    two jobs, so that the top eigenvalues are shown before the trace and density are done)."""
    _check(backend, dtype, top_k, probes, operator)
    if backend == "pyhessian":
        return _pyhessian_report(model, data, loss, top_k=top_k, dtype=dtype, samples=samples,
                                 seed=seed, progress=progress, cancel=cancel)
    stages = 1 + _stages(trace, density, layers, decomposition)

    def first(done, total, name):  # compute_top's (0..1000 of 1000)
        progress(done, 1000 * stages, name)

    def rest(done, total, name):  # complete_report's (0..1000 (stages - 1))
        progress(1000 + done, 1000 * stages, name)

    top = compute_top(model, data, loss, top_k=top_k, outliers=outliers, dtype=dtype,
                      samples=samples, seed=seed, progress=first if progress else None,
                      cancel=cancel, operator=operator)
    return complete_report(top, model, data, loss, trace=trace, probes=probes,
                           density=density, layers=layers, smallest=smallest,
                           samples=samples, seed=seed,
                           progress=rest if progress and stages > 1 else None, cancel=cancel,
                           flat=flat, decomposition=decomposition)


def _pyhessian_report(model, data, loss, *, top_k, dtype, samples, seed, progress, cancel):
    t0 = time.perf_counter()
    sub = data.subset(samples, seed)
    meta = {"backend": "pyhessian", "n_examples": sub.n, "dtype": dtype, "loss": loss,
            "operator": "hessian"}
    stages = 2
    if progress:
        progress(0, stages, "PyHessian: top eigenvalues (power iteration)")
    eig = hs.pyhessian_top_eigenvalues(model, sub.X, sub.y, loss, k=top_k,
                                       dtype=DTYPES[dtype], seed=seed)
    if cancel is not None and cancel.is_set():
        from landscape.core.errors import Cancelled

        raise Cancelled("cancelled")
    if progress:
        progress(1, stages, "PyHessian: trace (early-stopping Hutchinson)")
    tr = hs.pyhessian_trace(model, sub.X, sub.y, loss, dtype=DTYPES[dtype], seed=seed)
    meta.update(hvps=eig.hvps + tr.hvps, n_params=eig.eigenvectors.shape[1],
                seconds=time.perf_counter() - t0)
    return SpectrumReport(eig, tr, meta=meta)


def compute_top(model, data: Dataset, loss: str, *, top_k: int = 5, outliers: bool = True,
                dtype: str = "float64", samples: int | None = None, seed: int = 0,
                progress=None, cancel=None, operator: str = "hessian") -> SpectrumReport:
    """The first part of a report, the one a reader looks at first: the top ``2C + 5``
    eigenpairs by Lanczos and the bulk/outlier split (classification), or the top ``top_k``
    (regression, or ``outliers=False``). Trace, density and the rest are None; add them with
    :func:`complete_report`."""
    _check("landscape", dtype, top_k, 1, operator)
    t0 = time.perf_counter()
    sub = data.subset(samples, seed)
    op = curvature_operator(operator, model, sub.X, sub.y, loss, dtype=DTYPES[dtype])
    report = _progress(progress, 0, 1, "top eigenpairs (Lanczos)")
    if outliers and sub.is_classification:
        split, eig = hs.bulk_and_outliers(op, progress=report, cancel=cancel)
    else:
        split, eig = None, hs.top_eigenpairs(op, k=top_k, progress=report, cancel=cancel)
    meta = {"backend": "landscape", "n_examples": sub.n, "dtype": dtype, "loss": loss,
            "operator": operator, "hvps": op.hvps, "n_params": op.n_params,
            "loss_value": op.loss_value, "seconds": time.perf_counter() - t0}
    return SpectrumReport(eig, None, split, meta=meta)


def complete_report(top: SpectrumReport, model, data: Dataset, loss: str, *,
                    trace: str = "hutchpp", probes: int = 60, density: bool = True,
                    layers: bool = False, smallest: bool = False, samples: int | None = None,
                    seed: int = 0, progress=None, cancel=None, flat: bool = True,
                    decomposition: bool = False) -> SpectrumReport:
    """``top`` (from :func:`compute_top` with the same ``samples`` and ``seed``) with the rest
    of the report: the trace, the density by SLQ, per-layer spectra, the most negative
    eigenvalue, the flatness readouts and the ``H = G + R`` decomposition, as asked."""
    if probes < 1:
        raise LandscapeError("top-k and probes must be at least 1")
    t0 = time.perf_counter()
    operator, dtype = top.meta.get("operator", "hessian"), top.meta.get("dtype", "float64")
    sub = data.subset(samples, seed)
    if sub.n != top.meta.get("n_examples", sub.n):
        raise LandscapeError(f"the top eigenpairs were computed on {top.meta['n_examples']} "
                             f"examples, not {sub.n}: pass the same samples and seed")
    op = curvature_operator(operator, model, sub.X, sub.y, loss, dtype=DTYPES[dtype])
    stages = max(1, _stages(trace, density, layers, decomposition))
    stage = 0
    tr = None
    if trace != "none":
        fn = hs.hutchpp_trace if trace == "hutchpp" else hs.hutchinson_trace
        tr = fn(op, probes=probes, seed=seed,
                progress=_progress(progress, stage, stages, f"trace ({trace})"), cancel=cancel)
        stage += 1
    den = None
    if density:
        den = hs.slq_density(op, seed=seed, progress=_progress(
            progress, stage, stages, "density (stochastic Lanczos quadrature)"), cancel=cancel)
        stage += 1
    lay = None
    if layers:
        lay = hs.layer_spectra(op, seed=seed, progress=_progress(
            progress, stage, stages, "per-layer spectra"), cancel=cancel)
        stage += 1
    low = hs.smallest_eigenvalue(op, seed=seed, cancel=cancel) if smallest else None
    eig = top.eig
    fl = None
    if flat:
        fl = flatness_readouts(op, eig.eigenvalues[0], eig.eigenvectors[0],
                               tr.trace if tr is not None else None, operator=operator,
                               seed=seed, cancel=cancel)
    dec = None
    if decomposition:
        dec = decompose_hessian(model, sub.X, sub.y, loss, dtype=DTYPES[dtype], seed=seed,
                                progress=_progress(progress, stage, stages,
                                                   "H = G + R and Papyan's split"),
                                cancel=cancel)
    meta = dict(top.meta)
    meta.update(hvps=top.meta.get("hvps", 0) + op.hvps,
                seconds=top.meta.get("seconds", 0.0) + time.perf_counter() - t0)
    return SpectrumReport(eig, tr, top.split, den, lay, low, meta, flatness=fl, decompose=dec)


@dataclass
class TrainingSpectra:
    """Top eigenvalues [S, k] and densities (a list of S DensityResult or None) at snapshot
    ``steps`` [S]. ``save``/``load`` as for :class:`SpectrumReport` (densities as parts
    ``density0``, ``density1``, ...)."""

    steps: np.ndarray
    top: np.ndarray
    densities: list
    meta: dict = field(default_factory=dict)

    def save(self, path):
        """Write the spectra to ``path`` (.npz or .json); returns the path."""
        parts = {f"density{i}": d for i, d in enumerate(self.densities)}
        meta = {**self.meta, "snapshots": len(self.densities)}
        return _write(path, parts, meta, None, {"steps": self.steps, "top": self.top})

    @classmethod
    def load(cls, path) -> TrainingSpectra:
        """The spectra written by :meth:`save`."""
        parts, meta, _ = _read(path, lambda part: hs.DensityResult)
        arrays, _ = store.load(path, ("steps", "top"))
        n = int(meta.pop("snapshots", len(arrays["steps"])))
        return cls(arrays["steps"], arrays["top"], [parts.get(f"density{i}") for i in range(n)],
                   meta)



def pick_snapshots(steps, n: int = 3) -> list[int]:
    """Indices of ``n`` snapshots spread over a trajectory: first, ..., last."""
    T = len(steps)
    if T == 0:
        raise LandscapeError("the trajectory is empty")
    return sorted({int(round(i)) for i in np.linspace(0, T - 1, min(n, T))})


def spectrum_over_training(model, data: Dataset, loss: str, trajectory, *, n: int = 3,
                           top_k: int = 5, density: bool = True, samples: int | None = None,
                           seed: int = 0, progress=None, cancel=None,
                           operator: str = "hessian") -> TrainingSpectra:
    """Top eigenvalues (and densities) of the ``operator`` at ``n`` snapshots of
    ``trajectory = (steps, snapshots [T, P])``: how the spectrum changed during training."""
    steps, snaps = trajectory
    idx = pick_snapshots(steps, n)
    sub = data.subset(samples, seed)
    op = curvature_operator(operator, model, sub.X, sub.y, loss)
    tops, dens = [], []
    v0 = None
    for k, i in enumerate(idx):
        op.set_point(torch.as_tensor(np.asarray(snaps[i]), dtype=torch.float64))
        e = hs.top_eigenpairs(op, k=top_k, v0=v0, cancel=cancel)
        v0 = e.warm_start
        tops.append(e.eigenvalues)
        dens.append(hs.slq_density(op, seed=seed, cancel=cancel) if density else None)
        if progress is not None:
            progress(k + 1, len(idx), f"snapshot at step {int(steps[i])}")
    return TrainingSpectra(np.asarray([int(steps[i]) for i in idx]), np.asarray(tops), dens,
                           {"hvps": op.hvps, "n_examples": sub.n})


def top_directions(model, data: Dataset, loss: str, samples: int | None = None,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """The top two Hessian eigenvectors (unit, [P] each) and their eigenvalues: the axes
    of a surface along the sharpest directions."""
    sub = data.subset(samples, seed)
    op = hs.HessianOperator(model, sub.X, sub.y, loss)
    e = hs.top_eigenpairs(op, k=2)
    return e.eigenvectors[0], e.eigenvectors[1], e.eigenvalues.tolist()
