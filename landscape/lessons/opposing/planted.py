"""Data sets with a planted opposing signal, and the indices where it was planted.

- ``digits`` (1,797 8x8 images): pixels / 16, standardised per pixel, divided by ``scale``
  (8). A bright 2x2 patch (pixels 0, 1, 8, 9 of the 8x8 grid, each set to ``alpha / 2``, so
  the patch has Euclidean norm ``alpha``) is planted on ``fraction`` (10%) of the examples of
  each of two classes (3 and 8): ``m = 18 + 17 = 35`` examples, chance precision
  ``35 / 1797 = 0.02``. The same feature on two classes pulls their outputs in opposite
  directions: an opposing signal. For scale: a whole standardised image has median norm 0.83.
- ``gaussians``: a 10-class mixture (1,800 points in 64 dimensions, class means 8 apart),
  standardised and planted like the digits on coordinates 0, 1, 8, 9.
- ``toy`` (the paper's illustration): two classes, core coordinates ``+-signal + noise``
  and one extra coordinate ``alpha x outlier`` on ``fraction`` of each class.

Every set keeps the planted indices (sorted) and the same inputs without the plant
(``X_clean``, for the vote share); shapes ``X``, ``X_clean`` [N, D], ``y`` [N].
Deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from landscape.core.errors import LandscapeError
from landscape.lessons.opposing.config import PATCH_PIXELS, OpposingConfig


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
    """The planted-digits protocol (module docstring). ``alpha = 0``: no plant."""
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

