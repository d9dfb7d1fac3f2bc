"""A spectral-bias run's measurements (:class:`SpectralResult`) and their files.

Arrays (numpy): ``x``, ``y`` [n] the grid and target; ``frequencies``, ``amplitudes`` [K];
``steps`` [T] the recorded steps (Adam updates done); ``amplitude``, ``rel_error`` [T, K];
``outputs`` [T, n] float32; ``loss_steps``, ``loss`` [S] (every step, 0.5 x mean squared
error); ``half_step`` [K] float (NaN = never reached); ``region_x`` [R], ``region_ids``
[T, R] int32, ``n_regions`` [T] (empty when regions are off). ``meta`` is JSON-able (the
config, the resolved amplitudes, fft bins, seconds, steps done, Spearman, ...).

Files go through :mod:`landscape.io.results`: ``.npz`` (arrays + ``meta_json``) or ``.json``
(everything as lists; ``half_step`` as the half-amplitude steps with ``null`` for never).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from landscape.core.errors import LandscapeError
from landscape.io import results
from landscape.lessons.spectral_bias.measures import spearman


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
    if Path(path).suffix.lower() == ".json":  # JSON has no NaN: never-reached steps are null
        result = replace(result, half_step=np.array(result.half_amplitude_step, dtype=object))
    return results.save(result, path, SpectralResult.ARRAYS)


def load(path) -> SpectralResult:
    """Read a result written by :func:`save`."""
    arrays, meta = results.load(path, SpectralResult.ARRAYS)
    arrays["half_step"] = np.array([np.nan if v is None else v for v in arrays["half_step"].tolist()], float)
    return SpectralResult(**arrays, meta=meta)
