"""A flatness comparison's measurements (:class:`FlatnessResult`) and their files.

Arrays: ``names`` [M] (run labels), ``batch`` [M] (examples per update), ``sam`` [M] (0/1),
``top_eig`` [M] top Hessian eigenvalue of the full-data training loss at each minimum,
``final_loss``/``final_acc`` [M] full-data loss (nats) and accuracy; ``train_loss`` [M, S]
the batch loss at every update; ``slice_x`` [L] and ``slices`` [M, L] the loss along one
filter-normalized random direction through each minimum; ``interp_t`` [L], ``interp`` [K, L]
and ``interp_names`` [K] the loss on ``(1 - t) A + t B``; ``surf_x`` [G] and ``surfaces``
[M, G, G] (``[j, i]`` = the point ``(x_i, y_j)``). Empty arrays for what was skipped or is not
done yet. Files go through :mod:`landscape.io.results` (``.npz`` or ``.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from landscape.io import results


@dataclass
class FlatnessResult:
    """Everything a run measured (see the module docstring); ``meta`` is JSON-able."""

    names: np.ndarray
    batch: np.ndarray
    sam: np.ndarray
    top_eig: np.ndarray
    final_loss: np.ndarray
    final_acc: np.ndarray
    train_loss: np.ndarray
    slice_x: np.ndarray
    slices: np.ndarray
    interp_t: np.ndarray
    interp: np.ndarray
    interp_names: np.ndarray
    surf_x: np.ndarray
    surfaces: np.ndarray
    meta: dict = field(default_factory=dict)

    ARRAYS = ("names", "batch", "sam", "top_eig", "final_loss", "final_acc", "train_loss", "slice_x",
              "slices", "interp_t", "interp", "interp_names", "surf_x", "surfaces")

    def eig(self, name: str) -> float:
        """The top eigenvalue of the run called ``name`` (NaN if not measured)."""
        names = [str(n) for n in self.names]
        i = names.index(name) if name in names else -1
        return float(self.top_eig[i]) if 0 <= i < len(self.top_eig) else float("nan")

    @property
    def sharpness_ratio(self) -> float:
        """Top eigenvalue of large-batch SGD over small-batch SGD (Keskar et al.: > 1)."""
        return self.eig("large-batch SGD") / self.eig("small-batch SGD")

    def summary(self) -> dict:
        """The CLI's JSON keys."""
        return {"runs": [str(n) for n in self.names], "batch": [int(b) for b in self.batch],
                "top_eigenvalue": [float(v) for v in self.top_eig],
                "final_loss": [float(v) for v in self.final_loss],
                "final_accuracy": [float(v) for v in self.final_acc],
                "sharpness_ratio": self.sharpness_ratio,
                "seconds": round(float(self.meta.get("seconds", 0.0)), 3)}


def save(result: FlatnessResult, path) -> Path:
    """Write a result to ``.npz`` (arrays + ``meta_json``) or ``.json`` (lists)."""
    return results.save(result, path, FlatnessResult.ARRAYS)


def load(path) -> FlatnessResult:
    """Read a result written by :func:`save`."""
    arrays, meta = results.load(path, FlatnessResult.ARRAYS)
    arrays["names"] = arrays["names"].astype(str)
    arrays["interp_names"] = arrays["interp_names"].astype(str)
    return FlatnessResult(**arrays, meta=meta)
