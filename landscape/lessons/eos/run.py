r"""Edge of stability (Cohen et al. 2021; adaptive optimizers: Cohen et al. 2022), measured.

Recipe (DESIGN 3.4):

- Full-batch training of a smooth network (the canonical demo: tanh MLP 64-64-64-10 on 500
  standardised digits, squared loss ``0.5 * ||f(x) - onehot(y)||^2`` averaged over examples,
  float64) with one of three optimizers, written out here (no ``torch.optim``, so no 3 s
  first-construction cost and no hidden state):

  - ``gd``: ``theta <- theta - eta g``; stable on a quadratic with curvature ``lambda`` iff
    ``lambda < 2 / eta``.
  - ``momentum`` (heavy ball, PyTorch's convention): ``v <- beta v + g``,
    ``theta <- theta - eta v``; stable iff ``lambda < (2 + 2 beta) / eta``.
  - ``adam``: ``m <- beta1 m + (1 - beta1) g``, ``v <- beta2 v + (1 - beta2) g^2``,
    ``theta <- theta - eta m_hat / (sqrt(v_hat) + eps)`` = ``theta - eta P^-1 m`` with the
    preconditioner ``P = (1 - beta1^t) diag(sqrt(v_hat) + eps)``. With ``P`` frozen this is
    EMA momentum on ``P^-1 H``: stable iff ``lambda_1(P^-1 H) < (2 + 2 beta1) / ((1 - beta1)
    eta)`` (38 / eta for beta1 = 0.9).

- Every ``eig_every`` steps (and at the last step) at the parameters ``theta_s``: the top
  ``n_eigs`` eigenvalues of the Hessian ``H`` of the full-batch training loss (the
  *sharpness* is the largest), for Adam also the top eigenvalues of the preconditioned
  Hessian ``P^-1 H`` (through the symmetric ``P^-1/2 H P^-1/2``, with the ``P`` of the update
  taken from ``theta_s``), the curvature along the gradient ``g^T H g / ||g||^2`` and along
  the update actually taken ``d^T H d / ||d||^2`` (the same for GD).
- Tracking is warm-started (:func:`track_top`): a Davidson iteration whose search space
  starts from the previous top ``n_eigs + 1`` Ritz vectors and the gradient (and the update),
  grows by one residual per HVP, and stops when every tracked residual ``||H u - lambda u||``
  is at most ``eig_tol * lambda``; the curvatures along the gradient and the update come out
  of the same space at no extra HVP. The first measurement starts from a seeded random
  vector; past ``eig_maxdim`` directions ARPACK Lanczos warm-started from the best vector
  finishes. Residuals are stored. With eigenvalues clustered at the top (as at the edge)
  a residual ``r`` only guarantees an eigenvalue within ``r``; measured against exact
  Lanczos on ``eos-tanh``, the tracked lambda_1 was within 5e-4 relative at ``eig_tol = 1e-2``.
- HVPs run in ``eig_dtype`` (float32 by default, also for float64 training: half the cost of
  a float64 HVP on the CPU; eigenvalues agree with float64 to about 1e-5 relative).
- The threshold of the optimizer (above), the first measured step where the sharpness (for
  Adam: the preconditioned sharpness) crosses ``crossing_fraction`` (0.95) of it from below,
  and the share of steps where the loss went up, before and after that step.
- ReLU, max-pooling and other piecewise-linear pieces make the loss only piecewise twice
  differentiable: its "sharpness" is then that of the Hessian almost everywhere (the
  result's ``hessian_label`` says so); prefer smooth activations for the demo.

Steps count updates: ``theta_s`` is the model after ``s`` updates, ``loss[s]`` its
full-batch loss (s = 0..steps). Units: the loss is in squared output units; eigenvalues of
``H``, curvatures and the GD/momentum thresholds are loss per squared parameter unit (the
inverse of the learning rate's units); ``lambda(P^-1 H)`` and the Adam threshold share the
units of ``1 / eta``.

Runs are deterministic for a seed on one device and thread count. Training is a generator
of events (:meth:`EosRun.run`), so a UI can draw live and stop; :class:`EosJob` runs it on a
thread (start / poll / pause / resume / stop). :func:`quadratic_iterates` is the 1-D lesson
``f(x) = lambda x^2 / 2``. :func:`eigen_slice` evaluates ``L(theta_s + t u_1)`` along the
top Hessian eigenvector at chosen steps.

Measured on a 2-core CPU (shared, loaded), one torch thread, seed 0, eigenvalues every 25
steps unless said:

- ``eos-tanh`` (eta 0.2, 1,500 steps): sharpness 2.63 at init (0.26 x 2/eta), 0.95 x at step
  495-500 (every 5 steps: 1.0 x near step 520), an overshoot to 1.20 x at step 675, then
  0.996-1.036 x over the second half; loss strictly decreasing before the crossing, up on
  23% of the steps after. Tracking: 431 HVPs (7.1 a measurement), 1.1 s against 2.6 s of
  training (thread CPU 1.07 / 2.58 s: 0.41).
- ``eos-tanh-fast`` (eta 0.4, 600 steps): 0.95 x at step 155 (every 5 steps), an overshoot to
  1.79 x at step 230, then 1.045-1.098 x over the second half; loss up on 35% of the steps
  after the crossing. Tracking is dearer at this edge (13-19 HVPs a measurement: 0.8 x the
  training time), the top eigenvalues being clustered.
- ``eos-adam`` (eta 4e-3): ``lambda_1(P^-1 H)`` is 15 x 38/eta at step 0 (the first update
  divides by ``|g|``), 0.31 x at step 25, crosses 0.95 x at step 100 and stays at
  0.982-1.017 x over the second half; two trackers (H and P^-1 H): 0.95 x the training time.
- ``eos-momentum`` (beta 0.8, eta 0.2): crosses 0.95 x (2 + 2 beta)/eta at step 425, peaks at
  1.035 x, drops to 0.85 x at step 775 and creeps back (0.93 x at 1,200): heavy ball hovers
  less cleanly than GD here.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
from torch import nn

from landscape.core import losses
from landscape.core.device import DTYPES
from landscape.core.errors import LandscapeError
from landscape.lessons.kit import (
    jsonable,
    preset_with,
    read_npz,
    result_path,
    run_to_end,
    torch_threads,
    write_npz,
)

OPTIMIZERS = ("gd", "momentum", "adam")
POOLS = ("max", "avg")
CROSSING_FRACTION = 0.95
#: the loss is declared diverged above this multiple of its starting value (or when not finite)
DIVERGED_FACTOR = 1e6

# Leaf modules that make a network only piecewise twice differentiable.
_NONSMOOTH = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.Hardtanh, nn.Hardswish,
              nn.Hardsigmoid, nn.Hardshrink, nn.Softshrink, nn.ELU, nn.CELU, nn.SELU,
              nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)

_TANH_MLP = {"name": "mlp", "args": {"in_dim": 64, "out_dim": 10, "widths": [64, 64, 64],
                                     "activation": "tanh"}}
_DIGITS_500 = {"name": "digits", "n": 500, "standardize": True}


def threshold(optimizer: str, lr: float, momentum: float = 0.9, beta1: float = 0.9) -> float:
    """The stability threshold on the (preconditioned) sharpness for an optimizer:
    ``2/eta`` (gd), ``(2 + 2 beta)/eta`` (momentum), ``(2 + 2 beta1)/((1 - beta1) eta)`` (adam)."""
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise LandscapeError(f"learning rate must be a positive number, got {lr}")
    if optimizer == "gd":
        return 2.0 / lr
    if optimizer == "momentum":
        if not 0 <= momentum < 1:
            raise LandscapeError(f"momentum must be in [0, 1), got {momentum}")
        return (2.0 + 2.0 * momentum) / lr
    if optimizer == "adam":
        if not 0 <= beta1 < 1:
            raise LandscapeError(f"beta1 must be in [0, 1), got {beta1}")
        return (2.0 + 2.0 * beta1) / ((1.0 - beta1) * lr)
    raise LandscapeError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")


def _is_int(v) -> bool:
    return (isinstance(v, (int, np.integer)) and not isinstance(v, bool)) or \
        (isinstance(v, float) and v.is_integer())


def _is_pos(v) -> bool:
    return isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) and \
        math.isfinite(v) and v > 0


@dataclass
class EosConfig:
    """One edge-of-stability run. Defaults: DESIGN 3.4's CPU recipe (``eos-tanh``, eta 0.2)."""

    data: dict = field(default_factory=lambda: dict(_DIGITS_500))  # a landscape.core.data spec
    model: dict = field(default_factory=lambda: copy.deepcopy(_TANH_MLP))  # a zoo spec
    pool: str = "max"              # cnn only: "avg" swaps max-pooling for (smooth) average pooling
    loss: str = "mse"              # 0.5 ||f - onehot(y)||^2, mean over examples (or cross_entropy)
    optimizer: str = "gd"          # gd, momentum (heavy ball) or adam; always full batch
    lr: float = 0.2                # eta
    momentum: float = 0.9          # heavy-ball beta
    beta1: float = 0.9             # Adam
    beta2: float = 0.999           # Adam
    eps: float = 1e-8              # Adam
    steps: int = 1500
    eig_every: int = 25            # measure every this many steps (and at the last step)
    n_eigs: int = 2                # top Hessian eigenvalues tracked
    eig_tol: float = 1e-2          # stop when each residual ||Hu - lambda u|| <= eig_tol * lambda
    eig_maxdim: int = 40           # Davidson search-space size before Lanczos takes over
    eig_dtype: str | None = "float32"  # precision of the HVPs (None: the training dtype)
    crossing_fraction: float = CROSSING_FRACTION
    seed: int = 0                  # initial weights (and nothing else: full batch)
    dtype: str = "float64"
    device: str = "cpu"            # cpu, cuda, mps or auto

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> EosConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise LandscapeError(f"unknown edge-of-stability options: {sorted(unknown)}")
        return cls(**d)

    @property
    def threshold(self) -> float:
        return threshold(self.optimizer, self.lr, self.momentum, self.beta1)

    def validate(self) -> None:
        """Raise :class:`LandscapeError` (one line) for any setting that cannot run."""
        if self.optimizer not in OPTIMIZERS:
            raise LandscapeError(f"unknown optimizer {self.optimizer!r}; choose one of "
                                 f"{', '.join(OPTIMIZERS)}")
        if not _is_pos(self.lr):
            raise LandscapeError(f"learning rate must be a positive number, got {self.lr}")
        for name in ("momentum", "beta1", "beta2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1):
                raise LandscapeError(f"{name} must be in [0, 1), got {v}")
        if not _is_pos(self.eps):
            raise LandscapeError(f"eps must be a positive number, got {self.eps}")
        if not _is_int(self.steps) or self.steps < 1:
            raise LandscapeError(f"steps must be a positive whole number, got {self.steps}")
        if not _is_int(self.eig_every) or self.eig_every < 1:
            raise LandscapeError(f"eig-every must be a positive whole number, got {self.eig_every}")
        if not _is_int(self.n_eigs) or not 1 <= self.n_eigs <= 10:
            raise LandscapeError(f"n_eigs must be 1..10, got {self.n_eigs}")
        if not _is_pos(self.eig_tol) or self.eig_tol >= 1:
            raise LandscapeError(f"eig_tol must be in (0, 1), got {self.eig_tol}")
        if not _is_int(self.eig_maxdim) or self.eig_maxdim < 3:
            raise LandscapeError(f"eig_maxdim must be >= 3, got {self.eig_maxdim}")
        if self.eig_dtype is not None and self.eig_dtype not in DTYPES:
            raise LandscapeError(f"eig_dtype must be None or one of {sorted(DTYPES)}, got "
                                 f"{self.eig_dtype!r}")
        if not (isinstance(self.crossing_fraction, (int, float)) and 0 < self.crossing_fraction <= 1):
            raise LandscapeError(f"crossing_fraction must be in (0, 1], got {self.crossing_fraction}")
        if not _is_int(self.seed) or self.seed < 0:
            raise LandscapeError(f"seed must be a whole number >= 0, got {self.seed}")
        if self.dtype not in DTYPES:
            raise LandscapeError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.loss not in losses.LOSSES:
            raise LandscapeError(f"unknown loss {self.loss!r}; choose one of {losses.LOSSES}")
        if self.pool not in POOLS:
            raise LandscapeError(f"pool must be one of {POOLS}, got {self.pool!r}")
        if not isinstance(self.model, dict) or "name" not in self.model:
            raise LandscapeError('the model must be a zoo spec {"name": ..., "args": {...}}')
        if not isinstance(self.data, (dict, str)):
            raise LandscapeError("the data must be a built-in name, a file path or a data spec dict")


PRESETS: dict[str, EosConfig] = {
    # DESIGN 3.4's recipe: tanh MLP 64-64-64-10, 500 standardised digits, squared loss,
    # full-batch GD eta = 0.2, float64, 1,500 steps, eigenvalues every 25 steps.
    "eos-tanh": EosConfig(),
    # The same network at eta = 0.4: the sharpness reaches 0.95 x 2/eta at step 155.
    "eos-tanh-fast": EosConfig(lr=0.4, steps=600),
    # Heavy-ball momentum beta = 0.8 at eta = 0.2: threshold (2 + 2 beta)/eta = 18.
    "eos-momentum": EosConfig(optimizer="momentum", lr=0.2, momentum=0.8, steps=1200),
    # Adam eta = 4e-3: the preconditioned sharpness settles at (2 + 2 beta1)/((1 - beta1) eta).
    "eos-adam": EosConfig(optimizer="adam", lr=4e-3, steps=1500),
    # For a GPU: a tanh CNN 32-64 (average pooling, so twice differentiable; 21k parameters)
    # on all 1,797 digits, float32, 3,000 GD steps at eta 0.4. Checked on the CPU for its
    # first 800 steps (6 minutes): sharpness 3.6 at init, at 0.95 x 2/eta by step 100, then
    # 0.91-1.19 x (mostly 1.03-1.12).
    "eos-cnn-gpu": EosConfig(data={"name": "digits", "standardize": True},
                             model={"name": "cnn", "args": {"channels": [32, 64],
                                                            "activation": "tanh"}},
                             pool="avg", lr=0.4, steps=3000, eig_every=50, dtype="float32",
                             device="auto"),
}

PRESET_NOTES = {
    "eos-tanh": "DESIGN 3.4: tanh MLP 64-64-64-10, 500 digits, squared loss, GD eta 0.2, 1,500 steps",
    "eos-tanh-fast": "the same network at eta 0.4, 600 steps: at the edge within 200 steps",
    "eos-momentum": "heavy-ball momentum 0.8, eta 0.2, 1,200 steps: threshold (2 + 2 beta)/eta = 18",
    "eos-adam": "Adam eta 4e-3, 1,500 steps: preconditioned sharpness vs 38/eta",
    "eos-cnn-gpu": "tanh CNN (average pooling) on all 1,797 digits, GD eta 0.4, 3,000 steps (GPU)",
}


def preset(name: str, **overrides) -> EosConfig:
    """A copy of a preset with some fields replaced (``None`` values are ignored)."""
    return preset_with(PRESETS, name, "edge-of-stability", **overrides)


# --------------------------------------------------------------------------- model and data


def hessian_label(model: nn.Module) -> tuple[bool, str]:
    """``(twice_differentiable, label)``: "Hessian" for smooth networks, else "a.e. Hessian"
    (ReLU, max-pooling and the like are only piecewise twice differentiable)."""
    bad = sorted({type(m).__name__ for m in model.modules()
                  if isinstance(m, _NONSMOOTH)})
    if bad:
        return False, (f"a.e. Hessian: {', '.join(bad)} make the loss only piecewise twice "
                       "differentiable; its sharpness is that of the Hessian almost everywhere")
    return True, "Hessian"


def build_model(config: EosConfig) -> nn.Module:
    """The run's model from its zoo spec, initialised from ``config.seed`` without touching
    the global RNG; ``pool="avg"`` swaps a CNN's max-pooling for average pooling."""
    from landscape.core import models

    with torch.random.fork_rng(devices=[]):
        model = models.build(config.model, seed=config.seed)
    if config.pool == "avg":
        for m in list(model.modules()):
            for child_name, child in list(m.named_children()):
                if isinstance(child, nn.MaxPool2d):
                    setattr(m, child_name, nn.AvgPool2d(child.kernel_size, child.stride))
    return model


def load_data(config: EosConfig):
    from landscape.core import data as data_mod

    return data_mod.load(copy.deepcopy(config.data))


# --------------------------------------------------------------------------- eigen tracking


class PointHessian:
    """The Hessian ``H`` of the full-batch mean loss, for HVPs at one parameter point at a time.

    A lean cousin of :class:`landscape.hessian.operator.HessianOperator` (same interface for the
    algorithms there: ``n_params``, ``hvps``, ``matvec``, ``matmat``, ``set_point``): a private
    copy of ``model`` in ``dtype`` whose parameters are views of one flat buffer, one chunk
    (all examples), no per-point RNG forking or host syncs. ``set_point(theta)`` copies the
    parameters in and builds the gradient graph once (``create_graph=True``); each ``matvec``
    is one double-backward pass through it. Measured on the ``eos-tanh`` MLP (float32, one
    thread): ``set_point`` 1.0-1.5 ms against 1.5-2.4 ms for ``HessianOperator.set_point``;
    HVPs agree with it to rounding. The caller's model is never changed.
    """

    def __init__(self, model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss_kind: str,
                 dtype: torch.dtype = torch.float64):
        m = copy.deepcopy(model).to(dtype).eval()
        self._params = [p for p in m.parameters() if p.requires_grad]
        if not self._params:
            raise LandscapeError("the model has no parameters that require gradients")
        device = self._params[0].device
        with torch.no_grad():
            self._flat = torch.cat([p.detach().reshape(-1) for p in self._params]).clone()
            s = 0
            for p in self._params:
                n = p.numel()
                p.data = self._flat[s:s + n].view_as(p)
                s += n
        self._model = m
        self.sizes = [p.numel() for p in self._params]
        self.shapes = [p.shape for p in self._params]
        self.n_params = int(self._flat.numel())
        self.dtype = dtype
        self.dtype_name = str(dtype).replace("torch.", "")
        self.device = device
        self.X = X.to(device=device, dtype=dtype)
        self.y = y.to(device=device, dtype=dtype) if y.is_floating_point() else y.to(device)
        self.loss_kind = loss_kind
        self.hvps = 0
        self._g: tuple | None = None
        self._live: list[int] = []

    def set_point(self, theta) -> None:
        """Move to ``theta`` [P] (tensor or array, any float dtype) and build the graph."""
        theta = torch.as_tensor(theta).reshape(-1)
        if theta.numel() != self.n_params:
            raise LandscapeError(f"a parameter vector needs {self.n_params} numbers, got {theta.numel()}")
        with torch.no_grad():
            self._flat.copy_(theta)
        loss = losses.loss(self._model(self.X), self.y, self.loss_kind)
        g = torch.autograd.grad(loss, self._params, create_graph=True, allow_unused=True,
                                materialize_grads=True)
        self._g = g
        self._live = [i for i, gi in enumerate(g) if gi.requires_grad]
        self.loss_value = loss.detach()

    def gradient(self) -> torch.Tensor:
        """The full-batch gradient at the current point [P] (in the operator's dtype)."""
        return torch.cat([gi.detach().reshape(-1) for gi in self._g])

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for a tensor ``v`` [P]; a tensor [P] in the operator's dtype and device."""
        if self._g is None:
            raise LandscapeError("set a parameter point first")
        vt = v.reshape(-1).to(device=self.device, dtype=self.dtype)
        self.hvps += 1
        if not self._live:
            return torch.zeros_like(vt)
        parts = [t.view(sh) for t, sh in zip(torch.split(vt, self.sizes), self.shapes)]
        hv = torch.autograd.grad([self._g[i] for i in self._live], self._params,
                                 grad_outputs=[parts[i] for i in self._live], retain_graph=True,
                                 allow_unused=True, materialize_grads=True)
        return torch.cat([h.reshape(-1) for h in hv])

    def matvec(self, v) -> np.ndarray:
        """``H v`` for ``v`` [P] (array or tensor); float64 numpy [P]. One HVP."""
        vt = torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v)
        return self.hvp(vt).double().cpu().numpy()

    def matmat(self, V) -> np.ndarray:
        V = np.atleast_2d(np.asarray(V, dtype=np.float64))
        return np.stack([self.matvec(row) for row in V]) if len(V) else V.copy()


class _ScaledOperator:
    """``D H D`` for a diagonal ``D = diag(d)`` (``d = P^-1/2``): the symmetric form of
    ``P^-1 H`` (same eigenvalues; eigenvectors ``x`` of it give ``D x`` for ``P^-1 H``)."""

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


def track_top(op, k: int, start: np.ndarray | None = None, probes=None, tol: float = 1e-2,
              maxdim: int = 40, seed: int = 0) -> dict:
    """Top ``k`` eigenpairs of a symmetric operator by a warm-started Davidson iteration,
    plus the curvature ``p^T H p / ||p||^2`` of each probe direction at no extra HVP.

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
    from landscape import hessian

    P = op.n_params
    h0 = op.hvps
    tols = [float(t) for t in np.broadcast_to(np.asarray(tol, float).reshape(-1), (k,))] \
        if np.ndim(tol) else [float(tol)] * k
    # Work in the operator's precision when it has a tensor fast path (PointHessian): the
    # bookkeeping on [m, P] blocks cost as much as 2-3 HVPs per measurement in float64.
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
        e = hessian.top_eigenpairs(op, k=min(k + 1, P), tol=min(min(tols), 1e-6), v0=vecs[0], seed=seed)
        vals, vecs, res = e.eigenvalues[:k], e.eigenvectors, e.residuals[:k]
    return {"values": np.array(vals, float), "vectors": np.array(vecs, float),
            "residuals": np.array(res, float), "probe_curvature": np.asarray(curv, float),
            "hvps": op.hvps - h0, "dim": len(S), "method": method}


def _pad(a, k: int) -> np.ndarray:
    """``a`` cut or padded with NaN to length ``k`` (a model with fewer than k parameters)."""
    out = np.full(k, np.nan)
    a = np.asarray(a, float).reshape(-1)[:k]
    out[:len(a)] = a
    return out


# --------------------------------------------------------------------------- results


def crossing_step(steps, sharpness, level: float) -> int | None:
    """First of ``steps`` where ``sharpness >= level`` after having been below it (see
    :attr:`EosResult.crossing_step`)."""
    steps, sharp = np.asarray(steps), np.asarray(sharpness, float)
    below = np.flatnonzero(sharp < level)
    if not below.size:
        return int(steps[0]) if len(steps) else None
    hit = np.flatnonzero(sharp[below[0]:] >= level)
    return int(steps[below[0] + hit[0]]) if hit.size else None


@dataclass
class EosResult:
    """Everything a run measured; arrays are numpy, ``meta`` is JSON-able.

    ``loss_steps`` [S] and ``loss`` [S]: the full-batch loss at every step ``0..steps_done``.
    At the measured steps ``eig_steps`` [T]: ``eigenvalues`` [T, k] top Hessian eigenvalues
    (descending; ``[:, 0]`` is the sharpness), ``residuals`` [T, k], ``precond`` [T, k] top
    eigenvalues of ``P^-1 H`` (Adam; NaN otherwise), ``grad_curvature`` [T] ``g^T H g /
    ||g||^2``, ``update_curvature`` [T] the same along the update taken, ``grad_dot_u1`` [T]
    ``g . u_1`` and ``update_dot_u1`` [T] ``(theta_{s+1} - theta_s) . u_1`` (0 at the last
    step), ``hvps`` [T] HVPs of each measurement, ``params`` [T, P] (float64) and ``u1`` [T, P]
    (float32) the parameters and top Hessian eigenvector there (for :func:`eigen_slice`; empty
    after a ``.json`` round trip).
    """

    loss_steps: np.ndarray
    loss: np.ndarray
    eig_steps: np.ndarray
    eigenvalues: np.ndarray
    residuals: np.ndarray
    precond: np.ndarray
    grad_curvature: np.ndarray
    update_curvature: np.ndarray
    grad_dot_u1: np.ndarray
    update_dot_u1: np.ndarray
    hvps: np.ndarray
    params: np.ndarray
    u1: np.ndarray
    meta: dict = field(default_factory=dict)

    ARRAYS = ("loss_steps", "loss", "eig_steps", "eigenvalues", "residuals", "precond",
              "grad_curvature", "update_curvature", "grad_dot_u1", "update_dot_u1", "hvps",
              "params", "u1")
    BIG = ("params", "u1")

    @property
    def threshold(self) -> float:
        return float(self.meta["threshold"])

    @property
    def optimizer(self) -> str:
        return self.meta["config"]["optimizer"]

    @property
    def hessian_sharpness(self) -> np.ndarray:
        """``lambda_1(H)`` at each measured step [T]."""
        return self.eigenvalues[:, 0] if self.eigenvalues.size else np.zeros(0)

    @property
    def sharpness(self) -> np.ndarray:
        """The quantity compared with the threshold [T]: ``lambda_1(H)`` for GD and momentum,
        ``lambda_1(P^-1 H)`` for Adam."""
        if self.optimizer == "adam":
            return self.precond[:, 0] if self.precond.size else np.zeros(0)
        return self.hessian_sharpness

    @property
    def ratio(self) -> np.ndarray:
        """sharpness / threshold at each measured step."""
        return self.sharpness / self.threshold

    @property
    def crossing_step(self) -> int | None:
        """The measured step where the sharpness first crosses ``crossing_fraction x threshold``
        from below (None if it never does). A sharpness that starts above (Adam's first update
        divides by ``|g|``, so ``P^-1 H`` is huge at step 0) counts from when it is first below;
        one that is never below gives the first measured step."""
        return crossing_step(self.eig_steps, self.sharpness,
                             float(self.meta["config"]["crossing_fraction"]) * self.threshold)

    def loss_up_share(self) -> tuple[float | None, float | None]:
        """Share of steps ``s -> s+1`` where the loss went up, before the crossing step and
        from it on (None where there are no such steps)."""
        up = np.diff(self.loss) > 0
        c = self.crossing_step
        if c is None:
            return (float(up.mean()) if up.size else None), None
        before, after = up[:c], up[c:]
        return (float(before.mean()) if before.size else None,
                float(after.mean()) if after.size else None)

    def ratio_range(self, start_step: int | None = None) -> tuple[float, float] | None:
        """(min, max) of sharpness / threshold over measured steps ``>= start_step`` (default:
        the second half of the steps done)."""
        if start_step is None:
            start_step = int(self.meta.get("steps_done", 0)) / 2
        sel = self.eig_steps >= start_step
        if not sel.any():
            return None
        r = self.ratio[sel]
        return float(r.min()), float(r.max())

    def index_of(self, step: int) -> int:
        """Index of the measured step nearest to ``step``."""
        if not len(self.eig_steps):
            raise LandscapeError("nothing has been measured yet")
        return int(np.argmin(np.abs(self.eig_steps - step)))

    def summary(self) -> dict:
        """The CLI's JSON keys."""
        m = self.meta
        before, after = self.loss_up_share()
        rng = self.ratio_range()
        return {
            "threshold": self.threshold,
            "optimizer": self.optimizer,
            "lr": m["config"]["lr"],
            "steps": int(m.get("steps_done", 0)),
            "sharpness": [[int(s), float(v)] for s, v in zip(self.eig_steps, self.sharpness)],
            "hessian_sharpness": [[int(s), float(v)] for s, v in
                                  zip(self.eig_steps, self.hessian_sharpness)],
            "second_eigenvalue": [[int(s), float(v)] for s, v in
                                  zip(self.eig_steps, self.eigenvalues[:, 1])]
            if self.eigenvalues.shape[1:] and self.eigenvalues.shape[1] > 1 else None,
            "loss": [[int(s), float(v)] for s, v in zip(self.loss_steps, self.loss)],
            "crossing_step": self.crossing_step,
            "loss_up_share_before": before,
            "loss_up_share_after": after,
            "ratio_second_half": list(rng) if rng else None,
            "final_loss": float(self.loss[-1]) if len(self.loss) else None,
            "hessian_label": m.get("hessian_label"),
            "seconds": round(float(m.get("seconds", 0.0)), 3),
            "train_seconds": round(float(m.get("train_seconds", 0.0)), 3),
            "eig_seconds": round(float(m.get("eig_seconds", 0.0)), 3),
            "train_cpu_seconds": round(float(m.get("train_cpu_seconds", 0.0)), 3),
            "eig_cpu_seconds": round(float(m.get("eig_cpu_seconds", 0.0)), 3),
            "hvps": int(m.get("hvps", 0)),
        }


def save(result: EosResult, path) -> Path:
    """Write a result to ``.npz`` (all arrays + ``meta_json``) or ``.json`` (everything but the
    parameter snapshots and eigenvectors, as lists)."""
    path = result_path(path, write=True)
    meta = json.dumps(result.meta, default=jsonable)
    if path.suffix.lower() == ".npz":
        write_npz(path, result, EosResult.ARRAYS)
    else:
        doc = {k: np.where(np.isfinite(a), a, None).tolist() if a.dtype.kind == "f" else a.tolist()
               for k in EosResult.ARRAYS if k not in EosResult.BIG
               for a in [getattr(result, k)]}
        doc["meta"] = json.loads(meta)
        path.write_text(json.dumps(doc))
    return path


def load(path) -> EosResult:
    """Read a result written by :func:`save`."""
    path = result_path(path, write=False)
    try:
        if path.suffix.lower() == ".npz":
            arrays, meta = read_npz(path, EosResult.ARRAYS)
            return EosResult(**arrays, meta=meta)
        doc = json.loads(path.read_text())
        meta = doc.pop("meta")
        arrays = {k: np.asarray([np.nan if v is None else v for v in doc[k]]
                                if doc[k] and not isinstance(doc[k][0], list) else
                                [[np.nan if v is None else v for v in row] for row in doc[k]],
                                dtype=np.int64 if k in ("loss_steps", "eig_steps", "hvps") else float)
                  for k in EosResult.ARRAYS if k not in EosResult.BIG}
        k = len(arrays["eig_steps"])
        arrays["eigenvalues"] = arrays["eigenvalues"].reshape(k, -1)
        arrays["residuals"] = arrays["residuals"].reshape(k, -1)
        arrays["precond"] = arrays["precond"].reshape(k, -1)
        return EosResult(**arrays, params=np.zeros((0, 0), np.float64),
                         u1=np.zeros((0, 0), np.float32), meta=meta)
    except (KeyError, ValueError, OSError) as e:
        raise LandscapeError(f"{path.name}: not a readable edge-of-stability result "
                             f"({type(e).__name__})") from None



# --------------------------------------------------------------------------- training


@dataclass
class EosEvent:
    """One parameter point ``theta_step`` visited: its full-batch ``loss``; when ``measured``,
    the top Hessian eigenvalues there (``eigenvalues`` [k]), ``precond`` [k] (Adam) and the
    curvature along the gradient. ``seconds``: run time so far (training + measurements)."""

    step: int
    loss: float
    seconds: float
    measured: bool = False
    eigenvalues: np.ndarray | None = None
    precond: np.ndarray | None = None
    grad_curvature: float | None = None


class EosRun:
    """A run in progress: ``run()`` yields events; ``result()`` is valid at any point.

    ``model`` and ``data`` (a :class:`landscape.core.data.Dataset`) may be given instead of the
    config's specs (the config's ``model``/``data`` then only label the result); the model is
    copied, never changed.
    """

    def __init__(self, config: EosConfig | None = None, model: nn.Module | None = None,
                 data=None):
        from landscape.core.data import check_fits
        from landscape.core.device import choose_device
        from landscape.core.models import output_size

        config = copy.deepcopy(config) if config is not None else EosConfig()
        config.validate()
        self.config = cfg = config
        self.device = choose_device(cfg.device)
        self.dtype = DTYPES[cfg.dtype]
        self.threshold = cfg.threshold
        d = data if data is not None else load_data(cfg)
        if d.is_classification is False and cfg.loss == "cross_entropy":
            raise LandscapeError("cross-entropy needs integer class labels; use the squared loss")
        m = copy.deepcopy(model) if model is not None else build_model(cfg)
        m = m.to(self.dtype)
        check_fits(output_size(m, d.input_shape, dtype=self.dtype), d)
        self.twice_differentiable, self.hessian_label = hessian_label(m)
        self.data = d.to(dtype=self.dtype, device=self.device)
        self.model = m.to(dtype=self.dtype, device=self.device).eval()
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        if not self._params:
            raise LandscapeError("the model has no trainable parameters")
        # one flat buffer behind every parameter: updates are single vector operations
        with torch.no_grad():
            self._theta = torch.cat([p.detach().reshape(-1) for p in self._params]).clone()
            s = 0
            for p in self._params:
                n = p.numel()
                p.data = self._theta[s:s + n].view_as(p)
                s += n
        self.n_params = int(self._theta.numel())
        self.op = PointHessian(self.model, self.data.X, self.data.y, cfg.loss,
                               dtype=DTYPES[cfg.eig_dtype or cfg.dtype])
        self._buf = torch.zeros_like(self._theta)      # momentum v, or Adam m
        self._sq = torch.zeros_like(self._theta)       # Adam v
        self.step = 0          # updates done: the current point is theta_step
        self.finished = False  # the last point has been evaluated
        self.train_seconds = self.eig_seconds = 0.0
        self.train_cpu = self.eig_cpu = 0.0
        self._loss0: float | None = None
        self._loss: list[float] = []
        self._rec: dict[str, list] = {k: [] for k in (
            "eig_steps", "eigenvalues", "residuals", "precond", "grad_curvature",
            "update_curvature", "grad_dot_u1", "update_dot_u1", "hvps", "params", "u1")}
        self._V: np.ndarray | None = None   # Ritz vectors of H (warm start)
        self._Vp: np.ndarray | None = None  # Ritz vectors of P^-1/2 H P^-1/2
        self._methods: dict[str, int] = {}

    @property
    def done(self) -> bool:
        return self.finished

    @property
    def seconds(self) -> float:
        return self.train_seconds + self.eig_seconds

    def _loss_grad(self) -> tuple[float, torch.Tensor]:
        out = self.model(self.data.X)
        loss = losses.loss(out, self.data.y, self.config.loss)
        lv = loss.item()
        if not math.isfinite(lv) or (self._loss0 is not None and lv > DIVERGED_FACTOR * max(self._loss0, 1e-12)):
            raise LandscapeError(
                f"training diverged at step {self.step} (loss {lv:.3g}); lower the learning rate "
                f"(its stability threshold is {self.threshold:.3g}, below the sharpness)")
        g = torch.autograd.grad(loss, self._params)
        return lv, torch.cat([gi.reshape(-1) for gi in g])

    def _direction(self, g: torch.Tensor) -> torch.Tensor:
        """Advance the optimizer state with ``g`` and return the update ``d`` (theta += d)."""
        cfg = self.config
        if cfg.optimizer == "gd":
            return -cfg.lr * g
        if cfg.optimizer == "momentum":
            self._buf.mul_(cfg.momentum).add_(g)
            return -cfg.lr * self._buf
        t = self.step + 1
        self._buf.mul_(cfg.beta1).add_(g, alpha=1 - cfg.beta1)
        self._sq.mul_(cfg.beta2).addcmul_(g, g, value=1 - cfg.beta2)
        return -cfg.lr * self._buf / self._precond(t)

    def _precond(self, t: int) -> torch.Tensor:
        """``diag(P) = (1 - beta1^t) (sqrt(v_hat) + eps)`` for the Adam update number ``t``."""
        cfg = self.config
        v_hat = self._sq / (1 - cfg.beta2 ** t)
        return (1 - cfg.beta1 ** t) * (v_hat.sqrt() + cfg.eps)

    def preconditioner(self, t: int | None = None) -> np.ndarray | None:
        """Adam's ``diag(P) = (1 - beta1^t) (sqrt(v_hat) + eps)`` [P] from the current second
        moments, for update number ``t`` (default: the last update done, i.e. the ``P`` the
        measurement at the previous point used); None for GD and momentum."""
        if self.config.optimizer != "adam":
            return None
        t = self.step if t is None else int(t)
        if t < 1:
            raise LandscapeError("no Adam update has been made yet")
        return self._precond(t).double().cpu().numpy()

    def _measure(self, g: torch.Tensor, d: torch.Tensor | None) -> None:
        cfg = self.config
        op = self.op
        h0 = op.hvps
        op.set_point(self._theta)
        gn = g.detach().double().cpu()
        dn = None if d is None else d.detach().double().cpu()
        probes = [gn] if cfg.optimizer == "gd" or dn is None else [gn, dn]
        tr = track_top(op, cfg.n_eigs, self._V, probes=probes, tol=cfg.eig_tol,
                       maxdim=cfg.eig_maxdim, seed=cfg.seed)
        self._V = tr["vectors"]
        self._methods[tr["method"]] = self._methods.get(tr["method"], 0) + 1
        gcurv = float(tr["probe_curvature"][0])
        ucurv = float(tr["probe_curvature"][1]) if len(probes) > 1 else gcurv
        u1 = tr["vectors"][0]
        u1t = torch.from_numpy(u1)
        udot = 0.0 if dn is None else float(dn @ u1t)
        pre = np.full(cfg.n_eigs, np.nan)
        if cfg.optimizer == "adam":
            # the P of the update about to be taken (at the last point: of the last one taken)
            t = self.step + 1 if d is not None else max(self.step, 1)
            dvec = (1.0 / self._precond(t).sqrt()).double().cpu().numpy()
            sop = _ScaledOperator(op, dvec)
            trp = track_top(sop, cfg.n_eigs, self._Vp, tol=cfg.eig_tol, maxdim=cfg.eig_maxdim,
                            seed=cfg.seed)
            self._Vp = trp["vectors"]
            self._methods[trp["method"]] = self._methods.get(trp["method"], 0) + 1
            pre = _pad(trp["values"], cfg.n_eigs)
        r = self._rec
        r["eig_steps"].append(self.step)
        r["eigenvalues"].append(_pad(tr["values"], cfg.n_eigs))
        r["residuals"].append(_pad(tr["residuals"], cfg.n_eigs))
        r["precond"].append(pre)
        r["grad_curvature"].append(gcurv)
        r["update_curvature"].append(ucurv)
        r["grad_dot_u1"].append(float(gn @ u1t))
        r["update_dot_u1"].append(udot)
        r["hvps"].append(op.hvps - h0)
        r["params"].append(self._theta.detach().to(device="cpu", dtype=torch.float64, copy=True).numpy())
        r["u1"].append(u1.astype(np.float32))

    def run(self, steps: int | None = None, cancel: threading.Event | None = None
            ) -> Iterator[EosEvent]:
        """Yield one event per parameter point, for up to ``steps`` more updates (default: to
        ``config.steps``, the last point included). Stop iterating (or set ``cancel``) to pause;
        call again to go on. Raises :class:`LandscapeError` when the loss diverges."""
        cfg = self.config
        end = cfg.steps if steps is None else min(cfg.steps, self.step + int(steps))
        while not self.finished and self.step <= end:
            if cancel is not None and cancel.is_set():
                return
            if self.step == end and end < cfg.steps:
                return
            w0, c0 = time.perf_counter(), time.thread_time()
            lv, g = self._loss_grad()
            if self._loss0 is None:
                self._loss0 = lv
            last = self.step >= cfg.steps
            d = None if last else self._direction(g)
            w1, c1 = time.perf_counter(), time.thread_time()
            measured = self.step % cfg.eig_every == 0 or last
            if measured:
                self._measure(g, d)
            w2, c2 = time.perf_counter(), time.thread_time()
            if d is not None:
                with torch.no_grad():
                    self._theta.add_(d)
            self._loss.append(lv)
            w3, c3 = time.perf_counter(), time.thread_time()
            self.train_seconds += (w1 - w0) + (w3 - w2)
            self.train_cpu += (c1 - c0) + (c3 - c2)
            self.eig_seconds += w2 - w1
            self.eig_cpu += c2 - c1
            ev = EosEvent(self.step, lv, self.seconds, measured)
            if measured:
                ev.eigenvalues = self._rec["eigenvalues"][-1]
                ev.precond = self._rec["precond"][-1]
                ev.grad_curvature = self._rec["grad_curvature"][-1]
            if last:
                self.finished = True
            else:
                self.step += 1
            yield ev

    def result(self) -> EosResult:
        """What has been recorded so far, as an :class:`EosResult`."""
        cfg = self.config
        r = self._rec
        k = cfg.n_eigs
        T = len(r["eig_steps"])
        steps_done = len(self._loss) - 1
        meta = {
            "recipe": "edge-of-stability", "config": cfg.to_dict(), "threshold": self.threshold,
            "threshold_formula": {"gd": "2 / lr", "momentum": "(2 + 2 momentum) / lr",
                                  "adam": "(2 + 2 beta1) / ((1 - beta1) lr)"}[cfg.optimizer],
            "sharpness_of": "P^-1 H" if cfg.optimizer == "adam" else "H",
            "hessian_label": self.hessian_label, "twice_differentiable": self.twice_differentiable,
            "loss": "0.5 * ||f(x) - onehot(y)||^2, mean over examples" if cfg.loss == "mse"
                    else "cross-entropy, mean over examples",
            "n_params": self.n_params, "n_examples": self.data.n, "data": self.data.meta,
            "device": str(self.device), "torch_threads": torch.get_num_threads(),
            "steps_done": max(steps_done, 0), "complete": self.finished,
            "seconds": self.seconds, "train_seconds": self.train_seconds,
            "eig_seconds": self.eig_seconds, "train_cpu_seconds": self.train_cpu,
            "eig_cpu_seconds": self.eig_cpu, "hvps": int(sum(r["hvps"])),
            "measurements": T, "eig_methods": dict(self._methods),
        }
        P = self.n_params
        return EosResult(
            loss_steps=np.arange(len(self._loss), dtype=np.int64),
            loss=np.asarray(self._loss, float),
            eig_steps=np.asarray(r["eig_steps"], np.int64),
            eigenvalues=np.asarray(r["eigenvalues"], float).reshape(T, k),
            residuals=np.asarray(r["residuals"], float).reshape(T, k),
            precond=np.asarray(r["precond"], float).reshape(T, k),
            grad_curvature=np.asarray(r["grad_curvature"], float),
            update_curvature=np.asarray(r["update_curvature"], float),
            grad_dot_u1=np.asarray(r["grad_dot_u1"], float),
            update_dot_u1=np.asarray(r["update_dot_u1"], float),
            hvps=np.asarray(r["hvps"], np.int64),
            params=np.asarray(r["params"], np.float64).reshape(T, P),
            u1=np.asarray(r["u1"], np.float32).reshape(T, P), meta=meta)


def train(config: EosConfig | None = None, cancel: threading.Event | None = None,
          callback=None, threads: int | None = None, model: nn.Module | None = None,
          data=None) -> EosResult:
    """Run to the end and return the result.

    ``callback(event)`` may return True to stop early (the partial result is returned); a set
    ``cancel`` event raises :class:`Cancelled` with the partial result. ``threads`` sets
    torch's thread count for the run and restores it after (None: leave it alone).
    """
    with torch_threads(threads):
        run = run_to_end(EosRun(config, model=model, data=data), cancel, callback)
        return run.result()


class EosJob:
    """A run on a background thread, for live UIs: ``start()``, ``poll()``, ``pause()``,
    ``resume()``, ``stop()``.

    The thread never touches any UI. ``poll()`` returns ``(progress in [0, 1], partial result
    or None)``; the partial result is refreshed at every measurement. ``error`` holds a
    one-line message if the run failed. ``threads`` sets torch's (process-wide) thread count
    while the thread runs.
    """

    def __init__(self, config: EosConfig, threads: int | None = None):
        config.validate()
        self.config = config
        self.threads = threads
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._run: EosRun | None = None
        self._result: EosResult | None = None
        self.step = 0
        self.error: str | None = None
        self.stopped = False   # stopped for good (stop(), an error, or the end)
        self.paused = False

    def start(self) -> EosJob:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self.paused = False
            self._thread = threading.Thread(target=self._work, daemon=True, name="eos")
            self._thread.start()
        return self

    def _work(self) -> None:
        before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(max(1, int(self.threads)))
        try:
            if self._run is None:
                self._run = EosRun(self.config)
            run = self._run
            for ev in run.run(cancel=self._stop):
                self.step = ev.step
                if ev.measured:
                    res = run.result()
                    with self._lock:
                        self._result = res
            res = run.result()
            with self._lock:
                self._result = res
            if run.done:
                self.stopped = True
        except LandscapeError as e:
            self.error = str(e)
            self.stopped = True
        except Exception as e:  # a bug: report one line, keep the UI alive
            msg = str(e).splitlines()[0] if str(e) else ""
            self.error = f"internal error: {type(e).__name__}: {msg}"
            self.stopped = True
        finally:
            if self.threads is not None:
                torch.set_num_threads(before)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def finished(self) -> bool:
        """Nothing more will happen: completed, stopped or failed (a paused job is not)."""
        return self.stopped and not self.running

    def poll(self) -> tuple[float, EosResult | None]:
        with self._lock:
            return min(1.0, self.step / self.config.steps), self._result

    def pause(self, wait: float | None = 5.0) -> None:
        """Stop the thread after the current step; ``resume()`` goes on from there."""
        self._stop.set()
        if not self.stopped:
            self.paused = True
        if self._thread is not None and wait:
            self._thread.join(wait)

    def resume(self) -> EosJob:
        if self.stopped:
            return self
        return self.start()

    def stop(self, wait: float | None = 5.0) -> None:
        """Stop for good (the partial result stays readable)."""
        self.stopped = True
        self.paused = False
        self._stop.set()
        if self._thread is not None and wait:
            self._thread.join(wait)


# --------------------------------------------------------------------------- loss along u_1


@dataclass
class SliceResult:
    """``loss`` [J, M]: the full-batch loss at ``theta_s + t u_1(s)`` for ``t`` in ``t`` [M]
    (parameter units along the unit top eigenvector) at each step of ``steps`` [J];
    ``sharpness`` [J] (lambda_1 there: the curvature of the slice at t = 0), ``grad_dot_u1``
    [J] (its slope at t = 0) and ``next_t`` [J] (where the update moved along u_1)."""

    t: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    sharpness: np.ndarray
    grad_dot_u1: np.ndarray
    next_t: np.ndarray
    threshold: float
    meta: dict = field(default_factory=dict)


def eigen_slice(result: EosResult, steps, radius: float | None = None, points: int = 41,
                model: nn.Module | None = None, data=None) -> SliceResult:
    """Loss along the top Hessian eigenvector at measured steps (nearest to each of ``steps``).

    ``radius`` (parameter units) defaults to ``max(4 max |next_t|, 2 sqrt(2 L_0 / lambda_1))``
    over the chosen steps, so the slice shows both the step taken and the bowl. The model and
    data are rebuilt from the result's config unless given (pass the same ones as the run).
    """
    if result.params.size == 0:
        raise LandscapeError("this result holds no parameter snapshots (read from .json?); "
                             "rerun it or load the .npz")
    if not _is_int(points) or points < 3:
        raise LandscapeError(f"a slice needs at least 3 points, got {points}")
    idx = sorted({result.index_of(int(s)) for s in np.atleast_1d(steps)})
    if not idx:
        raise LandscapeError("choose at least one step")
    cfg = EosConfig.from_dict(result.meta["config"])
    dtype = DTYPES[cfg.dtype]
    m = copy.deepcopy(model) if model is not None else build_model(cfg)
    d = data if data is not None else load_data(cfg)
    m = m.to(dtype).eval()
    X, y = d.X.to(dtype), d.y
    if y.is_floating_point():
        y = y.to(dtype)
    params = [p for p in m.parameters() if p.requires_grad]
    sizes = [p.numel() for p in params]
    if sum(sizes) != result.params.shape[1]:
        raise LandscapeError("the model does not match the result's parameter count")
    next_t = result.update_dot_u1[idx]
    lam = result.hessian_sharpness[idx]
    if radius is None:
        bowl = [2 * math.sqrt(2 * max(result.loss[min(int(result.eig_steps[i]), len(result.loss) - 1)],
                                      1e-12) / lv) if lv > 0 else 1.0 for i, lv in zip(idx, lam)]
        radius = max(4 * float(np.max(np.abs(next_t))), float(min(bowl)))
    if not _is_pos(radius):
        raise LandscapeError(f"the slice radius must be a positive number, got {radius}")
    t = np.linspace(-radius, radius, int(points))
    out = np.empty((len(idx), len(t)))
    with torch.no_grad():
        for j, i in enumerate(idx):
            theta = torch.as_tensor(result.params[i], dtype=torch.float64)
            u = torch.as_tensor(result.u1[i], dtype=torch.float64)
            u = u / u.norm()
            for c, tc in enumerate(t):
                vec = (theta + tc * u).to(dtype)
                s = 0
                for p, n in zip(params, sizes):
                    p.copy_(vec[s:s + n].view_as(p))
                    s += n
                out[j, c] = losses.loss(m(X), y, cfg.loss).item()
    return SliceResult(t=t, steps=result.eig_steps[idx].copy(), loss=out, sharpness=lam,
                       grad_dot_u1=result.grad_dot_u1[idx], next_t=next_t,
                       threshold=result.threshold,
                       meta={"radius": float(radius), "points": int(points),
                             "hessian_label": result.meta.get("hessian_label")})


# --------------------------------------------------------------------------- the 1-D lesson


@dataclass
class QuadraticResult:
    """Iterates on ``f(x) = sum_i lambda_i x_i^2 / 2``: ``t`` [T+1], ``x`` [T+1] (1-D) or
    [T+1, d], ``f`` [T+1], the ``threshold`` on lambda (divided by the preconditioner for
    adam), the ``rate`` (spectral radius of the linear iteration; < 1 converges) and a
    plain-words ``regime``."""

    t: np.ndarray
    x: np.ndarray
    f: np.ndarray
    lam: np.ndarray
    lr: float
    optimizer: str
    threshold: float
    rate: float
    regime: str
    meta: dict = field(default_factory=dict)


def _iteration_matrix(optimizer: str, a: float, lr: float, beta: float) -> np.ndarray:
    """Linear map of the state per step for one curvature ``a`` (already preconditioned)."""
    if optimizer == "gd":
        return np.array([[1.0 - lr * a]])
    if optimizer == "momentum":  # state (x, v): v' = beta v + a x; x' = x - lr v'
        return np.array([[1.0 - lr * a, -lr * beta], [a, beta]])
    # adam with a frozen preconditioner: m' = beta m + (1 - beta) a x; x' = x - lr m'
    return np.array([[1.0 - lr * (1 - beta) * a, -lr * beta], [(1 - beta) * a, beta]])


def quadratic_iterates(lam, lr: float, steps: int = 30, x0=1.0, optimizer: str = "gd",
                       momentum: float = 0.9, beta1: float = 0.9, precond=1.0) -> QuadraticResult:
    """Iterate an optimizer on ``f(x) = sum_i lambda_i x_i^2 / 2`` from ``x0``.

    ``gd``: ``x <- (1 - lr lambda) x``: monotone convergence for ``lr < 1/lambda``, oscillating
    convergence up to ``2/lambda``, a period-2 orbit at it, divergence above.
    ``momentum``: heavy ball ``v <- beta v + g, x <- x - lr v``; stable iff
    ``lambda < (2 + 2 beta)/lr``. ``adam``: Adam-style EMA momentum with a *frozen* diagonal
    preconditioner ``P`` (``precond``): ``m <- beta1 m + (1 - beta1) g, x <- x - lr m / P``;
    stable iff ``lambda / P < (2 + 2 beta1)/((1 - beta1) lr)``. Pure numpy, instant.
    """
    if optimizer not in OPTIMIZERS:
        raise LandscapeError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    lam_arr = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    if lam_arr.ndim != 1 or lam_arr.size == 0 or not np.all(np.isfinite(lam_arr)):
        raise LandscapeError(f"lambda must be one or more finite numbers, got {lam}")
    if np.any(lam_arr < 0):
        raise LandscapeError("this lesson needs lambda >= 0 (a bowl, not a saddle)")
    thr = threshold(optimizer, lr, momentum, beta1)
    if not _is_int(steps) or not 1 <= steps <= 100_000:
        raise LandscapeError(f"steps must be 1..100000, got {steps}")
    pre = np.broadcast_to(np.asarray(precond, np.float64), lam_arr.shape).copy()
    if optimizer == "adam" and not np.all(pre > 0):
        raise LandscapeError("the preconditioner must be positive")
    if optimizer != "adam":
        pre[:] = 1.0
    a = lam_arr / pre
    x = np.broadcast_to(np.asarray(x0, np.float64), lam_arr.shape).astype(np.float64).copy()
    beta = momentum if optimizer == "momentum" else beta1
    buf = np.zeros_like(x)
    xs = [x.copy()]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(int(steps)):
            g = lam_arr * x
            if optimizer == "gd":
                x = x - lr * g
            elif optimizer == "momentum":
                buf = beta * buf + g
                x = x - lr * buf
            else:
                buf = beta * buf + (1 - beta) * g
                x = x - lr * buf / pre
            xs.append(x.copy())
    X = np.asarray(xs)
    f = 0.5 * (lam_arr * X ** 2).sum(1) if X.size else np.zeros(0)
    rate = max(float(np.max(np.abs(np.linalg.eigvals(_iteration_matrix(optimizer, ai, lr, beta)))))
               for ai in a)
    regime = _regime(optimizer, float(a.max()), lr, thr, rate)
    return QuadraticResult(t=np.arange(len(X)), x=X[:, 0] if lam_arr.size == 1 else X, f=f,
                           lam=lam_arr, lr=float(lr), optimizer=optimizer, threshold=thr, rate=rate,
                           regime=regime, meta={"precond": pre.tolist(), "momentum": momentum,
                                                "beta1": beta1, "x0": np.asarray(x0).tolist()})


def _regime(optimizer: str, a: float, lr: float, thr: float, rate: float) -> str:
    close = 1e-9 * max(1.0, thr)
    if abs(a - thr) <= close:
        return "at the threshold: a period-2 oscillation that neither grows nor shrinks"
    if a > thr:
        return "diverges: lambda is above the threshold, each step overshoots further"
    if optimizer == "gd":
        if abs(lr * a - 1.0) <= 1e-9:
            return "converges in one step (eta = 1/lambda)"
        if lr * a < 1:
            return "converges monotonically (eta < 1/lambda)"
        return "converges while oscillating (1/lambda < eta < 2/lambda)"
    return f"converges (rate {rate:.3f} per step)"


# --------------------------------------------------------------------------- figures

STEP_LABEL = "step (full-batch updates)"
CURV_UNITS = "loss / parameter unit^2"


def _sharp_name(res: EosResult) -> str:
    return "preconditioned sharpness lambda_1(P^-1 H)" if res.optimizer == "adam" else \
        "sharpness lambda_1(H)"


def fig_loss_sharpness(res: EosResult, title: str | None = None) -> go.Figure:
    """Loss (top, log axis) and sharpness with the threshold line (bottom) on one step axis."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        row_heights=[0.45, 0.55])
    fig.add_trace(go.Scatter(x=res.loss_steps, y=np.maximum(res.loss, 1e-300), mode="lines",
                             name="training loss", line={"color": "#1f77b4"}), row=1, col=1)
    thr = res.threshold
    adam = res.optimizer == "adam"
    if len(res.eig_steps):
        if adam:
            fig.add_trace(go.Scatter(x=res.eig_steps, y=res.precond[:, 0], mode="lines+markers",
                                     name="lambda_1(P^-1 H)", line={"color": "#d62728"},
                                     marker={"size": 4}), row=2, col=1)
            fig.add_trace(go.Scatter(x=res.eig_steps, y=res.eigenvalues[:, 0], mode="lines",
                                     name="lambda_1(H) (raw, no threshold)",
                                     line={"color": "#7f7f7f", "dash": "dot"}), row=2, col=1)
        else:
            fig.add_trace(go.Scatter(x=res.eig_steps, y=res.eigenvalues[:, 0], mode="lines+markers",
                                     name="lambda_1(H)", line={"color": "#d62728"},
                                     marker={"size": 4}), row=2, col=1)
            if res.eigenvalues.shape[1] > 1:
                fig.add_trace(go.Scatter(x=res.eig_steps, y=res.eigenvalues[:, 1], mode="lines",
                                         name="lambda_2(H)", line={"color": "#ff9896", "dash": "dash"}),
                              row=2, col=1)
    formula = res.meta.get("threshold_formula", "")
    fig.add_hline(y=thr, line={"color": "black", "dash": "dash"}, row=2, col=1,
                  annotation_text=f"threshold {formula} = {thr:.3g}", annotation_position="top left")
    c = res.crossing_step
    if c is not None:
        fig.add_vline(x=c, line={"color": "grey", "dash": "dot"})
    label = res.meta.get("hessian_label", "Hessian")
    warn = "" if res.meta.get("twice_differentiable", True) else " (a.e. Hessian: not twice differentiable)"
    cfg = res.meta["config"]
    fig.update_yaxes(type="log", title_text="loss, 0.5 ||f - y||^2 mean (output units^2)"
                     if cfg["loss"] == "mse" else "loss, cross-entropy mean (nats)", row=1, col=1)
    fig.update_yaxes(title_text=f"eigenvalue ({CURV_UNITS})", row=2, col=1)
    fig.update_xaxes(title_text=STEP_LABEL, row=2, col=1)
    fig.update_xaxes(title_text=STEP_LABEL, row=1, col=1)
    head = (f"{cfg['optimizer']} eta = {cfg['lr']:g}: loss and {_sharp_name(res)} vs threshold "
            f"{thr:.3g}" + (f"; crosses 0.95x at step {c}" if c is not None else ""))
    fig.update_layout(title=title or (head + warn), legend={"orientation": "h", "y": -0.15},
                      meta={"hessian_label": label})
    return fig


def fig_curvature(res: EosResult, title: str | None = None) -> go.Figure:
    """Curvature along the gradient and along the update, with the sharpness and threshold."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=res.eig_steps, y=res.hessian_sharpness, mode="lines",
                             name="lambda_1(H)", line={"color": "#d62728"}))
    fig.add_trace(go.Scatter(x=res.eig_steps, y=res.grad_curvature, mode="lines+markers",
                             name="g^T H g / ||g||^2", line={"color": "#2ca02c"}, marker={"size": 4}))
    if res.optimizer != "gd":
        fig.add_trace(go.Scatter(x=res.eig_steps, y=res.update_curvature, mode="lines",
                                 name="d^T H d / ||d||^2 (update)", line={"color": "#9467bd"}))
    if res.optimizer != "adam":
        fig.add_hline(y=res.threshold, line={"color": "black", "dash": "dash"},
                      annotation_text=f"threshold {res.threshold:.3g}")
    fig.update_layout(title=title or "Curvature along the gradient (and the update) vs the sharpness",
                      xaxis_title=STEP_LABEL, yaxis_title=f"curvature ({CURV_UNITS})",
                      legend={"orientation": "h", "y": -0.2})
    return fig


def fig_slice(sl: SliceResult, title: str | None = None) -> go.Figure:
    """Loss along the top eigenvector at each chosen step, the current point (t = 0) and where
    the update moved along u_1."""
    fig = go.Figure()
    n = len(sl.steps)
    from plotly.colors import sample_colorscale

    for j, s in enumerate(sl.steps):
        color = sample_colorscale("Viridis", [0.85 * j / max(1, n - 1)])[0]
        fig.add_trace(go.Scatter(x=sl.t, y=sl.loss[j], mode="lines", line={"color": color},
                                 name=f"step {int(s)} (lambda_1 = {sl.sharpness[j]:.3g})"))
        mid = len(sl.t) // 2
        fig.add_trace(go.Scatter(x=[0.0], y=[sl.loss[j][mid]], mode="markers", showlegend=False,
                                 marker={"color": color, "size": 9, "symbol": "circle"},
                                 hovertext=f"theta at step {int(s)}"))
        if sl.next_t[j] != 0 and abs(sl.next_t[j]) <= sl.t[-1]:
            yn = float(np.interp(sl.next_t[j], sl.t, sl.loss[j]))
            fig.add_trace(go.Scatter(x=[sl.next_t[j]], y=[yn], mode="markers", showlegend=False,
                                     marker={"color": color, "size": 9, "symbol": "x"},
                                     hovertext="where the update moved along u_1"))
    fig.update_layout(title=title or "Loss along the top Hessian eigenvector u_1 "
                      "(circle: the iterate; x: its next step along u_1)",
                      xaxis_title="t, distance along u_1 (parameter units)",
                      yaxis_title="loss L(theta_s + t u_1) (loss units)",
                      legend={"orientation": "h", "y": -0.2})
    return fig


def fig_quadratic(q: QuadraticResult, title: str | None = None) -> go.Figure:
    """The 1-D lesson: iterates over time (left) and on the parabola (right)."""
    from plotly.subplots import make_subplots

    x = q.x if q.x.ndim == 1 else q.x[:, int(np.argmax(q.lam))]
    lam = float(q.lam.max())
    shown = np.isfinite(x) & (np.abs(x) < 1e6)
    x = np.where(shown, x, np.nan)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45],
                        subplot_titles=("iterate x_t over steps", "f(x) = lambda x^2 / 2 with the iterates"))
    fig.add_trace(go.Scatter(x=q.t, y=x, mode="lines+markers", name="x_t", marker={"size": 5}),
                  row=1, col=1)
    span = float(np.nanmax(np.abs(x))) if np.isfinite(x).any() else 1.0
    span = max(span, 1e-6) * 1.1
    xs = np.linspace(-span, span, 201)
    fig.add_trace(go.Scatter(x=xs, y=0.5 * lam * xs ** 2, mode="lines", name="f(x)",
                             line={"color": "#7f7f7f"}), row=1, col=2)
    fig.add_trace(go.Scatter(x=x, y=0.5 * lam * x ** 2, mode="lines+markers", name="iterates",
                             line={"color": "#d62728", "width": 1}, marker={"size": 6}),
                  row=1, col=2)
    fig.update_xaxes(title_text="step t (updates)", row=1, col=1)
    fig.update_yaxes(title_text="x_t (parameter units)", row=1, col=1)
    fig.update_xaxes(title_text="x (parameter units)", row=1, col=2)
    fig.update_yaxes(title_text="f(x) (loss units)", row=1, col=2)
    fig.update_layout(title=title or (f"{q.optimizer} on f(x) = lambda x^2/2, lambda = {lam:g}, "
                                      f"eta = {q.lr:g} (eta lambda = {q.lr * lam:.3g}; threshold "
                                      f"{q.threshold:.3g}): {q.regime}"),
                      showlegend=False)
    return fig


# --------------------------------------------------------------------------- CLI
