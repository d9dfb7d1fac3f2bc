r"""The Hessian of the full-batch training loss as a linear operator (HVPs, never the matrix).

The object of study is the Hessian of the mean loss over a fixed data set,

.. math::  L(\theta) = \sum_c \frac{n_c}{N} L_c(\theta), \qquad
           L_c(\theta) = \frac{1}{n_c} \sum_{i \in \text{chunk } c} \ell(f_\theta(x_i), y_i),
           \qquad H = \nabla^2_\theta L(\theta) \in \mathbb{R}^{P \times P},

where ``theta`` is every ``requires_grad`` parameter of the model flattened in
``named_parameters()`` order (``P`` numbers) and the chunks are the whole data set (one chunk)
or ``batch_size`` slices of it. Units: ``H`` is in loss units per squared parameter unit.

Products ``H v`` (HVPs) use double backward (Pearlmutter 1994): the gradient
``g = dL/dtheta`` is computed ONCE per parameter point with ``create_graph=True`` and kept
(one graph per chunk); each HVP is ``d(g . v)/dtheta``, a second backward pass through the
kept graph. The operator owns a private ``copy.deepcopy`` of the caller's model whose
parameters are views of one flat buffer ``theta`` [P], so moving to a new point
(:meth:`HessianOperator.set_point`) is one copy plus one graph build.

- :class:`HessianOperator`: the network Hessian (``matvec``/``matmat`` on float64 numpy
  vectors, ``hvp`` on torch tensors), with an ``hvps`` counter.
- :class:`DenseOperator`: an explicit symmetric matrix behind the same interface.
- :class:`BlockOperator`: the diagonal block ``H_bb`` of one parameter tensor.

The algorithms (:mod:`.lanczos`, :mod:`.trace`, :mod:`.slq`, ...) need only ``n_params``,
``matvec``, ``matmat`` and ``hvps``; :func:`as_operator` accepts any such object or a matrix.
"""

from __future__ import annotations

import copy

import numpy as np
import scipy.sparse.linalg as spla
import torch
from torch import nn

from landscape.core.errors import LandscapeError
from landscape.core.losses import LOSSES
from landscape.core.losses import loss as loss_fn

__all__ = ["OperatorBase", "DenseOperator", "HessianOperator", "BlockOperator", "as_operator",
           "as_tensor", "STOCHASTIC"]

#: Modules whose train mode makes the loss a random function of the parameters.
STOCHASTIC = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


class OperatorBase:
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


class DenseOperator(OperatorBase):
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


def as_tensor(a, dtype=None) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        t = a.detach()
    else:
        t = torch.as_tensor(np.asarray(a))
    return t.to(dtype) if dtype is not None else t


class HessianOperator(OperatorBase):
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
                           if isinstance(m, STOCHASTIC) and m.training})
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
        with torch.no_grad():  # the parameters become views of one flat buffer theta [P]
            self._flat = torch.cat([p.detach().reshape(-1) for p in self._params]).clone()
            for p, s, n in zip(self._params, self.offsets[:-1], self.sizes):
                p.data = self._flat[s:s + n].view(p.shape)

        X = as_tensor(X, dtype).to(self.device)
        y = as_tensor(y).to(self.device)
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

    @property
    def model(self) -> nn.Module:
        """The operator's private copy of the model (its parameters are views of the point)."""
        return self._model

    def _chunks(self):
        N, b = self.n_examples, self.batch_size
        for s in range(0, N, b):
            yield self.X[s:s + b], self.y[s:s + b], min(b, N - s) / N

    def _forward_loss(self, Xc, yc) -> torch.Tensor:
        try:
            out = self._model(Xc)
            val = loss_fn(out, yc, self.loss_kind)
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
        return self._flat.detach().to(device="cpu", dtype=torch.float64, copy=True).numpy()

    def set_point(self, theta) -> None:
        """Move to a new parameter vector ``theta`` [P] (array or tensor, any float dtype): one
        copy into the flat buffer, then the gradient graph(s) are rebuilt (one forward and one
        ``create_graph`` backward per chunk); ``hvps`` keeps counting."""
        theta = as_tensor(theta).reshape(-1)
        if theta.numel() != self.n_params:
            raise LandscapeError(f"a parameter vector needs {self.n_params} numbers, "
                                 f"got {theta.numel()}")
        with torch.no_grad():
            self._flat.copy_(theta)
        self._graphs = []
        self._build()

    def gradient(self) -> np.ndarray:
        """The full-batch gradient ``dL/dtheta`` [P] at the current point (from the cache)."""
        acc = torch.zeros(self.n_params, dtype=self.dtype, device=self.device)
        for w, g, _ in self._graphs:
            acc.add_(torch.cat([gi.detach().reshape(-1) for gi in g]), alpha=w)
        return acc.double().cpu().numpy()

    def loss_at(self, theta) -> float:
        """The full-batch mean loss at another parameter vector ``theta`` [P] (no gradient),
        on a second private copy of the model, so the operator's point and graph stay."""
        theta = as_tensor(theta, self.dtype).reshape(-1).to(self.device)
        if theta.numel() != self.n_params:
            raise LandscapeError(f"a parameter vector needs {self.n_params} numbers, "
                                 f"got {theta.numel()}")
        if getattr(self, "_probe", None) is None:
            self._probe = copy.deepcopy(self._model)
            self._probe_params = [p for _, p in self._probe.named_parameters() if p.requires_grad]
        total = 0.0
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for p, s, n in zip(self._probe_params, self.offsets[:-1], self.sizes):
                p.copy_(theta[s:s + n].view(p.shape))
            for Xc, yc, w in self._chunks():
                total += w * float(loss_fn(self._probe(Xc), yc, self.loss_kind))
        return total

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

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for a tensor ``v`` [P]: a tensor [P] in the operator's dtype and device, no
        trip through numpy. One HVP."""
        vt = torch.as_tensor(v).reshape(-1)
        if vt.numel() != self.n_params:
            raise LandscapeError(f"a vector of {self.n_params} numbers is needed, got {vt.numel()}")
        self.hvps += 1
        return self._hvp(vt.to(dtype=self.dtype, device=self.device))

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


class BlockOperator(OperatorBase):
    """``H_bb = E_b^T H E_b``: the operator restricted to the slice ``[start, stop)`` of the
    parameter vector (one parameter tensor). Each product costs one HVP of the parent."""

    def __init__(self, parent: OperatorBase, start: int, stop: int, name: str = ""):
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


def as_operator(op) -> OperatorBase:
    if isinstance(op, OperatorBase):
        return op
    if isinstance(op, np.ndarray):
        return DenseOperator(op)
    if hasattr(op, "matvec") and hasattr(op, "n_params"):
        return op
    raise LandscapeError(f"not a Hessian operator: {type(op).__name__}")


