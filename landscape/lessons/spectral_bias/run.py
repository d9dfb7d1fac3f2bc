"""Training a coordinate MLP on a sum of sines, recording its spectrum as it learns.

Full batch over the ``n`` grid points, Adam, loss ``0.5 * mean (f(x) - y)^2``. Steps are
numbered by updates done: step ``s`` is the network after ``s`` Adam updates; ``loss[s]`` is
the full-batch loss there. Every ``record_every`` steps (and at step 0 and the last step) the
run records the network's outputs on the grid, the normalized amplitude and relative error
per frequency (:mod:`~landscape.lessons.spectral_bias.measures`) and, for ReLU networks, the
activation-pattern ids on ``region_points`` inputs over ``[-1, 1)``.

Training is a generator of events (:meth:`SpectralBiasRun.run`), so a UI can draw live and
stop; :func:`spectral_job` runs it as the one background job (poll, pause, resume, cancel,
partial results). Runs are deterministic for a seed (same device, same torch thread count);
this module never changes torch's thread count unless a caller passes ``threads``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch

from landscape.core.device import DTYPES
from landscape.core.errors import LandscapeError
from landscape.core.jobs import BackgroundJob
from landscape.lessons.kit import StepEvent, lesson_job, run_to_end, torch_threads, update_times
from landscape.lessons.spectral_bias import measures
from landscape.lessons.spectral_bias.config import SpectralConfig
from landscape.lessons.spectral_bias.model import build_model
from landscape.lessons.spectral_bias.result import SpectralResult


@dataclass
class SpectralEvent(StepEvent):
    """After one Adam update: ``step`` updates done, ``loss`` the full-batch loss before it
    (at step ``step - 1``). When ``recorded``, the spectrum at ``step``: ``amplitude`` and
    ``rel_error`` [K], ``n_regions`` (None when regions are off)."""

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
        self.x, self.y = measures.target(cfg)
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
        amp = measures.normalized_amplitude(f, self.frequencies, self.amplitudes)
        err = measures.relative_error(f, self.y, self.frequencies)
        self._rec_steps.append(self.step)
        self._rec_amp.append(amp)
        self._rec_err.append(err)
        self._rec_out.append(f.astype(np.float32))
        nreg = None
        if self.regions:
            ids = measures.pattern_ids(self.model.patterns(self._RX).cpu().numpy())
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
        for t0 in update_times(self, steps, cancel):
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
        half = measures.half_amplitude_steps(steps, amp)
        rho = measures.spearman(self.frequencies, half)
        meta = {"recipe": "spectral-bias", "config": cfg.to_dict(),
                "amplitudes_resolved": self.amplitudes.tolist(),
                "fft_bins": measures.fft_bins(self.frequencies, cfg.n).tolist(),
                "frequency_unit": "cycles per unit x (the [-1, 1) window holds 2k cycles)",
                "loss": "0.5 * mean squared error", "optimizer": "adam, full batch",
                "n_params": sum(p.numel() for p in self.model.parameters()),
                "device": str(self.device), "torch_threads": torch.get_num_threads(),
                "seconds": self.seconds, "steps_done": self.step, "complete": self.done,
                "spearman": rho, "half_amplitude_step": half, "threshold": measures.HALF}
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


def spectral_job(config: SpectralConfig, snapshot_every: int = 10, threads: int | None = None
                 ) -> BackgroundJob:
    """A run as the one background job: ``job.poll()`` gives the step done out of
    ``config.steps`` and, as its partial value, the result so far, refreshed every
    ``snapshot_every`` records; a cancelled job keeps the partial result as its result.
    ``threads`` is the job's torch thread count (None: its creator's)."""
    config.validate()
    every = max(1, int(snapshot_every)) * config.record_every

    def publish(ev: SpectralEvent) -> bool:
        return ev.recorded and (ev.step % every == 0 or ev.step == config.steps)

    return lesson_job(lambda: SpectralBiasRun(config), config.steps, publish=publish,
                      label="spectral-bias", threads=threads)
