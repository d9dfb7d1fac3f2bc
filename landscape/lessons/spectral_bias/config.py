"""A spectral-bias run's settings (:class:`SpectralConfig`) and its presets.

The target is ``y(x) = sum_k A_k sin(2 pi k x + phi_k)`` on ``n`` points of ``[-1, 1)``;
``k`` is in cycles per unit of ``x`` and lands on rfft bin ``2k``, so every ``k`` must be
below ``n / 4`` (Nyquist). Amplitudes are ``"equal"`` (all 1), ``"rising"`` (``A_i = i/m`` in
order of increasing frequency) or one positive value per frequency. The model is a coordinate
MLP (``widths``, ``activation``) on the raw ``x``, a positional encoding (``levels``) or random
Fourier features (``features`` draws of ``b ~ N(0, sigma^2)`` cycles per unit ``x``), trained
full batch with Adam (``lr``) for ``steps`` updates, the spectrum recorded every
``record_every`` steps.

Measured on a 2-core CPU, one torch thread (two threads under load were 40x slower):

- ``cpu`` preset (k = 2..20, 6,000 steps): 10-21 s depending on load; Spearman 0.963 and
  0.964 (seeds 0, 1); k = 16..20 never reach half amplitude on seed 0.
- The same recipe stopped at 2,000 steps (``cpu-short``): only 2-4 of the 10 frequencies
  reach half amplitude, Spearman 0.75 / 0.70 (seeds 0, 1).
- ``quick`` (k = 1..10, 2,000 steps, about 4 s): Spearman 0.89-0.99 over seeds 0-11 (0.976,
  0.915 on seeds 0, 1); final relative error 0.01-0.1 at k = 1, 0.4-0.9 at k = 10.
- Positional encoding (L = 8): every frequency at half amplitude by step 18-50; random
  Fourier features (sigma 10): by step 13-30. With an encoding the order barely matters
  (Spearman 0.45-0.93, or undefined when all arrive in the same record).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from landscape.core.device import DTYPES
from landscape.lessons.kit import LessonConfig, check, check_choice, is_finite, is_int, is_pos, preset_maker

ENCODINGS = ("none", "pe", "rff")
ACTIVATIONS = ("relu", "tanh", "gelu", "sin")


@dataclass
class SpectralConfig(LessonConfig):
    """One spectral-bias run. Defaults: the CPU recipe at 2,000 steps."""

    what = "spectral-bias"

    n: int = 200                                   # grid points on [-1, 1)
    frequencies: tuple[int, ...] = (2, 4, 6, 8, 10, 12, 14, 16, 18, 20)  # cycles per unit x
    amplitudes: str | tuple[float, ...] = "equal"  # "equal" (all 1), "rising" (i/m), or values
    seed: int = 0                                  # phases, initial weights, RFF frequencies
    encoding: str = "none"                         # "none", "pe" or "rff"
    levels: int = 8                                # pe: sin/cos(2^l pi x), l = 0..levels-1
    sigma: float = 10.0                            # rff: b_j ~ N(0, sigma^2) cycles per unit x
    features: int = 128                            # rff: number of b_j (2 * features inputs)
    widths: tuple[int, ...] = (128, 128, 128)      # hidden layer widths
    activation: str = "relu"                       # relu, tanh, gelu or sin
    lr: float = 1e-3                               # Adam, full batch
    steps: int = 2000
    record_every: int = 10                         # spectrum every this many steps
    region_points: int = 1000                      # activation-region grid (0 = off; ReLU only)
    dtype: str = "float32"
    device: str = "cpu"                            # cpu, cuda, mps or auto

    def validate(self) -> None:
        """Raise :class:`LandscapeError` (one line) for any setting that cannot run."""
        check(is_int(self.n) and self.n >= 8, f"the grid needs at least 8 points, got n = {self.n}")
        freqs = list(self.frequencies) if self.frequencies is not None else []
        check(freqs, "give at least one frequency")
        for k in freqs:
            check(is_int(k) and k >= 1, f"frequencies must be positive whole numbers (cycles per unit x), "
                                        f"got {k}")
        check(len(set(int(k) for k in freqs)) == len(freqs), f"frequencies must be distinct, got {freqs}")
        kmax = max(int(k) for k in freqs)
        check(2 * kmax < self.n / 2,
              f"frequency {kmax} is at or above the Nyquist limit of {self.n} points on [-1, 1): "
              f"every k must be below n/4 = {self.n / 4:g} (use more points or lower frequencies)")
        if isinstance(self.amplitudes, str):
            check(self.amplitudes in ("equal", "rising"),
                  f"amplitudes must be 'equal', 'rising' or a list of numbers, got {self.amplitudes!r}")
        else:
            amps = list(self.amplitudes)
            check(len(amps) == len(freqs), f"{len(amps)} amplitudes for {len(freqs)} frequencies; "
                                           "give one per frequency")
            check(all(is_pos(a) for a in amps), f"amplitudes must be positive finite numbers, got {amps}")
        check(is_int(self.seed) and self.seed >= 0, f"seed must be a whole number >= 0, got {self.seed}")
        check_choice(self.encoding, ENCODINGS, "encoding")
        check(is_int(self.levels) and 1 <= self.levels <= 20,
              f"positional-encoding levels must be 1..20, got {self.levels}")
        check(is_pos(self.sigma), f"sigma must be a positive number, got {self.sigma}")
        check(is_int(self.features) and self.features >= 1, f"Fourier features must be >= 1, got {self.features}")
        widths = list(self.widths) if self.widths is not None else []
        check(widths and all(is_int(w) and w >= 1 for w in widths),
              f"hidden widths must be one or more positive whole numbers, got {widths}")
        check_choice(self.activation, ACTIVATIONS, "activation")
        check(is_finite(self.lr) and self.lr > 0, f"learning rate must be positive, got {self.lr}")
        check(is_int(self.steps) and self.steps >= 1, f"steps must be a positive whole number, got {self.steps}")
        check(is_int(self.record_every) and self.record_every >= 1,
              f"record_every must be >= 1, got {self.record_every}")
        check(is_int(self.region_points) and self.region_points >= 0,
              f"region_points must be >= 0, got {self.region_points}")
        check(self.dtype in DTYPES, f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")

    def resolved_amplitudes(self) -> np.ndarray:
        m = len(self.frequencies)
        if self.amplitudes == "equal":
            return np.ones(m)
        if self.amplitudes == "rising":  # A_i = i/m in order of increasing frequency
            ranks = np.argsort(np.argsort(np.asarray(self.frequencies)))
            return (ranks + 1) / m
        return np.asarray(self.amplitudes, float)


PRESETS: dict[str, SpectralConfig] = {
    # The page's default and the test's size: k = 1..10 cycles per unit x (2..20 cycles over
    # the window), 2,000 steps (about 4 s on one thread): most frequencies reach half
    # amplitude, in order (Spearman 0.89-0.99 over 12 seeds).
    "quick": SpectralConfig(frequencies=tuple(range(1, 11)), steps=2000),
    # The CPU recipe: k = 2, 4, ..., 20 cycles per unit x, 1-128-128-128-1 ReLU,
    # Adam 1e-3, full batch, 6,000 steps (measured about 20 s on one thread, Spearman 0.96).
    "cpu": SpectralConfig(steps=6000, record_every=20),
    # A first view of the same recipe; at 2,000 steps only the lowest 2-4 frequencies have
    # reached half amplitude, so the ordering is clear at the bottom of the heatmap only.
    "cpu-short": SpectralConfig(steps=2000),
    # Rahaman et al. (2019): k = 5, 10, ..., 50, six hidden layers of 256, Adam 3e-4, 60k
    # full-batch steps. 400 points on [-1, 1) sample as densely as their 200 on [0, 1] and keep
    # k = 50 (bin 100) below Nyquist (bin 200). Meant for a GPU (about 8 ms a step on one CPU
    # thread).
    "gpu": SpectralConfig(n=400, frequencies=tuple(range(5, 51, 5)), widths=(256,) * 6, lr=3e-4,
                          steps=60_000, record_every=100, region_points=2000, device="auto"),
}

PRESET_NOTES = {
    "quick": "k = 1..10 cycles per unit x, 2,000 steps: the ordering in a few seconds",
    "cpu-short": "CPU recipe (k = 2..20), first 2,000 of its 6,000 steps",
    "cpu": "CPU recipe: k = 2..20, MLP 1-128-128-128-1, Adam 1e-3, 6,000 steps",
    "gpu": "Rahaman et al. 2019: k = 5..50, 6x256 MLP, Adam 3e-4, 60,000 steps (GPU)",
}


#: ``preset(name, **overrides)``: a copy of a preset with some fields replaced (``None`` values
#: are ignored)
preset = preset_maker(PRESETS, "spectral-bias")

