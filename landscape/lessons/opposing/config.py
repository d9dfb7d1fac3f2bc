"""One opposing-signals run's settings, its presets and its network.

The default is the planted-digits protocol (after Rosenfeld & Risteski 2023, "Outliers with
opposing signals have an outsized effect on neural network optimization"): a 2x2 patch of
Euclidean norm ``alpha = 16`` planted on 10% of the 3s and 8s of ``digits``; a ReLU MLP
64-64-64-10 (``widths`` are the hidden layers) trained on the squared loss
``0.5 ||f(x_i) - onehot(y_i)||^2`` by full-batch gradient descent with step size
``lr = lr_factor x 2 / lambda_0`` (``lambda_0``: the top Hessian eigenvalue at initialisation,
in loss / param^2), 1,500 steps, statistics over the last ``window = 400`` steps.

Presets: ``opposing-planted`` (alpha 16), ``opposing-control`` (alpha 1: the same indices, a
patch about the norm of a whole image, fitted without oscillating), ``opposing-digits`` (no
plant), ``opposing-gaussian`` (the same plant on a 10-class Gaussian mixture) and
``opposing-toy`` (the paper's two-layer linear illustration, which has no stable anti-phase
regime: it converges up to about 2.1 x 2/lambda_0 and diverges within 10 steps from 2.2 x).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from landscape.core.device import DTYPES
from landscape.core.errors import LandscapeError
from landscape.lessons.kit import LessonConfig, is_finite, is_int, preset_maker

DATASETS = ("digits", "gaussians", "toy")
ACTIVATIONS = ("relu", "tanh", "linear")
PATCH_PIXELS = (0, 1, 8, 9)  # the top-left 2x2 patch of the 8x8 grid
SPIKE_LOOKBACK = 20
# Warm-started Lanczos for the sharpness trace: a small basis and a loose ARPACK tolerance
# (eigenvalue errors are about residual^2 / gap, far below it).
SHARPNESS_NCV = 6
SHARPNESS_TOL = 1e-3
BAND = (5.0, 95.0)


@dataclass
class OpposingConfig(LessonConfig):
    """One opposing-signals run. Defaults: the planted-digits protocol (module docstring)."""

    what: ClassVar[str] = "opposing-signals"

    data: str = "digits"                      # "digits", "gaussians" or "toy"
    alpha: float = 16.0                       # planted feature's norm (0 = no plant)
    plant_classes: tuple[int, int] = (3, 8)   # the two classes that share the feature
    fraction: float = 0.1                     # of each planted class
    scale: float = 8.0                        # digits: standardised pixels / scale
    widths: tuple[int, ...] = (64, 64)        # hidden widths
    activation: str = "relu"                  # relu, tanh or linear
    lr: float | None = None                   # absolute step size; None: lr_factor x 2/lambda_0
    lr_factor: float = 0.5
    steps: int = 1500
    window: int = 400                         # statistics over the last `window` steps
    sharpness_every: int = 25                 # top Hessian eigenvalue every this many steps
    detect: int = 35                          # detected-set size without a plant
    top_k: int = 8                            # risers / fallers kept per step in events
    controls: int = 200                       # matched random pairs
    spike_factor: float = 1.1                 # spike: loss >= factor x median of 20 before
    retrain: bool = False                     # remove the detected set and train again
    seed: int = 0                             # plant choice, initial weights, controls
    dtype: str = "float32"
    device: str = "cpu"
    gauss_n: int = 1800                       # gaussians: examples (10 classes)
    gauss_dim: int = 64                       # gaussians: dimensions
    gauss_separation: float = 8.0             # gaussians: mean distance between class means
    toy_n: int = 400                          # toy: examples (half per class)
    toy_dim: int = 20                         # toy: core coordinates
    toy_signal: float = 0.5                   # toy: class-mean offset in each core coordinate
    toy_noise: float = 1.0                    # toy: core noise std
    toy_outlier: float = 10.0                 # toy: the opposing coordinate's value

    def validate(self) -> None:
        """Raise :class:`LandscapeError` (one line) for any setting that cannot run."""
        if self.data not in DATASETS:
            raise LandscapeError(f"unknown data {self.data!r}; choose one of {DATASETS}")
        if not is_finite(self.alpha) or self.alpha < 0:
            raise LandscapeError(f"alpha (the planted feature's norm) must be >= 0, got {self.alpha}")
        pc = tuple(self.plant_classes) if self.plant_classes is not None else ()
        n_classes = 2 if self.data == "toy" else 10
        if len(pc) != 2 or not all(is_int(c) and 0 <= c < n_classes for c in pc) or pc[0] == pc[1]:
            raise LandscapeError(f"plant_classes must be two different classes in 0..{n_classes - 1}, "
                                 f"got {list(pc)}")
        if not is_finite(self.fraction) or not 0 < self.fraction <= 0.5:
            raise LandscapeError(f"the planted fraction must be in (0, 0.5], got {self.fraction}")
        if not is_finite(self.scale) or self.scale <= 0:
            raise LandscapeError(f"scale must be positive, got {self.scale}")
        widths = list(self.widths) if self.widths is not None else []
        if not widths or not all(is_int(w) and w >= 1 for w in widths):
            raise LandscapeError(f"hidden widths must be one or more positive whole numbers, got {widths}")
        if self.activation not in ACTIVATIONS:
            raise LandscapeError(f"unknown activation {self.activation!r}; choose one of {ACTIVATIONS}")
        if self.lr is not None and (not is_finite(self.lr) or self.lr <= 0):
            raise LandscapeError(f"learning rate must be positive, got {self.lr}")
        if not is_finite(self.lr_factor) or self.lr_factor <= 0:
            raise LandscapeError(f"lr_factor must be positive, got {self.lr_factor}")
        if not is_int(self.steps) or self.steps < 2:
            raise LandscapeError(f"steps must be a whole number >= 2, got {self.steps}")
        if not is_int(self.window) or self.window < 2:
            raise LandscapeError(f"window must be a whole number >= 2 steps, got {self.window}")
        if self.window > self.steps:
            raise LandscapeError(f"the window ({self.window} steps) is longer than the run "
                                 f"({self.steps} steps); shorten the window or train longer")
        if not is_int(self.sharpness_every) or self.sharpness_every < 1:
            raise LandscapeError(f"sharpness_every must be >= 1, got {self.sharpness_every}")
        if not is_int(self.detect) or self.detect < 2:
            raise LandscapeError(f"detect must be >= 2 examples, got {self.detect}")
        if not is_int(self.top_k) or self.top_k < 1:
            raise LandscapeError(f"top_k must be >= 1, got {self.top_k}")
        if not is_int(self.controls) or self.controls < 10:
            raise LandscapeError(f"controls must be >= 10 matched pairs, got {self.controls}")
        if not is_finite(self.spike_factor) or self.spike_factor <= 1:
            raise LandscapeError(f"spike_factor must be > 1, got {self.spike_factor}")
        if not is_int(self.seed) or self.seed < 0:
            raise LandscapeError(f"seed must be a whole number >= 0, got {self.seed}")
        if self.dtype not in DTYPES:
            raise LandscapeError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.data == "gaussians":
            if not is_int(self.gauss_n) or self.gauss_n < 100:
                raise LandscapeError(f"gauss_n must be >= 100 examples, got {self.gauss_n}")
            if not is_int(self.gauss_dim) or self.gauss_dim < 10:
                raise LandscapeError(f"gauss_dim must be >= 10 (the patch uses coordinates 0, 1, 8, 9), "
                                     f"got {self.gauss_dim}")
            if not is_finite(self.gauss_separation) or self.gauss_separation <= 0:
                raise LandscapeError(f"gauss_separation must be positive, got {self.gauss_separation}")
        if self.data == "toy":
            if not is_int(self.toy_n) or self.toy_n < 20:
                raise LandscapeError(f"toy_n must be >= 20 examples, got {self.toy_n}")
            if not is_int(self.toy_dim) or self.toy_dim < 1:
                raise LandscapeError(f"toy_dim must be >= 1, got {self.toy_dim}")
            for name in ("toy_signal", "toy_noise", "toy_outlier"):
                v = getattr(self, name)
                if not is_finite(v) or v < 0:
                    raise LandscapeError(f"{name} must be a number >= 0, got {v}")


PRESETS: dict[str, OpposingConfig] = {
    # The 2x2 patch of norm 16 on 10% of the 3s and 8s (m = 35).
    "opposing-planted": OpposingConfig(alpha=16.0),
    # The same indices with a patch of norm 1 (16x weaker; fitted without oscillating): the
    # specific statistics (precision, planted-group amplitude ratio, vote share) fall to chance.
    "opposing-control": OpposingConfig(alpha=1.0),
    # Plain digits, no plant: what the label-free detector finds on its own.
    "opposing-digits": OpposingConfig(alpha=0.0),
    # The same plant on a 10-class Gaussian mixture (1,800 points, 64 dimensions, class means
    # 8 apart): well separated, so the network fits the clusters and the plant oscillates.
    "opposing-gaussian": OpposingConfig(data="gaussians", alpha=16.0),
    # The paper's two-layer linear toy, run below the edge where it diverges (see notes).
    "opposing-toy": OpposingConfig(data="toy", alpha=1.0, plant_classes=(0, 1), widths=(20,),
                                   activation="linear", lr_factor=1.0, steps=600, window=200,
                                   sharpness_every=10, detect=20),
}

PRESET_NOTES = {
    "opposing-planted": "digits, 2x2 patch of norm 16 on 10% of the 3s and 8s (35 examples), "
                        "ReLU MLP 64-64-64-10, GD at 0.5 x 2/lambda_0, 1,500 steps",
    "opposing-control": "the same 35 examples with a patch of norm 1 (16x weaker, fitted without oscillating): "
                        "the control",
    "opposing-digits": "plain digits, nothing planted: the detector on its own",
    "opposing-gaussian": "10-class Gaussian mixture (1,800 points, 64 dimensions, separation 8) "
                         "with the same plant on coordinates 0, 1, 8, 9 of 10% of classes 3 and 8",
    "opposing-toy": "two-layer linear network, small core signal plus one large shared "
                    "coordinate. Illustration only: it has no stable anti-phase regime (measured: "
                    "it converges up to 2.1 x 2/lambda_0 and diverges within 10 steps from 2.2 x)",
}


#: ``preset(name, **overrides)``: a copy of a preset with some fields replaced (``None`` values
#: are ignored)
preset = preset_maker(PRESETS, "opposing-signals")



def build_model(config: OpposingConfig, in_dim: int, out_dim: int) -> nn.Sequential:
    """An MLP ``in_dim -> widths -> out_dim`` initialised from ``config.seed`` (PyTorch's
    default init) without touching the global RNG state."""
    dims = [int(in_dim), *[int(w) for w in config.widths], int(out_dim)]
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "linear": nn.Identity}[config.activation]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        layers: list[nn.Module] = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2 and config.activation != "linear":
                layers.append(act())
        model = nn.Sequential(*layers)
    return model.to(DTYPES[config.dtype])

