"""Live training with the trajectory on a loss surface: the backend of the live page.

A :class:`LiveRun` owns a :class:`~landscape.core.train.Trainer` and runs on the one
background job (:class:`landscape.core.jobs.BackgroundJob`):

- the training job steps while playing (``play``/``pause``/``step``), at most
  ``steps_per_second`` when set, and records loss, accuracy and snapshots. Pausing is the
  job's own pause: the loop holds at its next ``cancel.is_set()`` until resumed;
- a surface job evaluates the loss on a fixed plane coarse-to-fine (its partial grid is the
  job's partial value), and is replaced (same directions, wider range) when the trajectory
  leaves the grid.

The plane's directions stay fixed during a run:

- ``"random"``: filter-normalized Gaussian directions at the initial weights, which sit at
  (0, 0). A random plane barely sees the trajectory (its projection is tiny because two
  random directions are nearly orthogonal to any fixed path), which is itself a lesson;
- ``"pca"`` (default): until ``pca_after`` snapshots exist the random plane is shown; then
  the top-2 PCA directions of the snapshots so far are fixed, centred on the latest
  snapshot, and every later snapshot is projected onto that plane with its off-plane
  distance reported.

Nothing here touches a UI: a page polls :meth:`LiveRun.state` on a timer. ``close`` cancels
both jobs (a page calls it on Reset and when the tab closes).
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from landscape.core.data import Dataset
from landscape.core.errors import Cancelled, LandscapeError
from landscape.core.jobs import BackgroundJob
from landscape.core.params import Layout, flat_params
from landscape.core.train import TrainConfig, Trainer
from landscape.surface import PlaneTask, evaluate_grid
from landscape.surface import directions as dirs


@dataclass
class LiveConfig:
    directions: str = "pca"
    pca_after: int = 8  # snapshots before the PCA plane is fixed
    grid: int = 21
    samples: int | None = 400  # evaluation subset for the live surface
    steps_per_second: float | None = 60.0  # None: as fast as the machine goes
    seed: int = 0


@dataclass
class LiveState:
    """What a page draws. Arrays are copies; ``surface_loss`` is ``(ny, nx)`` with NaN
    where not yet computed."""

    status: str  # "ready" | "playing" | "paused" | "finished" | "error" | "closed"
    step: int
    total: int
    steps: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    plane_kind: str | None = None
    explained: list | None = None
    surface_x: np.ndarray | None = None
    surface_y: np.ndarray | None = None
    surface_loss: np.ndarray | None = None
    surface_done: float = 0.0
    surface_version: int = 0
    traj_steps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    traj_coords: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    off_plane: np.ndarray = field(default_factory=lambda: np.zeros(0))
    message: str | None = None
    steps_per_second: float = 0.0


class LiveRun:
    """Training and its live surface, each on a :class:`BackgroundJob` computing with
    ``threads`` torch threads (one: small models on a few cores are fastest that way)."""

    def __init__(self, model: torch.nn.Module, data: Dataset, train_config: TrainConfig,
                 config: LiveConfig | None = None, device=None, threads: int = 1):
        self.config = config or LiveConfig()
        if self.config.directions not in ("pca", "random"):
            raise LandscapeError("live directions must be 'pca' or 'random'")
        self.trainer = Trainer(model, data, train_config, device=device)
        self.device = self.trainer.device
        self.total = train_config.steps
        self.layout = Layout.of(self.trainer.model)
        self.eval_data = self.trainer.data.subset(self.config.samples, self.config.seed)
        self.threads = max(1, int(threads))
        self._lock = threading.Lock()
        self._playing = False
        self._started = False
        self._budget = 0
        self._closed = False
        self._message = None
        self._steps: list[int] = []
        self._loss: list[float] = []
        self._acc: list[float] = []
        self._rate_t0 = time.perf_counter()
        self._rate_n0 = 0
        self._rate = 0.0
        # plane and surface
        self._plane = None  # dict(kind, center, dx, dy, model, explained)
        self._range = None  # (x0, x1, y0, y1)
        self._grid = None  # (xs, ys)
        self._surface_job: BackgroundJob | None = None
        self._surface_version = 0
        self._set_random_plane()
        self.job = BackgroundJob(self._train, label="live-train", threads=self.threads)

    # ------------------------------------------------------------------ controls
    def play(self) -> None:
        with self._lock:
            if self._over():
                return
            self._playing = self._started = True
            self.job.resume()

    def pause(self) -> None:
        with self._lock:
            self._playing = False
            self._budget = 0
            if not self._over():
                self.job.pause()

    def step(self, n: int = 1) -> None:
        with self._lock:
            if self._over():
                return
            self._budget += int(n)
            self._started = True
            self.job.resume()

    def set_speed(self, steps_per_second: float | None) -> None:
        self.config.steps_per_second = steps_per_second

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._playing = False
            surface = self._surface_job
        self.job.cancel()
        if surface is not None:
            surface.cancel()
        self.job.join(timeout=5)
        if surface is not None:
            surface.join(timeout=5)

    @property
    def playing(self) -> bool:
        return self._playing

    def model_copy(self) -> torch.nn.Module:
        """A consistent copy of the model being trained (never mid-update)."""
        with self._lock:
            return copy.deepcopy(self.trainer.model)

    def movie_source(self) -> dict:
        """What a training movie of the run so far needs (consistent copies, never
        mid-update): ``model`` (the latest weights), ``trajectory`` = (steps [T], snapshots
        [T, P]), ``history`` [(step, batch loss, accuracy)], ``data`` and ``loss``."""
        with self._lock:
            tr = self.trainer.trajectory
            steps = np.asarray(tr.steps, dtype=np.int64)
            snaps = tr.params.copy()
            model = copy.deepcopy(self.trainer.model).cpu()
            history = list(zip(self._steps, self._loss, self._acc))
        data = self.trainer.data
        if self.device.type != "cpu":  # the movie's surface is computed on the CPU
            data = data.to(device="cpu")
        return {"model": model, "trajectory": (steps, snaps), "history": history,
                "data": data, "loss": self.trainer.config.loss}

    def _over(self) -> bool:
        return self._closed or self.job.poll().finished

    # ------------------------------------------------------------------ training (the job)
    def _train(self, progress, cancel):
        """The training loop, run by :attr:`job`: it pauses its own job (``cancel`` is the
        job's control) when neither playing nor asked for steps, so ``cancel.is_set()`` holds
        it until :meth:`play` or :meth:`step` resumes it."""
        while not cancel.is_set():
            with self._lock:
                if self.trainer.step >= self.total:
                    self._playing = False
                    break
                if not self._playing:
                    if self._budget <= 0:
                        cancel.pause()  # under the lock: play() cannot slip in between
                        continue
                    self._budget -= 1
                t0 = time.perf_counter()
                ev = self.trainer.step_once()  # under the lock: state() never sees half a step
            if ev.snapshot:
                self._on_snapshot()
            with self._lock:
                self._steps.append(ev.step)
                self._loss.append(ev.loss)
                self._acc.append(ev.accuracy)
                dt = time.perf_counter() - self._rate_t0
                if dt > 0.5:
                    self._rate = (len(self._steps) - self._rate_n0) / dt
                    self._rate_n0, self._rate_t0 = len(self._steps), time.perf_counter()
            progress(ev.step, self.total)
            sps = self.config.steps_per_second
            if sps and self._playing:
                wait = 1.0 / sps - (time.perf_counter() - t0)
                if wait > 0:
                    cancel.wait(wait)
        if cancel.is_set() and self.trainer.step < self.total:
            raise Cancelled(f"stopped at step {self.trainer.step}", partial=self.trainer.step)
        return self.trainer.step

    def _on_snapshot(self) -> None:
        if (self.config.directions == "pca" and self._plane["kind"] == "random"
                and len(self.trainer.trajectory) >= self.config.pca_after):
            self._set_pca_plane()
            return
        coords = self._coords()
        if coords is not None and self._range is not None:
            x0, x1, y0, y1 = self._range
            cx, cy = coords[-1]
            if not (x0 <= cx <= x1 and y0 <= cy <= y1):
                self._set_plane(self._plane, self._range_for(coords, extend=True))

    # ------------------------------------------------------------------ planes
    def _set_random_plane(self) -> None:
        w = flat_params(self.trainer.model)
        dx, dy = dirs.random_plane(w, self.layout, self.config.seed)
        self._set_plane({"kind": "random", "center": w, "dx": dx, "dy": dy, "explained": None},
                        (-1.0, 1.0, -1.0, 1.0))

    def _set_pca_plane(self) -> None:
        tr = self.trainer.trajectory
        plane = dirs.pca_directions(tr.params, self.layout, tr.steps)
        w = flat_params(self.trainer.model)
        center = tr.snapshots[-1].to(dtype=w.dtype, device=w.device)
        dtype = center.dtype
        self._set_plane({"kind": "pca", "center": center,
                         "dx": plane.dx.to(dtype=dtype, device=w.device),
                         "dy": plane.dy.to(dtype=dtype, device=w.device),
                         "explained": plane.explained.tolist()},
                        self._range_for(plane.coords, extend=True))

    def _range_for(self, coords: np.ndarray, extend: bool) -> tuple:
        lo, hi = coords.min(0), coords.max(0)
        span = np.maximum(hi - lo, 1e-3)
        lo, hi = lo - 0.25 * span, hi + 0.25 * span
        if extend:  # room ahead: the run goes on past the latest point (at the origin)
            travel = coords[-1] - coords[0]
            for k in range(2):
                if travel[k] < 0:
                    lo[k] -= 0.6 * span[k]
                else:
                    hi[k] += 0.6 * span[k]
        side = max(hi[0] - lo[0], hi[1] - lo[1]) / 2  # square aspect keeps geometry honest
        mid = (lo + hi) / 2
        return (float(mid[0] - side), float(mid[0] + side), float(mid[1] - side), float(mid[1] + side))

    def _set_plane(self, plane: dict, rng: tuple) -> None:
        """Fix the plane and its range and start a surface job on it (replacing the last).
        Called from the constructor or the training job only: the model is not changing."""
        plane = dict(plane)
        plane["model"] = copy.deepcopy(self.trainer.model).eval()
        old = self._surface_job
        if old is not None:
            old.cancel()
            old.join(timeout=10)
        n = self.config.grid
        xs, ys = np.linspace(rng[0], rng[1], n), np.linspace(rng[2], rng[3], n)
        d = self.eval_data
        task = PlaneTask(plane["model"], plane["center"], plane["dx"], plane["dy"], d.X, d.y,
                         self.trainer.config.loss)
        with self._lock:
            if self._closed:  # close() ran meanwhile: start nothing new
                return
            self._plane, self._range, self._grid = plane, rng, (xs, ys)
            self._surface_version += 1
            self._surface_job = BackgroundJob(
                evaluate_grid, task, xs, ys, workers=1, label="live-surface", threads=self.threads,
                device=None if self.device.type == "cpu" else self.device)

    def _coords(self):
        tr = self.trainer.trajectory
        p = self._plane
        if p is None or len(tr) == 0:
            return None
        coords, _ = dirs.project(tr.params, p["center"].cpu(), p["dx"].cpu(), p["dy"].cpu())
        return coords

    # ------------------------------------------------------------------ polling
    def _status(self, job) -> str:
        if self._closed:
            return "closed"
        if job.state == "error":
            return "error"
        if job.state == "done":
            return "finished"
        if job.state == "cancelled":
            return "closed"
        if self._playing:
            return "playing"
        return "paused" if self._started else "ready"

    def _surface(self):
        """(xs, ys, loss, fraction done, message) of the current surface job."""
        xs, ys = self._grid
        s = self._surface_job.poll()
        n = self.config.grid
        loss = np.full((n, n), np.nan)
        if s.state == "done":
            loss = np.asarray(s.result[0], dtype=float).copy()
        elif s.partial:
            loss = np.asarray(s.partial[0], dtype=float).copy()
        done = 1.0 if s.state == "done" else s.fraction
        return xs, ys, loss, done, (f"surface failed: {s.error}" if s.state == "error" else None)

    def state(self) -> LiveState:
        with self._lock:
            tr = self.trainer.trajectory
            steps, snaps = list(tr.steps), list(tr.snapshots)
            p = self._plane
            job = self.job.poll()
            status = self._status(job)
            sx, sy, sl, done, surface_msg = self._surface()
            st = LiveState(
                status=status, step=self.trainer.step, total=self.total,
                steps=np.asarray(self._steps), loss=np.asarray(self._loss),
                accuracy=np.asarray(self._acc), plane_kind=p["kind"] if p else None,
                explained=p.get("explained") if p else None, surface_x=sx, surface_y=sy,
                surface_loss=sl, surface_done=done, surface_version=self._surface_version,
                message=job.error or surface_msg or self._message,
                steps_per_second=self._rate if status == "playing" else 0.0)
        if p is not None and snaps:
            coords, off = dirs.project(torch.stack(snaps).numpy(), p["center"].float().cpu(),
                                       p["dx"].float().cpu(), p["dy"].float().cpu())
            st.traj_steps, st.traj_coords, st.off_plane = np.asarray(steps), coords, off
        return st
