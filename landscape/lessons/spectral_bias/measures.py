"""What the spectral-bias lesson measures, on samples over the grid ``[-1, 1)``.

- A frequency ``k`` (cycles per unit ``x``) falls on bin ``2k`` of ``numpy.fft.rfft`` over
  ``n`` samples (the window holds ``2k`` cycles); every bin must be below ``n/2``.
- Normalized amplitude ``2|F[2k]| / (n A_k)``: 1 when the component is learned.
- Relative error ``|F_target[2k] - F[2k]| / |F_target[2k]|`` (phase included).
- Half-amplitude step: the first recorded step whose normalized amplitude is ``>= 0.5``
  (None if never), and its Spearman rank correlation with frequency (frequencies that never
  get there rank after all that do, tied with each other).
- Activation-pattern ids: each input's ReLU pattern numbered 0, 1, ... in order of first
  appearance along ``x``; the number of ids is the number of activation regions the grid sees.
"""

from __future__ import annotations

import math

import numpy as np

from landscape.core.errors import LandscapeError
from landscape.lessons.spectral_bias.config import SpectralConfig

HALF = 0.5  # the half-amplitude threshold on the normalized amplitude


def target(config: SpectralConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(x [n], y [n])`` of the run's target (the ``sines`` built-in data set)."""
    from landscape.core.data import load_builtin

    d = load_builtin("sines", n=config.n, frequencies=tuple(int(k) for k in config.frequencies),
                     amplitudes=tuple(config.resolved_amplitudes()), seed=config.seed)
    return d.X[:, 0].double().numpy(), d.y.double().numpy()


def fft_bins(frequencies, n: int) -> np.ndarray:
    """rfft bin of each frequency (cycles per unit x) on ``n`` points over [-1, 1): ``2k``."""
    bins = 2 * np.asarray(frequencies, dtype=np.int64)
    if bins.size and (bins.min() < 1 or bins.max() >= n / 2):
        raise LandscapeError(f"frequencies {list(frequencies)} do not all lie below Nyquist for {n} points")
    return bins


def normalized_amplitude(f: np.ndarray, frequencies, amplitudes) -> np.ndarray:
    """``2|F[2k]| / (n A_k)`` per frequency for samples ``f`` [n] (or [T, n] -> [T, K])."""
    f = np.asarray(f, float)
    n = f.shape[-1]
    F = np.fft.rfft(f, axis=-1)[..., fft_bins(frequencies, n)]
    return 2 * np.abs(F) / (n * np.asarray(amplitudes, float))


def relative_error(f: np.ndarray, y: np.ndarray, frequencies) -> np.ndarray:
    """``|F_y[2k] - F_f[2k]| / |F_y[2k]|`` per frequency (f [n] or [T, n])."""
    f = np.asarray(f, float)
    bins = fft_bins(frequencies, f.shape[-1])
    Ff = np.fft.rfft(f, axis=-1)[..., bins]
    Fy = np.fft.rfft(np.asarray(y, float))[bins]
    return np.abs(Fy - Ff) / np.maximum(np.abs(Fy), 1e-300)


def half_amplitude_steps(steps, amplitude, threshold: float = HALF) -> list[int | None]:
    """First recorded step at which each frequency's normalized amplitude is >= threshold."""
    steps = np.asarray(steps)
    amp = np.asarray(amplitude, float)
    out: list[int | None] = []
    for j in range(amp.shape[1] if amp.ndim == 2 else 0):
        hit = np.flatnonzero(amp[:, j] >= threshold)
        out.append(int(steps[hit[0]]) if hit.size else None)
    return out


def spearman(frequencies, half_steps) -> float | None:
    """Spearman rank correlation of half-amplitude step with frequency.

    Frequencies that never reach half amplitude rank after every one that does (tied with
    each other). None when either side has no spread (e.g. all reached at the same step).
    """
    from scipy.stats import spearmanr

    h = [math.inf if s is None else float(s) for s in half_steps]
    finite = [v for v in h if math.isfinite(v)]
    big = (max(finite) if finite else 0.0) + 1.0
    h = [big if not math.isfinite(v) else v for v in h]
    if len(h) < 2 or len(set(h)) < 2 or len(set(frequencies)) < 2:
        return None
    rho = spearmanr(np.asarray(frequencies, float), np.asarray(h)).statistic
    return None if not np.isfinite(rho) else float(rho)


def pattern_ids(patterns: np.ndarray) -> np.ndarray:
    """Id of each row's activation pattern, numbered 0, 1, ... in order of first appearance."""
    p = np.ascontiguousarray(np.packbits(np.asarray(patterns, bool), axis=1))
    if p.shape[1] == 0:
        return np.zeros(len(p), np.int32)
    rows = p.view(np.dtype((np.void, p.shape[1]))).ravel()
    _, first, inv = np.unique(rows, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # unique index -> rank of first appearance
    return order[inv.ravel()].astype(np.int32)
