r"""The record of an edge-of-stability run, its summary numbers and its files.

:class:`EosResult` holds the full-batch loss at every step and, at the measured steps, the
top Hessian eigenvalues (``[:, 0]`` the sharpness), their residuals, Adam's preconditioned
eigenvalues ``lambda(P^-1 H)``, the curvatures along the gradient and the update, and the
parameters and top eigenvector there (for the slice along ``u_1``). The *crossing step* is
the first measured step where the sharpness reaches ``crossing_fraction`` (0.95) of the
threshold from below.

Files: ``.npz`` (every array plus ``meta_json``, through :mod:`landscape.io.results`) or
``.json`` (everything but the parameter snapshots and eigenvectors, as lists; NaN as null).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from landscape.core.errors import LandscapeError
from landscape.io import results as store
from landscape.io.results import jsonable, result_path


def crossing_step(steps, sharpness, level: float) -> int | None:
    """First of ``steps`` where ``sharpness >= level`` after having been below it (see
    :attr:`EosResult.crossing_step`)."""
    steps, sharp = np.asarray(steps), np.asarray(sharpness, float)
    below = np.flatnonzero(sharp < level)
    if not below.size:
        return int(steps[0]) if len(steps) else None
    hit = np.flatnonzero(sharp[below[0]:] >= level)
    return int(steps[below[0] + hit[0]]) if hit.size else None


@dataclass
class EosResult:
    """Everything a run measured; arrays are numpy, ``meta`` is JSON-able.

    ``loss_steps`` [S] and ``loss`` [S]: the full-batch loss at every step ``0..steps_done``.
    At the measured steps ``eig_steps`` [T]: ``eigenvalues`` [T, k] top Hessian eigenvalues
    (descending; ``[:, 0]`` is the sharpness), ``residuals`` [T, k], ``precond`` [T, k] top
    eigenvalues of ``P^-1 H`` (Adam; NaN otherwise), ``grad_curvature`` [T] ``g^T H g /
    ||g||^2``, ``update_curvature`` [T] the same along the update taken, ``grad_dot_u1`` [T]
    ``g . u_1`` and ``update_dot_u1`` [T] ``(theta_{s+1} - theta_s) . u_1`` (0 at the last
    step), ``hvps`` [T] HVPs of each measurement, ``params`` [T, P] (float64) and ``u1`` [T, P]
    (float32) the parameters and top Hessian eigenvector there (for :func:`eigen_slice`; empty
    after a ``.json`` round trip).
    """

    loss_steps: np.ndarray
    loss: np.ndarray
    eig_steps: np.ndarray
    eigenvalues: np.ndarray
    residuals: np.ndarray
    precond: np.ndarray
    grad_curvature: np.ndarray
    update_curvature: np.ndarray
    grad_dot_u1: np.ndarray
    update_dot_u1: np.ndarray
    hvps: np.ndarray
    params: np.ndarray
    u1: np.ndarray
    meta: dict = field(default_factory=dict)

    ARRAYS = ("loss_steps", "loss", "eig_steps", "eigenvalues", "residuals", "precond",
              "grad_curvature", "update_curvature", "grad_dot_u1", "update_dot_u1", "hvps",
              "params", "u1")
    BIG = ("params", "u1")

    @property
    def threshold(self) -> float:
        return float(self.meta["threshold"])

    @property
    def optimizer(self) -> str:
        return self.meta["config"]["optimizer"]

    @property
    def hessian_sharpness(self) -> np.ndarray:
        """``lambda_1(H)`` at each measured step [T]."""
        return self.eigenvalues[:, 0] if self.eigenvalues.size else np.zeros(0)

    @property
    def sharpness(self) -> np.ndarray:
        """The quantity compared with the threshold [T]: ``lambda_1(H)`` for GD and momentum,
        ``lambda_1(P^-1 H)`` for Adam."""
        if self.optimizer == "adam":
            return self.precond[:, 0] if self.precond.size else np.zeros(0)
        return self.hessian_sharpness

    @property
    def ratio(self) -> np.ndarray:
        """sharpness / threshold at each measured step."""
        return self.sharpness / self.threshold

    @property
    def crossing_step(self) -> int | None:
        """The measured step where the sharpness first crosses ``crossing_fraction x threshold``
        from below (None if it never does). A sharpness that starts above (Adam's first update
        divides by ``|g|``, so ``P^-1 H`` is huge at step 0) counts from when it is first below;
        one that is never below gives the first measured step."""
        return crossing_step(self.eig_steps, self.sharpness,
                             float(self.meta["config"]["crossing_fraction"]) * self.threshold)

    def loss_up_share(self) -> tuple[float | None, float | None]:
        """Share of steps ``s -> s+1`` where the loss went up, before the crossing step and
        from it on (None where there are no such steps)."""
        up = np.diff(self.loss) > 0
        c = self.crossing_step
        if c is None:
            return (float(up.mean()) if up.size else None), None
        before, after = up[:c], up[c:]
        return (float(before.mean()) if before.size else None,
                float(after.mean()) if after.size else None)

    def ratio_range(self, start_step: int | None = None) -> tuple[float, float] | None:
        """(min, max) of sharpness / threshold over measured steps ``>= start_step`` (default:
        the second half of the steps done)."""
        if start_step is None:
            start_step = int(self.meta.get("steps_done", 0)) / 2
        sel = self.eig_steps >= start_step
        if not sel.any():
            return None
        r = self.ratio[sel]
        return float(r.min()), float(r.max())

    def index_of(self, step: int) -> int:
        """Index of the measured step nearest to ``step``."""
        if not len(self.eig_steps):
            raise LandscapeError("nothing has been measured yet")
        return int(np.argmin(np.abs(self.eig_steps - step)))

    def summary(self) -> dict:
        """The CLI's JSON keys."""
        m = self.meta
        before, after = self.loss_up_share()
        rng = self.ratio_range()
        return {
            "threshold": self.threshold,
            "optimizer": self.optimizer,
            "lr": m["config"]["lr"],
            "steps": int(m.get("steps_done", 0)),
            "sharpness": [[int(s), float(v)] for s, v in zip(self.eig_steps, self.sharpness)],
            "hessian_sharpness": [[int(s), float(v)] for s, v in
                                  zip(self.eig_steps, self.hessian_sharpness)],
            "second_eigenvalue": [[int(s), float(v)] for s, v in
                                  zip(self.eig_steps, self.eigenvalues[:, 1])]
            if self.eigenvalues.shape[1:] and self.eigenvalues.shape[1] > 1 else None,
            "loss": [[int(s), float(v)] for s, v in zip(self.loss_steps, self.loss)],
            "crossing_step": self.crossing_step,
            "loss_up_share_before": before,
            "loss_up_share_after": after,
            "ratio_second_half": list(rng) if rng else None,
            "final_loss": float(self.loss[-1]) if len(self.loss) else None,
            "hessian_label": m.get("hessian_label"),
            "seconds": round(float(m.get("seconds", 0.0)), 3),
            "train_seconds": round(float(m.get("train_seconds", 0.0)), 3),
            "eig_seconds": round(float(m.get("eig_seconds", 0.0)), 3),
            "train_cpu_seconds": round(float(m.get("train_cpu_seconds", 0.0)), 3),
            "eig_cpu_seconds": round(float(m.get("eig_cpu_seconds", 0.0)), 3),
            "hvps": int(m.get("hvps", 0)),
        }


def save(result: EosResult, path) -> Path:
    """Write a result to ``.npz`` (all arrays + ``meta_json``, the one result store) or
    ``.json`` (everything but the parameter snapshots and eigenvectors, as lists; NaN as
    null, so the file is strict JSON)."""
    path = result_path(path, write=True)
    if path.suffix.lower() == ".npz":
        return store.save(result, path, EosResult.ARRAYS)
    doc = {k: np.where(np.isfinite(a), a, None).tolist() if a.dtype.kind == "f" else a.tolist()
           for k in EosResult.ARRAYS if k not in EosResult.BIG
           for a in [getattr(result, k)]}
    doc["meta"] = json.loads(json.dumps(result.meta, default=jsonable))
    path.write_text(json.dumps(doc))
    return path


def load(path) -> EosResult:
    """Read a result written by :func:`save`."""
    path = result_path(path, write=False)
    try:
        if path.suffix.lower() == ".npz":
            arrays, meta = store.load(path, EosResult.ARRAYS)
            return EosResult(**arrays, meta=meta)
        doc = json.loads(path.read_text())
        meta = doc.pop("meta")
        arrays = {k: np.asarray([np.nan if v is None else v for v in doc[k]]
                                if doc[k] and not isinstance(doc[k][0], list) else
                                [[np.nan if v is None else v for v in row] for row in doc[k]],
                                dtype=np.int64 if k in ("loss_steps", "eig_steps", "hvps") else float)
                  for k in EosResult.ARRAYS if k not in EosResult.BIG}
        k = len(arrays["eig_steps"])
        arrays["eigenvalues"] = arrays["eigenvalues"].reshape(k, -1)
        arrays["residuals"] = arrays["residuals"].reshape(k, -1)
        arrays["precond"] = arrays["precond"].reshape(k, -1)
        return EosResult(**arrays, params=np.zeros((0, 0), np.float64),
                         u1=np.zeros((0, 0), np.float32), meta=meta)
    except (KeyError, ValueError, OSError) as e:
        raise LandscapeError(f"{path.name}: not a readable edge-of-stability result "
                             f"({type(e).__name__})") from None
