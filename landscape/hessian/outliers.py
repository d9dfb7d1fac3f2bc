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

__all__ = ["OUTLIER_RHO", "BULK_RHO", "MIN_GAP_RATIO", "outlier_split", "bulk_and_outliers"]

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
        msg = (f"clean: {run} outlier(s) with rho >= {min(rho[:run]):.3f}, the rest <= "
               f"{(max(rho[run:]) if run < k else 0.0):.3f}; eigen-gap ratio at the split "
               f"{gap_at_split:.2f}" + ("" if max_after == run else
                                         f" (the largest gap, {max_gap:.2f}, is after "
                                         f"{max_after})"))
    elif max_gap >= min_gap:
        verdict, n_out = "gap only", max_after
        msg = (f"no clean overlap run (leading run {run}); the largest eigen-gap ratio "
               f"{max_gap:.2f} after eigenvalue {max_after} suggests {max_after} outlier(s)")
    else:
        verdict, n_out = "no separation", 0
        msg = (f"no separation: no clean overlap run (leading run {run}) and no eigen-gap "
               f"ratio >= {min_gap} (largest {max_gap:.2f})")
    meta = {"n_classes": C, "span_rank": rank, "run_rho": run_rho, "bulk_rho": bulk_rho,
            "min_gap": min_gap}
    return OutlierResult(n_out, rho, vals, gaps, run, clean, verdict, msg, gap_at_split,
                         max_gap, max_after, meta)


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
