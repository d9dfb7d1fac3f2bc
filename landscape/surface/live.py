"""Live training with the trajectory on a loss surface: the backend of the live page.

A :class:`LiveRun` owns a :class:`~landscape.core.train.Trainer` and two daemon threads:

- the training thread steps while playing (``play``/``pause``/``step``), at most
  ``steps_per_second`` when set, and records loss, accuracy and snapshots;
- the surface thread evaluates the loss on a fixed plane coarse-to-fine, publishing each
  partial grid, and recomputes it (same directions, wider range) when the trajectory
  leaves the grid.

The plane's directions stay fixed during a run:

- ``"random"``: filter-normalized Gaussian directions at the initial weights, which sit at
  (0, 0). A random plane barely sees the trajectory (its projection is tiny because two
  random directions are nearly orthogonal to any fixed path), which is itself a lesson;
- ``"pca"`` (default): until ``pca_after`` snapshots exist the random plane is shown; then
  the top-2 PCA directions of the snapshots so far are fixed, centred on the latest
  snapshot, and every later snapshot is projected onto that plane with its off-plane
  distance reported.

Nothing here touches a UI: a page polls :meth:`LiveRun.state` on a timer. ``close`` stops
both threads (a page calls it on Reset, when the user leaves, and when the tab closes).
"""

from __future__ import annotations

import atexit
import copy
import threading
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from landscape.core.data import Dataset
from landscape.core.errors import Cancelled, LandscapeError
from landscape.core.params import Layout, flat_params
from landscape.core.train import TrainConfig, Trainer
from landscape.surface import directions as dirs
from landscape.surface.compute import evaluate_grid
from landscape.surface.evaluators import PlaneTask


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


_live_runs: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for run in list(_live_runs):
        run.close()


class LiveRun:
    def __init__(self, model: torch.nn.Module, data: Dataset, train_config: TrainConfig,
                 config: LiveConfig | None = None, device=None):
        self.config = config or LiveConfig()
        if self.config.directions not in ("pca", "random"):
            raise LandscapeError("live directions must be 'pca' or 'random'")
        self.trainer = Trainer(model, data, train_config, device=device)
        self.device = self.trainer.device
        self.total = train_config.steps
        self.layout = Layout.of(self.trainer.model)
        self.eval_data = self.trainer.data.subset(self.config.samples, self.config.seed)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._playing = False
        self._budget = 0
        self._closed = False
        self._status = "ready"
        self._message = None
        self._steps: list[int] = []
        self._loss: list[float] = []
        self._acc: list[float] = []
        self._rate_t0 = time.perf_counter()
        self._rate = 0.0
        # plane and surface
        self._plane = None  # dict(kind, center, dx, dy, model, explained)
        self._range = None  # (x0, x1, y0, y1)
        self._surface = None  # (x, y, loss)
        self._surface_done = 0.0
        self._surface_version = 0
        self._surface_cancel = threading.Event()
        self._surface_thread = None
        self._set_random_plane()
        self._train_thread = threading.Thread(target=self._train_loop, daemon=True,
                                              name="landscape-live-train")
        _live_runs.add(self)
        self._train_thread.start()

    # ------------------------------------------------------------------ controls
    def play(self) -> None:
        with self._lock:
            if self._status in ("finished", "error", "closed"):
                return
            self._playing = True
            self._status = "playing"
        self._wake.set()

    def pause(self) -> None:
        with self._lock:
            self._playing = False
            self._budget = 0
            if self._status == "playing":
                self._status = "paused"

    def step(self, n: int = 1) -> None:
        with self._lock:
            if self._status in ("finished", "error", "closed"):
                return
            self._budget += int(n)
        self._wake.set()

    def set_speed(self, steps_per_second: float | None) -> None:
        self.config.steps_per_second = steps_per_second

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._playing = False
            self._status = "closed"
            self._surface_cancel.set()
        self._wake.set()
        self._train_thread.join(timeout=5)
        if self._surface_thread is not None:
            self._surface_thread.join(timeout=5)

    @property
    def playing(self) -> bool:
        return self._playing

    def model_copy(self) -> torch.nn.Module:
        """A consistent copy of the model being trained (never mid-update)."""
        with self._lock:
            return copy.deepcopy(self.trainer.model)

    # ------------------------------------------------------------------ training
    def _train_loop(self) -> None:
        torch.set_num_threads(1)
        while True:
            with self._lock:
                if self._closed:
                    return
                go = (self._playing or self._budget > 0) and self.trainer.step < self.total
                if go and not self._playing:
                    self._budget -= 1
            if not go:
                with self._lock:
                    if self.trainer.step >= self.total and self._status not in ("error", "closed"):
                        self._status = "finished"
                        self._playing = False
                self._wake.wait(0.2)
                self._wake.clear()
                continue
            t0 = time.perf_counter()
            try:
                with self._lock:  # state() never sees a half-updated trajectory
                    ev = self.trainer.step_once()
                if ev.snapshot:
                    self._on_snapshot()
            except Exception as e:  # report any failure on the page, never die silently
                msg = str(e) if isinstance(e, LandscapeError) else f"{type(e).__name__}: {e}"
                with self._lock:
                    self._status, self._message, self._playing = "error", msg, False
                continue
            with self._lock:
                self._steps.append(ev.step)
                self._loss.append(ev.loss)
                self._acc.append(ev.accuracy)
                dt = time.perf_counter() - self._rate_t0
                if dt > 0.5:
                    self._rate = (len(self._steps) - getattr(self, "_rate_n0", 0)) / dt
                    self._rate_n0, self._rate_t0 = len(self._steps), time.perf_counter()
            sps = self.config.steps_per_second
            if sps and self._playing:
                wait = 1.0 / sps - (time.perf_counter() - t0)
                if wait > 0:
                    time.sleep(wait)

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
                self._fit_range(coords, grow=True)

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
        self._plane_pending = {"kind": "pca", "center": center,
                               "dx": plane.dx.to(dtype=dtype, device=w.device),
                               "dy": plane.dy.to(dtype=dtype, device=w.device),
                               "explained": plane.explained.tolist()}
        coords = plane.coords
        self._set_plane(self._plane_pending, self._range_for(coords, extend=True))

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

    def _fit_range(self, coords, grow: bool) -> None:
        self._set_plane(self._plane, self._range_for(coords, extend=True))

    def _set_plane(self, plane: dict, rng: tuple) -> None:
        # Called from the constructor or the training thread only: the model is not changing.
        plane = dict(plane)
        plane["model"] = copy.deepcopy(self.trainer.model).eval()
        self._surface_cancel.set()
        if self._surface_thread is not None:
            self._surface_thread.join(timeout=10)
        with self._lock:
            if self._closed:  # close() ran meanwhile: start nothing new
                return
            self._surface_cancel = threading.Event()
            self._plane, self._range = plane, rng
            n = self.config.grid
            xs, ys = np.linspace(rng[0], rng[1], n), np.linspace(rng[2], rng[3], n)
            self._surface = (xs, ys, np.full((n, n), np.nan))
            self._surface_done = 0.0
            self._surface_version += 1
        self._surface_thread = threading.Thread(
            target=self._surface_loop, args=(plane, xs, ys, self._surface_cancel,
                                             self._surface_version),
            daemon=True, name="landscape-live-surface")
        self._surface_thread.start()

    def _surface_loop(self, plane, xs, ys, cancel, version) -> None:
        torch.set_num_threads(1)
        d = self.eval_data
        task = PlaneTask(plane["model"], plane["center"], plane["dx"], plane["dy"], d.X, d.y,
                         self.trainer.config.loss)

        def progress(done, total, loss, acc):
            with self._lock:
                if version == self._surface_version:
                    self._surface = (xs, ys, loss.copy())
                    self._surface_done = done / total

        try:
            evaluate_grid(task, xs, ys, workers=1, progress=progress, cancel=cancel,
                          device=None if self.device.type == "cpu" else self.device)
        except Cancelled:
            pass
        except Exception as e:  # report, keep training
            with self._lock:
                self._message = f"surface failed: {e}"

    def _coords(self):
        tr = self.trainer.trajectory
        p = self._plane
        if p is None or len(tr) == 0:
            return None
        coords, _ = dirs.project(tr.params, p["center"].cpu(), p["dx"].cpu(), p["dy"].cpu())
        return coords

    # ------------------------------------------------------------------ polling
    def state(self) -> LiveState:
        with self._lock:
            tr = self.trainer.trajectory
            steps, snaps = list(tr.steps), list(tr.snapshots)
            p = self._plane
            sx, sy, sl = self._surface if self._surface is not None else (None, None, None)
            st = LiveState(
                status=self._status, step=self.trainer.step, total=self.total,
                steps=np.asarray(self._steps), loss=np.asarray(self._loss),
                accuracy=np.asarray(self._acc), plane_kind=p["kind"] if p else None,
                explained=p.get("explained") if p else None, surface_x=sx, surface_y=sy,
                surface_loss=None if sl is None else sl.copy(), surface_done=self._surface_done,
                surface_version=self._surface_version, message=self._message,
                steps_per_second=self._rate if self._status == "playing" else 0.0)
        if p is not None and snaps:
            coords, off = dirs.project(torch.stack(snaps).numpy(), p["center"].float().cpu(),
                                       p["dx"].float().cpu(), p["dy"].float().cpu())
            st.traj_steps, st.traj_coords, st.off_plane = np.asarray(steps), coords, off
        return st
