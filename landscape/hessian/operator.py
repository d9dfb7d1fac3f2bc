r"""Hessian spectra of the full-batch training loss (DESIGN.md 3.3).

The object of study is the Hessian of the mean loss over a fixed data set,

.. math::  L(\theta) = \sum_c \frac{n_c}{N} L_c(\theta), \qquad
           L_c(\theta) = \frac{1}{n_c} \sum_{i \in \text{chunk } c} \ell(f_\theta(x_i), y_i),
           \qquad H = \nabla^2_\theta L(\theta) \in \mathbb{R}^{P \times P},

where ``theta`` is every ``requires_grad`` parameter of the model flattened in
``named_parameters()`` order (``P`` numbers) and the chunks are the whole data set (one chunk)
or ``batch_size`` slices of it. Units: ``H`` (and so every eigenvalue and the trace) is in
loss units per squared parameter unit; eigenvectors are unit vectors in parameter space.

Products ``H v`` (HVPs) use double backward (Pearlmutter's trick): the gradient
``g = dL/dtheta`` is computed ONCE per parameter point with ``create_graph=True`` and kept
(one graph per chunk); each HVP is ``d(g . v)/dtheta``, a second backward pass through the
kept graph. Nothing here ever touches the caller's model: the operator owns a private
``copy.deepcopy`` of it.

On top of the operator:

- **Top-k** eigenpairs by implicitly restarted Lanczos (ARPACK through
  ``scipy.sparse.linalg.eigsh``, ``which='LA'``), warm-startable, with the residuals
  ``||H u - lambda u||`` measured by explicit HVPs (so they are true residuals, not ARPACK's
  estimates).
- **Trace**: Hutchinson, ``tr H = E[z^T H z]`` for Rademacher ``z``, with the standard error
  ``std(z_j^T H z_j) / sqrt(m)``; Hutch++ (Meyer, Musco, Musco & Woodruff 2021), which takes
  the trace of the top of ``H`` exactly on a sketched range ``Q`` and estimates only the
  trace of the deflated rest ``(I - QQ^T) H (I - QQ^T)`` by Hutchinson.
- **Density**: stochastic Lanczos quadrature (SLQ; Golub & Meurant; Ghorbani, Krishnan & Xiao
  2019). For a unit probe ``v`` and ``m`` Lanczos steps with full reorthogonalisation, the
  tridiagonal ``T_m = S diag(theta) S^T`` gives the Gauss quadrature
  ``v^T f(H) v ~ sum_j tau_j f(theta_j)``, ``tau_j = S[0, j]^2``; averaging over probes and
  replacing each node by a Gaussian gives a smooth spectral density (eigenvalues per unit
  eigenvalue, normalised to integrate to 1).
- **Bulk and outliers**: the overlap ``rho_i = ||Q^T u_i||^2`` of each top eigenvector with an
  orthonormal basis ``Q`` of the span of the ``C`` class-mean gradients (Papyan 2019/2020;
  the rule and its thresholds are DESIGN.md 3.3's).
- **Per-layer** top eigenvalue and trace of the diagonal block ``H_bb`` of one parameter tensor.
- **PyHessian cross-checks** (power iteration and early-stopped Hutchinson), with their HVPs
  counted.

All results are dataclasses holding numpy arrays plus a ``meta`` dict with at least ``hvps``,
``seconds``, ``dtype`` and ``n_params``.
"""

from __future__ import annotations

import copy
import math
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.sparse.linalg as spla
import torch
from torch import nn

from landscape.core.errors import Cancelled, LandscapeError
from landscape.core.losses import LOSSES
from landscape.core.losses import loss as _loss_fn

__all__ = [
    "HessianOperator",
    "BlockOperator",
    "DenseOperator",
    "EigenResult",
    "TraceResult",
    "DensityResult",
    "OutlierResult",
    "LayerResult",
    "top_eigenpairs",
    "smallest_eigenvalue",
    "hutchinson_trace",
    "hutchpp_trace",
    "slq_density",
    "slq_sigma",
    "outlier_split",
    "bulk_and_outliers",
    "layer_spectra",
    "wasserstein1",
    "pyhessian_top_eigenvalues",
    "pyhessian_trace",
    "OUTLIER_RHO",
    "BULK_RHO",
    "MIN_GAP_RATIO",
]

#: An eigenvector belongs to the leading outlier run when its overlap is at least this.
OUTLIER_RHO = 0.5
#: The split is clean when every eigenvector after the run overlaps less than this.
BULK_RHO = 0.1
#: Without a clean run, an eigen-gap ratio at least this large is still a (weaker) separation.
MIN_GAP_RATIO = 1.2

_STOCHASTIC = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)

ProgressFn = Callable[[int, int], None]


# --------------------------------------------------------------------------- operators


class _OperatorBase:
    """What the algorithms need: ``n_params``, ``matvec``, an ``hvps`` counter, a dtype name."""

    n_params: int
    hvps: int
    dtype_name: str = "float64"

    def matvec(self, v: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def matmat(self, V: np.ndarray) -> np.ndarray:
        """``H`` applied to each row of ``V`` ([m, P] -> [m, P]); counts m HVPs."""
        V = np.atleast_2d(np.asarray(V, dtype=np.float64))
        return np.stack([self.matvec(row) for row in V]) if len(V) else V.copy()

    def as_linear_operator(self) -> spla.LinearOperator:
        """A ``scipy.sparse.linalg.LinearOperator`` of shape [P, P] (float64) view of ``H``."""
        P = self.n_params
        return spla.LinearOperator((P, P), matvec=self.matvec, rmatvec=self.matvec,
                                   matmat=lambda V: self.matmat(np.asarray(V).T).T,
                                   dtype=np.float64)

    def dense(self, chunk: int = 256) -> np.ndarray:
        """The full [P, P] matrix from P HVPs on unit vectors (symmetrised). Small P only."""
        P = self.n_params
        H = np.empty((P, P))
        for s in range(0, P, chunk):
            E = np.zeros((min(chunk, P - s), P))
            E[np.arange(len(E)), s + np.arange(len(E))] = 1.0
            H[s:s + len(E)] = self.matmat(E)
        return 0.5 * (H + H.T)

    def diagonal(self, chunk: int = 256) -> np.ndarray:
        """The exact diagonal of ``H`` ([P]) from P HVPs on unit vectors, without storing H."""
        P = self.n_params
        d = np.empty(P)
        for s in range(0, P, chunk):
            E = np.zeros((min(chunk, P - s), P))
            idx = np.arange(len(E))
            E[idx, s + idx] = 1.0
            d[s:s + len(E)] = self.matmat(E)[idx, s + idx]
        return d


class DenseOperator(_OperatorBase):
    """An explicit symmetric matrix ``A`` [P, P] behind the operator interface (for tests and
    analytic cases); ``matvec`` counts one HVP per product."""

    def __init__(self, A: np.ndarray):
        A = np.asarray(A, dtype=np.float64)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise LandscapeError(f"DenseOperator needs a square matrix, got shape {A.shape}")
        self.A = 0.5 * (A + A.T)
        self.n_params = int(A.shape[0])
        self.hvps = 0

    def matvec(self, v: np.ndarray) -> np.ndarray:
        self.hvps += 1
        return self.A @ np.asarray(v, dtype=np.float64).reshape(-1)

    def matmat(self, V: np.ndarray) -> np.ndarray:
        V = np.atleast_2d(np.asarray(V, dtype=np.float64))
        self.hvps += len(V)
        return V @ self.A


def _as_tensor(a, dtype=None) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        t = a.detach()
    else:
        t = torch.as_tensor(np.asarray(a))
    return t.to(dtype) if dtype is not None else t


class HessianOperator(_OperatorBase):
    """The Hessian of the full-batch mean loss of ``model`` on ``(X, y)``, as an operator.

    Args:
        model: any ``nn.Module`` mapping ``X`` to outputs ``[N, K]``; never modified (the
            operator works on a private deep copy converted to ``dtype``).
        X: inputs ``[N, ...]`` (tensor or array); converted to ``dtype``.
        y: integer labels ``[N]`` or float targets ``[N]``/``[N, K]``.
        loss_kind: ``"cross_entropy"`` or ``"mse"`` (see :mod:`landscape.core.losses`).
        dtype: ``torch.float64`` (default) or ``torch.float32``; HVPs run in this precision,
            numpy results are always float64.
        batch_size: ``None`` for one graph over all data, else chunks of this many examples,
            one cached graph each, HVPs summed with weights ``n_chunk / N``.
        mode: ``None`` keeps each submodule's train/eval flag as in the caller's model and
            refuses a model with Dropout or BatchNorm in train mode (the loss would not be a
            deterministic function of the parameters); ``"eval"`` or ``"train"`` puts the
            private copy in that mode explicitly. In ``"train"`` mode dropout masks are drawn
            once per graph build (from ``seed``) and BatchNorm uses each chunk's statistics.
        seed: seeds the dropout masks of ``mode="train"`` (the global RNG is not touched).

    Attributes:
        names, shapes, sizes: the parameter tensors, in ``named_parameters()`` order.
        n_params: ``P``.  hvps: HVPs computed so far (one per full-data product).
        n_examples: ``N``.  n_classes: ``C`` for integer labels, else None.
    """

    def __init__(self, model: nn.Module, X, y, loss_kind: str = "cross_entropy",
                 dtype: torch.dtype = torch.float64, batch_size: int | None = None,
                 mode: str | None = None, seed: int = 0):
        if loss_kind not in LOSSES:
            raise LandscapeError(f"unknown loss {loss_kind!r}; choose one of {LOSSES}")
        if dtype not in (torch.float64, torch.float32):
            raise LandscapeError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
        if mode not in (None, "eval", "train"):
            raise LandscapeError(f"mode must be None, 'eval' or 'train', got {mode!r}")
        if not isinstance(model, nn.Module):
            raise LandscapeError(f"model must be a torch nn.Module, got {type(model).__name__}")
        if mode is None:
            live = sorted({type(m).__name__ for m in model.modules()
                           if isinstance(m, _STOCHASTIC) and m.training})
            if live:
                raise LandscapeError(
                    f"the model has {', '.join(live)} in train mode, so its loss is not a "
                    "deterministic function of the parameters; pass mode='eval' (usual) or "
                    "mode='train' explicitly")
        self.loss_kind = loss_kind
        self.dtype = dtype
        self.dtype_name = str(dtype).replace("torch.", "")
        self.mode = mode
        self.seed = int(seed)

        m = copy.deepcopy(model).to(dtype)
        if mode == "eval":
            m.eval()
        elif mode == "train":
            m.train()
        named = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
        if not named:
            raise LandscapeError("the model has no parameters that require gradients")
        for _, p in m.named_parameters():
            p.grad = None
        self._model = m
        self._params = [p for _, p in named]
        self.names = [n for n, _ in named]
        self.shapes = [tuple(p.shape) for p in self._params]
        self.sizes = [int(p.numel()) for p in self._params]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.n_params = int(self.offsets[-1])
        self.device = self._params[0].device

        X = _as_tensor(X, dtype).to(self.device)
        y = _as_tensor(y).to(self.device)
        if X.ndim == 0 or X.shape[0] == 0:
            raise LandscapeError("the data set is empty")
        if y.shape[0] != X.shape[0]:
            raise LandscapeError(f"X has {X.shape[0]} examples but y has {y.shape[0]}")
        if not torch.isfinite(X).all():
            raise LandscapeError("X contains NaN or infinite values")
        if y.is_floating_point():
            y = y.to(dtype)
            if loss_kind == "cross_entropy":
                raise LandscapeError("cross-entropy needs integer class labels, got float targets")
        self.X, self.y = X, y
        self.n_examples = int(X.shape[0])
        self.n_classes = None if y.is_floating_point() else int(y.max().item()) + 1
        if batch_size is None or int(batch_size) >= self.n_examples:
            self.batch_size = self.n_examples
        elif int(batch_size) <= 0:
            raise LandscapeError(f"batch_size must be positive, got {batch_size}")
        else:
            self.batch_size = int(batch_size)
        self.hvps = 0
        self.graph_builds = 0
        self._batched_ok = True
        self._build()

    # ---- parameter point and graph

    def _chunks(self):
        N, b = self.n_examples, self.batch_size
        for s in range(0, N, b):
            yield self.X[s:s + b], self.y[s:s + b], min(b, N - s) / N

    def _forward_loss(self, Xc, yc) -> torch.Tensor:
        try:
            out = self._model(Xc)
            val = _loss_fn(out, yc, self.loss_kind)
        except LandscapeError:
            raise
        except Exception as e:  # shape mismatches and the like are the user's input
            raise LandscapeError(
                f"the model cannot compute the {self.loss_kind} loss on this data: "
                f"{str(e).splitlines()[0][:200]}") from None
        return val

    def _build(self) -> None:
        """Build and cache the gradient graph(s) at the current parameter point."""
        self._graphs = []
        total = 0.0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for Xc, yc, w in self._chunks():
                val = self._forward_loss(Xc, yc)
                if not torch.isfinite(val):
                    raise LandscapeError(f"the loss is not finite at this point ({val.item()})")
                g = torch.autograd.grad(val, self._params, create_graph=True, allow_unused=True,
                                        materialize_grads=True)
                live = [i for i, gi in enumerate(g) if gi.requires_grad]
                self._graphs.append((w, g, live))
                total += w * float(val.detach())
        self.loss_value = total
        self.graph_builds += 1

    def point(self) -> np.ndarray:
        """The current parameter vector ``theta`` [P] (float64)."""
        with torch.no_grad():
            flat = torch.cat([p.reshape(-1) for p in self._params])
            return flat.to(device="cpu", dtype=torch.float64, copy=True).numpy()

    def set_point(self, theta) -> None:
        """Move to a new parameter vector ``theta`` [P] and rebuild the gradient graph(s)."""
        theta = _as_tensor(theta, self.dtype).reshape(-1).to(self.device)
        if theta.numel() != self.n_params:
            raise LandscapeError(f"a parameter vector needs {self.n_params} numbers, "
                                 f"got {theta.numel()}")
        with torch.no_grad():
            for p, s, n in zip(self._params, self.offsets[:-1], self.sizes):
                p.copy_(theta[s:s + n].reshape(p.shape))
        self._graphs = []
        self._build()

    def gradient(self) -> np.ndarray:
        """The full-batch gradient ``dL/dtheta`` [P] at the current point (from the cache)."""
        acc = torch.zeros(self.n_params, dtype=self.dtype, device=self.device)
        for w, g, _ in self._graphs:
            acc.add_(torch.cat([gi.detach().reshape(-1) for gi in g]), alpha=w)
        return acc.double().cpu().numpy()

    # ---- products

    def _split(self, v: torch.Tensor) -> list[torch.Tensor]:
        lead = v.shape[:-1]
        return [v[..., s:s + n].reshape(*lead, *shape)
                for s, n, shape in zip(self.offsets[:-1], self.sizes, self.shapes)]

    def _hvp(self, v: torch.Tensor, batched: bool = False) -> torch.Tensor:
        parts = self._split(v)
        total = None
        for w, g, live in self._graphs:
            if not live:
                continue
            hv = torch.autograd.grad([g[i] for i in live], self._params,
                                     grad_outputs=[parts[i] for i in live], retain_graph=True,
                                     allow_unused=True, materialize_grads=True,
                                     is_grads_batched=batched)
            lead = v.shape[:-1]
            flat = torch.cat([h.reshape(*lead, -1) for h in hv], dim=-1)
            total = flat.mul_(w) if total is None else total.add_(flat, alpha=w)
        if total is None:
            total = torch.zeros_like(v)
        return total

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """``H v`` for ``v`` of shape [P] (or [P, 1]); returns float64 [P]. One HVP."""
        v = np.asarray(v)
        if v.size != self.n_params:
            raise LandscapeError(f"a vector of {self.n_params} numbers is needed, got {v.size}")
        vt = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).reshape(-1))
        vt = vt.to(dtype=self.dtype, device=self.device)
        self.hvps += 1
        out = self._hvp(vt).double().cpu().numpy()
        return out.reshape(v.shape) if v.ndim == 2 else out

    def matmat(self, V: np.ndarray, batched: bool = False, chunk: int = 8) -> np.ndarray:
        """``H`` applied to each row of ``V`` [m, P] -> [m, P]; m HVPs.

        By default one HVP after another. ``batched=True`` vectorises ``chunk`` rows at a time
        with ``vmap`` (``is_grads_batched``): worth it on a GPU; on the CPU it measured 1.3-4.6x
        slower per HVP (digits MLP, 26k parameters), so it is off by default.
        """
        V = np.atleast_2d(np.asarray(V, dtype=np.float64))
        if V.shape[1] != self.n_params:
            raise LandscapeError(f"vectors of {self.n_params} numbers are needed, "
                                 f"got {V.shape[1]}")
        out = np.empty_like(V)
        step = chunk if batched else 1
        for s in range(0, len(V), step):
            block = torch.from_numpy(np.ascontiguousarray(V[s:s + step]))
            block = block.to(dtype=self.dtype, device=self.device)
            res = None
            if batched and self._batched_ok and len(block) > 1:
                try:
                    res = self._hvp(block, batched=True)
                except Exception:  # an op without a batching rule: fall back to a loop
                    self._batched_ok = False
            if res is None:
                res = torch.stack([self._hvp(b) for b in block])
            self.hvps += len(block)
            out[s:s + len(block)] = res.double().cpu().numpy()
        return out

    # ---- helpers for the outlier split and per-layer blocks

    def class_mean_gradients(self) -> np.ndarray:
        """Gradients of the mean loss over each class's examples, [C, P] (float64).

        Row ``c`` is ``d/dtheta mean_{i: y_i = c} loss_i``; a class without examples gives a
        zero row. Integer labels only.
        """
        if self.n_classes is None:
            raise LandscapeError("class-mean gradients need integer class labels")
        rows = np.zeros((self.n_classes, self.n_params))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for c in range(self.n_classes):
                idx = (self.y == c).nonzero().reshape(-1)
                if idx.numel() == 0:
                    continue
                acc = torch.zeros(self.n_params, dtype=self.dtype, device=self.device)
                for s in range(0, idx.numel(), self.batch_size):
                    j = idx[s:s + self.batch_size]
                    val = self._forward_loss(self.X[j], self.y[j])
                    g = torch.autograd.grad(val, self._params, allow_unused=True,
                                            materialize_grads=True)
                    acc.add_(torch.cat([gi.reshape(-1) for gi in g]), alpha=j.numel())
                rows[c] = (acc / idx.numel()).double().cpu().numpy()
        return rows

    def block(self, name: str) -> BlockOperator:
        """The diagonal block ``H_bb`` of one parameter tensor (by name) as an operator."""
        if name not in self.names:
            raise LandscapeError(f"no parameter named {name!r}; the model has {self.names}")
        i = self.names.index(name)
        return BlockOperator(self, int(self.offsets[i]), int(self.offsets[i + 1]), name)


class BlockOperator(_OperatorBase):
    """``H_bb = E_b^T H E_b``: the operator restricted to the slice ``[start, stop)`` of the
    parameter vector (one parameter tensor). Each product costs one HVP of the parent."""

    def __init__(self, parent: _OperatorBase, start: int, stop: int, name: str = ""):
        self.parent, self.start, self.stop, self.name = parent, start, stop, name
        self.n_params = stop - start
        self.hvps = 0
        self.dtype_name = parent.dtype_name

    def _embed(self, V: np.ndarray) -> np.ndarray:
        V = np.atleast_2d(np.asarray(V, dtype=np.float64))
        full = np.zeros((len(V), self.parent.n_params))
        full[:, self.start:self.stop] = V
        return full

    def matvec(self, v: np.ndarray) -> np.ndarray:
        self.hvps += 1
        v = np.asarray(v, dtype=np.float64).reshape(-1)
        if v.size != self.n_params:
            raise LandscapeError(f"a vector of {self.n_params} numbers is needed, got {v.size}")
        return self.parent.matvec(self._embed(v)[0])[self.start:self.stop]

    def matmat(self, V: np.ndarray) -> np.ndarray:
        full = self._embed(V)
        self.hvps += len(full)
        return self.parent.matmat(full)[:, self.start:self.stop]


def _as_operator(op) -> _OperatorBase:
    if isinstance(op, _OperatorBase):
        return op
    if isinstance(op, np.ndarray):
        return DenseOperator(op)
    if hasattr(op, "matvec") and hasattr(op, "n_params"):
        return op
    raise LandscapeError(f"not a Hessian operator: {type(op).__name__}")


# --------------------------------------------------------------------------- results


@dataclass
class EigenResult:
    """Top (or bottom) eigenpairs of ``H``.

    eigenvalues [k] descending (loss / param^2); eigenvectors [k, P] unit rows;
    residuals [k] ``||H u_i - lambda_i u_i||`` (same units as the eigenvalues);
    hvps: HVPs used in total (Lanczos + residual check); seconds: wall time.
    """

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
class TraceResult:
    """A stochastic trace estimate ``trace`` (loss / param^2) with its standard error
    ``stderr``; ``samples`` [m] are the per-probe quadratic forms the estimate averages."""

    trace: float
    stderr: float
    samples: np.ndarray
    method: str
    hvps: int
    seconds: float
    meta: dict = field(default_factory=dict)


@dataclass
class DensityResult:
    """SLQ spectral density.

    grid [G] eigenvalue axis; density [G] (per unit eigenvalue, integrates to 1 over the grid);
    nodes [n_probes, m] Ritz values; weights [n_probes, m] Gauss weights (each row sums to 1;
    unused slots of an early-terminated probe have weight 0); sigma: the Gaussian width used.
    """

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
class OutlierResult:
    """Bulk/outlier split of the top eigenvectors by overlap with the class-mean gradients.

    eigenvalues [k] descending; rho [k] overlaps in [0, 1]; gap_ratios [k-1]
    ``lambda_i / lambda_{i+1}`` (NaN where lambda_{i+1} <= 0); n_outliers; clean;
    verdict: ``"clean"``, ``"gap only"`` or ``"no separation"``; message: one sentence.
    """

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
class LayerResult:
    """Per-parameter-tensor top eigenvalue and trace of the diagonal blocks ``H_bb``.

    names [L], sizes [L], top_eigenvalue [L], residual [L], trace [L], trace_stderr [L]
    (0 where the block trace was computed exactly from unit vectors)."""

    names: list
    shapes: list
    sizes: np.ndarray
    top_eigenvalue: np.ndarray
    residual: np.ndarray
    trace: np.ndarray
    trace_stderr: np.ndarray
    meta: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- plumbing


def _meta(op, hvps: int, seconds: float, **extra) -> dict:
    return {"hvps": int(hvps), "seconds": float(seconds),
            "dtype": getattr(op, "dtype_name", "float64"), "n_params": int(op.n_params),
            **extra}


def _is_cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


class Watch:
    """Counts HVPs for one algorithm run, reports progress and honours cancellation.

    ``progress(done, total)`` receives HVPs done and the expected total (an estimate for
    Lanczos); ``cancel`` is a ``threading.Event``-like object or a no-argument callable.
    """

    def __init__(self, op, total: int, progress=None, cancel=None, what: str = ""):
        self.op, self.total, self.progress, self.cancel, self.what = op, total, progress, cancel, what
        self.start_hvps = op.hvps
        self.t0 = time.perf_counter()

    @property
    def hvps(self) -> int:
        return self.op.hvps - self.start_hvps

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    def check(self, partial=None) -> None:
        if _is_cancelled(self.cancel):
            raise Cancelled(f"{self.what} cancelled after {self.hvps} HVPs", partial=partial)

    def report(self) -> None:
        if self.progress is not None:
            self.progress(self.hvps, max(self.total, self.hvps))

    def matvec(self, v):
        self.check()
        out = self.op.matvec(v)
        self.report()
        return out

    def matmat(self, V):
        self.check()
        out = self.op.matmat(V)
        self.report()
        return out


def _residuals(op, vals: np.ndarray, vecs: np.ndarray, watch: Watch) -> np.ndarray:
    if len(vals) == 0:
        return np.zeros(0)
    HV = watch.matmat(vecs)
    return np.linalg.norm(HV - vals[:, None] * vecs, axis=1)


def _start_vector(P: int, v0, seed: int) -> np.ndarray:
    if v0 is None:
        return np.random.default_rng(seed).standard_normal(P)
    v = np.asarray(v0, dtype=np.float64)
    if v.ndim == 2:  # several previous eigenvectors: start in their span
        v = v.sum(0)
    v = v.reshape(-1)
    if v.size != P:
        raise LandscapeError(f"start vector has {v.size} numbers, the operator {P}")
    if not np.all(np.isfinite(v)) or np.linalg.norm(v) == 0:
        return np.random.default_rng(seed).standard_normal(P)
    return v


def _default_tol(op) -> float:
    return 1e-8 if getattr(op, "dtype_name", "float64") == "float64" else 1e-5


# --------------------------------------------------------------------------- top-k


def top_eigenpairs(op, k: int = 5, tol: float | None = None, v0=None, which: str = "LA",
                   progress: ProgressFn | None = None, cancel=None, ncv: int | None = None,
                   maxiter: int | None = None, seed: int = 0) -> EigenResult:
    """The k algebraically largest (``which="LA"``), smallest (``"SA"``) or largest-magnitude
    (``"LM"``) eigenpairs of ``H`` by implicitly restarted Lanczos (ARPACK ``eigsh``).

    Args:
        op: a :class:`HessianOperator` (or any operator with ``n_params``/``matvec``/``hvps``).
        k: number of eigenpairs.
        tol: ARPACK's relative tolerance: it stops when every Ritz pair has an estimated
            residual ``<= tol * |lambda|``. Default 1e-8 (float64) or 1e-5 (float32).
            Eigenvalue errors are about ``residual^2 / gap``, far below ``tol``.
        v0: warm start, a vector [P] or previous eigenvectors [j, P] (their sum is used);
            default a seeded Gaussian vector.
        ncv: Lanczos basis size (default ARPACK's ``max(2k+1, 20)``, capped at P).
        maxiter: bound on ARPACK restarts (default 200; each adds about ``ncv - k`` HVPs).
            Unconverged, the converged pairs found so far come back with
            ``meta["converged"] = False``.
        progress, cancel: see :class:`Watch`; a cancel raises :class:`Cancelled`.

    Returns an :class:`EigenResult`, eigenvalues sorted descending; residuals measured with k
    extra HVPs (included in ``hvps``; ``meta["hvps_lanczos"]`` is the Lanczos part).
    Degenerate sizes (``k >= P - 1``) fall back to the dense matrix from P HVPs.
    """
    op = _as_operator(op)
    P = op.n_params
    k = int(k)
    if k < 1 or k > P:
        raise LandscapeError(f"k must be between 1 and the parameter count {P}, got {k}")
    if which not in ("LA", "SA", "LM"):
        raise LandscapeError(f"which must be 'LA', 'SA' or 'LM', got {which!r}")
    tol = _default_tol(op) if tol is None else float(tol)
    if ncv is None:
        ncv = max(2 * k + 1, 20)
    ncv = int(min(max(ncv, k + 2), P))
    watch = Watch(op, total=ncv + 2 * k, progress=progress, cancel=cancel, what="top eigenpairs")
    converged = True
    if k >= P - 1 or ncv <= k + 1:
        H = watch.matmat(np.eye(P))
        ev, U = np.linalg.eigh(0.5 * (H + H.T))
        order = {"LA": np.argsort(-ev), "SA": np.argsort(ev),
                 "LM": np.argsort(-np.abs(ev))}[which][:k]
        vals, vecs = ev[order], U[:, order].T
        method = "dense"
    else:
        L = spla.LinearOperator((P, P), matvec=watch.matvec, dtype=np.float64)
        start = _start_vector(P, v0, seed)
        try:
            vals, V = spla.eigsh(L, k=k, which=which, tol=tol, v0=start, ncv=ncv,
                                 maxiter=200 if maxiter is None else int(maxiter))
        except spla.ArpackNoConvergence as e:
            converged = False
            vals, V = e.eigenvalues, e.eigenvectors
            if len(vals) == 0:
                raise LandscapeError(
                    f"Lanczos did not converge to any eigenpair within {watch.hvps} HVPs; "
                    "raise maxiter or tol") from None
        vecs = np.asarray(V).T
        method = "lanczos"
    order = np.argsort(-vals)
    vals, vecs = np.asarray(vals, dtype=np.float64)[order], vecs[order]
    vecs = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    hvps_lanczos = watch.hvps
    res = _residuals(op, vals, vecs, watch)
    meta = _meta(op, watch.hvps, watch.seconds, hvps_lanczos=hvps_lanczos,
                 hvps_residuals=watch.hvps - hvps_lanczos, tol=tol, which=which, ncv=ncv,
                 method=method, converged=converged, k=k)
    return EigenResult(vals, vecs, res, watch.hvps, watch.seconds, meta)


def smallest_eigenvalue(op, tol: float | None = None, v0=None, progress=None, cancel=None,
                        ncv: int | None = None, maxiter: int | None = None,
                        seed: int = 0) -> EigenResult:
    """The most negative (algebraically smallest) eigenpair of ``H`` (``which="SA"``).

    The low edge of a network Hessian sits in its dense bulk, so Lanczos converges slowly
    there; the default basis is larger (``ncv=40``) and ``maxiter`` bounds the work. When
    ARPACK stops unconverged the best Ritz pair is returned with ``meta["converged"] =
    False``; its measured residual says how far it is from an eigenpair.
    """
    op = _as_operator(op)
    return top_eigenpairs(op, k=1, tol=tol, v0=v0, which="SA", progress=progress, cancel=cancel,
                          ncv=ncv if ncv is not None else min(40, op.n_params),
                          maxiter=maxiter if maxiter is not None else 50, seed=seed)


# --------------------------------------------------------------------------- trace


def rademacher(rng: np.random.Generator, m: int, P: int) -> np.ndarray:
    return rng.integers(0, 2, size=(m, P)).astype(np.float64) * 2.0 - 1.0


def hutchinson_trace(op, probes: int = 100, seed: int = 0, progress=None,
                     cancel=None) -> TraceResult:
    """Hutchinson's estimate ``tr H ~ (1/m) sum_j z_j^T H z_j`` with m Rademacher probes.

    The estimate is unbiased; ``stderr = std(samples, ddof=1) / sqrt(m)``. Uses exactly
    ``probes`` HVPs.
    """
    op = _as_operator(op)
    m = int(probes)
    if m < 2:
        raise LandscapeError(f"Hutchinson needs at least 2 probes for a standard error, got {m}")
    watch = Watch(op, total=m, progress=progress, cancel=cancel, what="Hutchinson trace")
    Z = rademacher(np.random.default_rng(seed), m, op.n_params)
    samples = np.empty(m)
    step = 16
    for s in range(0, m, step):
        HZ = watch.matmat(Z[s:s + step])
        samples[s:s + len(HZ)] = np.einsum("ij,ij->i", Z[s:s + step], HZ)
    est = float(samples.mean())
    se = float(samples.std(ddof=1) / math.sqrt(m))
    meta = _meta(op, watch.hvps, watch.seconds, probes=m, seed=seed, method="hutchinson")
    return TraceResult(est, se, samples, "hutchinson", watch.hvps, watch.seconds, meta)


def hutchpp_trace(op, probes: int = 99, seed: int = 0, progress=None,
                  cancel=None) -> TraceResult:
    """Hutch++ (Meyer et al. 2021) with a fixed budget of ``probes`` HVPs.

    With ``s = probes // 3``: draw Rademacher ``S`` [P, s], ``Q = orth(H S)`` (s HVPs), take
    ``t_top = tr(Q^T H Q)`` exactly (s HVPs), and estimate the deflated rest by Hutchinson with
    ``r = probes - 2s`` Rademacher probes projected off ``Q``:
    ``t_rest = (1/r) sum_j g_j^T (I-QQ^T) H (I-QQ^T) g_j``. ``trace = t_top + t_rest``.

    Standard error (the documented choice): given the sketch ``Q``, ``t_top`` is exact and
    ``t_rest`` is the mean of r independent, unbiased Hutchinson samples of the deflated
    matrix, so ``stderr = std(rest samples, ddof=1) / sqrt(r)`` is the standard error of the
    estimate conditional on Q. Hutch++ is unbiased for every Q, so the bar is centred on the
    truth; it ignores only how the split between exact and sampled parts varies with Q, which
    moves no bias. Measured over 1,000 seeds on a 100x100 matrix with three dominant
    eigenvalues: ``|error| <= 2 stderr`` in 93% (30 HVPs) and 94% (99 HVPs) of runs, with the
    stderr's mean equal to the RMS error; with only 12 HVPs (4 residual probes) coverage drops
    to 84% (few-sample t effect), so use 30 or more. ``samples`` holds ``t_top + (rest sample
    j)``, whose mean is the estimate.
    """
    op = _as_operator(op)
    m = int(probes)
    if m < 4:
        raise LandscapeError(f"Hutch++ needs at least 4 HVPs (2 sketch, 2 residual), got {m}")
    P = op.n_params
    s = min(m // 3, P)
    r = m - 2 * s
    watch = Watch(op, total=m, progress=progress, cancel=cancel, what="Hutch++ trace")
    rng = np.random.default_rng(seed)
    S = rademacher(rng, s, P)
    HS = watch.matmat(S)
    Q, _ = np.linalg.qr(HS.T)  # [P, s]
    HQ = watch.matmat(Q.T)  # [s, P]
    t_top = float(np.einsum("ij,ji->", HQ, Q))
    G = rademacher(rng, r, P)
    G = G - (G @ Q) @ Q.T
    HG = watch.matmat(G)
    HG = HG - (HG @ Q) @ Q.T
    rest = np.einsum("ij,ij->i", G, HG)
    est = t_top + float(rest.mean())
    se = float(rest.std(ddof=1) / math.sqrt(r)) if r > 1 else float("nan")
    meta = _meta(op, watch.hvps, watch.seconds, probes=m, sketch=s, residual_probes=r,
                 trace_top=t_top, seed=seed, method="hutch++")
    return TraceResult(est, se, t_top + rest, "hutch++", watch.hvps, watch.seconds, meta)


# --------------------------------------------------------------------------- density


def lanczos_quadrature(watch: Watch, v: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """m steps of Lanczos with full reorthogonalisation from unit ``v``; returns the Ritz
    nodes [j] and Gauss weights [j] (j <= m; fewer on an invariant subspace)."""
    P = v.size
    V = np.zeros((m, P))
    V[0] = v / np.linalg.norm(v)
    alpha, beta = [], []
    for j in range(m):
        w = watch.matvec(V[j])
        a = float(V[j] @ w)
        alpha.append(a)
        if j == m - 1:
            break
        w = w - a * V[j] - (beta[-1] * V[j - 1] if j > 0 else 0.0)
        for _ in range(2):  # "twice is enough" (Kahan/Parlett)
            w = w - V[:j + 1].T @ (V[:j + 1] @ w)
        b = float(np.linalg.norm(w))
        scale = max(abs(a), *(abs(x) for x in beta), 1e-300)
        if b <= 1e-10 * scale:  # invariant subspace: the quadrature is exact already
            break
        beta.append(b)
        V[j + 1] = w / b
    alpha_arr = np.asarray(alpha)
    beta_arr = np.asarray(beta[:len(alpha) - 1])
    if len(alpha_arr) == 1:
        return alpha_arr, np.ones(1)
    theta, S = scipy.linalg.eigh_tridiagonal(alpha_arr, beta_arr)
    return theta, S[0] ** 2


def slq_sigma(nodes: np.ndarray, lanczos_steps: int) -> float:
    """The smoothing width rule: ``sigma = (theta_max - theta_min) / (2 m)``.

    m Lanczos steps give a Gauss quadrature that is exact for polynomials of degree up to
    ``2m - 1``, and a Gaussian of width sigma over a spectrum of range R needs a polynomial of
    degree about ``R / sigma`` to be represented; so ``R / (2m)`` is the narrowest kernel the
    Krylov space can integrate faithfully. Narrower kernels only show the m quadrature spikes
    per probe; wider ones blur what the Krylov space did resolve. More steps, narrower kernel.
    (The smoothing moves mass by about ``0.8 sigma`` in Wasserstein-1.)
    """
    nodes = np.asarray(nodes, dtype=np.float64).reshape(-1)
    spread = float(nodes.max() - nodes.min()) if nodes.size else 0.0
    if spread <= 0:
        spread = max(abs(float(nodes.max())) if nodes.size else 1.0, 1e-12)
    return spread / (2 * max(int(lanczos_steps), 1))


def slq_density(op, probes: int = 5, lanczos_steps: int = 80, seed: int = 0, grid=None,
                sigma: float | None = None, grid_points: int = 2001, progress=None,
                cancel=None) -> DensityResult:
    """Spectral density of ``H`` by stochastic Lanczos quadrature.

    Each of ``probes`` Rademacher probes (normalised) runs ``lanczos_steps`` (m) Lanczos steps
    with full reorthogonalisation (m HVPs; m is capped at P). The density is
    ``phi(t) = (1/n_probes) sum_p sum_j tau_pj N(t; theta_pj, sigma^2)``, with ``sigma`` from
    :func:`slq_sigma` unless given, evaluated on ``grid`` (default ``grid_points`` points over
    ``[min theta - 5 sigma, max theta + 5 sigma]``) and renormalised to integrate to 1 on it
    (trapezoid rule). Plot it on a log y-axis: the outliers carry weights around ``1/P``.

    ``meta["trace_estimate"] = P * mean_p sum_j tau_pj theta_pj`` is the SLQ trace estimate.
    """
    op = _as_operator(op)
    P = op.n_params
    n_v = int(probes)
    m = min(int(lanczos_steps), P)
    if n_v < 1 or m < 1:
        raise LandscapeError("SLQ needs at least one probe and one Lanczos step")
    watch = Watch(op, total=n_v * m, progress=progress, cancel=cancel, what="SLQ density")
    rng = np.random.default_rng(seed)
    nodes = np.zeros((n_v, m))
    weights = np.zeros((n_v, m))
    for p in range(n_v):
        z = rademacher(rng, 1, P)[0]
        theta, tau = lanczos_quadrature(watch, z, m)
        nodes[p, :len(theta)] = theta
        nodes[p, len(theta):] = theta[-1] if len(theta) else 0.0
        weights[p, :len(tau)] = tau
    grid, dens, sig, extra = slq_smooth(nodes, weights, m, P, grid, sigma, grid_points)
    meta = _meta(op, watch.hvps, watch.seconds, probes=n_v, lanczos_steps=m, seed=seed, **extra)
    return DensityResult(grid, dens, nodes, weights, sig, watch.hvps, watch.seconds, meta)


def slq_smooth(nodes: np.ndarray, weights: np.ndarray, lanczos_steps: int, n_params: int,
               grid=None, sigma: float | None = None, grid_points: int = 2001):
    """Combine per-probe Gauss quadratures (``nodes``/``weights`` [n_probes, m]) into a
    smoothed density: returns ``(grid, density, sigma, meta)``. Shared by the local and the
    distributed SLQ, so both give the same answer for the same probes."""
    n_v = nodes.shape[0]
    used = weights > 0
    sig = slq_sigma(nodes[used], lanczos_steps) if sigma is None else float(sigma)
    if not sig > 0:
        raise LandscapeError(f"sigma must be positive, got {sig}")
    if grid is None:
        lo, hi = nodes[used].min() - 5 * sig, nodes[used].max() + 5 * sig
        grid = np.linspace(lo, hi, int(grid_points))
    grid = np.asarray(grid, dtype=np.float64)
    dens = np.zeros_like(grid)
    for th, w in zip(nodes[used], weights[used]):
        dens += w * np.exp(-0.5 * ((grid - th) / sig) ** 2)
    dens /= n_v * sig * math.sqrt(2 * math.pi)
    area = float(np.trapezoid(dens, grid)) if len(grid) > 1 else 0.0
    if area > 0:
        dens = dens / area
    meta = {"sigma": sig,
            "sigma_rule": "(max node - min node) / (2 lanczos_steps)" if sigma is None else "given",
            "trace_estimate": float(n_params * np.mean((nodes * weights).sum(1))),
            "mass_on_grid_before_renorm": area}
    return grid, dens, sig, meta


def wasserstein1(values_a, values_b, weights_a=None, weights_b=None) -> float:
    """Wasserstein-1 distance between two weighted 1-D point sets (eigenvalue units); e.g. an
    SLQ quadrature (:meth:`DensityResult.discrete`) against an exact spectrum."""
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(np.asarray(values_a).reshape(-1),
                                      np.asarray(values_b).reshape(-1), weights_a, weights_b))


# --------------------------------------------------------------------------- outliers


def outlier_split(eigvals, eigvecs, class_mean_grads, run_rho: float = OUTLIER_RHO,
                  bulk_rho: float = BULK_RHO, min_gap: float = MIN_GAP_RATIO) -> OutlierResult:
    """Split the top eigenvectors into outliers and bulk (DESIGN.md 3.3).

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
    split.meta.update(_meta(op, eig.hvps, time.perf_counter() - t0, k=k,
                            max_residual=float(eig.residuals.max())))
    return split, eig


# --------------------------------------------------------------------------- per layer


def layer_spectra(op: HessianOperator, probes: int = 30, tol: float | None = None,
                  seed: int = 0, progress=None, cancel=None) -> LayerResult:
    """Top eigenvalue and trace of each parameter tensor's diagonal block ``H_bb``.

    The top eigenvalue uses :func:`top_eigenpairs` with k=1 on :meth:`HessianOperator.block`;
    the trace is exact (unit vectors, stderr 0) when the block has at most ``probes`` entries,
    else Hutchinson with ``probes`` probes.
    """
    t0, h0 = time.perf_counter(), op.hvps
    top, res, tr, se = [], [], [], []
    for name in op.names:
        if _is_cancelled(cancel):
            raise Cancelled("per-layer spectra cancelled")
        b = op.block(name)
        e = top_eigenpairs(b, k=1, tol=tol, seed=seed, cancel=cancel)
        top.append(e.eigenvalues[0])
        res.append(e.residuals[0])
        if b.n_params <= probes:
            tr.append(float(b.diagonal().sum()))
            se.append(0.0)
        else:
            t = hutchinson_trace(b, probes=probes, seed=seed, cancel=cancel)
            tr.append(t.trace)
            se.append(t.stderr)
        if progress is not None:
            progress(len(top), len(op.names))
    meta = _meta(op, op.hvps - h0, time.perf_counter() - t0, probes=probes)
    return LayerResult(list(op.names), list(op.shapes), np.asarray(op.sizes), np.asarray(top),
                       np.asarray(res), np.asarray(tr), np.asarray(se), meta)


# --------------------------------------------------------------------------- PyHessian


@contextmanager
def _pyhessian_counted(dtype: torch.dtype, seed: int):
    """Import PyHessian, count its HVP calls, run under a forked RNG seeded with ``seed`` and
    with torch's default dtype set to ``dtype`` (PyHessian draws its vectors with
    ``torch.randn(size)``, in the default dtype)."""
    try:
        import pyhessian  # noqa: F401
    except ImportError as e:  # pragma: no cover - pyhessian is a dependency
        raise LandscapeError(f"PyHessian is not installed: {e}") from None
    mod = sys.modules["pyhessian.hessian"]  # the package re-exports the class under this name
    counter = {"hvps": 0}
    orig_hvp = mod.hessian_vector_product

    def counted(gradsH, params, v):
        counter["hvps"] += 1
        return orig_hvp(gradsH, params, v)

    old_dtype = torch.get_default_dtype()
    mod.hessian_vector_product = counted
    try:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            # PyHessian builds its graph with backward(create_graph=True), which warns
            warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph")
            torch.manual_seed(seed)
            torch.set_default_dtype(dtype)
            yield mod, counter
    finally:
        torch.set_default_dtype(old_dtype)
        mod.hessian_vector_product = orig_hvp


def _drop_grads(model) -> None:
    """Break the param <-> .grad reference cycle PyHessian's ``create_graph`` backward leaves."""
    for p in model.parameters():
        p.grad = None


def _pyhessian_setup(model, X, y, loss_kind, dtype):
    if loss_kind not in LOSSES:
        raise LandscapeError(f"unknown loss {loss_kind!r}; choose one of {LOSSES}")
    m = copy.deepcopy(model).to(dtype)
    Xt = _as_tensor(X, dtype)
    yt = _as_tensor(y)
    if yt.is_floating_point():
        yt = yt.to(dtype)

    def criterion(out, target):
        return _loss_fn(out, target, loss_kind)

    return m, Xt, yt, criterion


def pyhessian_top_eigenvalues(model, X, y, loss_kind: str = "cross_entropy", k: int = 5,
                              max_iter: int = 100, tol: float = 1e-3,
                              dtype: torch.dtype = torch.float64, seed: int = 0) -> EigenResult:
    """PyHessian 0.1's top-k by power iteration with deflation (its ``eigenvalues``), on a
    private copy of ``model`` (PyHessian forces eval mode and writes ``.grad``).

    Returns an :class:`EigenResult` sorted descending, eigenvectors flattened [k, P] in
    ``parameters()`` order; ``residuals`` are NaN (PyHessian does not report them; measure
    them with our operator if needed); ``hvps`` counts PyHessian's HVP calls (its
    construction's gradient graph is built once, as ours is).
    """
    m, Xt, yt, criterion = _pyhessian_setup(model, X, y, loss_kind, dtype)
    t0 = time.perf_counter()
    with _pyhessian_counted(dtype, seed) as (mod, counter):
        h = mod.hessian(m, criterion, data=(Xt, yt), cuda=False)
        vals, vecs = h.eigenvalues(maxIter=max_iter, tol=tol, top_n=int(k))
    seconds = time.perf_counter() - t0
    flat = np.stack([torch.cat([t.detach().reshape(-1) for t in v]).double().numpy()
                     for v in vecs])
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)
    _drop_grads(m)
    vals = np.asarray(vals, dtype=np.float64)
    order = np.argsort(-vals)
    del h
    meta = {"hvps": counter["hvps"], "seconds": seconds, "dtype": str(dtype).replace("torch.", ""),
            "n_params": int(flat.shape[1]), "max_iter": max_iter, "tol": tol, "k": int(k),
            "method": "pyhessian power iteration", "raw_order": vals.tolist()}
    return EigenResult(vals[order], flat[order], np.full(len(vals), np.nan), counter["hvps"],
                       seconds, meta)


def pyhessian_trace(model, X, y, loss_kind: str = "cross_entropy", max_iter: int = 100,
                    tol: float = 1e-3, dtype: torch.dtype = torch.float64,
                    seed: int = 0) -> TraceResult:
    """PyHessian 0.1's Hutchinson trace (Rademacher, stops when the running mean changes by
    less than ``tol`` relative). ``stderr`` = std of its samples / sqrt(count)."""
    m, Xt, yt, criterion = _pyhessian_setup(model, X, y, loss_kind, dtype)
    t0 = time.perf_counter()
    with _pyhessian_counted(dtype, seed) as (mod, counter):
        h = mod.hessian(m, criterion, data=(Xt, yt), cuda=False)
        samples = np.asarray(h.trace(maxIter=max_iter, tol=tol), dtype=np.float64)
    seconds = time.perf_counter() - t0
    n_params = sum(p.numel() for p in m.parameters() if p.requires_grad)
    _drop_grads(m)
    del h
    se = float(samples.std(ddof=1) / math.sqrt(len(samples))) if len(samples) > 1 else float("nan")
    meta = {"hvps": counter["hvps"], "seconds": seconds, "dtype": str(dtype).replace("torch.", ""),
            "n_params": int(n_params), "probes": len(samples), "max_iter": max_iter, "tol": tol,
            "method": "pyhessian hutchinson"}
    return TraceResult(float(samples.mean()), se, samples, "pyhessian", counter["hvps"], seconds,
                       meta)
