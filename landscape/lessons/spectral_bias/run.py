"""Spectral bias (Rahaman et al. 2019) and input encodings (Tancik et al. 2020), measured.

Recipe (DESIGN 3.5):

- Target ``y(x) = sum_k A_k sin(2 pi k x + phi_k)`` on ``n`` points of a uniform grid over
  ``[-1, 1)`` (endpoint excluded; the ``sines`` data set of :mod:`landscape.core.data`). ``k`` is in
  cycles per unit of ``x``, so the window holds ``2k`` cycles and ``k`` falls exactly on
  bin ``2k`` of ``numpy.fft.rfft`` over the ``n`` samples; every ``k`` must satisfy
  ``2k < n/2`` (below Nyquist). Phases ``phi_k`` come from the seed.
- A coordinate MLP is trained on the ``n`` points, full batch, Adam, loss
  ``0.5 * mean (f(x) - y)^2``. Its input is ``x`` itself (``encoding="none"``), a positional
  encoding ``[sin(2^l pi x), cos(2^l pi x)], l = 0..levels-1`` (``"pe"``), or random Fourier
  features ``[sin(2 pi b_j x), cos(2 pi b_j x)]`` with ``b_j ~ N(0, sigma^2)``, ``j < features``
  (``"rff"``).
- Every ``record_every`` steps (and at step 0 and the last step), with ``F = rfft(f)`` of
  the network's outputs on the grid: the normalized amplitude ``2|F[2k]| / (n A_k)`` (1 when
  the component is learned; the heatmap clips it to [0, 1]) and the relative error
  ``|F_target[2k] - F[2k]| / |F_target[2k]|`` (phase included) per frequency.
- The half-amplitude step of a frequency: the first recorded step whose normalized amplitude
  is ``>= 0.5`` (None if never); its Spearman rank correlation with frequency (frequencies
  that never get there rank after all that do, tied with each other).
- ReLU activation regions: on ``region_points`` evenly spaced inputs over ``[-1, 1)``, each
  input's activation pattern (which hidden ReLUs are on) gets an id (0, 1, 2, ... in order
  of first appearance along ``x``); the number of distinct patterns is the number of
  activation regions the grid sees (a lower bound on the true count).

Steps are numbered by updates done: step ``s`` is the network after ``s`` Adam updates;
``loss[s]`` is the full-batch loss there. Runs are deterministic for a seed (same device,
same torch thread count); this module never changes torch's thread count unless a caller
passes ``threads``. Training is a generator of events (:meth:`SpectralBiasRun.run`), so a UI
can draw live and stop; :class:`SpectralJob` runs it on a thread (start / poll / stop).

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

import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
from torch import nn

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

ENCODINGS = ("none", "pe", "rff")
ACTIVATIONS = ("relu", "tanh", "gelu", "sin")
HALF = 0.5  # the half-amplitude threshold on the normalized amplitude


@dataclass
class SpectralConfig:
    """One spectral-bias run. Defaults: the CPU recipe of DESIGN 3.5 at 2,000 steps."""

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

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("frequencies", "widths"):
            d[key] = list(d[key])
        if not isinstance(d["amplitudes"], str):
            d["amplitudes"] = list(d["amplitudes"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SpectralConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise LandscapeError(f"unknown spectral-bias options: {sorted(unknown)}")
        d = dict(d)
        for key in ("frequencies", "widths"):
            if key in d and d[key] is not None:
                d[key] = tuple(d[key])
        if "amplitudes" in d and not isinstance(d["amplitudes"], str):
            d["amplitudes"] = tuple(d["amplitudes"])
        return cls(**d)

    def validate(self) -> None:
        """Raise :class:`LandscapeError` (one line) for any setting that cannot run."""
        if not _is_int(self.n) or self.n < 8:
            raise LandscapeError(f"the grid needs at least 8 points, got n = {self.n}")
        freqs = list(self.frequencies) if self.frequencies is not None else []
        if not freqs:
            raise LandscapeError("give at least one frequency")
        for k in freqs:
            if not _is_int(k) or k < 1:
                raise LandscapeError(f"frequencies must be positive whole numbers (cycles per unit x), "
                                     f"got {k}")
        if len(set(int(k) for k in freqs)) != len(freqs):
            raise LandscapeError(f"frequencies must be distinct, got {freqs}")
        kmax = max(int(k) for k in freqs)
        if 2 * kmax >= self.n / 2:
            raise LandscapeError(
                f"frequency {kmax} is at or above the Nyquist limit of {self.n} points on [-1, 1): "
                f"every k must be below n/4 = {self.n / 4:g} (use more points or lower frequencies)")
        if isinstance(self.amplitudes, str):
            if self.amplitudes not in ("equal", "rising"):
                raise LandscapeError(f"amplitudes must be 'equal', 'rising' or a list of numbers, "
                                     f"got {self.amplitudes!r}")
        else:
            amps = list(self.amplitudes)
            if len(amps) != len(freqs):
                raise LandscapeError(f"{len(amps)} amplitudes for {len(freqs)} frequencies; "
                                     "give one per frequency")
            if not all(isinstance(a, (int, float)) and math.isfinite(a) and a > 0 for a in amps):
                raise LandscapeError(f"amplitudes must be positive finite numbers, got {amps}")
        if not _is_int(self.seed) or self.seed < 0:
            raise LandscapeError(f"seed must be a whole number >= 0, got {self.seed}")
        if self.encoding not in ENCODINGS:
            raise LandscapeError(f"unknown encoding {self.encoding!r}; choose one of {ENCODINGS}")
        if not _is_int(self.levels) or not 1 <= self.levels <= 20:
            raise LandscapeError(f"positional-encoding levels must be 1..20, got {self.levels}")
        if not (isinstance(self.sigma, (int, float)) and math.isfinite(self.sigma) and self.sigma > 0):
            raise LandscapeError(f"sigma must be a positive number, got {self.sigma}")
        if not _is_int(self.features) or self.features < 1:
            raise LandscapeError(f"Fourier features must be >= 1, got {self.features}")
        widths = list(self.widths) if self.widths is not None else []
        if not widths or not all(_is_int(w) and w >= 1 for w in widths):
            raise LandscapeError(f"hidden widths must be one or more positive whole numbers, got {widths}")
        if self.activation not in ACTIVATIONS:
            raise LandscapeError(f"unknown activation {self.activation!r}; choose one of {ACTIVATIONS}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise LandscapeError(f"learning rate must be positive, got {self.lr}")
        if not _is_int(self.steps) or self.steps < 1:
            raise LandscapeError(f"steps must be a positive whole number, got {self.steps}")
        if not _is_int(self.record_every) or self.record_every < 1:
            raise LandscapeError(f"record_every must be >= 1, got {self.record_every}")
        if not _is_int(self.region_points) or self.region_points < 0:
            raise LandscapeError(f"region_points must be >= 0, got {self.region_points}")
        if self.dtype not in DTYPES:
            raise LandscapeError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")

    def resolved_amplitudes(self) -> np.ndarray:
        m = len(self.frequencies)
        if self.amplitudes == "equal":
            return np.ones(m)
        if self.amplitudes == "rising":  # A_i = i/m in order of increasing frequency
            ranks = np.argsort(np.argsort(np.asarray(self.frequencies)))
            return (ranks + 1) / m
        return np.asarray(self.amplitudes, float)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) or \
        (isinstance(v, float) and v.is_integer())


PRESETS: dict[str, SpectralConfig] = {
    # The page's default and the test's size: k = 1..10 cycles per unit x (2..20 cycles over
    # the window), 2,000 steps (about 4 s on one thread): most frequencies reach half
    # amplitude, in order (Spearman 0.89-0.99 over 12 seeds).
    "quick": SpectralConfig(frequencies=tuple(range(1, 11)), steps=2000),
    # The CPU recipe of DESIGN 3.5: k = 2, 4, ..., 20 cycles per unit x, 1-128-128-128-1 ReLU,
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
    "cpu-short": "DESIGN 3.5 recipe (k = 2..20), first 2,000 of its 6,000 steps",
    "cpu": "DESIGN 3.5 recipe: k = 2..20, MLP 1-128-128-128-1, Adam 1e-3, 6,000 steps",
    "gpu": "Rahaman et al. 2019: k = 5..50, 6x256 MLP, Adam 3e-4, 60,000 steps (GPU)",
}


def preset(name: str, **overrides) -> SpectralConfig:
    """A copy of a preset with some fields replaced (``None`` values are ignored)."""
    return preset_with(PRESETS, name, "spectral-bias", **overrides)


# --------------------------------------------------------------------------- the model

class Sine(nn.Module):
    def forward(self, x):
        return torch.sin(x)


_ACT = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sin": Sine}


class CoordinateMLP(nn.Module):
    """``x`` [N, 1] -> encoding -> Linear/activation stack -> [N, 1].

    The encoding has no trainable parameters (``B`` of the Fourier features is a buffer).
    """

    def __init__(self, widths=(128, 128, 128), activation: str = "relu", encoding: str = "none",
                 levels: int = 8, sigma: float = 10.0, features: int = 128,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.encoding = encoding
        if encoding == "pe":
            self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(levels, dtype=torch.float64))
            in_dim = 2 * levels
        elif encoding == "rff":
            b = torch.randn(features, dtype=torch.float64, generator=generator) * sigma
            self.register_buffer("freqs", 2 * math.pi * b)
            in_dim = 2 * features
        else:
            self.register_buffer("freqs", torch.zeros(0, dtype=torch.float64))
            in_dim = 1
        dims = [in_dim, *[int(w) for w in widths], 1]
        self.linears = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(len(dims) - 1))
        self.act = _ACT[activation]()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoding == "none":
            return x
        z = x * self.freqs.to(x.dtype)
        return torch.cat([torch.sin(z), torch.cos(z)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encode(x)
        for lin in self.linears[:-1]:
            h = self.act(lin(h))
        return self.linears[-1](h)

    @torch.no_grad()
    def patterns(self, x: torch.Tensor) -> torch.Tensor:
        """Activation pattern of each input: bool [N, hidden units] (pre-activation > 0)."""
        h = self.encode(x)
        on = []
        for lin in self.linears[:-1]:
            z = lin(h)
            on.append(z > 0)
            h = self.act(z)
        return torch.cat(on, dim=1)


def build_model(config: SpectralConfig) -> CoordinateMLP:
    """The run's model, initialised from ``config.seed`` without touching global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        g = torch.Generator().manual_seed(config.seed + 1_000_003)
        model = CoordinateMLP(config.widths, config.activation, config.encoding, config.levels,
                              config.sigma, config.features, generator=g)
    return model.to(DTYPES[config.dtype])


# --------------------------------------------------------------------------- measurements

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


# --------------------------------------------------------------------------- results

@dataclass
class SpectralResult:
    """Everything a run measured; arrays are numpy, ``meta`` is JSON-able.

    ``steps`` [T] recorded steps; ``amplitude``/``rel_error`` [T, K]; ``outputs`` [T, n] the
    learned function on the grid ``x`` at each recorded step; ``loss`` [S] the full-batch loss
    at step ``loss_steps`` [S] (every step); ``half_step`` [K] float (NaN = never reached);
    ``region_x`` [R], ``region_ids`` [T, R] (int32) and ``n_regions`` [T] (empty when off).
    """

    x: np.ndarray
    y: np.ndarray
    frequencies: np.ndarray
    amplitudes: np.ndarray
    steps: np.ndarray
    amplitude: np.ndarray
    rel_error: np.ndarray
    outputs: np.ndarray
    loss_steps: np.ndarray
    loss: np.ndarray
    half_step: np.ndarray
    region_x: np.ndarray
    region_ids: np.ndarray
    n_regions: np.ndarray
    meta: dict = field(default_factory=dict)

    ARRAYS = ("x", "y", "frequencies", "amplitudes", "steps", "amplitude", "rel_error", "outputs",
              "loss_steps", "loss", "half_step", "region_x", "region_ids", "n_regions")

    @property
    def half_amplitude_step(self) -> list[int | None]:
        return [None if not np.isfinite(v) else int(v) for v in self.half_step]

    @property
    def spearman(self) -> float | None:
        return spearman(self.frequencies, self.half_amplitude_step)

    @property
    def final_rel_error(self) -> np.ndarray:
        return self.rel_error[-1] if len(self.rel_error) else np.full(len(self.frequencies), np.nan)

    def index_of(self, step: int) -> int:
        """Index of the recorded step nearest to ``step``."""
        if not len(self.steps):
            raise LandscapeError("nothing has been recorded yet")
        return int(np.argmin(np.abs(self.steps - step)))

    def summary(self) -> dict:
        """The CLI's JSON keys."""
        return {"frequencies": [int(k) for k in self.frequencies],
                "half_amplitude_step": self.half_amplitude_step,
                "final_rel_error": [float(v) for v in self.final_rel_error],
                "final_amplitude": [float(v) for v in (self.amplitude[-1] if len(self.amplitude) else [])],
                "spearman": self.spearman,
                "final_loss": float(self.loss[-1]) if len(self.loss) else None,
                "steps": int(self.steps[-1]) if len(self.steps) else 0,
                "n_regions": int(self.n_regions[-1]) if len(self.n_regions) else None,
                "seconds": round(float(self.meta.get("seconds", 0.0)), 3)}


def save(result: SpectralResult, path) -> Path:
    """Write a result to ``.npz`` (arrays + ``meta_json``) or ``.json`` (everything as lists)."""
    path = result_path(path, write=True)
    meta = json.dumps(result.meta, default=jsonable)
    if path.suffix.lower() == ".npz":
        write_npz(path, result, SpectralResult.ARRAYS)
    else:
        doc = {k: getattr(result, k).tolist() for k in SpectralResult.ARRAYS}
        doc["half_step"] = result.half_amplitude_step
        doc["meta"] = json.loads(meta)
        path.write_text(json.dumps(doc, default=jsonable))
    return path


def load(path) -> SpectralResult:
    """Read a result written by :func:`save`."""
    path = result_path(path, write=False)
    if path.suffix.lower() == ".npz":
        arrays, meta = read_npz(path, SpectralResult.ARRAYS)
        return SpectralResult(**arrays, meta=meta)
    doc = json.loads(path.read_text())
    doc["half_step"] = [np.nan if v is None else v for v in doc["half_step"]]
    meta = doc.pop("meta")
    return SpectralResult(**{k: np.asarray(doc[k]) for k in SpectralResult.ARRAYS}, meta=meta)



# --------------------------------------------------------------------------- training

@dataclass
class SpectralEvent:
    """After one Adam update: ``step`` updates done, ``loss`` the full-batch loss before it
    (at step ``step - 1``). When ``recorded``, the spectrum at ``step``: ``amplitude`` and
    ``rel_error`` [K], ``n_regions`` (None when regions are off)."""

    step: int
    loss: float
    seconds: float
    recorded: bool = False
    amplitude: np.ndarray | None = None
    rel_error: np.ndarray | None = None
    n_regions: int | None = None


class SpectralBiasRun:
    """A run in progress: ``run()`` yields events; ``result()`` is valid at any point."""

    def __init__(self, config: SpectralConfig | None = None):
        from landscape.core.device import choose_device

        config = config or SpectralConfig()
        config.validate()
        order = np.argsort(np.asarray(config.frequencies))
        amps = config.resolved_amplitudes()[order]
        self.config = replace(config, frequencies=tuple(int(config.frequencies[i]) for i in order),
                              amplitudes=config.amplitudes if isinstance(config.amplitudes, str)
                              else tuple(float(a) for a in amps))
        cfg = self.config
        self.device = choose_device(cfg.device)
        self.dtype = DTYPES[cfg.dtype]
        self.frequencies = np.asarray(cfg.frequencies, np.int64)
        self.amplitudes = amps
        self.x, self.y = target(cfg)
        self._X = torch.as_tensor(self.x[:, None], dtype=self.dtype, device=self.device)
        self._Y = torch.as_tensor(self.y[:, None], dtype=self.dtype, device=self.device)
        self.model = build_model(cfg).to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.regions = cfg.region_points > 0 and cfg.activation == "relu"
        self.region_x = (-1.0 + 2.0 * np.arange(cfg.region_points) / cfg.region_points
                         if self.regions else np.zeros(0))
        self._RX = torch.as_tensor(self.region_x[:, None], dtype=self.dtype, device=self.device)
        self.step = 0
        self.seconds = 0.0
        self._loss: list[float] = []
        self._rec_steps: list[int] = []
        self._rec_amp: list[np.ndarray] = []
        self._rec_err: list[np.ndarray] = []
        self._rec_out: list[np.ndarray] = []
        self._rec_ids: list[np.ndarray] = []
        self._rec_nreg: list[int] = []

    @property
    def done(self) -> bool:
        return self.step >= self.config.steps

    def _record(self, out: torch.Tensor) -> tuple[np.ndarray, np.ndarray, int | None]:
        f = out.detach().reshape(-1).double().cpu().numpy()
        amp = normalized_amplitude(f, self.frequencies, self.amplitudes)
        err = relative_error(f, self.y, self.frequencies)
        self._rec_steps.append(self.step)
        self._rec_amp.append(amp)
        self._rec_err.append(err)
        self._rec_out.append(f.astype(np.float32))
        nreg = None
        if self.regions:
            ids = pattern_ids(self.model.patterns(self._RX).cpu().numpy())
            nreg = int(ids.max()) + 1
            self._rec_ids.append(ids)
            self._rec_nreg.append(nreg)
        return amp, err, nreg

    def _forward_loss(self):
        out = self.model(self._X)
        return out, 0.5 * (out - self._Y).pow(2).mean()

    def run(self, steps: int | None = None, cancel: threading.Event | None = None
            ) -> Iterator[SpectralEvent]:
        """Yield one event per update for up to ``steps`` more (default: to ``config.steps``).

        Stop iterating (or set ``cancel``) to pause; call again to go on. Raises
        :class:`LandscapeError` if the loss becomes NaN or inf.
        """
        cfg = self.config
        end = cfg.steps if steps is None else min(cfg.steps, self.step + int(steps))
        while self.step < end:
            if cancel is not None and cancel.is_set():
                return
            t0 = time.perf_counter()
            out, loss = self._forward_loss()
            lv = loss.item()
            if not math.isfinite(lv):
                raise LandscapeError(f"training diverged at step {self.step} (loss {lv}); "
                                     "lower the learning rate")
            if self.step % cfg.record_every == 0 and (not self._rec_steps or self._rec_steps[-1] != self.step):
                self._record(out)
            self._loss.append(lv)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.step += 1
            ev = SpectralEvent(self.step, lv, 0.0)
            if self.step % cfg.record_every == 0 or self.step == cfg.steps:
                with torch.no_grad():
                    out, loss = self._forward_loss()
                ev.amplitude, ev.rel_error, ev.n_regions = self._record(out)
                ev.recorded = True
                if self.step == cfg.steps:
                    self._loss.append(loss.item())
            dt = time.perf_counter() - t0
            self.seconds += dt
            ev.seconds = self.seconds
            yield ev

    def result(self) -> SpectralResult:
        """What has been recorded so far, as a :class:`SpectralResult`."""
        cfg = self.config
        K = len(self.frequencies)
        steps = np.asarray(self._rec_steps, np.int64)
        amp = np.asarray(self._rec_amp, float).reshape(-1, K)
        err = np.asarray(self._rec_err, float).reshape(-1, K)
        half = half_amplitude_steps(steps, amp)
        rho = spearman(self.frequencies, half)
        meta = {"recipe": "spectral-bias", "config": cfg.to_dict(),
                "amplitudes_resolved": self.amplitudes.tolist(),
                "fft_bins": fft_bins(self.frequencies, cfg.n).tolist(),
                "frequency_unit": "cycles per unit x (the [-1, 1) window holds 2k cycles)",
                "loss": "0.5 * mean squared error", "optimizer": "adam, full batch",
                "n_params": sum(p.numel() for p in self.model.parameters()),
                "device": str(self.device), "torch_threads": torch.get_num_threads(),
                "seconds": self.seconds, "steps_done": self.step, "complete": self.done,
                "spearman": rho, "half_amplitude_step": half, "threshold": HALF}
        return SpectralResult(
            x=self.x, y=self.y, frequencies=self.frequencies.copy(), amplitudes=self.amplitudes.copy(),
            steps=steps, amplitude=amp, rel_error=err,
            outputs=np.asarray(self._rec_out, np.float32).reshape(-1, cfg.n),
            loss_steps=np.arange(len(self._loss), dtype=np.int64),
            loss=np.asarray(self._loss, float),
            half_step=np.array([np.nan if h is None else h for h in half], float),
            region_x=self.region_x.copy(),
            region_ids=np.asarray(self._rec_ids, np.int32).reshape(len(self._rec_ids), len(self.region_x)),
            n_regions=np.asarray(self._rec_nreg, np.int64), meta=meta)


def train(config: SpectralConfig | None = None, cancel: threading.Event | None = None,
          callback=None, threads: int | None = None) -> SpectralResult:
    """Run to the end and return the result.

    ``callback(event)`` may return True to stop early (the partial result is returned);
    a set ``cancel`` event raises :class:`Cancelled` with the partial result. ``threads``
    sets torch's thread count for the run and restores it after (None: leave it alone).
    """
    with torch_threads(threads):
        run = run_to_end(SpectralBiasRun(config), cancel, callback)
        return run.result()


class SpectralJob:
    """A run on a background thread, for live UIs: ``start()``, ``poll()``, ``stop()``.

    The thread never touches any UI; ``poll()`` returns ``(progress in [0, 1], partial
    result or None)``, the partial result refreshed every ``snapshot_every`` records;
    ``error`` holds a one-line message if the run failed. ``threads`` sets torch's
    (process-wide) thread count while the run lasts.
    """

    def __init__(self, config: SpectralConfig, snapshot_every: int = 10, threads: int | None = None):
        config.validate()
        self.config = config
        self.threads = threads  # torch threads for the run (restored after); None: leave alone
        self.snapshot_every = max(1, int(snapshot_every))  # records between partial results
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._result: SpectralResult | None = None
        self.step = 0
        self.error: str | None = None
        self.finished = False

    def start(self) -> SpectralJob:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, daemon=True, name="spectral-bias")
            self._thread.start()
        return self

    def _work(self) -> None:
        before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(max(1, int(self.threads)))
        try:
            run = SpectralBiasRun(self.config)
            records = 0
            for ev in run.run(cancel=self._stop):
                self.step = ev.step
                if ev.recorded:
                    records += 1
                    if records % self.snapshot_every == 0:
                        with self._lock:
                            self._result = run.result()
            with self._lock:
                self._result = run.result()
        except LandscapeError as e:
            self.error = str(e)
        except Exception as e:  # a bug: report one line, keep the UI alive
            self.error = f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        finally:
            if self.threads is not None:
                torch.set_num_threads(before)
            self.finished = True

    @property
    def running(self) -> bool:
        return self._thread is not None and not self.finished

    def poll(self) -> tuple[float, SpectralResult | None]:
        with self._lock:
            return min(1.0, self.step / self.config.steps), self._result

    def stop(self, wait: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and wait:
            self._thread.join(wait)


# --------------------------------------------------------------------------- figures

FREQ_LABEL = "frequency k (cycles per unit x)"
STEP_LABEL = "optimizer step (Adam updates)"


def fig_heatmap(res: SpectralResult, title: str | None = None) -> go.Figure:
    """Frequency x step heatmap of the normalized amplitude, clipped to [0, 1], with the
    half-amplitude step of each frequency marked."""
    z = np.clip(res.amplitude.T, 0.0, 1.0)
    fig = go.Figure(go.Heatmap(
        x=res.steps, y=res.frequencies, z=z, zmin=0.0, zmax=1.0, colorscale="Viridis",
        colorbar={"title": {"text": "2|F[k]| / (N A_k)", "side": "right"}},
        hovertemplate="step %{x}<br>k = %{y}<br>normalized amplitude %{z:.3f}<extra></extra>"))
    half = res.half_step
    ok = np.isfinite(half)
    if ok.any():
        fig.add_trace(go.Scatter(x=half[ok], y=res.frequencies[ok], mode="markers",
                                 name="half amplitude reached",
                                 marker={"symbol": "diamond", "color": "white", "size": 8,
                                         "line": {"color": "black", "width": 1}}))
    rho = res.spearman
    fig.update_layout(
        title=title or ("Learned amplitude per frequency (normalized, clipped to [0, 1])"
                        + (f" | Spearman(half step, k) = {rho:.2f}" if rho is not None else "")),
        xaxis_title=STEP_LABEL, yaxis_title=FREQ_LABEL, legend={"orientation": "h", "y": -0.2})
    return fig


def fig_error_curves(res: SpectralResult, title: str | None = None) -> go.Figure:
    """Relative error ``|F_target[k] - F_net[k]| / |F_target[k]|`` per frequency, log axis."""
    fig = go.Figure()
    K = len(res.frequencies)
    for j, k in enumerate(res.frequencies):
        color = _ramp(j, K)
        fig.add_trace(go.Scatter(x=res.steps, y=np.maximum(res.rel_error[:, j], 1e-6), mode="lines",
                                 name=f"k = {int(k)}", line={"color": color}))
    fig.update_yaxes(type="log", title_text="relative error |F_target[k] - F_net[k]| / |F_target[k]|")
    fig.update_layout(title=title or "Relative error per frequency", xaxis_title=STEP_LABEL)
    return fig


def fig_function(res: SpectralResult, step: int | None = None, title: str | None = None) -> go.Figure:
    """The learned function over the target at the recorded step nearest ``step``."""
    i = res.index_of(res.steps[-1] if step is None else step)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=res.x, y=res.y, mode="lines", name="target",
                             line={"color": "black", "width": 1}))
    fig.add_trace(go.Scatter(x=res.x, y=res.outputs[i], mode="lines", name="network",
                             line={"color": "#d62728", "width": 2}))
    fig.update_layout(title=title or f"Learned function at step {int(res.steps[i])}",
                      xaxis_title="x (input coordinate, dimensionless)",
                      yaxis_title="f(x) (target units)", legend={"orientation": "h", "y": -0.2})
    return fig


def fig_loss(res: SpectralResult, title: str | None = None) -> go.Figure:
    """Full-batch training loss per step on a log axis."""
    fig = go.Figure(go.Scatter(x=res.loss_steps, y=np.maximum(res.loss, 1e-12), mode="lines",
                               name="loss"))
    fig.update_yaxes(type="log", title_text="training loss, 0.5 x mean squared error")
    fig.update_layout(title=title or "Training loss", xaxis_title=STEP_LABEL)
    return fig


def fig_regions(res: SpectralResult, step: int | None = None, title: str | None = None) -> go.Figure:
    """ReLU activation regions: pattern id of each input along x at a step (left) and the
    number of distinct regions over training (right)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45])
    if len(res.n_regions) == 0:
        fig.update_layout(title=title or "Activation regions (ReLU networks only; none recorded)")
        fig.update_xaxes(title_text="x (input coordinate)", row=1, col=1)
        fig.update_xaxes(title_text=STEP_LABEL, row=1, col=2)
        fig.update_yaxes(title_text="activation-pattern id", row=1, col=1)
        fig.update_yaxes(title_text="distinct regions on the grid", row=1, col=2)
        return fig
    i = res.index_of(res.steps[-1] if step is None else step)
    ids = res.region_ids[i]
    fig.add_trace(go.Scatter(x=res.region_x, y=ids, mode="markers", name="pattern id",
                             marker={"size": 3, "color": ids % 10, "colorscale": "Turbo"}),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=res.steps, y=res.n_regions, mode="lines", name="regions"),
                  row=1, col=2)
    fig.add_vline(x=int(res.steps[i]), line={"dash": "dot", "color": "grey"}, row=1, col=2)
    fig.update_xaxes(title_text="x (input coordinate, dimensionless)", row=1, col=1)
    fig.update_yaxes(title_text="activation-pattern id (order of first appearance)", row=1, col=1)
    fig.update_xaxes(title_text=STEP_LABEL, row=1, col=2)
    fig.update_yaxes(title_text=f"distinct regions on {len(res.region_x)} points", row=1, col=2)
    fig.update_layout(title=title or f"ReLU activation regions along x (step {int(res.steps[i])}: "
                      f"{int(res.n_regions[i])} regions)", showlegend=False)
    return fig


def _ramp(j: int, n: int) -> str:
    from plotly.colors import sample_colorscale

    return sample_colorscale("Plasma", [0.9 * j / max(1, n - 1)])[0]


# --------------------------------------------------------------------------- CLI
