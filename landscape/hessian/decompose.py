r"""Why C outliers? The split ``H = G + R`` and Papyan's three parts of ``G``.

Sagun et al. (2017) and Papyan (2019, 2020): the Hessian of a classifier's mean loss is the
Gauss-Newton matrix ``G`` (positive semi-definite; see :mod:`.ggn`) plus a residual ``R``
weighted by the loss's first derivatives in the outputs. After training, ``R`` is small and
mostly shapes the bulk and the negative eigenvalues, and the ``C`` outliers are ``G``'s.

:func:`decompose_hessian` measures, on one model and data set (eigenvalues in loss / parameter^2):

- the SLQ densities of ``H``, ``G`` and ``R = H - G`` (:class:`DifferenceOperator`) on one
  eigenvalue axis (same probes, same kernel width);
- ``residual_top_eigenvalue``: the largest ``|lambda|`` of ``R`` (Lanczos, ``which="LM"``),
  with its signed value and its residual ``||R u - lambda u||``;
- the overlap of the top-``k`` eigenvector subspaces (``k = C - 1``):
  ``||U_H U_G^T||_F^2 / k`` in [0, 1] (1: the same subspace), with the principal cosines;
- Papyan's split of ``G``. Write ``H_f = A^T A`` per example (cross-entropy:
  ``A[c'] = sqrt(p_c') (e_c' - p)``; squared loss: ``A = I``) and
  ``Delta_{i,c'} = J_i^T A_i[c']`` [P], so ``G = (1/N) sum_i sum_c' Delta Delta^T``. With
  ``delta_{c,c'}`` the mean of ``Delta_{i,c'}`` over the examples of class ``c`` and
  ``pi_c = n_c / N``:

  .. math:: G = \underbrace{\sum_c \pi_c \delta_{cc}\delta_{cc}^T}_{\text{class means}}
              + \underbrace{\sum_c \pi_c \sum_{c' \ne c} \delta_{cc'}\delta_{cc'}^T}_{\text{cross-class}}
              + \underbrace{\frac1N \sum_i \sum_{c'} (\Delta_{i,c'} - \delta_{y_i c'})
                (\cdot)^T}_{\text{within-class}},

  exactly. Each part's rank is measured (eigenvalues of its Gram matrix above
  ``max(shape) * eps * top``), with its trace and top eigenvalue (from the Gram
  matrix). The vectors need per-example Jacobians, so the split runs on at most
  ``max_examples`` examples (stratified; ``papyan["n_examples"]``); the class-means and
  cross-class ranks are at most ``C`` and ``C (C - 1)``, the within-class rank at most
  ``n C - C^2`` on ``n`` examples (``rank_bound``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from landscape.core.errors import LandscapeError
from landscape.hessian.ggn import GaussNewtonOperator
from landscape.hessian.lanczos import top_eigenpairs
from landscape.hessian.operator import HessianOperator, OperatorBase
from landscape.hessian.results import Stored, result_meta
from landscape.hessian.slq import slq_density, slq_sigma, slq_smooth

__all__ = ["DifferenceOperator", "DecompositionResult", "papyan_vectors", "papyan_split",
           "subspace_overlap", "decompose_hessian"]

PARTS = ("class_means", "cross_class", "within_class")


class DifferenceOperator(OperatorBase):
    """``A - B`` for two operators on the same parameters (``R = H - G``); each product
    costs one of each; ``hvps`` counts this operator's own products."""

    def __init__(self, a, b):
        if a.n_params != b.n_params:
            raise LandscapeError(f"operators of different sizes: {a.n_params} and {b.n_params}")
        self.a, self.b = a, b
        self.n_params = a.n_params
        self.dtype_name = getattr(a, "dtype_name", "float64")
        self.hvps = 0

    def matvec(self, v: np.ndarray) -> np.ndarray:
        self.hvps += 1
        return self.a.matvec(v) - self.b.matvec(v)

    def matmat(self, V: np.ndarray) -> np.ndarray:
        V = np.atleast_2d(np.asarray(V, dtype=np.float64))
        self.hvps += len(V)
        return self.a.matmat(V) - self.b.matmat(V)


@dataclass
class DecompositionResult(Stored):
    """What :func:`decompose_hessian` measured (module docstring). Arrays: ``grid`` [G] and the
    densities ``density_h``, ``density_g``, ``density_r`` [G] on it; ``top_h``, ``top_g`` [k]
    top eigenvalues; ``cosines`` [k] principal cosines between the two subspaces.
    ``papyan``: part name -> ``{"rank", "rank_bound", "trace", "top_eigenvalue",
    "n_vectors"}`` (None without class labels)."""

    ARRAYS: ClassVar[tuple[str, ...]] = ("grid", "density_h", "density_g", "density_r",
                                         "top_h", "top_g", "cosines")

    grid: np.ndarray
    density_h: np.ndarray
    density_g: np.ndarray
    density_r: np.ndarray
    top_h: np.ndarray
    top_g: np.ndarray
    cosines: np.ndarray
    sigma: float
    residual_top_eigenvalue: float
    residual_top_signed: float
    residual_residual: float
    overlap: float
    overlap_k: int
    papyan: dict | None
    meta: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """Every figure as JSON-able scalars and lists (the CLI's ``--json`` block)."""
        return {"residual_top_eigenvalue": self.residual_top_eigenvalue,
                "residual_top_signed": self.residual_top_signed,
                "residual_residual": self.residual_residual,
                "subspace_overlap": self.overlap, "subspace_k": self.overlap_k,
                "principal_cosines": self.cosines.tolist(),
                "top_h": self.top_h.tolist(), "top_g": self.top_g.tolist(),
                "density_sigma": self.sigma, "papyan": self.papyan,
                "papyan_examples": self.meta.get("papyan_examples"),
                "hvps": self.meta.get("hvps")}


def subspace_overlap(U: np.ndarray, V: np.ndarray) -> tuple[float, np.ndarray]:
    """``(||Q_U^T Q_V||_F^2 / k, principal cosines [k])`` for row bases ``U``, ``V`` [k, P]
    (orthonormalised first); 1 when the spans agree, about ``k / P`` for random ones."""
    Qu = np.linalg.qr(np.atleast_2d(U).T)[0]
    Qv = np.linalg.qr(np.atleast_2d(V).T)[0]
    cos = np.clip(np.linalg.svd(Qu.T @ Qv, compute_uv=False), 0.0, 1.0)
    k = min(Qu.shape[1], Qv.shape[1])
    return float((cos ** 2).sum() / k), cos


def _loss_factor(out: torch.Tensor, loss_kind: str) -> torch.Tensor:
    """``A`` [n, C, C] with ``A_i^T A_i = d^2 loss_i / d f_i^2`` (per example, unscaled)."""
    n, C = out.shape
    eye = torch.eye(C, dtype=out.dtype, device=out.device)
    if loss_kind == "mse":
        return eye.expand(n, C, C)
    p = torch.softmax(out, dim=1)
    return p.sqrt()[:, :, None] * (eye[None] - p[:, None, :])


def _pick(y: torch.Tensor, n_classes: int, limit: int, seed: int) -> torch.Tensor:
    """At most ``limit`` example indices, the same share of every class (stratified)."""
    N = y.numel()
    if N <= limit:
        return torch.arange(N)
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(n_classes):
        idx = (y.cpu() == c).nonzero().reshape(-1)
        take = max(1, int(round(limit * idx.numel() / N)))
        keep.append(idx[torch.randperm(idx.numel(), generator=g)[:take]])
    return torch.cat(keep).sort().values


def papyan_vectors(op: HessianOperator, max_examples: int | None = None,
                   seed: int = 0) -> tuple[dict, int]:
    """The stacked, weighted vectors of Papyan's three parts of ``G``: part name -> array
    [m, P] with ``part = V^T V``, so the three sum to the GGN of the chosen examples; and the
    number of examples used. Per-example Jacobians ``J_i`` [C, P] come from C backward
    passes per example (vectorised over a chunk when the model allows)."""
    if op.n_classes is None:
        raise LandscapeError("Papyan's split needs integer class labels")
    C = op.n_classes
    idx = _pick(op.y, C, max_examples or op.n_examples, seed).to(op.y.device)
    X, y = op.X[idx], op.y[idx]
    n = int(idx.numel())
    model, params = op.model, [p for _, p in op.model.named_parameters() if p.requires_grad]
    Delta = np.zeros((n, C, op.n_params))
    step = max(1, 256 // C)
    for s in range(0, n, step):
        xb = X[s:s + step]
        out = model(xb)
        if out.ndim != 2 or out.shape[1] != C:
            raise LandscapeError(f"Papyan's split needs outputs [N, {C}], got {list(out.shape)}")
        A = _loss_factor(out.detach(), op.loss_kind)                 # [b, C, C]
        b = out.shape[0]
        go = torch.zeros(b, C, b, C, dtype=out.dtype, device=out.device)
        go[torch.arange(b), :, torch.arange(b), :] = A
        go = go.reshape(b * C, b, C)
        try:
            rows = torch.autograd.grad(out, params, grad_outputs=go, is_grads_batched=True,
                                       allow_unused=True, materialize_grads=True)
            flat = torch.cat([r.reshape(b * C, -1) for r in rows], dim=1)
        except Exception:  # no batching rule for some op: one backward per row
            flat = torch.stack([torch.cat([r.reshape(-1) for r in torch.autograd.grad(
                out, params, grad_outputs=g, retain_graph=True, allow_unused=True,
                materialize_grads=True)]) for g in go])
        Delta[s:s + b] = flat.detach().double().cpu().numpy().reshape(b, C, -1)
    yl = y.cpu().numpy()
    means = np.zeros((C, C, op.n_params))
    pi = np.zeros(C)
    for c in range(C):
        mask = yl == c
        pi[c] = mask.sum() / n
        if mask.any():
            means[c] = Delta[mask].mean(0)
    class_means = np.sqrt(pi)[:, None] * means[np.arange(C), np.arange(C)]
    off = [(c, k) for c in range(C) for k in range(C) if k != c]
    cross = np.stack([math.sqrt(pi[c]) * means[c, k] for c, k in off]) if off else \
        np.zeros((0, op.n_params))
    within = ((Delta - means[yl]) / math.sqrt(n)).reshape(n * C, -1)
    return {"class_means": class_means, "cross_class": cross, "within_class": within}, n


def _part_stats(V: np.ndarray, eps: float) -> dict:
    """Rank, trace and top eigenvalue of ``V^T V`` from the Gram matrix ``V V^T`` (rank:
    eigenvalues above ``max(shape) * eps * top``, i.e. singular values above about
    ``sqrt(max(shape) * eps)`` of the largest)."""
    if V.shape[0] == 0:
        return {"rank": 0, "trace": 0.0, "top_eigenvalue": 0.0, "n_vectors": 0}
    ev = np.clip(np.linalg.eigvalsh(V @ V.T), 0.0, None)
    top = float(ev.max())
    tol = max(V.shape) * eps * top  # Gram eigenvalues carry errors of about eps * top
    return {"rank": int((ev > tol).sum()) if top > 0 else 0, "trace": float(ev.sum()),
            "top_eigenvalue": top, "n_vectors": int(V.shape[0])}


def papyan_split(op: HessianOperator, max_examples: int | None = None, seed: int = 0) -> dict:
    """:func:`papyan_vectors` reduced to each part's measured rank, trace, top eigenvalue and
    its a-priori rank bound (``C``; ``C (C - 1)``; ``n C - C^2`` plus per-class slack, capped
    by ``P``); ``"n_examples"`` the examples used."""
    vecs, n = papyan_vectors(op, max_examples, seed)
    eps = float(torch.finfo(op.dtype).eps)
    C, P = op.n_classes, op.n_params
    bounds = {"class_means": C, "cross_class": C * (C - 1), "within_class": n * C - C * C}
    out = {}
    for name in PARTS:
        st = _part_stats(vecs[name], eps)
        st["rank_bound"] = int(max(0, min(bounds[name], P)))
        out[name] = st
    out["n_examples"] = n
    return out


def _shared_density(results, m: int, P: int):
    """Re-smooth several SLQ results on one grid with one kernel width."""
    nodes = np.concatenate([r.nodes[r.weights > 0] for r in results])
    sig = max(slq_sigma(nodes, m), 1e-12)
    grid = np.linspace(nodes.min() - 5 * sig, nodes.max() + 5 * sig, 2001)
    dens = [slq_smooth(r.nodes, r.weights, m, P, grid, sig)[1] for r in results]
    return grid, dens, sig


def decompose_hessian(model, X, y, loss_kind: str = "cross_entropy", *, dtype=torch.float64,
              batch_size: int | None = None, probes: int = 3, lanczos_steps: int = 60,
              k: int | None = None, papyan: bool = True, max_examples: int | None = None,
              seed: int = 0, progress=None, cancel=None) -> DecompositionResult:
    """``H = G + R`` measured on ``model`` at ``(X, y)`` (module docstring). ``k`` defaults to
    ``C - 1`` (3 for regression); ``max_examples`` bounds Papyan's split (default: as many
    as keep its vectors under 2e7 numbers). ``progress(done, total)`` counts the 6 stages."""
    t0 = time.perf_counter()
    H = HessianOperator(model, X, y, loss_kind, dtype=dtype, batch_size=batch_size)
    G = GaussNewtonOperator(model, X, y, loss_kind, kind="ggn", dtype=dtype,
                            batch_size=batch_size)
    R = DifferenceOperator(H, G)
    C = H.n_classes
    if k is None:
        k = max(1, C - 1) if C else 3
    k = int(min(k, H.n_params - 2))
    stages = 6 if (papyan and C) else 5

    def tick(i):
        if progress is not None:
            progress(i, stages)

    eh = top_eigenpairs(H, k=k, seed=seed, cancel=cancel)
    tick(1)
    eg = top_eigenpairs(G, k=k, seed=seed, cancel=cancel)
    tick(2)
    overlap, cos = subspace_overlap(eh.eigenvectors, eg.eigenvectors)
    er = top_eigenpairs(R, k=1, which="LM", seed=seed, cancel=cancel)
    tick(3)
    m = min(int(lanczos_steps), H.n_params)
    dens = []
    for op in (H, G, R):
        dens.append(slq_density(op, probes=probes, lanczos_steps=m, seed=seed, cancel=cancel))
    tick(4)
    grid, (dh, dg, dr), sig = _shared_density(dens, m, H.n_params)
    tick(5)
    split = None
    if papyan and C:
        limit = max_examples or max(C, min(H.n_examples, int(2e7 // (C * H.n_params)), 1500 // C))
        split = papyan_split(H, limit, seed)
        tick(6)
    hvps = H.hvps + G.hvps
    meta = result_meta(H, hvps, time.perf_counter() - t0, hvps_hessian=H.hvps, hvps_ggn=G.hvps,
                       k=k, probes=probes, lanczos_steps=m, loss=loss_kind,
                       papyan_examples=split["n_examples"] if split else None,
                       residual_converged=bool(er.meta.get("converged", True)))
    return DecompositionResult(grid, dh, dg, dr, eh.eigenvalues, eg.eigenvalues, cos, sig,
                               float(abs(er.eigenvalues[0])), float(er.eigenvalues[0]),
                               float(er.residuals[0]), overlap, k, split, meta)
