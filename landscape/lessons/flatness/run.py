"""The flatness comparison as a generator of events: train, then measure every minimum.

:class:`FlatnessRun` trains the runs of :func:`runs_of` one after the other from the same
initial weights (minibatches drawn without replacement, reshuffled every epoch, the same
order for SGD and SAM at one batch size), then measures: the top Hessian eigenvalue of the
full-data loss at each minimum (Lanczos on the one Hessian operator, float64), the 1-D
interpolations, the 1-D slices and the 2-D surfaces (the one surface evaluation, in this
thread). Progress is counted in units: one per update of each run, then one per measured
item; ``result()`` is valid at any time. :func:`train` runs it to the end,
:func:`flatness_job` as the one background job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from landscape.core import data as data_mod
from landscape.core import losses, models
from landscape.core.errors import LandscapeError
from landscape.core.jobs import BackgroundJob
from landscape.core.params import Layout, flat_params
from landscape.lessons.flatness import sam
from landscape.lessons.flatness.config import FlatnessConfig
from landscape.lessons.flatness.result import FlatnessResult
from landscape.lessons.kit import StepEvent, lesson_job, run_to_end, torch_threads

LOSS = "cross_entropy"


def runs_of(cfg: FlatnessConfig, n: int) -> list[tuple[str, int, float]]:
    """``(name, batch size, rho)`` of each run; ``n`` examples (the full batch)."""
    large = n if cfg.large_batch is None else min(int(cfg.large_batch), n)
    out = [("small-batch SGD", int(cfg.small_batch), 0.0), ("large-batch SGD", large, 0.0)]
    if cfg.sam:
        out += [("small-batch SAM", int(cfg.small_batch), float(cfg.rho)),
                ("large-batch SAM", large, float(cfg.rho))]
    return out


def unit_count(cfg: FlatnessConfig) -> int:
    """Units of work: one per update of each run, one per measured item (eigenvalues,
    interpolations, 1-D slices, 2-D surfaces)."""
    m = 4 if cfg.sam else 2
    lines = (1 + int(cfg.sam) + m) if cfg.line_points else 0
    return m * int(cfg.steps) + m + lines + (m if cfg.grid else 0)


@dataclass
class FlatnessEvent(StepEvent):
    """After one unit of work: ``step`` units done of ``total``; ``phase`` ("train" or
    "measure"), ``run`` the run's name, ``loss`` its batch loss (train) or NaN."""

    total: int = 0
    phase: str = "train"
    run: str = ""


class FlatnessRun:
    """A comparison in progress: ``run()`` yields events; ``result()`` at any point."""

    def __init__(self, config: FlatnessConfig | None = None):
        cfg = config or FlatnessConfig()
        cfg.validate()
        self.config = cfg
        self.data = data_mod.load({"name": "digits"})
        self.spec = {"name": "mlp", "args": {"in_dim": 64, "out_dim": 10, "widths": list(cfg.widths),
                                             "activation": cfg.activation}}
        self.runs = runs_of(cfg, self.data.n)
        self.total = unit_count(cfg)
        self.step = 0
        self.seconds = 0.0
        self.models: list[torch.nn.Module] = []
        self.train_loss: list[list[float]] = []
        self.eigs: list[float] = []
        self.finals: list[tuple[float, float]] = []
        self.slices: list[np.ndarray] = []
        self.interps: list[tuple[str, np.ndarray]] = []
        self.surfaces: list[np.ndarray] = []

    @property
    def done(self) -> bool:
        return self.step >= self.total

    # --- training
    def _train(self, name: str, batch: int, rho: float, cancel) -> Iterator[FlatnessEvent]:
        cfg = self.config
        model = models.build(self.spec, seed=cfg.seed)  # the same initial weights for every run
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
        gen = torch.Generator().manual_seed(cfg.seed)
        X, y, n = self.data.X.float(), self.data.y, self.data.n
        order, pos, hist = None, n, []
        self.train_loss.append(hist)
        for _ in range(cfg.steps):
            if cancel is not None and cancel.is_set():
                return
            t0 = time.perf_counter()
            if pos + batch > n:
                order, pos = torch.randperm(n, generator=gen), 0
            idx = order[pos:pos + batch]
            pos += batch
            lv = sam.update(model, opt, X[idx], y[idx], LOSS, rho)
            if not np.isfinite(lv):
                raise LandscapeError(f"{name} diverged at step {len(hist)} (loss {lv}); lower the "
                                     "learning rate")
            hist.append(lv)
            self.step += 1
            self.seconds += time.perf_counter() - t0
            yield FlatnessEvent(self.step, lv, self.seconds, self.total, "train", name)
        model.eval()
        with torch.no_grad():
            out = model(X)
            self.finals.append((losses.loss(out, y, LOSS).item(), losses.accuracy(out, y)))
        self.models.append(model)

    # --- measuring
    def _measure(self, name: str, fn) -> FlatnessEvent:
        t0 = time.perf_counter()
        fn()
        self.step += 1
        self.seconds += time.perf_counter() - t0
        return FlatnessEvent(self.step, float("nan"), self.seconds, self.total, "measure", name)

    def _eig(self, model) -> None:
        from landscape.hessian import HessianOperator, top_eigenpairs

        op = HessianOperator(model, self.data.X, self.data.y, LOSS)
        self.eigs.append(float(top_eigenpairs(op, k=1, seed=self.config.seed).eigenvalues[0]))

    def _line(self, model, dx, xrange, into: list, label: str | None = None) -> None:
        from landscape.surface.compute import surface
        from landscape.surface.plan import SurfaceConfig

        cfg = SurfaceConfig(grid=(self.config.line_points,), xrange=xrange, workers=1, loss=LOSS)
        loss = np.asarray(surface(model, self.data, dx, None, cfg).loss, float)
        into.append(loss if label is None else (label, loss))

    def _plane(self, model) -> None:
        from landscape.surface import directions as dirs
        from landscape.surface.compute import surface
        from landscape.surface.plan import SurfaceConfig

        s, g = float(self.config.span), int(self.config.grid)
        w = flat_params(model)
        dx, dy = dirs.random_plane(w, Layout.of(model), self.config.direction_seed)
        cfg = SurfaceConfig(grid=(g, g), xrange=(-s, s), workers=1, loss=LOSS)
        self.surfaces.append(np.asarray(surface(model, self.data, dx, dy, cfg).loss, float))

    def _measurements(self):
        """``(label, thunk)`` for every measurement, in order."""
        from landscape.surface import directions as dirs

        cfg, names = self.config, [r[0] for r in self.runs]
        items = [(f"top eigenvalue: {n}", lambda m=m: self._eig(m)) for n, m in zip(names, self.models)]
        if cfg.line_points:
            def interp(a, b, label):
                d = dirs.interpolation_direction(flat_params(a), flat_params(b))
                return lambda: self._line(a, d, (-0.5, 1.5), self.interps, label)

            items.append(("interpolation small -> large batch",
                          interp(self.models[0], self.models[1], "small -> large batch (SGD)")))
            if cfg.sam:
                items.append(("interpolation SGD -> SAM",
                              interp(self.models[1], self.models[3], "SGD -> SAM (large batch)")))
            for n, m in zip(names, self.models):
                d = dirs.random_direction(flat_params(m), Layout.of(m), cfg.direction_seed)
                s = float(cfg.span)
                items.append((f"1-D slice: {n}", lambda m=m, d=d, s=s: self._line(m, d, (-s, s), self.slices)))
        if cfg.grid:
            items += [(f"2-D surface: {n}", lambda m=m: self._plane(m)) for n, m in zip(names, self.models)]
        return items

    def run(self, cancel: threading.Event | None = None) -> Iterator[FlatnessEvent]:
        """Yield one event per unit of work until done (or ``cancel`` is set)."""
        for name, batch, rho in self.runs[len(self.models):]:
            yield from self._train(name, batch, rho, cancel)
            if len(self.models) < len(self.train_loss):  # cancelled inside the run
                return
        todo = self._measurements()
        done = self.step - len(self.runs) * self.config.steps
        for label, fn in todo[done:]:
            if cancel is not None and cancel.is_set():
                return
            yield self._measure(label, fn)

    def result(self) -> FlatnessResult:
        """What has been measured so far."""
        cfg, M = self.config, len(self.runs)
        L, G = int(cfg.line_points), int(cfg.grid)
        s = float(cfg.span)
        S = max((len(h) for h in self.train_loss), default=0)
        tl = np.full((len(self.train_loss), S), np.nan)
        for i, h in enumerate(self.train_loss):
            tl[i, :len(h)] = h
        fin = np.asarray(self.finals, float).reshape(-1, 2)
        meta = {"recipe": "flatness", "config": cfg.to_dict(), "loss": "cross-entropy (nats)",
                "data": "digits, 1,797 examples, pixels / 16", "model": self.spec,
                "n_params": Layout.of(self.models[0]).n_params if self.models else None,
                "seconds": self.seconds, "units_done": self.step, "units_total": self.total,
                "complete": self.done, "torch_threads": torch.get_num_threads(),
                "directions": "filter-normalized random (Li et al. 2018), biases zero",
                "interp_range": [-0.5, 1.5], "span": s}
        return FlatnessResult(
            names=np.array([r[0] for r in self.runs], dtype=str),
            batch=np.array([r[1] for r in self.runs], np.int64),
            sam=np.array([int(r[2] > 0) for r in self.runs], np.int64),
            top_eig=np.asarray(self.eigs, float), final_loss=fin[:, 0].copy(), final_acc=fin[:, 1].copy(),
            train_loss=tl, slice_x=np.linspace(-s, s, L) if L else np.zeros(0),
            slices=np.asarray(self.slices, float).reshape(len(self.slices), L),
            interp_t=np.linspace(-0.5, 1.5, L) if L else np.zeros(0),
            interp=np.asarray([v for _, v in self.interps], float).reshape(len(self.interps), L),
            interp_names=np.array([k for k, _ in self.interps], dtype=str),
            surf_x=np.linspace(-s, s, G) if G else np.zeros(0),
            surfaces=np.asarray(self.surfaces, float).reshape(len(self.surfaces), G, G),
            meta=meta | {"runs": M})


def train(config: FlatnessConfig | None = None, cancel: threading.Event | None = None,
          callback=None, threads: int | None = None) -> FlatnessResult:
    """Run to the end and return the result (``callback(event)`` may return True to stop;
    a set ``cancel`` raises :class:`Cancelled` with the partial result). ``threads`` sets
    torch's thread count for the run and restores it after (None: leave it alone)."""
    with torch_threads(threads):
        return run_to_end(FlatnessRun(config), cancel, callback).result()


def flatness_job(config: FlatnessConfig, threads: int | None = None) -> BackgroundJob:
    """The comparison as the one background job; progress in units of work, the partial
    result published after each measurement and every 100 updates."""
    config.validate()
    total = unit_count(config)

    def publish(ev: FlatnessEvent) -> bool:
        return ev.phase == "measure" or ev.step % 100 == 0

    return lesson_job(lambda: FlatnessRun(config), total, publish=publish, label="flatness",
                      threads=threads)
