"""Surfaces and Hessian spectra on a Ray cluster (optional: ``pip install -e .[distributed]``).

What runs where:

- **driver** (this process): the directions, the plan (the coarse-to-fine point order cut
  into chunks, the Rademacher probes drawn from the caller's seed exactly as the local
  functions draw them), the checkpoint and the final combination of the results;
- **object store**: the task (model, plane, data) or the Hessian description, put ONCE with
  ``ray.put`` and fetched once per worker process (workers keep the built evaluator or
  operator between tasks, keyed by a content hash);
- **workers**: one Ray task per chunk of grid points (or per group of probes), one CPU and
  one torch thread each (or one GPU where the cluster has GPUs), evaluating with exactly the
  code of the local path (:func:`landscape.surface.evaluators.build_evaluator`,
  :class:`landscape.hessian.operator.HessianOperator`), so the numbers are the local numbers.

Failures: a worker that dies is retried by Ray (``max_retries``) and transient exceptions
(``OSError``, ``MemoryError``, out-of-memory) are retried too (``retry_exceptions``); bad input
(:class:`~landscape.core.errors.LandscapeError`) is not retried and comes back as itself.
A ``cancel`` event stops the submission at once and raises
:class:`~landscape.core.errors.Cancelled` with the partial result; the few tasks in flight (two
per worker at most) are dropped, and ``ray.cancel``-ed only with ``LANDSCAPE_RAY_CANCEL=1``
(see :data:`CANCEL_IN_FLIGHT`: Ray 2.60 can abort the driver on that path). Surfaces can
write every finished chunk to a checkpoint directory keyed by a hash of the task and grid,
so a rerun resumes where the last one stopped.

Ray is imported lazily: importing this module never needs Ray. The app's hook is
:func:`ray_available` and :func:`configured_address` (environment variable
``LANDSCAPE_RAY_ADDRESS``); see ``docs/distributed.md``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from landscape.core.errors import Cancelled, LandscapeError
from landscape.surface.compute import coarse_to_fine
from landscape.surface.evaluators import PlaneTask, build_evaluator, evaluate_points_vmap

__all__ = [
    "ENV_ADDRESS",
    "ray_available",
    "configured_address",
    "init",
    "shutdown",
    "warm",
    "cluster_slots",
    "task_key",
    "default_checkpoint_path",
    "evaluate_chunk",
    "evaluate_grid_ray",
    "RayGridEvaluator",
    "HessianSpec",
    "hutchinson_trace_ray",
    "slq_density_ray",
]

#: Environment variable holding the cluster address the app and CLI use by default.
ENV_ADDRESS = "LANDSCAPE_RAY_ADDRESS"
#: Addresses that mean "start a private Ray on this machine".
_LOCAL = ("", "local", "none")
_CHECKPOINT_VERSION = 1

_state: dict = {"address": None, "started_here": False, "startup_seconds": 0.0}
_state_lock = threading.Lock()


# --------------------------------------------------------------------------- app hook


def configured_address(environ=None) -> str | None:
    """The Ray address from ``LANDSCAPE_RAY_ADDRESS`` (e.g. ``ray://head:10001``, ``auto``,
    ``host:6379``), or None when unset or blank (meaning: no cluster configured; the app
    keeps its local workers)."""
    env = os.environ if environ is None else environ
    value = (env.get(ENV_ADDRESS) or "").strip()
    return value or None


def ray_available() -> tuple[bool, str]:
    """``(True, message)`` when Ray is installed, with its version and the configured
    address; ``(False, why)`` otherwise. Cheap: does not import Ray or start anything."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return False, "Ray is not installed (pip install -e .[distributed])"
    try:
        version = importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - odd installs
        version = "unknown"
    addr = configured_address()
    where = f"cluster at {addr}" if addr else f"no cluster configured ({ENV_ADDRESS} unset): a local Ray"
    return True, f"Ray {version}; {where}"


# --------------------------------------------------------------------------- Ray session


def _ray():
    try:
        import ray
    except ImportError:
        raise LandscapeError("Ray is not installed; pip install -e .[distributed]") from None
    return ray


def _normalize(address) -> str | None:
    if address is None:
        return None
    a = str(address).strip()
    return None if a.lower() in _LOCAL else a


def init(address: str | None = None, *, num_cpus: int | None = None,
         ship_code: bool | None = None, runtime_env: dict | None = None) -> float:
    """Make sure Ray is up; returns the seconds spent starting or connecting (0 if it was).

    ``address`` None (or ``"local"``): reuse a running Ray, else start a private one on this
    machine with ``num_cpus`` CPUs (default: every core). Otherwise connect to that cluster
    (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``); ``num_cpus`` is ignored there (the
    cluster has its own). ``ship_code`` (default: True for a cluster) sends this package to
    the workers through ``runtime_env={"py_modules": [...]}``, so a cluster needs only torch,
    numpy and scipy installed.
    """
    ray = _ray()
    want = _normalize(address)
    with _state_lock:
        if ray.is_initialized():
            if want is None or want == _state["address"]:
                return 0.0
            if not _state["started_here"]:
                raise LandscapeError(
                    f"Ray is already running in this process; cannot also connect to {want}")
            ray.shutdown()
        t0 = time.perf_counter()
        try:
            if want is None:
                from landscape.core.device import cpu_count

                ray.init(address="local", num_cpus=int(num_cpus or cpu_count()),
                         include_dashboard=False, logging_level=logging.WARNING,
                         runtime_env=runtime_env)
            else:
                env = dict(runtime_env or {})
                if ship_code is None or ship_code:
                    import landscape

                    env.setdefault("py_modules", [str(Path(landscape.__file__).parent)])
                ray.init(address=want, logging_level=logging.WARNING, runtime_env=env or None)
        except (ConnectionError, RuntimeError, ValueError) as e:
            msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            if want and want.startswith("ray://") and "timeout" in msg and \
                    os.environ.get("RAY_AUTH_MODE") != "token":
                # Ray 2.60 clusters use token authentication by default, and the Ray
                # Client only sends the token with RAY_AUTH_MODE=token (measured)
                msg += " (if the cluster uses token authentication, set RAY_AUTH_MODE=token)"
            raise LandscapeError(f"cannot start or reach Ray at {want or 'local'}: {msg}") from None
        _state.update(address=want, started_here=True,
                      startup_seconds=time.perf_counter() - t0)
        return _state["startup_seconds"]


def shutdown() -> None:
    """Disconnect from (or stop the private) Ray, if this module started it."""
    with _state_lock:
        if _state["started_here"]:
            ray = _ray()
            if ray.is_initialized():
                ray.shutdown()
        _state.update(address=None, started_here=False, startup_seconds=0.0)


def _worker_ping():
    _worker_setup()
    return os.getpid()


def warm(address: str | None = None, num_cpus: int | None = None) -> float:
    """Start Ray and its workers now (workers import torch once: seconds per worker);
    returns the seconds it took. Call it at start-up, not in the middle of a run."""
    t0 = time.perf_counter()
    init(address, num_cpus=num_cpus)
    ray = _ray()
    n, _ = cluster_slots(None)
    fn = _remote(_worker_ping, 1, 0)
    ray.get([fn.remote() for _ in range(max(1, n))])
    return time.perf_counter() - t0


def cluster_slots(gpus_per_task: float | None = None) -> tuple[int, float]:
    """``(parallel task slots, GPUs per task)`` on the connected cluster: by GPUs when the
    cluster has any (``gpus_per_task`` default 1; pass 0 to stay on CPUs), else by CPUs."""
    ray = _ray()
    res = ray.cluster_resources()
    gpus = float(res.get("GPU", 0.0))
    cpus = int(res.get("CPU", 1))
    if gpus_per_task is None:
        gpus_per_task = 1.0 if gpus > 0 else 0.0
    if gpus_per_task > 0 and gpus > 0:
        return max(1, int(gpus / gpus_per_task)), float(gpus_per_task)
    return max(1, cpus), 0.0


_remotes: dict = {}


def _retryable_exceptions() -> list:
    kinds = [OSError, MemoryError]
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None:
        kinds.append(oom)
    return kinds


def _remote(fn, num_cpus: float, num_gpus: float, max_retries: int = 3):
    """``fn`` as a Ray remote function with these resources (cached per option set)."""
    ray = _ray()
    key = (fn.__name__, num_cpus, num_gpus, max_retries)
    if key not in _remotes:
        _remotes[key] = ray.remote(fn).options(
            num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries,
            retry_exceptions=_retryable_exceptions())
    return _remotes[key]


def _unwrap(err: Exception) -> Exception:
    """A task's own LandscapeError comes back as itself; other failures as one-line
    LandscapeErrors naming the cause (a worker that died more often than retries allow, a
    lost node, an unexpected exception in the worker)."""
    ray = _ray()
    if isinstance(err, ray.exceptions.RayTaskError):
        cause = getattr(err, "cause", None)
        if isinstance(cause, LandscapeError):
            return cause
        if cause is not None:
            return LandscapeError(f"a Ray task failed: {type(cause).__name__}: "
                                  f"{str(cause).splitlines()[0][:200] if str(cause) else ''}")
    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    return LandscapeError(f"a Ray task failed after its retries: {type(err).__name__}: {first}")


# --------------------------------------------------------------------------- worker side

_cache: OrderedDict = OrderedDict()  # token -> built evaluator / operator (per worker process)
_CACHE_SIZE = 2
_worker_ready = False


def _worker_setup() -> None:
    global _worker_ready
    if not _worker_ready:
        torch.set_num_threads(1)
        _worker_ready = True


def _cached(token: str, build):
    if token in _cache:
        _cache.move_to_end(token)
        return _cache[token]
    value = build()
    _cache[token] = value
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return value


def _worker_device() -> str:
    try:
        import ray

        if ray.get_gpu_ids():
            return "cuda"
    except Exception:  # noqa: BLE001 - not in a Ray worker
        pass
    return "cpu"


def _task_to(task: PlaneTask, device) -> PlaneTask:
    """A copy of ``task`` with its model and tensors on ``device`` (the task itself when they
    are there already)."""
    dev = torch.device(device)
    if task.w.device == dev and task.X.device == dev:
        return task

    def mv(t):
        return None if t is None else t.to(dev)

    model = copy.deepcopy(task.model).to(dev)
    return dataclasses.replace(task, model=model, w=mv(task.w), dx=mv(task.dx), dy=mv(task.dy),
                               X=mv(task.X), y=mv(task.y), bn_data=mv(task.bn_data))


class _ChunkEvaluator:
    """The local path's evaluator for one device: ``build_evaluator`` on a CPU, the
    ``vmap`` batch evaluation (as ``surface.evaluate_grid`` does with a device) on a GPU."""

    def __init__(self, task: PlaneTask, device: str = "cpu"):
        self.task = _task_to(task, device)
        self.vmap = torch.device(device).type != "cpu" and self.task.bn == "keep"
        self.ev = None if self.vmap else build_evaluator(self.task)
        self.name = "vmap" if self.vmap else self.ev.name
        self.device = str(device)

    def __call__(self, points) -> tuple[np.ndarray, np.ndarray]:
        if self.vmap:
            loss, acc = evaluate_points_vmap(self.task, points)
            return np.asarray(loss, np.float64), np.asarray(acc, np.float64)
        vals = [self.ev(a, b) for a, b in points]
        return (np.asarray([v[0] for v in vals], np.float64),
                np.asarray([v[1] for v in vals], np.float64))


def evaluate_chunk(task: PlaneTask, points, device: str = "cpu") -> tuple[np.ndarray, np.ndarray, str]:
    """Loss and accuracy at ``points`` [(a, b), ...] with the code a Ray worker runs;
    returns ``(loss, acc, evaluator name)``. Needs no Ray (for tests and debugging)."""
    ev = _ChunkEvaluator(task, device)
    loss, acc = ev(points)
    return loss, acc, ev.name


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
    """Ray task: evaluate one chunk. ``box`` is ``[ObjectRef]`` of the task, boxed so that
    Ray does not fetch it when this worker has the evaluator cached already."""
    _worker_setup()
    _apply_hooks(hooks, chunk_id)
    device = _worker_device()

    def build():
        import ray

        return _ChunkEvaluator(ray.get(box[0]), device)

    ev = _cached(f"surface:{token}:{device}", build)
    loss, acc = ev(points)
    if hooks and hooks.get("log_dir"):
        name = f"{chunk_id}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npy"
        np.save(os.path.join(hooks["log_dir"], name), np.asarray(positions, np.int64))
    return np.asarray(positions, np.int64), loss, acc, ev.name, device


# --------------------------------------------------------------------------- hashing


def _hash_tensor(h, t) -> None:
    if t is None:
        h.update(b"none")
        return
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def _hash_model(h, model: nn.Module) -> None:
    h.update(type(model).__qualname__.encode())
    h.update(repr(model).encode())
    for name, p in model.named_parameters():
        h.update(f"{name}:{p.requires_grad}".encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        _hash_tensor(h, t)
    h.update(str([m.training for m in model.modules()]).encode())


def task_key(task: PlaneTask, xs, ys=None) -> str:
    """A hash of everything that determines the grid's values: the model (architecture,
    parameters, buffers, modes), the plane, the data, the options and the coordinates."""
    h = hashlib.sha256(f"landscape-surface-v{_CHECKPOINT_VERSION}".encode())
    _hash_model(h, task.model)
    for t in (task.w, task.dx, task.dy, task.X, task.y, task.bn_data):
        _hash_tensor(h, t)
    h.update(f"{task.loss}|{task.bn}|{task.method}".encode())
    h.update(np.asarray(xs, np.float64).tobytes())
    h.update(b"1d" if ys is None else np.asarray(ys, np.float64).tobytes())
    return h.hexdigest()[:24]


# --------------------------------------------------------------------------- checkpoints


def default_checkpoint_path(out) -> Path:
    """Where the CLI keeps a surface's resumable chunks: ``<out>.ray-checkpoint/``."""
    return Path(str(out) + ".ray-checkpoint")


class _Checkpoint:
    """One directory per task key: ``manifest.json`` and one ``part-*.npz`` per finished
    chunk (positions in the coarse-to-fine order, loss, acc), each written atomically."""

    def __init__(self, root, key: str, nx: int, ny: int, one_d: bool):
        self.root = Path(root)
        self.dir = self.root / key
        self.dir.mkdir(parents=True, exist_ok=True)
        manifest = self.dir / "manifest.json"
        if not manifest.exists():
            tmp = self.dir / f".manifest-{uuid.uuid4().hex[:8]}.tmp"
            tmp.write_text(json.dumps({"version": _CHECKPOINT_VERSION, "key": key, "nx": nx,
                                       "ny": ny, "one_d": one_d, "created": time.time()}))
            os.replace(tmp, manifest)

    def load(self, n: int):
        """``(positions done, loss, acc, evaluator name, parts read)`` from the parts on disk;
        unreadable or foreign parts are ignored (they are recomputed)."""
        done = np.zeros(n, bool)
        loss = np.full(n, np.nan)
        acc = np.full(n, np.nan)
        method, parts = None, 0
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
            parts += 1
        return done, loss, acc, method, parts

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


# --------------------------------------------------------------------------- surfaces


def _auto_chunk(n: int, slots: int) -> int:
    """About eight chunks per slot (even load, steady progress), 16 to 512 points each
    (a Ray task costs about a millisecond of overhead, a digits-MLP point about 0.7 ms)."""
    return int(min(512, max(16, math.ceil(n / (8 * max(1, slots))))))


def evaluate_grid_ray(task: PlaneTask, xs, ys=None, *, address: str | None = None,
                      chunk_size: int | None = None, progress=None,
                      cancel: threading.Event | None = None, checkpoint_path=None,
                      num_cpus: int | None = None, gpus_per_task: float | None = None,
                      max_retries: int = 3, keep_checkpoint: bool = False,
                      _hooks: dict | None = None):
    """:func:`landscape.surface.compute.evaluate_grid` on a Ray cluster: the same contract, arrays and
    values (``(loss, acc, info)``, shaped ``(ny, nx)`` indexed ``[j, i]``, or ``(nx,)`` for a
    1-D slice ``ys=None``).

    Args:
        address: None/``"local"`` starts (or reuses) a private Ray with ``num_cpus`` CPUs;
            ``"auto"``, ``"host:6379"`` or ``"ray://host:10001"`` connects to a cluster.
        chunk_size: points per Ray task (default: about eight chunks per worker slot, 16 to
            512 points). Chunks follow the coarse-to-fine order, so the first ones to finish
            cover the whole grid coarsely.
        progress: ``progress(done, total, loss, acc)`` as chunks finish (NaN where pending).
        cancel: a ``threading.Event``; when set, nothing more is submitted, the tasks in
            flight are dropped (see :data:`CANCEL_IN_FLIGHT`) and :class:`Cancelled` is raised
            within about 0.1 s with ``partial=(loss, acc)``.
        checkpoint_path: a directory; each finished chunk is written under
            ``<checkpoint_path>/<task_key>/`` as it arrives, and a rerun on the same task and
            grid loads those chunks instead of recomputing them. Removed after a complete
            run unless ``keep_checkpoint``.
        gpus_per_task: GPUs per task on a cluster with GPUs (default 1; 0 keeps to CPUs).
            A GPU task moves the task to ``cuda`` and evaluates it as the local GPU path does.
        max_retries: Ray retries for a task whose worker died (or that raised a transient
            ``OSError``/``MemoryError``/out-of-memory).

    ``info``: ``method`` (the evaluator: ``mlp``, ``module`` or ``vmap``), ``backend`` =
    ``"ray"``, ``device``, ``workers`` (task slots), ``chunk_size``, ``chunks``,
    ``points_computed``, ``points_resumed``, ``checkpoint``, ``key``,
    ``ray_startup_seconds``, ``seconds``.
    """
    t0 = time.perf_counter()
    xs = np.asarray(xs, dtype=np.float64)
    ys = None if ys is None else np.asarray(ys, dtype=np.float64)
    nx = len(xs)
    ny = 1 if ys is None else len(ys)
    if nx < 1 or ny < 1:
        raise LandscapeError("the grid is empty")
    shape = (nx,) if ys is None else (ny, nx)
    n = nx * ny
    order = coarse_to_fine(nx, ny)
    task = _task_to(task, "cpu")  # shipped from CPU memory; GPU workers move it themselves
    key = task_key(task, xs, ys)

    loss = np.full(n, np.nan)
    acc = np.full(n, np.nan)
    done_pos = np.zeros(n, bool)  # by position in ``order``
    ckpt = None
    method = None
    resumed = 0
    if checkpoint_path is not None:
        ckpt = _Checkpoint(checkpoint_path, key, nx, ny, ys is None)
        done_pos, lpos, apos, method, _ = ckpt.load(n)
        loss[order[done_pos]] = lpos[done_pos]
        acc[order[done_pos]] = apos[done_pos]
        resumed = int(done_pos.sum())
    done = resumed

    def report():
        if progress is not None:
            progress(done, n, loss.reshape(shape), acc.reshape(shape))

    def partial():
        return loss.reshape(shape).copy(), acc.reshape(shape).copy()

    info = {"method": method, "backend": "ray", "device": "cpu", "workers": 0,
            "chunk_size": chunk_size, "chunks": 0, "points_computed": 0,
            "points_resumed": resumed, "checkpoint": None if ckpt is None else str(ckpt.dir),
            "key": key, "ray_startup_seconds": 0.0, "address": _normalize(address) or "local"}
    if resumed:
        report()
    todo = np.flatnonzero(~done_pos)
    if len(todo) == 0:
        if ckpt is not None and not keep_checkpoint:
            ckpt.remove()
        info["seconds"] = time.perf_counter() - t0
        return loss.reshape(shape), acc.reshape(shape), info

    if cancel is not None and cancel.is_set():
        raise Cancelled("surface cancelled", partial=partial())
    ray = _ray()
    info["ray_startup_seconds"] = init(address, num_cpus=num_cpus)
    slots, gpus = cluster_slots(gpus_per_task)
    size = int(chunk_size) if chunk_size else _auto_chunk(len(todo), slots)
    if size < 1:
        raise LandscapeError(f"chunk_size must be positive, got {chunk_size}")
    chunks = [todo[s:s + size] for s in range(0, len(todo), size)]
    info.update(workers=slots, chunk_size=size, chunks=len(chunks),
                device="cuda" if gpus > 0 else "cpu")

    try:
        ref = ray.put(task)
    except Exception as e:  # noqa: BLE001 - e.g. a module that cannot be pickled
        raise LandscapeError(f"this model cannot be sent to Ray workers: {type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200] if str(e) else ''}") from None
    fn = _remote(_surface_chunk, 1, gpus, max_retries)

    def args(i):
        pos = chunks[i]
        idx = order[pos]
        pts = [(float(xs[k % nx]), 0.0 if ys is None else float(ys[k // nx])) for k in idx]
        return (i, pos, pts, _hooks)

    def on_result(i, value):
        nonlocal done
        pos, lv, av, name, dev = value
        idx = order[pos]
        loss[idx], acc[idx] = lv, av
        info["method"] = info["method"] or name
        info["device"] = dev
        if ckpt is not None:
            ckpt.write(pos, lv, av, name)
        done += len(pos)
        info["points_computed"] += len(pos)

    _run_tasks(fn, [ref], key, len(chunks), args, on_result, cancel, "surface", partial, slots,
               after_batch=report)
    if ckpt is not None and not keep_checkpoint:
        ckpt.remove()
    info["seconds"] = time.perf_counter() - t0
    return loss.reshape(shape), acc.reshape(shape), info


class RayGridEvaluator:
    """A drop-in for :func:`landscape.surface.compute.evaluate_grid` (same signature: ``(task, xs,
    ys, *, workers, progress, cancel, device)``) that evaluates on Ray, for code that takes
    the grid function as a parameter. ``workers`` and ``device`` are ignored: the cluster
    decides (CPUs, or GPUs where it has them)."""

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


# --------------------------------------------------------------------------- Hessian


@dataclasses.dataclass
class HessianSpec:
    """A picklable description of a :class:`landscape.hessian.operator.HessianOperator`: the
    arguments of its constructor. Each Ray worker builds its own operator from it."""

    model: nn.Module
    X: object
    y: object
    loss_kind: str = "cross_entropy"
    dtype: torch.dtype = torch.float64
    batch_size: int | None = None
    mode: str | None = None
    seed: int = 0

    @classmethod
    def from_operator(cls, op) -> HessianSpec:
        """The description of an existing operator at its current parameter point."""
        return cls(copy.deepcopy(op._model).cpu(), op.X.detach().cpu(), op.y.detach().cpu(),
                   op.loss_kind, op.dtype, op.batch_size, op.mode, op.seed)

    def build(self, device: str = "cpu"):
        from landscape.hessian import HessianOperator

        model = self.model if torch.device(device).type == "cpu" else \
            copy.deepcopy(self.model).to(device)
        X = torch.as_tensor(np.asarray(self.X)) if not isinstance(self.X, torch.Tensor) else self.X
        y = torch.as_tensor(np.asarray(self.y)) if not isinstance(self.y, torch.Tensor) else self.y
        return HessianOperator(model, X.to(device), y.to(device), self.loss_kind, self.dtype,
                               self.batch_size, self.mode, self.seed)

    def n_params(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters() if p.requires_grad))

    def key(self) -> str:
        h = hashlib.sha256(b"landscape-hessian-v1")
        _hash_model(h, self.model)
        for t in (self.X, self.y):
            _hash_tensor(h, t if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t)))
        h.update(f"{self.loss_kind}|{self.dtype}|{self.batch_size}|{self.mode}|{self.seed}".encode())
        return h.hexdigest()[:24]


def _as_spec(op_or_spec) -> HessianSpec:
    if isinstance(op_or_spec, HessianSpec):
        return op_or_spec
    from landscape.hessian import HessianOperator

    if isinstance(op_or_spec, HessianOperator):
        return HessianSpec.from_operator(op_or_spec)
    raise LandscapeError(f"need a HessianSpec or a HessianOperator, got {type(op_or_spec).__name__}")


def _hessian_operator(box, token: str):
    _worker_setup()
    device = _worker_device()

    def build():
        import ray

        return ray.get(box[0]).build(device)

    return _cached(f"hessian:{token}:{device}", build)


def _hutchinson_chunk(box, token: str, Z):
    """Ray task: the quadratic forms ``z^T H z`` of the probe rows ``Z`` (int8 +-1)."""
    op = _hessian_operator(box, token)
    Zf = np.asarray(Z, dtype=np.float64)
    h0 = op.hvps
    HZ = op.matmat(Zf)
    return np.einsum("ij,ij->i", Zf, HZ), op.hvps - h0


def _slq_probe(box, token: str, z, m: int):
    """Ray task: the Lanczos quadrature (nodes, weights) of one probe (int8 +-1)."""
    from landscape.hessian import Watch, lanczos_quadrature

    op = _hessian_operator(box, token)
    watch = Watch(op, total=m)
    theta, tau = lanczos_quadrature(watch, np.asarray(z, dtype=np.float64), m)
    return theta, tau, watch.hvps


#: Also ``ray.cancel`` the tasks in flight on a cancel or an error (``LANDSCAPE_RAY_CANCEL=1``).
#: Off by default: with Ray 2.60 a cancel that races with the task's completion aborts the
#: DRIVER process (``Check failed: it != submissible_tasks_.end() Tried to complete task that
#: was not pending``, task_manager.cc; measured here in about one run in three of the tests),
#: which would take the app's server down. Without it nothing new is submitted after a
#: cancel and the at most two tasks per worker in flight finish in the background (their
#: results are dropped): a chunk or a probe group, well under a second each by default.
CANCEL_IN_FLIGHT = os.environ.get("LANDSCAPE_RAY_CANCEL", "") == "1"


def _run_tasks(fn, box, token: str, n_tasks: int, args, on_result, cancel, what: str, partial,
               slots: int, after_batch=None) -> None:
    """Run ``fn(box, token, *args(i))`` for ``i`` in ``range(n_tasks)``, submitted in order
    with at most two per worker slot in flight (the order of the plan is kept and a cancel
    leaves little behind); ``on_result(i, value)`` as each finishes, ``after_batch()`` after
    each group that arrived together. A set ``cancel`` raises :class:`Cancelled` with
    ``partial()``; a failed task (after Ray's retries) raises :func:`_unwrap` of its error."""
    ray = _ray()
    window = 2 * slots
    pending: dict = {}
    nxt = 0

    def drop_in_flight():
        if CANCEL_IN_FLIGHT:
            for r in list(pending):
                try:
                    ray.cancel(r)
                except Exception:  # noqa: BLE001 - finished or gone already
                    pass
        pending.clear()  # without references their results are dropped when they arrive

    try:
        while nxt < n_tasks or pending:
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"{what} cancelled", partial=partial())
            while nxt < n_tasks and len(pending) < window:
                pending[fn.remote(box, token, *args(nxt))] = nxt
                nxt += 1
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.1)
            if not ready:
                continue
            rest = [r for r in pending if r not in ready]
            if rest:
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                ready = ready + more
            for r in ready:
                i = pending.pop(r)
                try:
                    value = ray.get(r)
                except Exception as e:  # noqa: BLE001 - reported as one line
                    raise _unwrap(e) from None
                on_result(i, value)
            if after_batch is not None:
                after_batch()
    finally:
        drop_in_flight()


def _hessian_setup(op_or_spec, address, num_cpus, gpus_per_task, max_retries, fn):
    spec = _as_spec(op_or_spec)
    startup = init(address, num_cpus=num_cpus)
    ray = _ray()
    slots, gpus = cluster_slots(gpus_per_task)
    try:
        ref = ray.put(spec)
    except Exception as e:  # noqa: BLE001
        raise LandscapeError(f"this model cannot be sent to Ray workers: {type(e).__name__}") from None
    return spec, startup, [ref], spec.key(), _remote(fn, 1, gpus, max_retries), slots


def hutchinson_trace_ray(op_or_spec, probes: int = 100, seed: int = 0, *,
                         address: str | None = None, num_cpus: int | None = None,
                         probes_per_task: int | None = None, gpus_per_task: float | None = None,
                         max_retries: int = 3, progress=None, cancel=None):
    """:func:`landscape.hessian.operator.hutchinson_trace` with the probes spread over Ray tasks.

    The probes are drawn here exactly as the local function draws them (one
    ``default_rng(seed)``, all ``probes`` Rademacher rows at once), sent to the workers as
    int8, and each sample ``z^T H z`` is computed by a worker's own operator; the same seed
    gives the local samples, trace and standard error (to float rounding). ``progress(done,
    total)`` counts HVPs; a cancel raises :class:`Cancelled` with the samples so far (NaN
    where pending)."""
    import math as _m

    from landscape.hessian import TraceResult, rademacher

    m = int(probes)
    if m < 2:
        raise LandscapeError(f"Hutchinson needs at least 2 probes for a standard error, got {m}")
    t0 = time.perf_counter()
    spec, startup, box, token, fn, slots = _hessian_setup(op_or_spec, address, num_cpus,
                                                          gpus_per_task, max_retries,
                                                          _hutchinson_chunk)
    P = spec.n_params()
    Z = rademacher(np.random.default_rng(seed), m, P).astype(np.int8)
    per = int(probes_per_task) if probes_per_task else max(1, _m.ceil(m / (2 * slots)))
    starts = list(range(0, m, per))
    samples = np.full(m, np.nan)
    counter = {"hvps": 0}

    def on_result(i, value):
        s, hv = value
        samples[starts[i]:starts[i] + len(s)] = s
        counter["hvps"] += hv
        if progress is not None:
            progress(counter["hvps"], m)

    _run_tasks(fn, box, token, len(starts), lambda i: (Z[starts[i]:starts[i] + per],), on_result,
               cancel, "Hutchinson trace", lambda: samples.copy(), slots)
    est = float(samples.mean())
    se = float(samples.std(ddof=1) / math.sqrt(m))
    seconds = time.perf_counter() - t0
    meta = {"hvps": counter["hvps"], "seconds": seconds, "dtype": str(spec.dtype).replace("torch.", ""),
            "n_params": P, "probes": m, "seed": seed, "method": "hutchinson", "backend": "ray",
            "workers": slots, "probes_per_task": per, "ray_startup_seconds": startup}
    return TraceResult(est, se, samples, "hutchinson", counter["hvps"], seconds, meta)


def slq_density_ray(op_or_spec, probes: int = 5, lanczos_steps: int = 80, seed: int = 0,
                    grid=None, sigma: float | None = None, grid_points: int = 2001, *,
                    address: str | None = None, num_cpus: int | None = None,
                    gpus_per_task: float | None = None, max_retries: int = 3, progress=None,
                    cancel=None):
    """:func:`landscape.hessian.operator.slq_density` with one Ray task per probe vector.

    Probe ``p`` is the ``p``-th Rademacher vector drawn from ``default_rng(seed)`` exactly as
    locally (one ``[1, P]`` draw per probe, in order); each worker runs the same Lanczos
    quadrature on its own operator, and the nodes and weights are combined into the density
    exactly as the local function does, so the same seed gives the same result (to float
    rounding). ``progress(done, total)`` counts HVPs; a cancel raises :class:`Cancelled` with
    ``partial=(nodes, weights)`` (zero rows where pending)."""
    from landscape.hessian import DensityResult, rademacher, slq_smooth

    n_v = int(probes)
    t0 = time.perf_counter()
    spec = _as_spec(op_or_spec)
    P = spec.n_params()
    m = min(int(lanczos_steps), P)
    if n_v < 1 or m < 1:
        raise LandscapeError("SLQ needs at least one probe and one Lanczos step")
    spec, startup, box, token, fn, slots = _hessian_setup(spec, address, num_cpus, gpus_per_task,
                                                          max_retries, _slq_probe)
    rng = np.random.default_rng(seed)
    Z = [rademacher(rng, 1, P)[0].astype(np.int8) for _ in range(n_v)]
    nodes = np.zeros((n_v, m))
    weights = np.zeros((n_v, m))
    counter = {"hvps": 0}

    def on_result(p, value):
        theta, tau, hv = value
        nodes[p, :len(theta)] = theta
        nodes[p, len(theta):] = theta[-1] if len(theta) else 0.0
        weights[p, :len(tau)] = tau
        counter["hvps"] += hv
        if progress is not None:
            progress(counter["hvps"], max(n_v * m, counter["hvps"]))

    _run_tasks(fn, box, token, n_v, lambda p: (Z[p], m), on_result, cancel, "SLQ density",
               lambda: (nodes.copy(), weights.copy()), slots)
    # The same combination as the local slq_density.
    grid, dens, sig, extra = slq_smooth(nodes, weights, m, P, grid, sigma, grid_points)
    seconds = time.perf_counter() - t0
    meta = {"hvps": counter["hvps"], "seconds": seconds, "dtype": str(spec.dtype).replace("torch.", ""),
            "n_params": P, "probes": n_v, "lanczos_steps": m, "seed": seed, **extra,
            "backend": "ray", "workers": slots, "ray_startup_seconds": startup}
    return DensityResult(grid, dens, nodes, weights, sig, counter["hvps"], seconds, meta)
