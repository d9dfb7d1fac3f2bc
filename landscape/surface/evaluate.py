"""The one grid evaluation: a task, a plan and an executor in; loss, accuracy and info out.

``evaluate(task, plan, executor)`` returns ``(loss, acc, info)``: arrays shaped
``plan.shape`` (``(ny, nx)`` indexed ``[j, i]`` for the point ``(x_i, y_j)``, or ``(nx,)``
for a 1-D slice) and ``info`` with the ``method`` (the evaluator: ``mlp``, ``module`` or
``vmap``), the ``device``, the ``workers`` and ``seconds`` (plus what the executor adds).

Every executor (:mod:`landscape.surface.executors`) gets the same things from here:

- the options are checked once, against where the executor will evaluate
  (:func:`check_options`), so a request is refused or accepted identically whichever
  executor is asked; in particular recomputing BatchNorm statistics at each point needs
  the per-point CPU evaluators (a batched or GPU executor keeps the statistics);
- a :class:`LiveGrid` to write results into by position in the coarse-to-fine order; it
  calls ``progress(done, total, loss, acc)`` with the live arrays (NaN where pending) and
  raises :class:`~landscape.core.errors.Cancelled` with copies of the partial arrays once
  ``cancel`` is set (checked between chunks, and once more at the end).

The caller's model is never changed: evaluators work on private copies.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from landscape.core.errors import Cancelled, LandscapeError
from landscape.surface.evaluators import PlaneTask
from landscape.surface.plan import GridPlan, check_bn

BN_ON_CPU_ONLY = ("recomputing BatchNorm statistics at each point runs on the CPU path; "
                  "choose device cpu (on Ray: gpus_per_task=0) or keep the statistics")


def check_options(task: PlaneTask, device, batched: bool = False) -> None:
    """The one rule for options that depend on where the points are evaluated: ``device``
    (a torch device or its name) and whether many points go through one batched call.
    Recomputing BatchNorm statistics (``bn="recompute"``) needs the per-point evaluator on
    a CPU; anywhere else it is refused with one message, for every executor."""
    check_bn(task.bn)
    if task.bn == "recompute" and (batched or torch.device(device).type != "cpu"):
        raise LandscapeError(BN_ON_CPU_ONLY)


class LiveGrid:
    """The results so far: ``loss``/``acc`` flat [n] by grid index (NaN where pending),
    ``filled`` [n] by position; progress and cancel (see the module docstring)."""

    def __init__(self, plan: GridPlan, progress=None, cancel: threading.Event | None = None):
        self.plan = plan
        self.loss = np.full(plan.n, np.nan)
        self.acc = np.full(plan.n, np.nan)
        self.filled = np.zeros(plan.n, bool)
        self.done = 0
        self.progress, self.cancel = progress, cancel

    def put(self, positions, loss, acc) -> None:
        """Results for these positions (indices into ``plan.order``)."""
        positions = np.asarray(positions, dtype=np.int64)
        idx = self.plan.order[positions]
        self.loss[idx], self.acc[idx] = loss, acc
        self.filled[positions] = True
        self.done += len(positions)

    def put_one(self, position: int, loss: float, acc: float) -> None:
        k = self.plan.order[position]
        self.loss[k], self.acc[k] = loss, acc
        self.filled[position] = True
        self.done += 1

    def todo(self) -> np.ndarray:
        """The positions still pending, in order."""
        return np.flatnonzero(~self.filled)

    def report(self) -> None:
        if self.progress is not None:
            shape = self.plan.shape
            self.progress(self.done, self.plan.n, self.loss.reshape(shape), self.acc.reshape(shape))

    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def partial(self) -> tuple[np.ndarray, np.ndarray]:
        return self.loss.reshape(self.plan.shape).copy(), self.acc.reshape(self.plan.shape).copy()

    def check_cancel(self) -> None:
        if self.cancelled():
            raise Cancelled("surface cancelled", partial=self.partial())


def evaluate(task: PlaneTask, plan: GridPlan, executor=None, *, progress=None,
             cancel: threading.Event | None = None):
    """Loss and accuracy on ``plan``'s grid with ``executor`` (default: this thread, or
    worker processes when they pay off); returns ``(loss, acc, info)``."""
    executor = executor or default_executor()
    t0 = time.perf_counter()
    device, batched = executor.target()
    check_options(task, device, batched)
    grid = LiveGrid(plan, progress, cancel)
    info = executor.run(task, plan, grid)
    grid.check_cancel()
    info["seconds"] = time.perf_counter() - t0
    shape = plan.shape
    return grid.loss.reshape(shape), grid.acc.reshape(shape), info


def default_executor(workers: int | None = None, device=None):
    """Batched ``vmap`` on a non-CPU ``device``; else worker processes when they pay off
    (an explicit ``workers`` count is obeyed, 1 keeps to this thread)."""
    if device is not None and torch.device(device).type != "cpu":
        from landscape.surface.executors.vmap import VmapExecutor

        return VmapExecutor(device)
    from landscape.surface.executors.pool import PoolExecutor

    return PoolExecutor(workers)


def evaluate_grid(task: PlaneTask, xs: np.ndarray, ys: np.ndarray | None, *, workers: int | None = None,
                  progress=None, cancel: threading.Event | None = None, device=None):
    """:func:`evaluate` on the grid ``xs`` x ``ys`` with :func:`default_executor` (the
    signature every ``grid_fn`` of :func:`landscape.surface.compute.surface` shares)."""
    return evaluate(task, GridPlan.of(xs, ys), default_executor(workers, device),
                    progress=progress, cancel=cancel)
