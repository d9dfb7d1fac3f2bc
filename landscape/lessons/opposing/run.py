"""Train one opposing-signals run step by step and measure it.

- **Training.** The network of :func:`~landscape.lessons.opposing.config.build_model`, squared
  loss ``0.5 ||f(x_i) - onehot(y_i)||^2`` per example, averaged; full-batch gradient descent
  with ``lr = lr_factor x 2 / lambda_0`` (``lambda_0``: the sharpness at initialisation, by
  Lanczos) unless ``lr`` is given.
- **Loss matrix.** ``L[t, i]`` [T+1, N] (float32): the loss of example ``i`` after ``t``
  updates, from the forward pass that the update uses anyway (no extra backward). With a
  plant, the planted examples' logit margins with and without the plant, [T+1, m].
- **Sharpness.** Top Hessian eigenvalue of the full-batch loss (loss / param^2) every
  ``sharpness_every`` steps (Lanczos warm-started from the previous eigenvector, a small basis
  and a loose tolerance: eigenvalue errors are about residual^2 / gap); ``sharpness ratio`` =
  its mean over the window divided by ``2 / lr`` (1 = the edge of stability).
- **Remove and retrain** (``retrain=True``): the same initial weights and ``lr``, trained on
  the data without the detected set; its loss next to the first run's loss on the same kept
  examples.

Training is a generator of events (:meth:`OpposingRun.run`), so a UI can draw live and stop;
:meth:`OpposingRun.result` gives every statistic of :mod:`~landscape.lessons.opposing.stats`
at any point, over the last ``min(window, steps done)`` steps. Runs are deterministic for a
seed (same device, same torch thread count).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from landscape.core.device import DTYPES
from landscape.core.errors import Cancelled, LandscapeError
from landscape.lessons.kit import StepEvent, run_to_end, torch_threads, update_times
from landscape.lessons.opposing.config import SHARPNESS_NCV, SHARPNESS_TOL, OpposingConfig, build_model
from landscape.lessons.opposing.planted import make_data
from landscape.lessons.opposing.result import OpposingResult
from landscape.lessons.opposing.stats import (
    amplitude,
    control_band,
    find_spikes,
    group_curve,
    pair_statistics,
    phase_agreement,
    precision_at,
    rank_by_movement,
    split_by_label,
    vote_share,
)


@dataclass
class OpposingEvent(StepEvent):
    """After one update: ``step`` updates done; ``loss`` the full-batch loss before it (at step
    ``step - 1``); ``rise``/``fall`` the ``top_k`` examples whose loss rose/fell most from
    ``step - 1`` to ``step`` with their changes ``rise_delta``/``fall_delta``; ``sharpness``
    the top Hessian eigenvalue at ``step`` when measured there, else None."""

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
        k = int(cfg.top_k)
        for t0 in update_times(self, steps, cancel):
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

    def retrain(self, remove: np.ndarray, cancel: threading.Event | None = None,
                callback=None) -> np.ndarray:
        """Train again from the same initial weights with the same ``lr`` and step count on the
        data without ``remove``; returns (and keeps for :meth:`result`) the mean loss of the
        kept examples at every step [T+1]. ``callback(t)``, if given, is called after step ``t``."""
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
            if callback is not None:
                callback(t)
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


PREVIEW_EVERY = 50  # updates between two live previews of a run


def preview(run: OpposingRun, losses: list) -> dict:
    """The run so far for a live figure (cheap: no statistics): the full-batch loss before
    each update done, the sharpness trace, ``lr`` and the steps planned."""
    return {"loss": np.asarray(losses, np.float64), "sharpness_steps": np.asarray(run._sh_steps),
            "sharpness": np.asarray(run._sh, np.float64), "lr": run.lr,
            "steps": int(run.config.steps)}


def train(config: OpposingConfig | None = None, cancel: threading.Event | None = None,
          callback=None, threads: int | None = None, progress=None) -> OpposingResult:
    """Run to the end (and retrain without the detected set when ``config.retrain``).

    ``callback(event)`` may return True to stop early (the partial result is returned);
    a set ``cancel`` event raises :class:`Cancelled` with the partial result. ``threads``
    sets torch's thread count for the run and restores it after (None: leave it alone).
    ``progress(done, total, text, preview)`` (a :class:`~landscape.core.jobs.BackgroundJob`'s)
    is told the updates done out of ``steps`` (twice that with ``retrain``), a line of text and
    the run so far for a live figure: a dict with ``loss`` [t+1] (the full-batch loss at every
    step), ``sharpness_steps``, ``sharpness``, ``lr`` and ``steps``, renewed every
    :data:`PREVIEW_EVERY` updates.
    """
    with torch_threads(threads):
        config = config or OpposingConfig()
        steps = int(config.steps)
        total = 2 * steps if config.retrain else steps
        losses: list[float] = []
        shown: list[dict] = [{}]  # the latest preview (a new dict each time, never changed)

        def on_event(ev):
            losses.append(ev.loss)
            if progress is not None:
                if ev.step % PREVIEW_EVERY == 0 or ev.step == steps:
                    shown[0] = preview(run_box[0], losses)
                progress(ev.step, total, f"training: step {ev.step:,} of {steps:,}", shown[0])
            return callback(ev) if callback is not None else False

        if progress is not None:
            progress(0, total, "loading the data and measuring the sharpness at initialisation")
        run_box = [OpposingRun(config)]
        run = run_to_end(run_box[0], cancel, on_event)
        if run.config.retrain and run.step >= 2:
            tell = None if progress is None else (
                lambda t: progress(steps + t, total, f"retraining without the detected set: step {t:,} of {steps:,}"))
            run.retrain(run.result().detected, cancel=cancel, callback=tell)
        return run.result()
