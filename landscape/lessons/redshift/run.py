"""Neural Redshift companion (Teney et al. 2024): what function a random network computes.

No training. A fully connected network ``R^2 -> R`` with ``depth`` hidden layers of
``width`` units and the chosen activation is drawn at random:
``W ~ N(0, init_scale^2 / fan_in)`` for every weight matrix (``init_scale`` multiplies the
weight std; 1 is LeCun-normal, sqrt(2) He-normal) and ``b ~ N(0, bias_std^2)`` for every bias.
It is evaluated on a ``grid x grid`` lattice over ``[-1, 1)^2`` (endpoint excluded, spacing
``h = 2/grid``); ``f[j, i]`` is the output at ``(x_i, y_j)``.

Spectrum and mean frequency, precisely:

1. ``g = (f - mean(f)) * w`` where ``w[j, i] = hann(j) hann(i)`` is a separable periodic
   Hann window (``window="hann"``, the default) or 1 (``window="none"``). The window keeps
   the jump between opposite edges of a non-periodic function from leaking into every
   frequency.
2. ``A = |fft2(g)|``; bin ``(p, q)`` has frequencies ``u_q, v_p = fftfreq(grid, h)`` in
   cycles per unit of input, radial frequency ``r = sqrt(u^2 + v^2)``.
3. ``mean frequency = sum(r * A) / sum(A)`` over all bins (the DC bin has ``r = 0``) -- the
   amplitude-weighted mean radial frequency, in cycles per unit of input; 0 for a constant
   function. Its ceiling is the corner of the spectrum, ``sqrt(2) * grid / 4``.

Teney et al. report that ReLU networks keep a low mean frequency at any depth and weight
scale, while with tanh, GELU or sine activations the frequency rises with the weight scale
(and with depth): the "simplicity bias" comes from the architecture, not from training.

Measured (grid 64, Hann window, width 128, bias std 0.1, mean of 3 seeds; cycles per unit):
ReLU 1.4 / 1.8 / 2.4 / 2.5 at depth 1 / 2 / 4 / 8, on average the same at init scale 1, 2 and 4
(a ReLU network without biases is positively homogeneous: the scale cannot matter; single
networks vary by +-40%); tanh at depth 8:
0.8 / 4.2 / 9.1 at scale 1 / 2 / 4; sine at depth 8: 0.8 / 7.6 / 12.3. At scale 1 the smooth
activations sit in their near-linear range and score *below* ReLU (0.7-0.8): the ordering the
paper reports is about growth with scale and depth, not about scale 1. Without the window the
jump between opposite edges dominates: every network scores 4-5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from landscape.core.errors import LandscapeError
from landscape.lessons.redshift.config import ACTIVATIONS, RedshiftConfig

_ACT = {"relu": torch.relu, "tanh": torch.tanh, "gelu": torch.nn.functional.gelu, "sin": torch.sin}


@dataclass
class RedshiftResult:
    """``f`` [grid, grid] indexed ``[j, i]`` for ``(x_i, y_j)``; ``amplitude`` [grid, grid]
    the windowed spectrum ``|fft2|`` with zero frequency in the centre (``fftshift``) at
    frequencies ``freq_x`` / ``freq_y`` (cycles per unit input); ``radial_freq`` /
    ``radial_amplitude`` its mean over rings one bin wide; ``mean_frequency`` as defined in
    the module docstring."""

    x: np.ndarray
    y: np.ndarray
    f: np.ndarray
    freq_x: np.ndarray
    freq_y: np.ndarray
    amplitude: np.ndarray
    radial_freq: np.ndarray
    radial_amplitude: np.ndarray
    mean_frequency: float
    meta: dict = field(default_factory=dict)


def grid_points(n: int) -> np.ndarray:
    """``n`` evenly spaced points over [-1, 1), endpoint excluded."""
    return -1.0 + 2.0 * np.arange(n) / n


@torch.no_grad()
def network_function(config: RedshiftConfig) -> np.ndarray:
    """The random network's outputs ``f[j, i]`` on the grid (float64; global RNG untouched)."""
    config.validate()
    g = torch.Generator().manual_seed(int(config.seed))
    act = _ACT[config.activation]
    xs = torch.as_tensor(grid_points(config.grid), dtype=torch.float64)
    yy, xx = torch.meshgrid(xs, xs, indexing="ij")
    h = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    dims = [2] + [int(config.width)] * int(config.depth) + [1]
    for i in range(len(dims) - 1):
        w = torch.randn(dims[i], dims[i + 1], generator=g, dtype=torch.float64)
        w *= config.init_scale / math.sqrt(dims[i])
        b = torch.randn(dims[i + 1], generator=g, dtype=torch.float64) * config.bias_std
        h = h @ w + b
        if i < len(dims) - 2:
            h = act(h)
    return h.reshape(config.grid, config.grid).numpy()


def _window(n: int, kind: str) -> np.ndarray:
    if kind == "none":
        return np.ones(n)
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)  # periodic Hann


def spectrum(f: np.ndarray, window: str = "hann") -> tuple[np.ndarray, np.ndarray]:
    """``(A, r)``: ``|fft2|`` of the mean-removed, windowed ``f`` on [-1, 1)^2 and each bin's
    radial frequency in cycles per unit input (both unshifted, shape of ``f``)."""
    f = np.asarray(f, float)
    if f.ndim != 2 or f.shape[0] != f.shape[1]:
        raise LandscapeError(f"need a square 2-D grid of values, got shape {f.shape}")
    n = f.shape[0]
    w = _window(n, window)
    g = (f - f.mean()) * np.outer(w, w)
    A = np.abs(np.fft.fft2(g))
    fr = np.fft.fftfreq(n, d=2.0 / n)
    r = np.sqrt(fr[None, :] ** 2 + fr[:, None] ** 2)
    return A, r


def mean_frequency(f: np.ndarray, window: str = "hann") -> float:
    """Amplitude-weighted mean radial frequency (cycles per unit input; see module doc)."""
    A, r = spectrum(f, window)
    total = A.sum()
    if not np.isfinite(total):
        raise LandscapeError("the network's outputs overflowed (inf or NaN); lower the init scale")
    return 0.0 if total <= 1e-12 * max(1.0, np.abs(f).max()) * A.size else float((r * A).sum() / total)


def compute(config: RedshiftConfig | None = None) -> RedshiftResult:
    """Draw the network, evaluate it on the grid, and measure its spectrum."""
    import time

    config = config or RedshiftConfig()
    t0 = time.perf_counter()
    f = network_function(config)
    A, r = spectrum(f, config.window)
    mf = mean_frequency(f, config.window)
    n = config.grid
    step = 1.0 / 2.0  # ring width = one frequency bin = 1 / (window length 2)
    ring = np.rint(r / step).astype(int)
    counts = np.bincount(ring.ravel())
    sums = np.bincount(ring.ravel(), weights=A.ravel())
    keep = counts > 0
    fr = np.fft.fftshift(np.fft.fftfreq(n, d=2.0 / n))
    xs = grid_points(n)
    meta = {"recipe": "neural-redshift", "config": config.to_dict(),
            "mean_frequency": mf, "frequency_unit": "cycles per unit input",
            "max_radial_frequency": float(r.max()),
            "output_std": float(f.std()), "seconds": time.perf_counter() - t0}
    return RedshiftResult(x=xs, y=xs.copy(), f=f, freq_x=fr, freq_y=fr.copy(),
                          amplitude=np.fft.fftshift(A), radial_freq=np.arange(len(counts))[keep] * step,
                          radial_amplitude=sums[keep] / counts[keep], mean_frequency=mf, meta=meta)


def sweep(base: RedshiftConfig | None = None, activations=ACTIVATIONS, depths=(1, 2, 4, 8),
          init_scales=(1.0,), seeds=(0, 1)) -> dict:
    """Mean frequency over a grid of settings, averaged over ``seeds``.

    Returns ``{"activations", "depths", "init_scales", "mean_frequency"}`` with
    ``mean_frequency`` of shape [activation, depth, init scale] (numpy).
    """
    base = base or RedshiftConfig(grid=32)
    out = np.zeros((len(activations), len(depths), len(init_scales)))
    for a, act in enumerate(activations):
        for d, depth in enumerate(depths):
            for s, scale in enumerate(init_scales):
                vals = [mean_frequency(network_function(replace(base, activation=act, depth=int(depth),
                                                                init_scale=float(scale), seed=int(seed))),
                                       base.window) for seed in seeds]
                out[a, d, s] = float(np.mean(vals))
    return {"activations": list(activations), "depths": [int(d) for d in depths],
            "init_scales": [float(s) for s in init_scales], "seeds": [int(s) for s in seeds],
            "mean_frequency": out, "config": base.to_dict()}
