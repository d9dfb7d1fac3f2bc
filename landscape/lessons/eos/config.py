r"""Edge-of-stability runs: their settings, presets, thresholds, model and data.

An :class:`EosConfig` is one full-batch run (Cohen et al. 2021; adaptive optimizers: Cohen et
al. 2022). The canonical demo (``eos-tanh``): a tanh MLP 64-64-64-10 on 500 standardised
digits, squared loss ``0.5 * ||f(x) - onehot(y)||^2`` averaged over examples, float64,
full-batch GD at eta = 0.2 for 1,500 steps, eigenvalues every 25 steps.

Stability thresholds on the (preconditioned) sharpness, from a quadratic with curvature
``lambda`` (see :mod:`landscape.lessons.eos.quadratic`):

- ``gd``: ``theta <- theta - eta g``; stable iff ``lambda < 2 / eta``.
- ``momentum`` (heavy ball, PyTorch's convention): ``v <- beta v + g``,
  ``theta <- theta - eta v``; stable iff ``lambda < (2 + 2 beta) / eta``.
- ``adam``: with its preconditioner ``P`` frozen, EMA momentum on ``P^-1 H``: stable iff
  ``lambda_1(P^-1 H) < (2 + 2 beta1) / ((1 - beta1) eta)`` (38 / eta for beta1 = 0.9).

Units: the GD/momentum thresholds are loss per squared parameter unit (the inverse of the
learning rate's units); the Adam threshold shares the units of ``1 / eta``.

ReLU, max-pooling and other piecewise-linear pieces make the loss only piecewise twice
differentiable: :func:`hessian_label` then says "a.e. Hessian".
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from landscape.core import losses
from landscape.core.device import DTYPES
from landscape.core.errors import LandscapeError
from landscape.lessons.kit import LessonConfig, preset_maker

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



def is_whole(v) -> bool:
    """A whole number (an int, or a float with no fractional part; not a bool)."""
    return (isinstance(v, (int, np.integer)) and not isinstance(v, bool)) or \
        (isinstance(v, float) and v.is_integer())


def is_positive(v) -> bool:
    """A finite number > 0 (not a bool)."""
    return isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) and \
        math.isfinite(v) and v > 0


@dataclass
class EosConfig(LessonConfig):
    """One edge-of-stability run. Defaults: the CPU recipe ``eos-tanh`` (eta 0.2)."""

    what: ClassVar[str] = "edge-of-stability"

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

    @property
    def threshold(self) -> float:
        return threshold(self.optimizer, self.lr, self.momentum, self.beta1)

    def validate(self) -> None:
        """Raise :class:`LandscapeError` (one line) for any setting that cannot run."""
        if self.optimizer not in OPTIMIZERS:
            raise LandscapeError(f"unknown optimizer {self.optimizer!r}; choose one of "
                                 f"{', '.join(OPTIMIZERS)}")
        if not is_positive(self.lr):
            raise LandscapeError(f"learning rate must be a positive number, got {self.lr}")
        for name in ("momentum", "beta1", "beta2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1):
                raise LandscapeError(f"{name} must be in [0, 1), got {v}")
        if not is_positive(self.eps):
            raise LandscapeError(f"eps must be a positive number, got {self.eps}")
        if not is_whole(self.steps) or self.steps < 1:
            raise LandscapeError(f"steps must be a positive whole number, got {self.steps}")
        if not is_whole(self.eig_every) or self.eig_every < 1:
            raise LandscapeError(f"eig-every must be a positive whole number, got {self.eig_every}")
        if not is_whole(self.n_eigs) or not 1 <= self.n_eigs <= 10:
            raise LandscapeError(f"n_eigs must be 1..10, got {self.n_eigs}")
        if not is_positive(self.eig_tol) or self.eig_tol >= 1:
            raise LandscapeError(f"eig_tol must be in (0, 1), got {self.eig_tol}")
        if not is_whole(self.eig_maxdim) or self.eig_maxdim < 3:
            raise LandscapeError(f"eig_maxdim must be >= 3, got {self.eig_maxdim}")
        if self.eig_dtype is not None and self.eig_dtype not in DTYPES:
            raise LandscapeError(f"eig_dtype must be None or one of {sorted(DTYPES)}, got "
                                 f"{self.eig_dtype!r}")
        if not (isinstance(self.crossing_fraction, (int, float)) and 0 < self.crossing_fraction <= 1):
            raise LandscapeError(f"crossing_fraction must be in (0, 1], got {self.crossing_fraction}")
        if not is_whole(self.seed) or self.seed < 0:
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
    # The canonical demo: tanh MLP 64-64-64-10, 500 standardised digits, squared loss,
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
    "eos-tanh": "the canonical demo: tanh MLP 64-64-64-10, 500 digits, squared loss, GD eta 0.2, 1,500 steps",
    "eos-tanh-fast": "the same network at eta 0.4, 600 steps: at the edge within 200 steps",
    "eos-momentum": "heavy-ball momentum 0.8, eta 0.2, 1,200 steps: threshold (2 + 2 beta)/eta = 18",
    "eos-adam": "Adam eta 4e-3, 1,500 steps: preconditioned sharpness vs 38/eta",
    "eos-cnn-gpu": "tanh CNN (average pooling) on all 1,797 digits, GD eta 0.4, 3,000 steps (GPU)",
}


#: ``preset(name, **overrides)``: a copy of a preset with some fields replaced (``None`` values
#: are ignored)
preset = preset_maker(PRESETS, "edge-of-stability")




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
