"""A persistent pool of single-thread worker processes for grid evaluation, and its executor.

Measured on 2 cores: two processes with one torch thread each beat one process with two
threads for small models, and a new worker pays about 2.5 s to import torch. So workers
are started once (``python -m landscape.surface.executors.pool``, a clean interpreter on
every platform, never a re-import of the caller's main script) and kept for the life of
the process.

:class:`PoolExecutor` times the first point here and uses the workers only when they pay
off: when the serial work (first point's time x points left) exceeds their start-up (about
0.25 s warm, 3 s cold), or when a worker count is given. Chunks of at most 64 positions
(about six per worker) keep the coarse-to-fine order. If a worker dies, the missing points
are finished here with the same evaluator.

Protocol: pickles over the worker's stdin/stdout pipes (private to this process tree).
A plane is shipped once as a pickle in a private temporary file (our own data, never a
user file); each chunk message names that file and a token, and a worker builds its
evaluator once per token (:class:`~landscape.surface.evaluators.ChunkEvaluator`, the
code of the local path) and answers two float64 arrays ``(loss, acc)`` per chunk. An
exported (``.pt2``) program travels as its archive bytes
(:meth:`~landscape.surface.evaluators.PlaneTask.__getstate__`): each worker loads it once
per plane under the pickle-refusing guard of :mod:`landscape.io.checkpoints`.

When the first-layer factorisation does not apply to a module and at least
:data:`CHOOSE_MIN_POINTS` points remain, per-point evaluation and batched ``torch.func.vmap``
are both timed on the first points (:data:`TRIAL_VMAP` of them for vmap, whose values are
kept) and the faster one runs the rest; ``info["choice"]`` gives both times per point.

``info`` adds ``executor`` (``pool`` or ``local``), ``threads_per_worker`` and
``fast_path`` (see :class:`~landscape.surface.evaluators.ModuleEvaluator`). A feeder
thread per worker pulls chunks from a shared queue, so cancelling is clearing the queue;
chunks already running finish (they are small).
"""

from __future__ import annotations

import atexit
import os
import pickle
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

_pool = None
_lock = threading.Lock()
CHOOSE_MIN_POINTS = 128  # fewer points left: per-point, without timing vmap
TRIAL_VMAP = 16  # points in the vmap trial (a quarter of a vmap batch of 64)
VMAP_MARGIN = 0.8  # vmap is chosen when it costs under 80% of a point evaluated alone


class WorkerDied(RuntimeError):
    pass


PRELOAD_EXPORT = "LANDSCAPE_WORKER_PRELOAD_EXPORT"  # env: import torch.export's reader at start


class _Worker:
    def __init__(self, preload_export: bool = False):
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        if preload_export:
            env[PRELOAD_EXPORT] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "landscape.surface.executors.pool"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env)

    def call(self, msg):
        try:
            pickle.dump(msg, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.proc.stdin.flush()
            status, value = pickle.load(self.proc.stdout)
        except (EOFError, BrokenPipeError, OSError) as e:
            raise WorkerDied(f"a worker process stopped ({type(e).__name__})") from None
        if status == "error":
            raise RuntimeError(value)
        return value

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()
        try:
            self.proc.stdout.close()
        except Exception:  # noqa: BLE001 - closing a dead pipe
            pass

    def alive(self) -> bool:
        return self.proc.poll() is None


class Pool:
    """``n`` workers; ``map_chunks`` evaluates chunks in order of submission."""

    def __init__(self, n: int, preload_export: bool = False):
        self.n = n
        self.workers = [_Worker(preload_export) for _ in range(n)]
        self.busy = threading.Lock()
        self.ready = False  # every worker answered a ping

    def ping(self) -> None:
        """Wait until every worker answers; raises WorkerDied when one does not start."""
        errors = []

        def call(w):
            try:
                w.call(("ping",))
            except Exception as e:
                errors.append(e)

        threads = [threading.Thread(target=call, args=(w,)) for w in self.workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.close()
            raise WorkerDied(f"a worker process did not start ({errors[0]})")

    def run(self, token: str, path: str, chunks: list, on_result, cancel=None) -> None:
        """Evaluate ``chunks`` (lists of points); ``on_result(i, values)`` is called from
        this thread as results arrive. Stops early when ``cancel`` is set."""
        while not self.busy.acquire(timeout=0.1):  # another surface is using the pool
            if cancel is not None and cancel.is_set():
                return
        try:
            self._run_locked(token, path, chunks, on_result, cancel)
        finally:
            self.busy.release()

    def _run_locked(self, token, path, chunks, on_result, cancel) -> None:
        todo: queue.Queue = queue.Queue()
        for i, ch in enumerate(chunks):
            todo.put((i, ch))
        results: queue.Queue = queue.Queue()

        def feed(worker):
            while True:
                if cancel is not None and cancel.is_set():
                    return
                try:
                    i, ch = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    results.put((i, worker.call(("eval", token, path, ch)), None))
                except Exception as e:  # reported to the caller below
                    results.put((i, None, e))
                    return

        threads = [threading.Thread(target=feed, args=(w,), daemon=True) for w in self.workers]
        for t in threads:
            t.start()
        got = 0
        error = None
        while got < len(chunks):
            try:
                i, vals, err = results.get(timeout=0.05)
            except queue.Empty:
                if not any(t.is_alive() for t in threads) and results.empty():
                    break  # cancelled, or a worker died
                continue
            got += 1
            if err is not None:
                error = err
                continue
            on_result(i, vals)
        for t in threads:
            t.join()
        if error is not None:
            raise error

    def close(self) -> None:
        for w in self.workers:
            w.close()


def get_pool(n_workers: int) -> Pool:
    """The shared pool with ``n_workers`` processes (restarted if the size changes or a
    worker died)."""
    global _pool
    with _lock:
        if _pool is not None and not all(w.alive() for w in _pool.workers):
            _pool.close()
            _pool = None
        if _pool is not None and _pool.n != n_workers and not _pool.busy.locked():
            _pool.close()  # resized only while idle: a running surface keeps its workers
            _pool = None
        if _pool is None:
            _pool = Pool(n_workers)
        if not _pool.ready:
            _pool.ping()
            _pool.ready = True
        return _pool


def prestart(n_workers: int, preload_export: bool = False) -> None:
    """Start ``n_workers`` worker processes now without waiting for them (their ``import
    torch`` overlaps with the caller loading its model and data); :func:`get_pool` waits for
    them when the points are ready. With ``preload_export`` (a ``.pt2`` is coming) they also
    import torch.export's archive reader (about a second) before the program arrives. Does
    nothing when a pool is already running."""
    global _pool
    with _lock:
        if _pool is None and n_workers > 1:
            _pool = Pool(n_workers, preload_export)


def is_warm(n_workers: int) -> bool:
    """True when a pool of this size is running."""
    return _pool is not None and _pool.n == n_workers and all(w.alive() for w in _pool.workers)


def warm(n_workers: int) -> None:
    """Start the pool now (about 2-3 s once) so the first surface is fast."""
    get_pool(n_workers)


def shutdown() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.close()
            _pool = None


atexit.register(shutdown)


class ShippedTask:
    """A task pickled to a private temporary file; removed on ``close``."""

    def __init__(self, task):
        self.dir = tempfile.mkdtemp(prefix="landscape-")
        self.path = os.path.join(self.dir, "task.pkl")
        try:
            with open(self.path, "wb") as f:
                pickle.dump(task, f, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:
            self.close()
            raise
        self.token = os.path.basename(self.dir)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _serve() -> None:
    """Worker main loop: read a message, answer ``(status, value)``."""
    import torch

    torch.set_num_threads(1)
    if os.environ.get(PRELOAD_EXPORT) == "1":
        import torch._export.serde.serialize  # noqa: F401 - what loading a .pt2 imports first
    from landscape.surface.evaluators import ChunkEvaluator

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    cache: dict = {}
    while True:
        try:
            msg = pickle.load(inp)
        except EOFError:
            return
        try:
            if msg[0] == "ping":
                reply = ("ok", os.getpid())
            else:
                _, token, path, points = msg
                ev = cache.get(token)
                if ev is None:
                    with open(path, "rb") as f:
                        task = pickle.load(f)  # our own temporary file, see ShippedTask
                    ev = ChunkEvaluator(task, "cpu")
                    cache.clear()
                    cache[token] = ev
                reply = ("ok", ev(points))
        except Exception as e:
            reply = ("error", f"{type(e).__name__}: {e}")
        pickle.dump(reply, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()


def run_chunks(chunk_ev, plan, grid, positions, size: int = 64) -> None:
    """Evaluate ``positions`` in chunks of ``size`` with a batched ``ChunkEvaluator``."""
    for pos in plan.chunks(positions, size):
        grid.check_cancel()
        grid.put(pos, *chunk_ev(plan.points(pos)))
        grid.report()


def _choose_vmap_or_points(ev, task, plan, grid, rest, info):
    """Time two more points one at a time and :data:`TRIAL_VMAP` points with ``vmap`` (their
    values are kept); returns ``(task, positions left)``, the task marked ``method="vmap"``
    when vmap was faster by the margin."""
    import dataclasses

    from landscape.surface.evaluators import ChunkEvaluator

    single = []
    for s, (a, b) in zip(rest[:2], plan.points(rest[:2])):
        t = time.perf_counter()
        grid.put_one(int(s), *ev(a, b))
        single.append(time.perf_counter() - t)
    rest = rest[2:]
    trial = rest[:TRIAL_VMAP]
    vtask = dataclasses.replace(task, method="vmap")
    try:
        chunk_ev = ChunkEvaluator(vtask, "cpu")
        t = time.perf_counter()
        vals = chunk_ev(plan.points(trial))
        vmap_s = (time.perf_counter() - t) / len(trial)
    except Exception:  # noqa: BLE001 - a model vmap cannot batch: per-point it is
        info["choice"] = {"per_point_ms": round(min(single) * 1e3, 4), "vmap_ms": None,
                          "chosen": "per-point"}
        return task, rest
    grid.put(trial, *vals)
    grid.report()
    chosen = "vmap" if vmap_s < VMAP_MARGIN * min(single) else "per-point"
    info["choice"] = {"per_point_ms": round(min(single) * 1e3, 4), "vmap_ms": round(vmap_s * 1e3, 4),
                      "chosen": chosen}
    if chosen == "vmap":
        info["method"] = "vmap"
        return vtask, rest[len(trial):]
    return task, rest[len(trial):]


class PoolExecutor:
    """Worker processes when they pay off (see the module docstring), else this thread.
    ``workers``: None decides by the first point's time (up to one per core); a count is
    obeyed (capped at the cores); 1 keeps to this thread."""

    name = "pool"

    def __init__(self, workers: int | None = None):
        self.workers = workers

    def target(self):
        return "cpu", False

    def run(self, task, plan, grid) -> dict:
        import torch

        from landscape.core.device import cpu_count
        from landscape.surface.evaluators import ChunkEvaluator, build_evaluator
        from landscape.surface.executors.local import run_points

        ev = build_evaluator(task)
        info = {"method": ev.name, "device": "cpu", "workers": 1, "executor": "local",
                "threads_per_worker": torch.get_num_threads(),
                "fast_path": getattr(ev, "fast_path", "none")}
        todo = grid.todo()
        if len(todo) == 0:
            return info
        t1 = time.perf_counter()
        (a, b), = plan.points(todo[:1])
        grid.put_one(int(todo[0]), *ev(a, b))
        per_point = time.perf_counter() - t1
        grid.report()
        rest = todo[1:]
        if (ev.name == "module" and "first-layer" not in info["fast_path"] and task.method == "auto"
                and task.bn != "recompute" and len(rest) >= CHOOSE_MIN_POINTS
                and not hasattr(task.model, "batch")):
            task, rest = _choose_vmap_or_points(ev, task, plan, grid, rest, info)
            if task.method == "vmap":
                per_point = info["choice"]["vmap_ms"] / 1e3
        workers = self.workers
        n_workers = cpu_count() if workers is None else max(1, min(int(workers), cpu_count()))
        startup = 0.25 if is_warm(n_workers) else 3.0
        worth_it = workers is not None or per_point * len(rest) > startup
        shipped = None
        if n_workers > 1 and len(rest) >= 4 * n_workers and worth_it:
            try:
                shipped = ShippedTask(task)
            except Exception:  # a module that cannot be pickled: evaluate here
                shipped = None
        if shipped is None:
            if task.method == "vmap":
                run_chunks(ChunkEvaluator(task, "cpu"), plan, grid, rest)
            else:
                run_points(ev, plan, grid, rest)
            return info
        size = max(1, min(64, len(rest) // (n_workers * 6) or 1))
        chunks = plan.chunks(rest, size)

        def on_result(i, vals):
            grid.put(chunks[i], *vals)
            grid.report()

        try:
            pool = get_pool(n_workers)
            info.update(workers=pool.n, executor="pool", threads_per_worker=1)
            pool.run(shipped.token, shipped.path, [plan.points(c) for c in chunks], on_result,
                     grid.cancel)
        except WorkerDied:  # finish what is missing here, with the same evaluator
            info.update(workers=1, executor="local", threads_per_worker=torch.get_num_threads())
            run_points(ev, plan, grid, grid.todo())
        finally:
            shipped.close()
        return info


if __name__ == "__main__":
    _serve()
