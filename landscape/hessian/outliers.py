"""Bulk and outliers of the top of the spectrum (Papyan 2019, 2020).

A classifier's Hessian typically has a bulk near zero and up to ``C`` outlier eigenvalues
(``C`` classes) whose eigenvectors lie in the span of the ``C`` class-mean gradients. The
overlap ``rho_i = ||Q^T u_i||^2`` of each top unit eigenvector ``u_i`` [P] with an orthonormal
basis ``Q`` [P, rank] of that span is in [0, 1]; the outliers are the leading run with
``rho >= OUTLIER_RHO`` and the split is clean when every later ``rho < BULK_RHO``. The
eigen-gap ratios ``lambda_i / lambda_{i+1}`` are the cross-check (and the fallback when no
clean run exists: a ratio of at least ``MIN_GAP_RATIO``).
"""

from __future__ import annotations

import time

import numpy as np

from landscape.core.errors import LandscapeError
from landscape.hessian.lanczos import top_eigenpairs
from landscape.hessian.operator import HessianOperator
from landscape.hessian.results import EigenResult, OutlierResult, result_meta

__all__ = ["OUTLIER_RHO", "BULK_RHO", "MIN_GAP_RATIO", "outlier_split", "describe_split",
           "bulk_and_outliers"]

#: An eigenvector belongs to the leading outlier run when its overlap is at least this.
OUTLIER_RHO = 0.5
#: The split is clean when every eigenvector after the run overlaps less than this.
BULK_RHO = 0.1
#: Without a clean run, an eigen-gap ratio at least this large is still a (weaker) separation.
MIN_GAP_RATIO = 1.2


def outlier_split(eigvals, eigvecs, class_mean_grads, run_rho: float = OUTLIER_RHO,
                  bulk_rho: float = BULK_RHO, min_gap: float = MIN_GAP_RATIO) -> OutlierResult:
    """Split the top eigenvectors into outliers and bulk (Papyan 2019).

    Args:
        eigvals: [k] top eigenvalues, descending.  eigvecs: [k, P] matching unit vectors.
        class_mean_grads: [C, P], the gradient of the mean loss over each class.

    ``Q`` is an orthonormal basis of the span of the C class-mean gradients (SVD, rank cut at
    ``1e-10`` of the largest singular value); ``rho_i = ||Q^T u_i||^2``. The outliers are the
    leading run of eigenvectors with ``rho >= 0.5``; the split is **clean** when the run is
    non-empty and every later ``rho < 0.1``. Cross-check: the eigen-gap ratios
    ``lambda_i / lambda_{i+1}``; ``gap_at_split`` is the ratio at the run's end and
    ``max_gap_ratio`` the largest ratio among cuts after 1..min(C, k-1) eigenvalues (an outlier
    group has at most C members), at ``max_gap_after``. Verdicts:

    - ``"clean"``: clean run; ``n_outliers`` = its length.
    - ``"gap only"``: no clean run, but ``max_gap_ratio >= 1.2``; ``n_outliers`` =
      ``max_gap_after`` (the largest-gap rule, which can cut inside a spread outlier group).
    - ``"no separation"``: neither; ``n_outliers = 0``.

    ``meta["bulk_edge"]`` is the largest bulk eigenvalue ``lambda_{n+1}`` and
    ``meta["edge_ratio"]`` ``lambda_n / lambda_{n+1}`` (None without outliers); ``message`` says
    the count, that ratio and the overlaps in plain words (:func:`describe_split`).
    """
    vals = np.asarray(eigvals, dtype=np.float64).reshape(-1)
    U = np.atleast_2d(np.asarray(eigvecs, dtype=np.float64))
    G = np.atleast_2d(np.asarray(class_mean_grads, dtype=np.float64))
    k = len(vals)
    if U.shape[0] != k:
        raise LandscapeError(f"{k} eigenvalues but {U.shape[0]} eigenvectors")
    if G.shape[1] != U.shape[1]:
        raise LandscapeError(f"eigenvectors have {U.shape[1]} entries but class-mean gradients "
                             f"{G.shape[1]}")
    if k < 2:
        raise LandscapeError("the outlier split needs at least 2 eigenpairs")
    C = G.shape[0]
    Uq, sv, _ = np.linalg.svd(G.T, full_matrices=False)
    rank = int((sv > 1e-10 * sv.max()).sum()) if sv.size and sv.max() > 0 else 0
    Q = Uq[:, :rank]
    Un = U / np.linalg.norm(U, axis=1, keepdims=True)
    rho = ((Un @ Q) ** 2).sum(1) if rank else np.zeros(k)

    run = 0
    while run < k and rho[run] >= run_rho:
        run += 1
    clean = run > 0 and bool(np.all(rho[run:] < bulk_rho))

    with np.errstate(divide="ignore", invalid="ignore"):
        gaps = np.where(vals[1:] > 0, vals[:-1] / vals[1:], np.nan)
    window = gaps[:max(1, min(C, k - 1))]
    if np.all(np.isnan(window)):
        max_gap, max_after = float("nan"), 0
    else:
        i = int(np.nanargmax(window))
        max_gap, max_after = float(window[i]), i + 1
    gap_at_split = float(gaps[run - 1]) if 0 < run <= len(gaps) else float("nan")

    if clean:
        verdict, n_out = "clean", run
    elif max_gap >= min_gap:
        verdict, n_out = "gap only", max_after
    else:
        verdict, n_out = "no separation", 0
    msg = describe_split(verdict, n_out, vals, rho, run, C, max_gap, max_after, min_gap)
    edge = float(vals[n_out]) if 0 < n_out < k and vals[n_out] > 0 else None
    meta = {"n_classes": C, "span_rank": rank, "run_rho": run_rho, "bulk_rho": bulk_rho,
            "min_gap": min_gap, "bulk_edge": edge,
            "edge_ratio": None if edge is None else float(vals[n_out - 1] / edge)}
    return OutlierResult(n_out, rho, vals, gaps, run, clean, verdict, msg, gap_at_split,
                         max_gap, max_after, meta)


def _percent(x: float) -> str:
    return f"{100 * x:.0f}%"


def _span(values) -> str:
    lo, hi = float(np.min(values)), float(np.max(values))
    return _percent(lo) if round(100 * lo) == round(100 * hi) else f"{100 * lo:.0f}-{_percent(hi)}"


def describe_split(verdict: str, n_out: int, vals, rho, run: int, C: int, max_gap: float,
                   max_after: int, min_gap: float = MIN_GAP_RATIO) -> str:
    """The split in plain words: how many outliers, how far above the bulk (the ratio of the
    last outlier to the largest bulk eigenvalue, the bulk's edge), and how much of their
    eigenvectors lies in the span of the class-mean gradients."""
    k = len(vals)
    span = f"the span of the {C} class-mean gradients"
    if verdict == "no separation":
        text = (f"No outliers: no eigenvalue among the top {min(C, k - 1)} stands out (the "
                f"largest ratio to the next one is {max_gap:.2f}, after λ{max_after}; "
                f"{min_gap:g} would be a visible gap). ")
        return text + (f"The top eigenvector lies {_percent(rho[0])} in {span}." if run == 0 else
                       f"The top {run} eigenvectors lie {_span(rho[:run])} in {span}.")
    plural = "s" if n_out != 1 else ""
    edge = f"λ{n_out} = {vals[n_out - 1]:.3g} is {vals[n_out - 1] / vals[n_out]:.2f} times " \
           f"λ{n_out + 1} = {vals[n_out]:.3g}, the top of the bulk" if n_out < k else \
           f"λ{n_out} = {vals[n_out - 1]:.3g}"
    if verdict == "clean":
        text = (f"{n_out} outlier{plural} above the bulk: {edge}. Their eigenvectors lie "
                f"{_span(rho[:n_out])} in {span}; the bulk's at most "
                f"{_percent(max(rho[n_out:]) if n_out < k else 0.0)}.")
        if max_after != n_out:
            text += f" (The largest ratio between neighbours, {max_gap:.2f}, is after λ{max_after}.)"
        return text
    text = f"{n_out} outlier{plural} by the largest gap among the top {min(C, k - 1)}: {edge}. "
    if run == 0:
        return text + (f"But their eigenvectors do not line up with {span} (the top one "
                       f"lies {_percent(rho[0])} in it), so this gap may not be Papyan's outliers.")
    leak = next((i for i in range(run, k) if rho[i] >= BULK_RHO), None)
    text += f"The top {run} eigenvectors lie {_span(rho[:run])} in {span}"
    if leak is None:
        return text + "."
    return text + (f", but eigenvector {leak + 1}, below them, still lies {_percent(rho[leak])} "
                   "in it, so the split is not clean.")


def bulk_and_outliers(op: HessianOperator, n_classes: int | None = None,
                      tol: float | None = None, v0=None, progress=None,
                      cancel=None) -> tuple[OutlierResult, EigenResult]:
    """Top ``2C + 5`` eigenpairs of ``op`` and their :func:`outlier_split` against the
    operator's class-mean gradients. Returns ``(split, eigenpairs)``; ``split.meta`` carries
    the HVPs and seconds of both steps."""
    C = n_classes if n_classes is not None else op.n_classes
    if C is None:
        raise LandscapeError("the outlier split needs class labels")
    t0 = time.perf_counter()
    k = min(2 * int(C) + 5, op.n_params - 2)
    eig = top_eigenpairs(op, k=k, tol=tol, v0=v0, progress=progress, cancel=cancel)
    G = op.class_mean_gradients()
    if G.shape[0] != C:
        G = G[:C] if G.shape[0] > C else np.vstack([G, np.zeros((C - G.shape[0], G.shape[1]))])
    split = outlier_split(eig.eigenvalues, eig.eigenvectors, G)
    split.meta.update(result_meta(op, eig.hvps, time.perf_counter() - t0, k=k,
                            max_residual=float(eig.residuals.max())))
    return split, eig
