r"""Tracking the top eigenpairs of a slowly changing symmetric operator (a Hessian along a
training run) by a warm-started Davidson iteration.

Math. For a symmetric ``A`` [P, P] given only through products ``A v`` (HVPs), keep an
orthonormal search space ``S`` [m, P] (rows) and ``AS = A S^T`` (rows). Rayleigh-Ritz: the
small matrix ``M = S A S^T`` [m, m] has eigenpairs ``(theta_i, c_i)``; the Ritz vectors
``x_i = c_i^T S`` [P] approximate eigenvectors of ``A``, with residuals
``r_i = A x_i - theta_i x_i = c_i^T AS - theta_i x_i``. While some top-``k`` residual
exceeds ``tol * |theta_i|``, the residual of the first such pair is orthogonalised against
``S`` (classical Gram-Schmidt, twice) and added: the space grows by one direction, for one
HVP. For a symmetric ``A`` a residual ``||r||`` bounds the distance of ``theta`` to some
eigenvalue; with clustered top eigenvalues (as at the edge of stability) that is all it
guarantees.

Warm start. Along a run the operator changes little between measurements, so the previous
top ``k + 1`` Ritz vectors span nearly the new top eigenspace: started from them, a few
residual corrections usually suffice (7.1 HVPs a measurement on average for ``k = 2`` on
the ``eos-tanh`` lesson). Probe directions ``p`` (e.g. the
gradient) added to the space give their curvature ``p^T A p / ||p||^2 = c^T M c / c^T c``
(``c = S p``) at no extra HVP. Past ``maxdim`` directions ARPACK Lanczos, warm-started
from the best Ritz vector, finishes.

Preconditioned operators. :class:`ScaledOperator` is ``D A D`` for a diagonal ``D``: with
``D = P^-1/2`` it is the symmetric form of ``P^-1 A`` (same eigenvalues; an eigenvector
``x`` of ``D A D`` gives the eigenvector ``D x`` of ``P^-1 A``), as for Adam's
preconditioned sharpness (Cohen et al. 2022).

Units: eigenvalues and curvatures are in the operator's units (for a Hessian: loss per
squared parameter unit); vectors are unit rows [P] in float64 numpy.
"""

from __future__ import annotations

import math

import numpy as np
import torch


class ScaledOperator:
    """``D H D`` for a diagonal ``D = diag(d)`` (``d = P^-1/2``): the symmetric form of
    ``P^-1 H`` (same eigenvalues; eigenvectors ``x`` of it give ``D x`` for ``P^-1 H``).
    One HVP of ``op`` per product; ``hvps`` counts this operator's own products."""

    def __init__(self, op, d: np.ndarray):
        self.op, self.d = op, np.asarray(d, np.float64)
        self.n_params = op.n_params
        self.dtype_name = getattr(op, "dtype_name", "float64")
        self.hvps = 0

    def matvec(self, v: np.ndarray) -> np.ndarray:
        self.hvps += 1
        v = np.asarray(v, np.float64).reshape(-1)
        return self.d * self.op.matvec(self.d * v)

    def matmat(self, V: np.ndarray) -> np.ndarray:
        V = np.atleast_2d(np.asarray(V, np.float64))
        return np.stack([self.matvec(row) for row in V]) if len(V) else V.copy()


def _orth_against(S: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``w`` minus its projection on the orthonormal rows of ``S`` (twice, for stability)."""
    if len(S):
        for _ in range(2):  # torch.mv: ``S.T @ (S @ w)`` took 10x longer (a slow path for S.T)
            w = torch.addmv(w, S.T, torch.mv(S, w), alpha=-1.0)
    return w


def pad_nan(a, k: int) -> np.ndarray:
    """``a`` cut or padded with NaN to length ``k`` (a model with fewer than k parameters)."""
    out = np.full(k, np.nan)
    a = np.asarray(a, float).reshape(-1)[:k]
    out[:len(a)] = a
    return out


def track_top(op, k: int, start: np.ndarray | None = None, probes=None, tol: float = 1e-2,
              maxdim: int = 40, seed: int = 0) -> dict:
    """Top ``k`` eigenpairs of a symmetric operator by a warm-started Davidson iteration,
    plus the curvature ``p^T H p / ||p||^2`` of each probe direction at no extra HVP.

    ``op`` needs ``n_params``, ``hvps`` and ``matvec`` (numpy [P] -> [P]); one that also has
    ``hvp`` (tensor -> tensor) and a float ``dtype`` (and ``device``) is used through that
    tensor fast path, with the bookkeeping in its precision.

    The search space starts as the span of ``start`` (previous Ritz vectors [m, P]; default
    one seeded random vector) and ``probes`` (e.g. the gradient) [j, P]; each iteration does
    Rayleigh-Ritz on it and, while some top-``k`` residual ``||H x - theta x||`` exceeds
    ``tol * |theta|``, adds the (orthogonalised) residual of the first such pair: one HVP per
    iteration, after one per start direction. The probes stay inside the space, so their
    curvature is ``c^T M c`` with ``M`` the Rayleigh matrix. Past ``maxdim`` directions ARPACK
    Lanczos (``hessian.top_eigenpairs``) warm-started from the best vector finishes.

    With eigenvalues clustered near the top (as at the edge of stability) a residual ``r``
    only guarantees an eigenvalue within ``r`` of each Ritz value; starting from the previous
    top ``k + 1`` Ritz vectors kept the measured error of lambda_1 below 5e-4 relative on the
    ``eos-tanh`` runs at ``tol = 1e-2``.

    The dense work is done with torch (float64, torch's thread setting): numpy's
    multi-threaded BLAS made these small products cost more than the HVPs on a loaded
    2-core machine.

    Returns ``{"values" [k], "vectors" [k + 1, P] (unit rows, descending), "residuals" [k],
    "probe_curvature" [j], "hvps", "dim", "method"}`` (numpy arrays).
    """
    P = op.n_params
    h0 = op.hvps
    tols = [float(t) for t in np.broadcast_to(np.asarray(tol, float).reshape(-1), (k,))] \
        if np.ndim(tol) else [float(tol)] * k
    # Work in the operator's precision when it has a tensor fast path: the bookkeeping on
    # [m, P] blocks cost as much as 2-3 HVPs per measurement in float64.
    fast = hasattr(op, "hvp") and getattr(op, "dtype", None) in (torch.float32, torch.float64)
    wd = op.dtype if fast else torch.float64
    dev = op.device if fast else torch.device("cpu")
    drop = 1e-8 if wd == torch.float64 else 1e-4      # a new direction this small is in the span
    inside_tol = 1e-6 if wd == torch.float64 else 1e-3

    def as_rows(a) -> torch.Tensor:
        rows = [torch.as_tensor(np.asarray(r) if not isinstance(r, torch.Tensor) else r).reshape(-1)
                for r in a]
        return torch.stack(rows).to(device=dev, dtype=wd) if rows else torch.zeros((0, P), dtype=wd, device=dev)

    probes = as_rows([] if probes is None else probes)
    if start is None:
        start = np.random.default_rng(seed).standard_normal((1, P))
    start = as_rows(np.atleast_2d(start) if not isinstance(start, torch.Tensor) else start.reshape(-1, P))
    maxdim = int(min(max(maxdim, k + 2), P))
    Sbuf = torch.empty((maxdim, P), dtype=wd, device=dev)   # the search space, orthonormal rows
    ASbuf = torch.empty((maxdim, P), dtype=wd, device=dev)  # H applied to them
    S, AS = Sbuf[:0], ASbuf[:0]

    def apply(w: torch.Tensor) -> torch.Tensor:
        if fast:
            return op.hvp(w)
        return torch.from_numpy(np.asarray(op.matvec(w.numpy()), np.float64))

    def add(w: torch.Tensor) -> bool:
        nonlocal S, AS
        n0 = len(S)
        if n0 >= maxdim:
            return False
        nw = float(torch.linalg.vector_norm(w))
        if not (nw > 0 and math.isfinite(nw)):
            return False
        w = _orth_against(S, w / nw)
        n = float(torch.linalg.vector_norm(w))
        if n < drop:
            return False
        Sbuf[n0] = w / n
        ASbuf[n0] = apply(Sbuf[n0])
        S, AS = Sbuf[:n0 + 1], ASbuf[:n0 + 1]
        return True

    for w in [*start, *probes]:
        add(w)
    method = "davidson"
    while True:
        M = (S @ AS.T).double().cpu()   # small: the Rayleigh-Ritz step runs on the CPU
        M = 0.5 * (M + M.T)
        th, C = torch.linalg.eigh(M)
        th, C = th.flip(0), C.flip(1)   # descending
        nk = min(k + 1, len(th))
        # contiguous: a transposed view here takes a slow matmul path
        Ck = C[:, :nk].T.contiguous().to(device=dev, dtype=wd)
        X = Ck @ S
        R = torch.addcmul(Ck @ AS, th[:nk, None].to(device=dev, dtype=wd), X, value=-1.0)
        res = torch.linalg.vector_norm(R, dim=1).cpu()
        thl, resl = th[:nk].tolist(), res.tolist()
        bad = [i for i in range(min(k, nk)) if resl[i] > tols[i] * max(abs(thl[i]), 1e-300)]
        if len(th) >= k and not bad:
            break
        if len(S) >= maxdim or not any(add(R[i]) for i in (bad or [0])):
            method = "lanczos"
            break
    curv = []
    for p in probes:
        c = (S @ p).double().cpu()
        pp = float(p.double() @ p.double())
        inside = pp > 0 and float(c @ c) >= (1 - inside_tol) * pp
        if inside:
            curv.append(float(c @ M @ c) / float(c @ c))
        elif pp > 0:
            pn = p.double().cpu().numpy()
            curv.append(float(pn @ op.matvec(pn)) / pp)
        else:
            curv.append(float("nan"))
    vals, vecs, res = th[:k].numpy(), X.double().cpu().numpy(), res[:k].double().numpy()
    if method == "lanczos":
        from landscape.hessian import top_eigenpairs  # the face: wherever ARPACK lives

        e = top_eigenpairs(op, k=min(k + 1, P), tol=min(min(tols), 1e-6), v0=vecs[0], seed=seed)
        vals, vecs, res = e.eigenvalues[:k], e.eigenvectors, e.residuals[:k]
    return {"values": np.array(vals, float), "vectors": np.array(vecs, float),
            "residuals": np.array(res, float), "probe_curvature": np.asarray(curv, float),
            "hvps": op.hvps - h0, "dim": len(S), "method": method}
