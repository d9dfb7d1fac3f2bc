"""What an opposing-signals run measured (:class:`OpposingResult`), and its files.

A result holds the loss matrix ``L`` [T+1, N] and everything derived from it (see the class
docstring for every array's shape), plus ``meta``: the config, the step size and
``lambda_0``, timings, and the metrics (``meta["metrics"]``). Files are written and read by
the one result store (:mod:`landscape.io.results`): ``.npz`` (the arrays plus ``meta_json``,
read without pickle) or ``.json`` (everything as lists); files written before open unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from landscape.io import results
from landscape.lessons.opposing.stats import step_movers


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
    return results.save(result, path, OpposingResult.ARRAYS)


def load(path) -> OpposingResult:
    """Read a result written by :func:`save`."""
    arrays, meta = results.load(path, OpposingResult.ARRAYS)
    return OpposingResult(**arrays, meta=meta)
