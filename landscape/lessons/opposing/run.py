r"""Outliers with opposing signals (Rosenfeld & Risteski 2023), measured on data with a known answer.

Protocol (DESIGN 3.6, which replaces the issue's early-window and synthetic-data figures):

- **Data.** ``digits`` (1,797 8x8 images): pixels / 16, standardised per pixel, divided by
  ``scale`` (8). A bright 2x2 patch (pixels 0, 1, 8, 9 of the 8x8 grid, each set to
  ``alpha / 2``, so the patch has Euclidean norm ``alpha``) is planted on a ``fraction`` (10%)
  of the examples of each of two classes (3 and 8): ``m = 18 + 17 = 35`` examples, chance
  precision ``35 / 1797 = 0.02``. The same feature on two classes pulls their outputs in
  opposite directions: an opposing signal. ``alpha = 16`` is the planted preset, ``alpha = 1``
  the control (the same indices carry a patch of norm 1: about the norm of a whole image
  here, median 0.83, yet the network fits it without oscillating), ``alpha = 0`` plain digits.
  The planted indices are recorded; so is the unplanted input (for the vote share).
- **Training.** ReLU MLP 64-64-64-10, squared loss ``0.5 ||f(x_i) - onehot(y_i)||^2`` per
  example, averaged; full-batch gradient descent with ``lr = lr_factor x 2 / lambda_0``
  (``lambda_0`` = sharpness at initialisation, ``lr_factor = 0.5``), 1,500 steps.
- **Loss matrix.** ``L[t, i]``: the loss of example ``i`` after ``t`` updates, ``t = 0..T``
  (from the forward pass that the update uses anyway: no extra backward).
- **Per step** ``t``: the examples whose loss rises most and falls most from ``t`` to
  ``t + 1`` (``step_movers``).
- **Ranking** (label-free): over the last ``window`` steps, ``score_i = sum_t |L[t+1, i] -
  L[t, i]|``; the detected set is the top ``m`` (``m`` = the planted count, or ``detect``
  without a plant). ``precision@m`` = fraction of the top ``m`` that is planted.
- **Groups.** The detected set split by label: group A = its members of the most common
  label, group B = of the second most common. ``purity = (|A| + |B|) / m``. ``phase
  agreement``: the detected set split label-free by the sign of its first principal
  component of loss changes, compared with the label split (1 when they coincide).
- **Oscillation.** ``amp(G) = std_t(Delta mean_{i in G} L[t, i])`` over the window; a pair's
  amplitude is the mean of its two groups'. ``amplitude ratio`` = the pair's amplitude over
  the median of ``controls`` (200) matched random pairs: same classes and sizes, drawn from
  the examples outside the pair. Reported for the detected groups and, with a plant, for the
  planted groups (split by label). The detected groups are selected by their movement in the
  same window, so their ratio carries a selection bias (about 10x even in the control, see
  below); the planted groups are fixed in advance and carry none.
- **Group loss correlation.** ``corr(Delta mean_A L, Delta mean_B L)`` over the window,
  reported next to the same statistic for the matched random pairs (median, 5-95%) and its
  percentile among them: anti-correlation alone appears in unplanted pairs too.
- **Vote share.** For each planted example ``i`` with classes ``(c1, c2) = plant_classes``,
  the logit margin ``s_i(t) = f_c1(x_i) - f_c2(x_i)`` after ``t`` updates splits exactly into
  the part of the rest of the image ``r_i(t) = f_c1(x_i^0) - f_c2(x_i^0)`` (``x_i^0`` = the
  same image without the patch) and the patch's part ``p_i(t) = s_i(t) - r_i(t)``. With
  ``Delta`` the change from one step to the next, over the window and all planted examples,

  .. math::  \text{vote share} = \frac{\sum_{t,i} \Delta p_i(t)\,\Delta s_i(t)}
                                       {\sum_{t,i} \Delta s_i(t)^2},

  the least-squares share of the margin's swing carried by the patch (the rest's share is
  ``1 - vote share``): near 1 when the patch drives the class-3-vs-8 oscillation, near 0 when
  the patch is a bystander.
- **Sharpness.** Top Hessian eigenvalue of the full-batch loss every ``sharpness_every``
  steps (Lanczos, warm-started from the previous eigenvector); ``sharpness ratio`` = its mean
  over the window divided by ``2 / lr``.
- **Controls band.** 5-95% of the matched random subsets' mean loss at every step, per group.
- **Spikes.** Steps where the overall loss is a local maximum at least ``spike_factor`` times
  the median of the previous 20 steps.
- **Remove and retrain** (``retrain=True``): the same initial weights and ``lr``, trained on
  the data without the detected set; its loss next to the first run's loss on the same kept
  examples.

Measured on a 2-core CPU, one torch thread, float32, seeds 0-4 (7-14 s a run on a quiet
machine, 25-70 s under heavy load; about half of it is the sharpness trace), planted
(alpha 16) vs control (alpha 1), min-max over seeds:

- precision@m 0.80-0.97 vs 0.00-0.09 (chance 0.02); the groups are the 3s and 8s on every
  seed; purity 0.94-1.00 (control 0.86-0.94: its detected set is mostly 8s with 9s, 1s or 3s,
  so purity alone is not specific); phase agreement 1.00 (control 0.97-1.00);
- amplitude ratio of the planted groups 27-43 vs 0.05-1.03; of the detected groups 31-44 vs
  9.5-11.7 (selection bias: the detected set is chosen by its movement in the same window);
- vote share 0.88-0.91 vs -0.06..0.06; sharpness ratio 0.98-1.14 vs 0.96-0.97 (the control is
  at the edge of stability too);
- group loss correlation -0.95..-1.00, matched random pairs' median -0.97..-1.00 (percentile
  of the pair among them 0.00-0.69): anti-correlation shows the oscillation, not its cause;
- the groups swing between about 0.01 and 0.22-0.58 while the overall loss stays at 0.02;
  overall-loss spikes (local maxima 1.1x the previous 20 steps' median) come at steps 60-150,
  when the sharpness first reaches 2/lr, and occasionally later;
- remove and retrain: without the detected set the kept examples' late oscillation amplitude
  falls 2-23x (planted) but also 1.2-110x (control): not specific either.
- plain digits (no plant, seeds 0-1): the detector pairs 8s with 9s (purity 0.83-0.89,
  detected-group amplitude ratio 10.5-11.9, the selection-bias level).
- the Gaussian mixture preset (seeds 0-1): precision 0.83 / 1.00, planted-group amplitude ratio
  21 / 166, vote share 0.965 / 0.961, sharpness ratio 0.85 / 0.95; its control (alpha 1)
  precision 0.00, ratio 0.82 / 0.78, vote share 0.12 / 0.14 and sharpness ratio 0.61 / 0.65
  (below the edge: here the plant itself drives the run to the edge of stability).

The two-layer linear toy (``data="toy"``): a small core signal in ``toy_dim`` coordinates plus
one large coordinate ``toy_outlier`` carried by ``fraction`` of each class (the paper's
illustration). It is an illustration only: as DESIGN 3.6 found, it has no stable anti-phase
regime. Measured with the preset's settings (400 examples, 20 core coordinates, signal 0.5,
outlier 10 on 10% of each class, width 20, 600 steps): it converges to the same fixed point
(loss 0.038; late sharpness 0.79 x 2/lr at the preset's step size) for lr up to
2.1 x 2/lambda_0 and diverges within 10 steps from 2.2 x on; DESIGN 3.6 found the edge near
0.42 x on its variant. The preset runs at 1.0 x 2/lambda_0, where nothing oscillates
(planted-group amplitude ratio about 1.6).
A synthetic Gaussian set (``data="gaussians"``, preset ``opposing-gaussian``): DESIGN 3.6
reports that the network memorised the planted points of its Gaussian set; a 10-class mixture
of 1,800 points in 64 dimensions with class means 8 apart, standardised and planted like the
digits, does show the phenomenon (numbers above).

Runs are deterministic for a seed (same device, same torch thread count). Training is a
generator of events (:meth:`OpposingRun.run`) so a UI can draw live and stop.
"""

from __future__ import annotations

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

from landscape.core.device import DTYPES
from landscape.core.errors import Cancelled, LandscapeError
from landscape.lessons.kit import (
    jsonable,
    preset_with,
    read_npz,
    result_path,
    run_to_end,
    torch_threads,
    write_npz,
)

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
class OpposingConfig:
    """One opposing-signals run. Defaults: the planted digits protocol of DESIGN 3.6."""

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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["plant_classes"] = list(d["plant_classes"])
        d["widths"] = list(d["widths"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> OpposingConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise LandscapeError(f"unknown opposing-signals options: {sorted(unknown)}")
        d = dict(d)
        for key in ("plant_classes", "widths"):
            if key in d and d[key] is not None:
                d[key] = tuple(d[key])
        return cls(**d)

    def validate(self) -> None:
        """Raise :class:`LandscapeError` (one line) for any setting that cannot run."""
        if self.data not in DATASETS:
            raise LandscapeError(f"unknown data {self.data!r}; choose one of {DATASETS}")
        if not _finite(self.alpha) or self.alpha < 0:
            raise LandscapeError(f"alpha (the planted feature's norm) must be >= 0, got {self.alpha}")
        pc = tuple(self.plant_classes) if self.plant_classes is not None else ()
        n_classes = 2 if self.data == "toy" else 10
        if len(pc) != 2 or not all(_is_int(c) and 0 <= c < n_classes for c in pc) or pc[0] == pc[1]:
            raise LandscapeError(f"plant_classes must be two different classes in 0..{n_classes - 1}, "
                                 f"got {list(pc)}")
        if not _finite(self.fraction) or not 0 < self.fraction <= 0.5:
            raise LandscapeError(f"the planted fraction must be in (0, 0.5], got {self.fraction}")
        if not _finite(self.scale) or self.scale <= 0:
            raise LandscapeError(f"scale must be positive, got {self.scale}")
        widths = list(self.widths) if self.widths is not None else []
        if not widths or not all(_is_int(w) and w >= 1 for w in widths):
            raise LandscapeError(f"hidden widths must be one or more positive whole numbers, got {widths}")
        if self.activation not in ACTIVATIONS:
            raise LandscapeError(f"unknown activation {self.activation!r}; choose one of {ACTIVATIONS}")
        if self.lr is not None and (not _finite(self.lr) or self.lr <= 0):
            raise LandscapeError(f"learning rate must be positive, got {self.lr}")
        if not _finite(self.lr_factor) or self.lr_factor <= 0:
            raise LandscapeError(f"lr_factor must be positive, got {self.lr_factor}")
        if not _is_int(self.steps) or self.steps < 2:
            raise LandscapeError(f"steps must be a whole number >= 2, got {self.steps}")
        if not _is_int(self.window) or self.window < 2:
            raise LandscapeError(f"window must be a whole number >= 2 steps, got {self.window}")
        if self.window > self.steps:
            raise LandscapeError(f"the window ({self.window} steps) is longer than the run "
                                 f"({self.steps} steps); shorten the window or train longer")
        if not _is_int(self.sharpness_every) or self.sharpness_every < 1:
            raise LandscapeError(f"sharpness_every must be >= 1, got {self.sharpness_every}")
        if not _is_int(self.detect) or self.detect < 2:
            raise LandscapeError(f"detect must be >= 2 examples, got {self.detect}")
        if not _is_int(self.top_k) or self.top_k < 1:
            raise LandscapeError(f"top_k must be >= 1, got {self.top_k}")
        if not _is_int(self.controls) or self.controls < 10:
            raise LandscapeError(f"controls must be >= 10 matched pairs, got {self.controls}")
        if not _finite(self.spike_factor) or self.spike_factor <= 1:
            raise LandscapeError(f"spike_factor must be > 1, got {self.spike_factor}")
        if not _is_int(self.seed) or self.seed < 0:
            raise LandscapeError(f"seed must be a whole number >= 0, got {self.seed}")
        if self.dtype not in DTYPES:
            raise LandscapeError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.data == "gaussians":
            if not _is_int(self.gauss_n) or self.gauss_n < 100:
                raise LandscapeError(f"gauss_n must be >= 100 examples, got {self.gauss_n}")
            if not _is_int(self.gauss_dim) or self.gauss_dim < 10:
                raise LandscapeError(f"gauss_dim must be >= 10 (the patch uses coordinates 0, 1, 8, 9), "
                                     f"got {self.gauss_dim}")
            if not _finite(self.gauss_separation) or self.gauss_separation <= 0:
                raise LandscapeError(f"gauss_separation must be positive, got {self.gauss_separation}")
        if self.data == "toy":
            if not _is_int(self.toy_n) or self.toy_n < 20:
                raise LandscapeError(f"toy_n must be >= 20 examples, got {self.toy_n}")
            if not _is_int(self.toy_dim) or self.toy_dim < 1:
                raise LandscapeError(f"toy_dim must be >= 1, got {self.toy_dim}")
            for name in ("toy_signal", "toy_noise", "toy_outlier"):
                v = getattr(self, name)
                if not _finite(v) or v < 0:
                    raise LandscapeError(f"{name} must be a number >= 0, got {v}")


def _is_int(v) -> bool:
    return (isinstance(v, (int, np.integer)) and not isinstance(v, bool)) or \
        (isinstance(v, float) and v.is_integer())


def _finite(v) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) \
        and math.isfinite(float(v))


PRESETS: dict[str, OpposingConfig] = {
    # DESIGN 3.6: the 2x2 patch of norm 16 on 10% of the 3s and 8s (m = 35).
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
                    "it converges up to 2.1 x 2/lambda_0 and diverges within 10 steps from 2.2 x; "
                    "DESIGN 3.6 saw the same with the edge near 0.42 x on its variant)",
}


def preset(name: str, **overrides) -> OpposingConfig:
    """A copy of a preset with some fields replaced (``None`` values are ignored)."""
    return preset_with(PRESETS, name, "opposing-signals", **overrides)


# --------------------------------------------------------------------------- data

@dataclass
class PlantedData:
    """Inputs ``X`` [N, D] (what the network sees), labels ``y`` [N], the planted indices
    ``planted`` [m] (sorted; empty without a plant), ``X_clean`` [N, D] (the same inputs
    without the planted feature), ``images`` [N, 64] in [0, 1] for display (digits; patch
    pixels shown at full brightness on planted examples) or None, and a short description."""

    X: np.ndarray
    y: np.ndarray
    planted: np.ndarray
    X_clean: np.ndarray
    images: np.ndarray | None
    n_classes: int
    feature: str
    description: str
    feature_index: tuple[int, ...] = PATCH_PIXELS  # input coordinates of the planted feature

    @property
    def n(self) -> int:
        return int(len(self.y))


def choose_planted(y: np.ndarray, classes, fraction: float, seed: int) -> np.ndarray:
    """``round(fraction x n_c)`` random examples of each class ``c`` in ``classes``, sorted."""
    rng = np.random.default_rng([int(seed), 11])
    out = []
    for c in classes:
        idx = np.flatnonzero(y == int(c))
        k = int(round(fraction * len(idx)))
        if k < 1:
            raise LandscapeError(f"class {c} has {len(idx)} examples: too few to plant {fraction:.0%} of")
        out.append(rng.choice(idx, k, replace=False))
    return np.sort(np.concatenate(out))


def planted_digits(alpha: float = 16.0, classes=(3, 8), fraction: float = 0.1, scale: float = 8.0,
                   seed: int = 0) -> PlantedData:
    """The digits protocol of DESIGN 3.6 (see the module docstring). ``alpha = 0``: no plant."""
    from landscape.core.data import load_builtin

    d = load_builtin("digits")
    raw = d.X.double().numpy()                      # pixels / 16, in [0, 1]
    y = d.y.numpy().astype(np.int64)
    mu, sd = raw.mean(0), raw.std(0)
    X_clean = (raw - mu) / np.where(sd > 0, sd, 1.0) / scale
    X = X_clean.copy()
    images = raw.copy()
    if alpha > 0:
        planted = choose_planted(y, classes, fraction, seed)
        X[np.ix_(planted, PATCH_PIXELS)] = alpha / 2.0
        images[np.ix_(planted, PATCH_PIXELS)] = 1.0
        desc = (f"digits with a 2x2 patch of norm {alpha:g} on {len(planted)} examples "
                f"({fraction:.0%} of the {classes[0]}s and {classes[1]}s)")
    else:
        planted = np.zeros(0, np.int64)
        desc = "digits, nothing planted"
    return PlantedData(X, y, planted, X_clean, images, 10, "2x2 patch (pixels 0, 1, 8, 9)", desc)


def planted_gaussians(alpha: float = 16.0, classes=(3, 8), fraction: float = 0.1, scale: float = 8.0,
                      n: int = 1800, dim: int = 64, separation: float = 8.0, seed: int = 0) -> PlantedData:
    """A 10-class Gaussian mixture (the ``gaussians`` built-in: unit-variance components whose
    means are ``separation`` apart on average) standardised per coordinate and divided by
    ``scale``, with the digits protocol's plant on coordinates 0, 1, 8, 9."""
    from landscape.core.data import load_builtin

    d = load_builtin("gaussians", n=n, classes=10, dim=dim, separation=separation, seed=seed)
    raw = d.X.double().numpy()
    y = d.y.numpy().astype(np.int64)
    mu, sd = raw.mean(0), raw.std(0)
    X_clean = (raw - mu) / np.where(sd > 0, sd, 1.0) / scale
    X = X_clean.copy()
    if alpha > 0:
        planted = choose_planted(y, classes, fraction, seed)
        X[np.ix_(planted, PATCH_PIXELS)] = alpha / 2.0
        desc = (f"10-class Gaussian mixture ({n} points, {dim} dimensions, separation {separation:g}) "
                f"with a 4-coordinate feature of norm {alpha:g} on {len(planted)} examples "
                f"({fraction:.0%} of the {classes[0]}s and {classes[1]}s)")
    else:
        planted = np.zeros(0, np.int64)
        desc = f"10-class Gaussian mixture ({n} points, {dim} dimensions, separation {separation:g})"
    return PlantedData(X, y, planted, X_clean, None, 10, "coordinates 0, 1, 8, 9", desc)


def opposing_toy(n: int = 400, dim: int = 20, signal: float = 0.5, noise: float = 1.0,
                 outlier: float = 10.0, fraction: float = 0.1, classes=(0, 1), alpha: float = 1.0,
                 seed: int = 0) -> PlantedData:
    """The paper's toy: two classes, core coordinates ``x_j = +-signal + noise`` (sign by
    class), and one extra coordinate equal to ``alpha x outlier`` on ``fraction`` of each
    class (0 elsewhere): a large feature shared by both classes, pulling them apart."""
    rng = np.random.default_rng([int(seed), 13])
    y = (np.arange(n) % 2).astype(np.int64)
    sign = np.where(y == classes[1], 1.0, -1.0) if classes[1] == 1 else np.where(y == 1, 1.0, -1.0)
    core = sign[:, None] * signal + noise * rng.standard_normal((n, dim))
    X_clean = np.concatenate([core, np.zeros((n, 1))], 1)
    X = X_clean.copy()
    planted = choose_planted(y, classes, fraction, seed) if alpha > 0 else np.zeros(0, np.int64)
    X[planted, -1] = alpha * outlier
    desc = (f"toy: {dim} core coordinates (signal {signal:g}, noise {noise:g}) plus one shared "
            f"coordinate of {alpha * outlier:g} on {len(planted)} examples")
    return PlantedData(X, y, planted, X_clean, None, 2, "opposing coordinate (the last)", desc,
                       feature_index=(dim,))


def make_data(config: OpposingConfig) -> PlantedData:
    """The run's data set (deterministic for ``config.seed``)."""
    if config.data == "digits":
        return planted_digits(config.alpha, tuple(config.plant_classes), config.fraction,
                              config.scale, config.seed)
    if config.data == "gaussians":
        return planted_gaussians(config.alpha, tuple(config.plant_classes), config.fraction, config.scale,
                                 config.gauss_n, config.gauss_dim, config.gauss_separation, config.seed)
    return opposing_toy(config.toy_n, config.toy_dim, config.toy_signal, config.toy_noise,
                        config.toy_outlier, config.fraction, tuple(config.plant_classes),
                        config.alpha, config.seed)


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


# --------------------------------------------------------------------------- bookkeeping

def per_example_losses(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``0.5 ||f(x_i) - onehot(y_i)||^2`` for every example, shape [N] (one forward pass)."""
    from landscape.core.losses import per_example_loss

    return per_example_loss(model(X), y, "mse")


def movement_scores(L: np.ndarray, window: int) -> np.ndarray:
    """``score_i = sum_t |L[t+1, i] - L[t, i]|`` over the last ``window`` changes, [N]."""
    L = np.asarray(L, np.float64)
    if L.ndim != 2 or len(L) < 2:
        raise LandscapeError("the loss matrix needs at least two steps")
    w = int(min(window, len(L) - 1))
    return np.abs(np.diff(L[-w - 1:], axis=0)).sum(0)


def rank_by_movement(L: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """``(order, score)``: examples by decreasing movement score (ties: lower index first)."""
    score = movement_scores(L, window)
    return np.argsort(-score, kind="stable"), score


def step_movers(L: np.ndarray, t: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rise, fall)``: the ``k`` examples whose loss rises most and falls most from step
    ``t`` to ``t + 1`` (largest change first / most negative first)."""
    L = np.asarray(L)
    if not 0 <= t < len(L) - 1:
        raise LandscapeError(f"step {t} has no next step (the run has {len(L) - 1} steps)")
    d = np.asarray(L[t + 1], np.float64) - np.asarray(L[t], np.float64)
    order = np.argsort(-d, kind="stable")
    k = min(int(k), len(d))
    return order[:k], np.argsort(d, kind="stable")[:k]


def precision_at(ranked: np.ndarray, planted: np.ndarray, m: int | None = None) -> float | None:
    """Fraction of the top ``m`` (default ``len(planted)``) of ``ranked`` that is planted."""
    planted = np.asarray(planted)
    if planted.size == 0:
        return None
    m = len(planted) if m is None else int(m)
    return float(np.isin(np.asarray(ranked)[:m], planted).mean())


def split_by_label(detected: np.ndarray, y: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray]:
    """``(label_a, label_b, A, B)``: the detected examples (kept in their order) of the most
    common and the second most common label (ties: the label seen first in ``detected``)."""
    detected = np.asarray(detected)
    labels = np.asarray(y)[detected]
    first: dict[int, int] = {}
    count: dict[int, int] = {}
    for j, lab in enumerate(labels.tolist()):
        first.setdefault(lab, j)
        count[lab] = count.get(lab, 0) + 1
    if len(count) < 2:
        raise LandscapeError("the detected examples all share one label: no opposing pair to split")
    top = sorted(count, key=lambda c: (-count[c], first[c]))
    a, b = int(top[0]), int(top[1])
    return a, b, detected[labels == a], detected[labels == b]


def matched_subsets(y: np.ndarray, group: np.ndarray, n: int, rng: np.random.Generator,
                    exclude: np.ndarray | None = None) -> np.ndarray:
    """``n`` random subsets [n, len(group)], each with exactly the label counts of ``group``,
    drawn without replacement within a subset from the examples outside ``exclude`` (the
    group itself is always excluded). A class with too few others left falls back to all of
    its examples outside the group."""
    y = np.asarray(y)
    group = np.asarray(group)
    excl = np.union1d(group, np.asarray(exclude if exclude is not None else [], np.int64))
    cols = []
    labels, counts = np.unique(y[group], return_counts=True)
    for lab, cnt in zip(labels, counts):
        pool = np.setdiff1d(np.flatnonzero(y == lab), excl)
        if len(pool) < cnt:
            pool = np.setdiff1d(np.flatnonzero(y == lab), group)
        if len(pool) < cnt:
            raise LandscapeError(f"class {lab} has too few examples outside the group to draw "
                                 f"{cnt} matched controls")
        cols.append(np.stack([rng.choice(pool, cnt, replace=False) for _ in range(int(n))]))
    return np.concatenate(cols, 1) if cols else np.zeros((int(n), 0), np.int64)


def group_curve(L: np.ndarray, idx) -> np.ndarray:
    """Mean loss of the examples ``idx`` at every step [T]."""
    return np.asarray(L, np.float64)[:, np.asarray(idx)].mean(1)


def amplitude(curve: np.ndarray) -> float:
    """Oscillation amplitude of a loss curve: the std of its step-to-step changes."""
    return float(np.std(np.diff(np.asarray(curve, np.float64))))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def pair_statistics(Lw: np.ndarray, y: np.ndarray, A: np.ndarray, B: np.ndarray, controls: int,
                    rng: np.random.Generator, exclude: np.ndarray | None = None) -> dict:
    """Amplitude and loss-change correlation of the pair (A, B) over the window's loss matrix
    ``Lw`` [W+1, N], against ``controls`` matched random pairs (same classes and sizes,
    drawn outside A, B and ``exclude``)."""
    Lw = np.asarray(Lw, np.float64)
    excl = np.union1d(np.union1d(A, B), np.asarray(exclude if exclude is not None else [], np.int64))
    ca = matched_subsets(y, A, controls, rng, excl)
    cb = matched_subsets(y, B, controls, rng, excl)
    dA, dB = np.diff(group_curve(Lw, A)), np.diff(group_curve(Lw, B))
    dL = np.diff(Lw, axis=0)
    cA = dL[:, ca].mean(2)  # [W, controls]
    cB = dL[:, cb].mean(2)
    amp = 0.5 * (dA.std() + dB.std())
    camp = 0.5 * (cA.std(0) + cB.std(0))
    corr = _corr(dA, dB)
    ccorr = np.array([_corr(cA[:, j], cB[:, j]) for j in range(cA.shape[1])])
    ok = np.isfinite(ccorr)
    med = float(np.median(camp))
    return {"amplitude": float(amp), "control_amplitude_median": med,
            "amplitude_ratio": float(amp / med) if med > 0 else float("inf"),
            "corr": corr,
            "control_corr_median": float(np.median(ccorr[ok])) if ok.any() else None,
            "control_corr_band": [float(v) for v in np.percentile(ccorr[ok], BAND)] if ok.any() else None,
            "corr_percentile": float((ccorr[ok] <= corr).mean()) if ok.any() and math.isfinite(corr) else None,
            "control_amplitudes": camp, "control_corrs": ccorr, "control_a": ca, "control_b": cb}


def control_band(L: np.ndarray, subsets: np.ndarray, q=BAND) -> np.ndarray:
    """[2, T]: the ``q`` percentiles over subsets of their mean loss at each step."""
    L = np.asarray(L, np.float32)
    if subsets.size == 0:
        return np.full((2, len(L)), np.nan)
    means = np.stack([L[:, s].mean(1) for s in subsets], 1)  # [T, n]
    return np.percentile(means, q, axis=1)


def vote_share(margin: np.ndarray, margin_clean: np.ndarray) -> float | None:
    """The patch's least-squares share of the margin's step-to-step swing (module docstring):
    ``sum dp ds / sum ds^2`` with ``s = margin``, ``p = margin - margin_clean`` ([W+1, m])."""
    s = np.diff(np.asarray(margin, np.float64), axis=0)
    p = np.diff(np.asarray(margin, np.float64) - np.asarray(margin_clean, np.float64), axis=0)
    den = float((s * s).sum())
    return float((p * s).sum() / den) if den > 0 else None


def phase_agreement(Lw: np.ndarray, A: np.ndarray, B: np.ndarray) -> float | None:
    """How well a label-free phase split matches the label split: members of A and B are
    split by the sign of their loading on the first principal component of their loss
    changes over the window; the fraction placed with their own label's side (best of the
    two sign assignments)."""
    members = np.concatenate([A, B])
    if len(A) == 0 or len(B) == 0:
        return None
    D = np.diff(np.asarray(Lw, np.float64)[:, members], axis=0)
    D = D - D.mean(0)
    if not np.any(D):
        return None
    _, _, vt = np.linalg.svd(D, full_matrices=False)
    side = vt[0] > 0
    want = np.concatenate([np.ones(len(A), bool), np.zeros(len(B), bool)])
    agree = float((side == want).mean())
    return max(agree, 1.0 - agree)


def find_spikes(loss: np.ndarray, factor: float = 1.1, lookback: int = SPIKE_LOOKBACK) -> np.ndarray:
    """Steps ``t`` where ``loss[t]`` is a local maximum and at least ``factor`` times the
    median of the ``lookback`` steps before it."""
    loss = np.asarray(loss, np.float64)
    out = []
    for t in range(1, len(loss) - 1):
        if loss[t] >= loss[t - 1] and loss[t] > loss[t + 1]:
            base = np.median(loss[max(0, t - lookback):t])
            if base > 0 and loss[t] >= factor * base:
                out.append(t)
    return np.asarray(out, np.int64)


# --------------------------------------------------------------------------- results

@dataclass
class OpposingResult:
    """Everything a run measured; arrays are numpy, ``meta`` is JSON-able.

    ``loss_matrix`` [T+1, N] (float32): example losses after ``t`` updates; ``loss`` [T+1] their
    mean; ``y`` [N]; ``images`` [N, 64] (digits, display) or [0, 0]; ``X`` [N, D] the inputs;
    ``planted`` [m]; ``ranked`` [N] and ``score`` [N] (window ranking); ``detected``;
    ``group_a``/``group_b`` (example indices) and their curves ``loss_a``/``loss_b`` [T+1];
    ``band_a``/``band_b`` [2, T+1] (5/95% of matched random subsets' mean loss);
    ``planted_a``/``planted_b`` (the planted examples split by class); ``sharpness_steps`` /
    ``sharpness`` [K]; ``margin``/``margin_clean`` [T+1, m] (planted examples' class-c1-minus-c2
    logit, with and without the patch); ``control_corrs``/``control_amplitudes`` [controls]
    of the detected pair; ``spikes`` (steps); ``retrain_loss`` [T+1] (loss of the run without
    the detected set) and ``kept_loss`` [T+1] (the first run's loss on the same examples),
    empty unless retrained. Metrics are in ``meta["metrics"]``.
    """

    loss_matrix: np.ndarray
    loss: np.ndarray
    y: np.ndarray
    images: np.ndarray
    X: np.ndarray
    planted: np.ndarray
    ranked: np.ndarray
    score: np.ndarray
    detected: np.ndarray
    group_a: np.ndarray
    group_b: np.ndarray
    loss_a: np.ndarray
    loss_b: np.ndarray
    band_a: np.ndarray
    band_b: np.ndarray
    planted_a: np.ndarray
    planted_b: np.ndarray
    sharpness_steps: np.ndarray
    sharpness: np.ndarray
    margin: np.ndarray
    margin_clean: np.ndarray
    control_corrs: np.ndarray
    control_amplitudes: np.ndarray
    spikes: np.ndarray
    retrain_loss: np.ndarray
    kept_loss: np.ndarray
    meta: dict = field(default_factory=dict)

    ARRAYS = ("loss_matrix", "loss", "y", "images", "X", "planted", "ranked", "score", "detected",
              "group_a", "group_b", "loss_a", "loss_b", "band_a", "band_b", "planted_a", "planted_b",
              "sharpness_steps", "sharpness", "margin", "margin_clean", "control_corrs",
              "control_amplitudes", "spikes", "retrain_loss", "kept_loss")

    @property
    def metrics(self) -> dict:
        return self.meta.get("metrics", {})

    @property
    def steps_done(self) -> int:
        return len(self.loss) - 1

    @property
    def lr(self) -> float:
        return float(self.meta["lr"])

    def movers(self, step: int, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` risers and fallers from ``step`` to ``step + 1`` (clamped to the run)."""
        t = int(min(max(step, 0), self.steps_done - 1))
        return step_movers(self.loss_matrix, t, k)

    def summary(self) -> dict:
        """The CLI's JSON keys."""
        m = self.metrics
        out = {"group_a": [int(i) for i in self.group_a], "group_b": [int(i) for i in self.group_b],
               "label_a": m.get("label_a"), "label_b": m.get("label_b"),
               "group_loss_corr": m.get("group_loss_corr"),
               "control_corr_median": m.get("control_corr_median"),
               "control_corr_band": m.get("control_corr_band"),
               "corr_percentile": m.get("corr_percentile"),
               "precision_at_m": m.get("precision_at_m"), "purity": m.get("purity"),
               "phase_agreement": m.get("phase_agreement"),
               "amplitude_ratio": m.get("amplitude_ratio"),
               "planted_amplitude_ratio": m.get("planted_amplitude_ratio"),
               "vote_share": m.get("vote_share"), "sharpness_ratio": m.get("sharpness_ratio"),
               "lr": self.meta.get("lr"), "lambda_0": self.meta.get("lambda_0"),
               "threshold": self.meta.get("threshold"), "window": m.get("window"),
               "steps": self.steps_done, "final_loss": float(self.loss[-1]) if len(self.loss) else None,
               "spikes": [int(s) for s in self.spikes],
               "seconds": round(float(self.meta.get("seconds", 0.0)), 3)}
        if len(self.planted):
            out["planted"] = [int(i) for i in self.planted]
        if len(self.retrain_loss):
            out["retrain_final_loss"] = m.get("retrain_final_loss")
            out["retrain_amplitude"] = m.get("retrain_amplitude")
            out["kept_amplitude"] = m.get("kept_amplitude")
        return out



def save(result: OpposingResult, path) -> Path:
    """Write a result to ``.npz`` (arrays + ``meta_json``) or ``.json`` (everything as lists)."""
    path = result_path(path, write=True)
    meta = json.dumps(result.meta, default=jsonable)
    if path.suffix.lower() == ".npz":
        write_npz(path, result, OpposingResult.ARRAYS)
    else:
        doc = {k: getattr(result, k).tolist() for k in OpposingResult.ARRAYS}
        doc["meta"] = json.loads(meta)
        path.write_text(json.dumps(doc, default=jsonable, allow_nan=True))
    return path


def load(path) -> OpposingResult:
    """Read a result written by :func:`save`."""
    path = result_path(path, write=False)
    if path.suffix.lower() == ".npz":
        arrays, meta = read_npz(path, OpposingResult.ARRAYS)
        return OpposingResult(**arrays, meta=meta)
    doc = json.loads(path.read_text())
    meta = doc.pop("meta")
    return OpposingResult(**{k: np.asarray(doc[k]) for k in OpposingResult.ARRAYS}, meta=meta)


# --------------------------------------------------------------------------- training

@dataclass
class OpposingEvent:
    """After one update: ``step`` updates done; ``loss`` the full-batch loss before it (at step
    ``step - 1``); ``rise``/``fall`` the ``top_k`` examples whose loss rose/fell most from
    ``step - 1`` to ``step`` with their changes ``rise_delta``/``fall_delta``; ``sharpness``
    the top Hessian eigenvalue at ``step`` when measured there, else None."""

    step: int
    loss: float
    seconds: float
    rise: np.ndarray
    rise_delta: np.ndarray
    fall: np.ndarray
    fall_delta: np.ndarray
    sharpness: float | None = None


class OpposingRun:
    """A run in progress: ``run()`` yields events; ``result()`` is valid at any point
    (its statistics use the last ``min(window, steps done)`` steps)."""

    def __init__(self, config: OpposingConfig | None = None):
        from landscape.core.device import choose_device
        from landscape.hessian import HessianOperator, top_eigenpairs

        config = config or OpposingConfig()
        config.validate()
        self.config = config
        t0 = time.perf_counter()
        self.device = choose_device(config.device)
        self.dtype = DTYPES[config.dtype]
        self.data = make_data(config)
        d = self.data
        self._X = torch.as_tensor(d.X, dtype=self.dtype, device=self.device)
        self._y = torch.as_tensor(d.y, device=self.device)
        self.model = build_model(config, d.X.shape[1], d.n_classes).to(self.device)
        self.init_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.params = [p for p in self.model.parameters()]
        self.planted = d.planted
        self._P_X = torch.as_tensor(d.X[d.planted], dtype=self.dtype, device=self.device)
        self._P_X0 = torch.as_tensor(d.X_clean[d.planted], dtype=self.dtype, device=self.device)
        self.c1, self.c2 = (int(c) for c in config.plant_classes)
        self._op = HessianOperator(self.model, self._X, self._y, "mse", dtype=self.dtype)
        eig = top_eigenpairs(self._op, 1, seed=config.seed)
        self.lambda_0 = float(eig.eigenvalues[0])
        if not math.isfinite(self.lambda_0) or self.lambda_0 <= 0:
            raise LandscapeError(f"the sharpness at initialisation is {self.lambda_0}: cannot set "
                                 "the step size from it; give lr explicitly")
        self._v = eig.eigenvectors
        self.lr = float(config.lr) if config.lr is not None else config.lr_factor * 2.0 / self.lambda_0
        self.hvps = eig.hvps
        self.step = 0
        self.seconds = time.perf_counter() - t0
        self._L: list[np.ndarray] = []
        self._margin: list[np.ndarray] = []
        self._margin0: list[np.ndarray] = []
        self._sh_steps: list[int] = [0]
        self._sh: list[float] = [self.lambda_0]
        self._retrain: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def done(self) -> bool:
        return self.step >= self.config.steps

    def _flat(self) -> np.ndarray:
        return torch.cat([p.detach().reshape(-1) for p in self.params]).double().cpu().numpy()

    def _sharpness(self) -> float:
        from landscape.hessian import top_eigenpairs

        self._op.set_point(self._flat())
        eig = top_eigenpairs(self._op, 1, v0=self._v, ncv=SHARPNESS_NCV, tol=SHARPNESS_TOL,
                             seed=self.config.seed)
        self._v = eig.eigenvectors
        self.hvps += eig.hvps
        return float(eig.eigenvalues[0])

    def _observe(self) -> tuple[torch.Tensor, np.ndarray]:
        """Forward pass at the current point: the per-example losses (kept in the graph for
        the update) and their numpy copy; records the planted margins."""
        from landscape.core.losses import per_example_loss

        out = self.model(self._X)
        per = per_example_loss(out, self._y, "mse")
        row = per.detach().cpu().numpy().astype(np.float32)
        if not np.all(np.isfinite(row)) or float(row.mean()) > 1e8:
            raise LandscapeError(f"training diverged at step {self.step} (loss {float(row.mean()):.3g}); "
                                 "lower the learning rate")
        self._L.append(row)
        if len(self.planted):
            with torch.no_grad():
                o = out.detach()[torch.as_tensor(self.planted, device=self.device)]
                o0 = self.model(self._P_X0)
                self._margin.append((o[:, self.c1] - o[:, self.c2]).double().cpu().numpy())
                self._margin0.append((o0[:, self.c1] - o0[:, self.c2]).double().cpu().numpy())
        return per, row

    def run(self, steps: int | None = None, cancel: threading.Event | None = None
            ) -> Iterator[OpposingEvent]:
        """Yield one event per update for up to ``steps`` more (default: to ``config.steps``).

        Stop iterating (or set ``cancel``) to pause; call again to go on. Raises
        :class:`LandscapeError` if the loss becomes NaN or infinite.
        """
        cfg = self.config
        end = cfg.steps if steps is None else min(cfg.steps, self.step + int(steps))
        k = int(cfg.top_k)
        while self.step < end:
            if cancel is not None and cancel.is_set():
                return
            t0 = time.perf_counter()
            if len(self._L) == self.step:  # row `step` not yet observed (first call)
                per, prev = self._observe()
            else:
                per, prev = self._per, self._L[-1]
            loss = per.mean()
            grads = torch.autograd.grad(loss, self.params)
            with torch.no_grad():
                for p, g in zip(self.params, grads):
                    p.sub_(self.lr * g)
            self.step += 1
            self._per, row = self._observe()
            sh = None
            if self.step % cfg.sharpness_every == 0 or self.step == cfg.steps:
                sh = self._sharpness()
                self._sh_steps.append(self.step)
                self._sh.append(sh)
            d = row.astype(np.float64) - prev
            up = np.argsort(-d, kind="stable")[:k]
            dn = np.argsort(d, kind="stable")[:k]
            self.seconds += time.perf_counter() - t0
            yield OpposingEvent(self.step, float(loss.detach()), self.seconds, up, d[up], dn, d[dn], sh)

    def retrain(self, remove: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        """Train again from the same initial weights with the same ``lr`` and step count on the
        data without ``remove``; returns (and keeps for :meth:`result`) the mean loss of the
        kept examples at every step [T+1]."""
        from landscape.core.losses import per_example_loss

        t0 = time.perf_counter()
        keep = np.setdiff1d(np.arange(self.data.n), np.asarray(remove))
        model = build_model(self.config, self.data.X.shape[1], self.data.n_classes).to(self.device)
        model.load_state_dict(self.init_state)
        params = list(model.parameters())
        Xk, yk = self._X[torch.as_tensor(keep)], self._y[torch.as_tensor(keep)]
        curve = np.empty(self.step + 1)
        for t in range(self.step + 1):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"retraining stopped at step {t}")
            loss = per_example_loss(model(Xk), yk, "mse").mean()
            curve[t] = float(loss.detach())
            if not math.isfinite(curve[t]):
                raise LandscapeError(f"retraining diverged at step {t}; lower the learning rate")
            if t == self.step:
                break
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p.sub_(self.lr * g)
        L = np.asarray(self._L, np.float64)
        self._retrain = (curve, L[:, keep].mean(1), np.asarray(remove))
        self.seconds += time.perf_counter() - t0
        return curve

    def result(self) -> OpposingResult:
        """What has been done so far, with every statistic, as an :class:`OpposingResult`."""
        cfg, d = self.config, self.data
        N = d.n
        L = np.asarray(self._L, np.float32).reshape(-1, N)
        T = len(L) - 1
        loss = L.astype(np.float64).mean(1) if len(L) else np.zeros(0)
        metrics: dict = {"window": None}
        empty = np.zeros(0, np.int64)
        ranked, score, detected = np.arange(N), np.zeros(N), empty
        A = B = pa = pb = empty
        loss_a = loss_b = np.zeros(0)
        band_a = band_b = np.zeros((2, 0))
        ccorr = camp = np.zeros(0)
        shape = (len(self._margin), len(self.planted))
        margin = np.asarray(self._margin, np.float64).reshape(shape)
        margin0 = np.asarray(self._margin0, np.float64).reshape(shape)
        sh_steps = np.asarray(self._sh_steps, np.int64)
        sh = np.asarray(self._sh, np.float64)
        if T >= 2:
            W = int(min(cfg.window, T))
            metrics["window"] = W
            Lw = L[-W - 1:]
            ranked, score = rank_by_movement(L, W)
            m = len(self.planted) if len(self.planted) else int(cfg.detect)
            detected = ranked[:m]
            metrics["precision_at_m"] = precision_at(ranked, self.planted)
            metrics["chance_precision"] = len(self.planted) / N if len(self.planted) else None
            rng = np.random.default_rng([int(cfg.seed), 17])
            try:
                a, b, A, B = split_by_label(detected, d.y)
            except LandscapeError as e:
                metrics["split_error"] = str(e)
            else:
                metrics.update(label_a=a, label_b=b, purity=(len(A) + len(B)) / len(detected),
                               phase_agreement=phase_agreement(Lw, A, B))
                st = pair_statistics(Lw, d.y, A, B, cfg.controls, rng)
                ccorr, camp = st.pop("control_corrs"), st.pop("control_amplitudes")
                ca, cb = st.pop("control_a"), st.pop("control_b")
                metrics.update(group_loss_corr=st["corr"], amplitude=st["amplitude"],
                               amplitude_ratio=st["amplitude_ratio"],
                               control_amplitude_median=st["control_amplitude_median"],
                               control_corr_median=st["control_corr_median"],
                               control_corr_band=st["control_corr_band"],
                               corr_percentile=st["corr_percentile"])
                loss_a, loss_b = group_curve(L, A), group_curve(L, B)
                band_a, band_b = control_band(L, ca), control_band(L, cb)
            if len(self.planted):
                yp = d.y[self.planted]
                pa, pb = self.planted[yp == self.c1], self.planted[yp == self.c2]
                pst = pair_statistics(Lw, d.y, pa, pb, cfg.controls, rng)
                metrics.update(planted_amplitude_ratio=pst["amplitude_ratio"],
                               planted_loss_corr=pst["corr"],
                               planted_control_corr_median=pst["control_corr_median"])
                metrics["vote_share"] = vote_share(margin[-W - 1:], margin0[-W - 1:])
            late = sh[sh_steps >= T - W]
            metrics["sharpness_late"] = float(late.mean()) if len(late) else None
            metrics["sharpness_ratio"] = float(late.mean() * self.lr / 2.0) if len(late) else None
            metrics["overall_loss_late"] = float(loss[-W - 1:].mean())
            metrics["overall_amplitude"] = amplitude(loss[-W - 1:])
            if len(loss_a):
                metrics["group_a_range"] = [float(loss_a[-W - 1:].min()), float(loss_a[-W - 1:].max())]
                metrics["group_b_range"] = [float(loss_b[-W - 1:].min()), float(loss_b[-W - 1:].max())]
        spikes = find_spikes(loss, cfg.spike_factor) if len(loss) > 2 else empty
        retrain_loss = kept_loss = np.zeros(0)
        if self._retrain is not None and len(self._retrain[0]) == T + 1:
            retrain_loss, kept_loss, removed = self._retrain
            W = int(min(cfg.window, T))
            metrics.update(retrain_final_loss=float(retrain_loss[-1]),
                           retrain_amplitude=amplitude(retrain_loss[-W - 1:]),
                           kept_amplitude=amplitude(kept_loss[-W - 1:]),
                           removed=[int(i) for i in removed])
        meta = {"recipe": "opposing-signals", "config": cfg.to_dict(), "data": d.description,
                "feature": d.feature, "feature_index": list(d.feature_index), "n_examples": N, "n_classes": d.n_classes,
                "lr": self.lr, "lambda_0": self.lambda_0, "threshold": 2.0 / self.lr,
                "loss": "0.5 ||f(x) - onehot(y)||^2 per example, mean over examples",
                "optimizer": "full-batch gradient descent",
                "n_params": sum(p.numel() for p in self.params), "hvps": self.hvps,
                "device": str(self.device), "torch_threads": torch.get_num_threads(),
                "seconds": self.seconds, "steps_done": T, "complete": self.done,
                "plant_classes": [self.c1, self.c2], "metrics": metrics}
        images = d.images.astype(np.float32) if d.images is not None else np.zeros((0, 0), np.float32)
        return OpposingResult(
            loss_matrix=L, loss=loss, y=d.y.copy(), images=images, X=d.X.astype(np.float32),
            planted=self.planted.copy(), ranked=np.asarray(ranked, np.int64), score=np.asarray(score),
            detected=np.asarray(detected, np.int64), group_a=np.asarray(A, np.int64),
            group_b=np.asarray(B, np.int64), loss_a=loss_a, loss_b=loss_b, band_a=band_a, band_b=band_b,
            planted_a=np.asarray(pa, np.int64), planted_b=np.asarray(pb, np.int64),
            sharpness_steps=sh_steps, sharpness=sh, margin=margin, margin_clean=margin0,
            control_corrs=ccorr, control_amplitudes=camp, spikes=spikes,
            retrain_loss=retrain_loss, kept_loss=kept_loss, meta=meta)


def train(config: OpposingConfig | None = None, cancel: threading.Event | None = None,
          callback=None, threads: int | None = None) -> OpposingResult:
    """Run to the end (and retrain without the detected set when ``config.retrain``).

    ``callback(event)`` may return True to stop early (the partial result is returned);
    a set ``cancel`` event raises :class:`Cancelled` with the partial result. ``threads``
    sets torch's thread count for the run and restores it after (None: leave it alone).
    """
    with torch_threads(threads):
        run = run_to_end(OpposingRun(config), cancel, callback)
        if run.config.retrain and run.step >= 2:
            run.retrain(run.result().detected, cancel=cancel)
        return run.result()


# --------------------------------------------------------------------------- figures

STEP_LABEL = "step (full-batch gradient-descent updates)"
LOSS_LABEL = "loss, 0.5 ||f(x) - onehot(y)||^2"
COLORS = {"a": "#1f77b4", "b": "#d62728", "all": "#444444", "sharp": "#2ca02c"}


def _cursor(res: OpposingResult, step: int | None) -> int:
    T = res.steps_done
    return T if step is None else int(min(max(int(step), 0), T))


def _band(fig, steps, band, color, name, row=None, col=None):
    if band.shape[1] == 0:
        return
    kw = {"row": row, "col": col} if row else {}
    fig.add_trace(go.Scatter(x=steps, y=band[1], mode="lines", line={"width": 0}, showlegend=False,
                             hoverinfo="skip", name=name), **kw)
    fig.add_trace(go.Scatter(x=steps, y=band[0], mode="lines", line={"width": 0}, fill="tonexty",
                             fillcolor=color, name=name, hoverinfo="skip"), **kw)


def _fmt(v, spec: str = ".2f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def fig_overview(res: OpposingResult, step: int | None = None, title: str | None = None) -> go.Figure:
    """One step axis, three panels: overall loss with spikes marked; sharpness with ``2/lr``;
    the two groups' mean loss with the 5-95% band of matched random subsets. A dotted line
    marks the cursor ``step``."""
    from plotly.subplots import make_subplots

    t = _cursor(res, step)
    steps = np.arange(len(res.loss))
    m = res.metrics
    la, lb = m.get("label_a"), m.get("label_b")
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        row_heights=[0.3, 0.25, 0.45],
                        subplot_titles=("Overall training loss (spikes marked)",
                                        "Sharpness (top Hessian eigenvalue) and 2/lr",
                                        "Mean loss of the two opposing groups"))
    fig.add_trace(go.Scatter(x=steps, y=np.maximum(res.loss, 1e-12), mode="lines", name="all examples",
                             line={"color": COLORS["all"]}), row=1, col=1)
    if len(res.spikes):
        fig.add_trace(go.Scatter(x=res.spikes, y=res.loss[res.spikes], mode="markers", name="spike",
                                 marker={"symbol": "triangle-down", "size": 9, "color": "orange"}),
                      row=1, col=1)
    fig.add_trace(go.Scatter(x=res.sharpness_steps, y=res.sharpness, mode="lines+markers",
                             name="sharpness", marker={"size": 4}, line={"color": COLORS["sharp"]}),
                  row=2, col=1)
    thr = 2.0 / res.lr
    fig.add_trace(go.Scatter(x=[0, max(1, res.steps_done)], y=[thr, thr], mode="lines", name="2 / lr",
                             line={"dash": "dash", "color": "black"}), row=2, col=1)
    if len(res.loss_a):
        _band(fig, steps, res.band_a, "rgba(31,119,180,0.18)",
              f"matched random {la}s, 5-95%", row=3, col=1)
        _band(fig, steps, res.band_b, "rgba(214,39,40,0.18)",
              f"matched random {lb}s, 5-95%", row=3, col=1)
        fig.add_trace(go.Scatter(x=steps, y=np.maximum(res.loss_a, 1e-12), mode="lines",
                                 name=f"group A: {len(res.group_a)} detected {la}s",
                                 line={"color": COLORS["a"], "width": 1}), row=3, col=1)
        fig.add_trace(go.Scatter(x=steps, y=np.maximum(res.loss_b, 1e-12), mode="lines",
                                 name=f"group B: {len(res.group_b)} detected {lb}s",
                                 line={"color": COLORS["b"], "width": 1}), row=3, col=1)
    W = m.get("window")
    for r in (1, 2, 3):
        fig.add_vline(x=t, line={"dash": "dot", "color": "grey"}, row=r, col=1)
        if W:
            fig.add_vrect(x0=res.steps_done - W, x1=res.steps_done, fillcolor="rgba(0,0,0,0.04)",
                          line_width=0, row=r, col=1)
    fig.update_yaxes(type="log", title_text=LOSS_LABEL, row=1, col=1)
    fig.update_yaxes(title_text="eigenvalue (loss / param^2)", row=2, col=1)
    fig.update_yaxes(type="log", title_text="group mean loss", row=3, col=1)
    fig.update_xaxes(title_text=STEP_LABEL, row=3, col=1)
    fig.update_layout(title=title or f"Opposing signals: loss, sharpness and groups (cursor at step {t}; "
                      f"shaded: the last {W} steps used for statistics)",
                      yaxis_title=LOSS_LABEL, height=820,
                      legend={"orientation": "h", "y": -0.08})
    return fig


def fig_zoom(res: OpposingResult, step: int | None = None, half: int = 15, title: str | None = None) -> go.Figure:
    """The two groups' mean loss and the overall loss, step by step around the cursor."""
    t = _cursor(res, step)
    lo, hi = max(0, t - half), min(res.steps_done, t + half)
    s = np.arange(lo, hi + 1)
    fig = go.Figure()
    m = res.metrics
    if len(res.loss_a):
        fig.add_trace(go.Scatter(x=s, y=res.loss_a[s], mode="lines+markers",
                                 name=f"group A ({m.get('label_a')}s)", line={"color": COLORS["a"]}))
        fig.add_trace(go.Scatter(x=s, y=res.loss_b[s], mode="lines+markers",
                                 name=f"group B ({m.get('label_b')}s)", line={"color": COLORS["b"]}))
    fig.add_trace(go.Scatter(x=s, y=res.loss[s], mode="lines+markers", name="all examples",
                             line={"color": COLORS["all"], "dash": "dot"}))
    fig.add_vline(x=t, line={"dash": "dot", "color": "grey"})
    fig.update_layout(title=title or f"Group losses step by step around step {t}", xaxis_title=STEP_LABEL,
                      yaxis_title=f"mean {LOSS_LABEL}", legend={"orientation": "h", "y": -0.25})
    return fig


def _tag(res: OpposingResult, i: int, delta: float | None = None) -> str:
    star = "*" if i in set(res.planted.tolist()) else ""
    d = "" if delta is None else f"<br>{delta:+.3g}"
    return f"y={int(res.y[i])}{star} #{i}{d}"


def _examples_figure(res: OpposingResult, rows: list[tuple[str, np.ndarray, np.ndarray | None]],
                     title: str, cols: int) -> go.Figure:
    """A grid of examples: 8x8 images for digits, feature bars otherwise."""
    from plotly.subplots import make_subplots

    nrows = max(1, len(rows))
    titles = []
    for _, idx, delta in rows:
        for j in range(cols):
            if j < len(idx):
                titles.append(_tag(res, int(idx[j]), None if delta is None else float(delta[j])))
            else:
                titles.append("")
    images = res.images.size > 0
    row_h = (int(1000 / cols) + 70) if images else 210  # square 8x8 images at about 1,000 px wide
    height = row_h * nrows + 90
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=titles, horizontal_spacing=0.02,
                        vertical_spacing=min(0.5, 75 / height) if nrows > 1 else 0.1)
    hot = set(res.meta.get("feature_index", []))
    for r, (_, idx, _) in enumerate(rows, start=1):
        for j, i in enumerate(idx[:cols], start=1):
            if images:
                fig.add_trace(go.Heatmap(z=res.images[int(i)].reshape(8, 8), zmin=0, zmax=1, colorscale="gray",
                                         showscale=False, hovertemplate="pixel value %{z:.2f}<extra></extra>"),
                              row=r, col=j)
                fig.update_yaxes(autorange="reversed", row=r, col=j)
            else:
                x = res.X[int(i)]
                fig.add_trace(go.Bar(x=np.arange(len(x)), y=x, showlegend=False,
                                     marker={"color": ["orange" if k in hot else "#777"
                                                       for k in range(len(x))]}), row=r, col=j)
    fig.update_xaxes(showticklabels=not images)
    fig.update_yaxes(showticklabels=not images)
    if images:  # square pixels in every panel
        for k in range(1, nrows * cols + 1):
            sfx = "" if k == 1 else str(k)
            fig.layout[f"yaxis{sfx}"].update(scaleanchor=f"x{sfx}", constrain="domain")
            fig.layout[f"xaxis{sfx}"].update(constrain="domain")
    for r, (label, _, _) in enumerate(rows, start=1):
        fig.update_yaxes(title_text=label, row=r, col=1)
        fig.update_xaxes(title_text="pixel column (8x8 image)" if images else "feature index", row=r, col=1)
    for ann in fig.layout.annotations:
        ann.font.size = 10
    fig.update_layout(title=title, height=height, margin={"t": 80},
                      xaxis_title="pixel column (8x8 image)" if images else "feature index",
                      yaxis_title=rows[0][0] if rows else "example")
    return fig


def fig_gallery(res: OpposingResult, step: int | None = None, k: int = 8, title: str | None = None) -> go.Figure:
    """The ``k`` examples whose loss rises most and falls most from ``step`` to ``step + 1``
    (``*``: planted; the number after the label is the loss change)."""
    t = min(_cursor(res, step), res.steps_done - 1)
    rise, fall = res.movers(t, k)
    d = res.loss_matrix[t + 1].astype(np.float64) - res.loss_matrix[t]
    rows = [("largest rise", rise, d[rise]), ("largest fall", fall, d[fall])]
    what = "images, pixel value in [0, 1]" if res.images.size else "input features"
    return _examples_figure(res, rows, title or f"Top-moving examples from step {t} to {t + 1} "
                            f"({what}; * planted; loss change under the label)", k)


def fig_members(res: OpposingResult, k: int = 12, title: str | None = None) -> go.Figure:
    """The most-moving members of the two detected groups (``*``: planted)."""
    m = res.metrics
    rows = [(f"group A ({m.get('label_a')}s)", res.group_a[:k], None),
            (f"group B ({m.get('label_b')}s)", res.group_b[:k], None)]
    rows = [r for r in rows if len(r[1])]
    return _examples_figure(res, rows, title or "Members of the detected groups, most-moving first "
                            f"(* planted; {len(res.group_a)} + {len(res.group_b)} of the top "
                            f"{len(res.detected)})", k)


def fig_controls(res: OpposingResult, title: str | None = None) -> go.Figure:
    """The detected pair's loss-change correlation and oscillation amplitude next to those of
    the matched random pairs (same classes, same sizes)."""
    from plotly.subplots import make_subplots

    m = res.metrics
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "Correlation of the two groups' loss changes", "Oscillation amplitude (std of mean-loss change)"))
    if len(res.control_corrs):
        fig.add_trace(go.Histogram(x=res.control_corrs, nbinsx=40, name="matched random pairs",
                                   marker={"color": "#999"}), row=1, col=1)
        fig.add_vline(x=m["group_loss_corr"], line={"color": "black", "width": 2}, row=1, col=1)
        med = float(np.median(res.control_amplitudes))
        if med > 0:
            rel = np.log10(np.maximum(res.control_amplitudes, 1e-300) / med)
            fig.add_trace(go.Histogram(x=rel, nbinsx=40, name="matched random pairs",
                                       marker={"color": "#999"}, showlegend=False), row=1, col=2)
            fig.add_vline(x=math.log10(max(m["amplitude"], 1e-300) / med),
                          line={"color": "black", "width": 2}, row=1, col=2)
    fig.update_xaxes(title_text="correlation over the window (dimensionless)", row=1, col=1)
    fig.update_xaxes(title_text="log10(amplitude / controls' median amplitude)", row=1, col=2)
    fig.update_yaxes(title_text="matched random pairs (count)", row=1, col=1)
    fig.update_yaxes(title_text="matched random pairs (count)", row=1, col=2)
    corr, ratio = m.get("group_loss_corr"), m.get("amplitude_ratio")
    fig.update_layout(
        title=title or (f"Detected pair (black line) vs {len(res.control_corrs)} matched random pairs: "
                        f"corr {_fmt(corr)} (controls' median {_fmt(m.get('control_corr_median'))}), "
                        f"amplitude {_fmt(ratio, '.1f')}x the controls' median"),
        xaxis_title="correlation over the window (dimensionless)",
        yaxis_title="matched random pairs (count)", showlegend=False)
    return fig


def fig_vote(res: OpposingResult, last: int = 40, title: str | None = None) -> go.Figure:
    """The planted examples' class-c1-minus-c2 logit margin and the planted feature's part of
    it, averaged per planted class, over the last ``last`` steps."""
    c1, c2 = res.meta.get("plant_classes", [None, None])
    fig = go.Figure()
    if len(res.planted) and len(res.margin):
        T = len(res.margin) - 1
        s = np.arange(max(0, T - last), T + 1)
        yp = res.y[res.planted]
        for c, color in ((c1, COLORS["a"]), (c2, COLORS["b"])):
            sel = yp == c
            if not sel.any():
                continue
            tot = res.margin[s][:, sel].mean(1)
            part = (res.margin[s] - res.margin_clean[s])[:, sel].mean(1)
            fig.add_trace(go.Scatter(x=s, y=tot, mode="lines+markers", name=f"planted {c}s: margin",
                                     line={"color": color}))
            fig.add_trace(go.Scatter(x=s, y=part, mode="lines", name=f"planted {c}s: the feature's part",
                                     line={"color": color, "dash": "dash"}))
    vs = res.metrics.get("vote_share")
    fig.update_layout(title=title or f"Logit margin f_{c1} - f_{c2} of the planted examples and the planted "
                      f"feature's part (vote share {_fmt(vs, '.2f')})",
                      xaxis_title=STEP_LABEL, yaxis_title=f"logit margin f_{c1}(x) - f_{c2}(x) (output units)",
                      legend={"orientation": "h", "y": -0.25})
    return fig


def fig_retrain(res: OpposingResult, title: str | None = None) -> go.Figure:
    """Mean loss of the kept examples: the first run vs the run without the detected set."""
    fig = go.Figure()
    if len(res.retrain_loss):
        s = np.arange(len(res.retrain_loss))
        fig.add_trace(go.Scatter(x=s, y=np.maximum(res.kept_loss, 1e-12), mode="lines",
                                 name="first run (loss on the kept examples)", line={"color": COLORS["all"]}))
        fig.add_trace(go.Scatter(x=s, y=np.maximum(res.retrain_loss, 1e-12), mode="lines",
                                 name=f"retrained without the {len(res.detected)} detected examples",
                                 line={"color": COLORS["sharp"]}))
    fig.update_yaxes(type="log")
    fig.update_layout(title=title or "Remove the detected examples and retrain (same init, same lr)",
                      xaxis_title=STEP_LABEL, yaxis_title=f"mean {LOSS_LABEL} over the kept examples",
                      legend={"orientation": "h", "y": -0.25})
    return fig
