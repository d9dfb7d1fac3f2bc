"""The Ray session shared by every distributed computation (optional: ``pip install -e .[distributed]``).

What lives here, and nothing about surfaces or Hessians:

- the **address** the app and CLI use by default (environment variable
  ``LANDSCAPE_RAY_ADDRESS``: ``ray://head:10001``, ``auto``, ``host:6379``; unset or blank
  means no cluster) and :func:`ray_available`, the app's cheap hook;
- the **session**: :func:`init` (start a private Ray or connect to a cluster),
  :func:`shutdown`, :func:`warm` (start the workers now) and :func:`cluster_slots`
  (parallel task slots, by GPUs when the cluster has any, else by CPUs);
- **remote functions** with retries (:func:`remote`: a worker that dies is retried by Ray,
  and transient ``OSError``/``MemoryError``/out-of-memory exceptions too; a task's own
  :class:`~landscape.core.errors.LandscapeError` is not retried and comes back as itself);
- the **ordered task runner** :func:`run_tasks` (submitted in plan order, at most two per
  slot in flight, a ``cancel`` event raises :class:`~landscape.core.errors.Cancelled` with
  the partial result within about 0.1 s);
- the **worker side**: one torch thread per worker (:func:`worker_setup`), a small cache of
  built objects keyed by a content hash (:func:`worker_cached`, so a worker fetches and
  builds a task once), the worker's device (:func:`worker_device`), and the content hashes
  (:func:`hash_tensor`, :func:`hash_model`) those keys are made of.

Ray is imported lazily: importing this module never needs Ray.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from landscape.core.errors import Cancelled, LandscapeError

#: Environment variable holding the cluster address the app and CLI use by default.
ENV_ADDRESS = "LANDSCAPE_RAY_ADDRESS"
#: Addresses that mean "start a private Ray on this machine".
LOCAL_ADDRESSES = ("", "local", "none")

#: Also ``ray.cancel`` the tasks in flight on a cancel or an error (``LANDSCAPE_RAY_CANCEL=1``).
#: Off by default: with Ray 2.60 a cancel that races with the task's completion aborts the
#: DRIVER process (``Check failed: it != submissible_tasks_.end() Tried to complete task that
#: was not pending``, task_manager.cc; measured here in about one run in three of the tests),
#: which would take the app's server down. Without it nothing new is submitted after a
#: cancel and the at most two tasks per worker in flight finish in the background (their
#: results are dropped): a chunk or a probe group, well under a second each by default.
CANCEL_IN_FLIGHT = os.environ.get("LANDSCAPE_RAY_CANCEL", "") == "1"

_state: dict = {"address": None, "started_here": False, "startup_seconds": 0.0}
_state_lock = threading.Lock()


# --------------------------------------------------------------------------- app hook


def configured_address(environ=None) -> str | None:
    """The Ray address from ``LANDSCAPE_RAY_ADDRESS``, or None when unset or blank (meaning:
    no cluster configured; the app keeps its local workers)."""
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


# --------------------------------------------------------------------------- session


def import_ray():
    """The ``ray`` module, or a one-line LandscapeError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise LandscapeError("Ray is not installed; pip install -e .[distributed]") from None
    return ray


def normalize_address(address) -> str | None:
    """None for "start or reuse a private Ray" (None, ``""``, ``"local"``, ``"none"``), else
    the address stripped."""
    if address is None:
        return None
    a = str(address).strip()
    return None if a.lower() in LOCAL_ADDRESSES else a


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
    ray = import_ray()
    want = normalize_address(address)
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
            ray = import_ray()
            if ray.is_initialized():
                ray.shutdown()
        _state.update(address=None, started_here=False, startup_seconds=0.0)


def _worker_ping():
    worker_setup()
    return os.getpid()


def warm(address: str | None = None, num_cpus: int | None = None) -> float:
    """Start Ray and its workers now (workers import torch once: seconds per worker);
    returns the seconds it took. Call it at start-up, not in the middle of a run."""
    t0 = time.perf_counter()
    init(address, num_cpus=num_cpus)
    ray = import_ray()
    n, _ = cluster_slots(None)
    fn = remote(_worker_ping, 1, 0)
    ray.get([fn.remote() for _ in range(max(1, n))])
    return time.perf_counter() - t0


def cluster_slots(gpus_per_task: float | None = None) -> tuple[int, float]:
    """``(parallel task slots, GPUs per task)`` on the connected cluster: by GPUs when the
    cluster has any (``gpus_per_task`` default 1; pass 0 to stay on CPUs), else by CPUs."""
    ray = import_ray()
    res = ray.cluster_resources()
    gpus = float(res.get("GPU", 0.0))
    cpus = int(res.get("CPU", 1))
    if gpus_per_task is None:
        gpus_per_task = 1.0 if gpus > 0 else 0.0
    if gpus_per_task > 0 and gpus > 0:
        return max(1, int(gpus / gpus_per_task)), float(gpus_per_task)
    return max(1, cpus), 0.0


def put(obj):
    """``ray.put(obj)``; an object that cannot be pickled (e.g. some modules) is a one-line
    LandscapeError."""
    ray = import_ray()
    try:
        return ray.put(obj)
    except Exception as e:  # noqa: BLE001 - e.g. a module that cannot be pickled
        raise LandscapeError(f"this model cannot be sent to Ray workers: {type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200] if str(e) else ''}") from None


# --------------------------------------------------------------------------- tasks

_remotes: dict = {}


def _retryable_exceptions() -> list:
    kinds = [OSError, MemoryError]
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None:
        kinds.append(oom)
    return kinds


def remote(fn, num_cpus: float, num_gpus: float, max_retries: int = 3):
    """``fn`` (a module-level function) as a Ray remote function with these resources and
    retries (cached per option set)."""
    ray = import_ray()
    key = (fn.__module__, fn.__name__, num_cpus, num_gpus, max_retries)
    if key not in _remotes:
        _remotes[key] = ray.remote(fn).options(
            num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries,
            retry_exceptions=_retryable_exceptions())
    return _remotes[key]


def unwrap_error(err: Exception) -> Exception:
    """A task's own LandscapeError comes back as itself; other failures as one-line
    LandscapeErrors naming the cause (a worker that died more often than retries allow, a
    lost node, an unexpected exception in the worker)."""
    ray = import_ray()
    if isinstance(err, ray.exceptions.RayTaskError):
        cause = getattr(err, "cause", None)
        if isinstance(cause, LandscapeError):
            return cause
        if cause is not None:
            return LandscapeError(f"a Ray task failed: {type(cause).__name__}: "
                                  f"{str(cause).splitlines()[0][:200] if str(cause) else ''}")
    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    return LandscapeError(f"a Ray task failed after its retries: {type(err).__name__}: {first}")


def run_tasks(fn, box, token: str, n_tasks: int, args, on_result, cancel, what: str, partial,
              slots: int, after_batch=None) -> None:
    """Run ``fn(box, token, *args(i))`` for ``i`` in ``range(n_tasks)``, submitted in order
    with at most two per worker slot in flight (the order of the plan is kept and a cancel
    leaves little behind); ``on_result(i, value)`` as each finishes, ``after_batch()`` after
    each group that arrived together. A set ``cancel`` raises :class:`Cancelled` with
    ``partial()``; a failed task (after Ray's retries) raises :func:`unwrap_error` of its error.
    ``box`` is ``[ObjectRef]``: boxed so Ray does not fetch it for a worker that has the
    built object cached already (see :func:`worker_cached`)."""
    ray = import_ray()
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
                    raise unwrap_error(e) from None
                on_result(i, value)
            if after_batch is not None:
                after_batch()
    finally:
        drop_in_flight()


# --------------------------------------------------------------------------- worker side

_cache: OrderedDict = OrderedDict()  # key -> built evaluator / operator (per worker process)
_CACHE_SIZE = 2
_worker_ready = False


def worker_setup() -> None:
    """One torch thread per worker (the slots are the parallelism)."""
    global _worker_ready
    if not _worker_ready:
        torch.set_num_threads(1)
        _worker_ready = True


def worker_cached(key: str, build):
    """The object cached under ``key`` in this worker process, built by ``build()`` the
    first time (the two most recent keys are kept)."""
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    value = build()
    _cache[key] = value
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return value


def worker_device() -> str:
    """``"cuda"`` in a Ray worker that was given a GPU, else ``"cpu"``."""
    try:
        import ray

        if ray.get_gpu_ids():
            return "cuda"
    except Exception:  # noqa: BLE001 - not in a Ray worker
        pass
    return "cpu"


def fetch(box):
    """The object in ``box = [ObjectRef]`` (in a worker)."""
    import ray

    return ray.get(box[0])


# --------------------------------------------------------------------------- hashing


def hash_tensor(h, t) -> None:
    """Feed a tensor's dtype, shape and bytes (or ``none``) to the hashlib object ``h``."""
    if t is None:
        h.update(b"none")
        return
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def hash_model(h, model: nn.Module) -> None:
    """Feed a model's architecture, parameters, buffers and train/eval modes to ``h``."""
    h.update(type(model).__qualname__.encode())
    h.update(repr(model).encode())
    for name, p in model.named_parameters():
        h.update(f"{name}:{p.requires_grad}".encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        hash_tensor(h, t)
    h.update(str([m.training for m in model.modules()]).encode())
