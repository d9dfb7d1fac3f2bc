"""Grid points as Ray tasks: chunks of the coarse-to-fine order, resumable from a checkpoint.

What runs where:

- **driver** (this process): the plan (the coarse-to-fine positions cut into chunks of
  ``chunk_size``, by default about eight per worker slot, 16 to 512 points), the
  checkpoint and the results, written into the grid as chunks arrive;
- **object store**: the task (model, plane, data), put ONCE with ``ray.put`` from CPU
  memory and fetched once per worker process (workers keep the built evaluator between
  tasks, keyed by :func:`task_key`);
- **workers**: one Ray task per chunk, one CPU and one torch thread each (or one GPU
  where the cluster has GPUs), evaluating with exactly the code of the local path
  (:class:`landscape.surface.evaluators.ChunkEvaluator`: the per-point evaluator on a CPU,
  batched ``vmap`` on a GPU), so the numbers are the local numbers.

Where the points run is known before anything is submitted (:meth:`RayExecutor.target`),
so the options are checked against it exactly as for the local executors (recomputing
BatchNorm statistics on GPU workers is refused, as on a local GPU).

Checkpoint: with ``checkpoint_path`` every finished chunk is written under
``<checkpoint_path>/<task_key>/`` (``manifest.json``, one ``part-*.npz`` per chunk with its
positions, loss and acc, each written atomically); a rerun on the same task and grid loads
those chunks instead of recomputing them, and the directory is removed after a complete
run unless ``keep_checkpoint``. Session, retries and cancel: :mod:`landscape.core.ray`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from landscape.core import ray as cluster
from landscape.core.errors import LandscapeError
from landscape.surface.evaluators import ChunkEvaluator, PlaneTask, task_to
from landscape.surface.plan import GridPlan, auto_chunk

CHECKPOINT_VERSION = 1


def task_key(task: PlaneTask, xs, ys=None) -> str:
    """A hash of everything that determines the grid's values: the model (architecture,
    parameters, buffers, modes), the plane, the data, the options and the coordinates."""
    h = hashlib.sha256(f"landscape-surface-v{CHECKPOINT_VERSION}".encode())
    cluster.hash_model(h, task.model)
    for t in (task.w, task.dx, task.dy, task.X, task.y, task.bn_data):
        cluster.hash_tensor(h, t)
    h.update(f"{task.loss}|{task.bn}|{task.method}".encode())
    h.update(np.asarray(xs, np.float64).tobytes())
    h.update(b"1d" if ys is None else np.asarray(ys, np.float64).tobytes())
    return h.hexdigest()[:24]


def default_checkpoint_path(out) -> Path:
    """Where the CLI keeps a surface's resumable chunks: ``<out>.ray-checkpoint/``."""
    return Path(str(out) + ".ray-checkpoint")


def evaluate_chunk(task: PlaneTask, points, device: str = "cpu") -> tuple[np.ndarray, np.ndarray, str]:
    """Loss and accuracy at ``points`` [(a, b), ...] with the code a Ray worker runs;
    returns ``(loss, acc, evaluator name)``. Needs no Ray (for tests and debugging)."""
    ev = ChunkEvaluator(task, device)
    loss, acc = ev(points)
    return loss, acc, ev.name


class _Checkpoint:
    """One directory per task key (see the module docstring)."""

    def __init__(self, root, key: str, nx: int, ny: int, one_d: bool):
        self.root = Path(root)
        self.dir = self.root / key
        self.dir.mkdir(parents=True, exist_ok=True)
        manifest = self.dir / "manifest.json"
        if not manifest.exists():
            tmp = self.dir / f".manifest-{uuid.uuid4().hex[:8]}.tmp"
            tmp.write_text(json.dumps({"version": CHECKPOINT_VERSION, "key": key, "nx": nx,
                                       "ny": ny, "one_d": one_d, "created": time.time()}))
            os.replace(tmp, manifest)

    def load(self, n: int):
        """``(positions done [n] bool, loss [n], acc [n], evaluator name)`` by position from
        the parts on disk; unreadable or foreign parts are ignored (they are recomputed)."""
        done = np.zeros(n, bool)
        loss = np.full(n, np.nan)
        acc = np.full(n, np.nan)
        method = None
        for part in sorted(self.dir.glob("part-*.npz")):
            try:
                with np.load(part, allow_pickle=False) as z:
                    pos, lv, av = z["positions"], z["loss"], z["acc"]
                    m = str(z["method"])
            except Exception:  # noqa: BLE001 - a damaged part is recomputed
                continue
            if pos.ndim != 1 or len(pos) != len(lv) or len(pos) != len(av) or (
                    len(pos) and (pos.min() < 0 or pos.max() >= n)):
                continue
            done[pos] = True
            loss[pos], acc[pos] = lv, av
            method = method or m
        return done, loss, acc, method

    def write(self, positions, loss, acc, method: str) -> None:
        name = f"part-{int(positions[0]):08d}-{uuid.uuid4().hex[:8]}"
        tmp = self.dir / f".{name}.tmp.npz"
        np.savez(tmp, positions=np.asarray(positions, np.int64), loss=loss, acc=acc,
                 method=np.array(method))
        os.replace(tmp, self.dir / f"{name}.npz")

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        try:
            self.root.rmdir()  # only when empty
        except OSError:
            pass


# --------------------------------------------------------------------------- worker side


def _apply_hooks(hooks: dict | None, chunk_id: int) -> None:
    """Test-only fault injection: ``crash_chunk`` kills this worker (``os._exit``) on the
    first attempt at that chunk (a ``marker`` file records the attempt, so Ray's retry
    succeeds); ``delay`` sleeps that many seconds per chunk."""
    if not hooks:
        return
    if hooks.get("crash_chunk") == chunk_id:
        marker = hooks["marker"]
        if not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            os._exit(1)
    if hooks.get("delay"):
        time.sleep(float(hooks["delay"]))


def _surface_chunk(box, token: str, chunk_id: int, positions, points, hooks=None):
    """Ray task: evaluate one chunk; ``box`` is ``[ObjectRef]`` of the task."""
    cluster.worker_setup()
    _apply_hooks(hooks, chunk_id)
    device = cluster.worker_device()
    ev = cluster.worker_cached(f"surface:{token}:{device}",
                               lambda: ChunkEvaluator(cluster.fetch(box), device))
    loss, acc = ev(points)
    if hooks and hooks.get("log_dir"):
        name = f"{chunk_id}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npy"
        np.save(os.path.join(hooks["log_dir"], name), np.asarray(positions, np.int64))
    return np.asarray(positions, np.int64), loss, acc, ev.name, device


# --------------------------------------------------------------------------- driver side


class RayExecutor:
    """Chunks of the grid as Ray tasks.

    Args:
        address: None/``"local"`` starts (or reuses) a private Ray with ``num_cpus`` CPUs;
            ``"auto"``, ``"host:6379"`` or ``"ray://host:10001"`` connects to a cluster.
        checkpoint_path: a directory for resumable chunks (see the module docstring).
        chunk_size: points per Ray task (default :func:`landscape.surface.plan.auto_chunk`).
        gpus_per_task: GPUs per task on a cluster with GPUs (default 1; 0 keeps to CPUs).
        max_retries: Ray retries for a task whose worker died (or that raised a transient
            ``OSError``/``MemoryError``/out-of-memory).
        hooks: test-only fault injection (``crash_chunk``/``marker``, ``delay``, ``log_dir``).

    ``info``: ``method``, ``backend`` = ``"ray"``, ``device``, ``workers`` (task slots),
    ``chunk_size``, ``chunks``, ``points_computed``, ``points_resumed``, ``checkpoint``,
    ``key``, ``ray_startup_seconds``, ``address``.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, checkpoint_path=None,
                 chunk_size: int | None = None, num_cpus: int | None = None,
                 gpus_per_task: float | None = None, max_retries: int = 3,
                 keep_checkpoint: bool = False, hooks: dict | None = None):
        self.address, self.checkpoint_path = address, checkpoint_path
        self.chunk_size, self.num_cpus = chunk_size, num_cpus
        self.gpus_per_task, self.max_retries = gpus_per_task, max_retries
        self.keep_checkpoint, self.hooks = keep_checkpoint, hooks
        self._session = None

    def target(self):
        """Starts or joins Ray; ``("cuda", True)`` when the tasks get GPUs, else ``("cpu", False)``."""
        startup = cluster.init(self.address, num_cpus=self.num_cpus)
        slots, gpus = cluster.cluster_slots(self.gpus_per_task)
        self._session = (startup, slots, gpus)
        return ("cuda", True) if gpus > 0 else ("cpu", False)

    def run(self, task: PlaneTask, plan: GridPlan, grid) -> dict:
        if self._session is None:
            self.target()
        startup, slots, gpus = self._session
        task = task_to(task, "cpu")  # shipped from CPU memory; GPU workers move it themselves
        key = task_key(task, plan.xs, plan.ys)
        ckpt, method = None, None
        if self.checkpoint_path is not None:
            ckpt = _Checkpoint(self.checkpoint_path, key, plan.nx, plan.ny, plan.ys is None)
            done, lpos, apos, method = ckpt.load(plan.n)
            grid.put(np.flatnonzero(done), lpos[done], apos[done])
        resumed = grid.done
        info = {"method": method, "backend": "ray", "device": "cpu", "workers": 0,
                "chunk_size": self.chunk_size, "chunks": 0, "points_computed": 0,
                "points_resumed": resumed, "checkpoint": None if ckpt is None else str(ckpt.dir),
                "key": key, "ray_startup_seconds": startup,
                "address": cluster.normalize_address(self.address) or "local"}
        if resumed:
            grid.report()
        todo = grid.todo()
        if len(todo) == 0:
            if ckpt is not None and not self.keep_checkpoint:
                ckpt.remove()
            return info
        grid.check_cancel()
        size = int(self.chunk_size) if self.chunk_size else auto_chunk(len(todo), slots)
        if size < 1:
            raise LandscapeError(f"chunk_size must be positive, got {self.chunk_size}")
        chunks = plan.chunks(todo, size)
        info.update(workers=slots, chunk_size=size, chunks=len(chunks),
                    device="cuda" if gpus > 0 else "cpu")
        box = [cluster.put(task)]
        fn = cluster.remote(_surface_chunk, 1, gpus, self.max_retries)

        def args(i):
            return (i, chunks[i], plan.points(chunks[i]), self.hooks)

        def on_result(i, value):
            pos, lv, av, name, dev = value
            grid.put(pos, lv, av)
            info["method"] = info["method"] or name
            info["device"] = dev
            if ckpt is not None:
                ckpt.write(pos, lv, av, name)
            info["points_computed"] += len(pos)

        cluster.run_tasks(fn, box, key, len(chunks), args, on_result, grid.cancel, "surface",
                          grid.partial, slots, after_batch=grid.report)
        if ckpt is not None and not self.keep_checkpoint:
            ckpt.remove()
        return info


def evaluate_grid_ray(task: PlaneTask, xs, ys=None, *, address: str | None = None,
                      chunk_size: int | None = None, progress=None,
                      cancel: threading.Event | None = None, checkpoint_path=None,
                      num_cpus: int | None = None, gpus_per_task: float | None = None,
                      max_retries: int = 3, keep_checkpoint: bool = False,
                      hooks: dict | None = None):
    """:func:`landscape.surface.evaluate.evaluate` with a :class:`RayExecutor` on the grid
    ``xs`` x ``ys``: the contract, arrays and values of the local path."""
    from landscape.surface.evaluate import evaluate

    ex = RayExecutor(address, checkpoint_path=checkpoint_path, chunk_size=chunk_size,
                     num_cpus=num_cpus, gpus_per_task=gpus_per_task, max_retries=max_retries,
                     keep_checkpoint=keep_checkpoint, hooks=hooks)
    return evaluate(task, GridPlan.of(xs, ys), ex, progress=progress, cancel=cancel)


class RayGridEvaluator:
    """A drop-in for :func:`landscape.surface.evaluate.evaluate_grid` (same signature:
    ``(task, xs, ys, *, workers, progress, cancel, device)``) that evaluates on Ray, for code
    that takes the grid function as a parameter. ``workers`` and ``device`` are ignored: the
    cluster decides (CPUs, or GPUs where it has them)."""

    def __init__(self, address: str | None = None, *, checkpoint_path=None,
                 chunk_size: int | None = None, num_cpus: int | None = None,
                 gpus_per_task: float | None = None, max_retries: int = 3):
        self.address, self.checkpoint_path = address, checkpoint_path
        self.chunk_size, self.num_cpus = chunk_size, num_cpus
        self.gpus_per_task, self.max_retries = gpus_per_task, max_retries

    def __call__(self, task, xs, ys, *, workers=None, progress=None, cancel=None, device=None):
        return evaluate_grid_ray(task, xs, ys, address=self.address, chunk_size=self.chunk_size,
                                 progress=progress, cancel=cancel,
                                 checkpoint_path=self.checkpoint_path, num_cpus=self.num_cpus,
                                 gpus_per_task=self.gpus_per_task, max_retries=self.max_retries)
