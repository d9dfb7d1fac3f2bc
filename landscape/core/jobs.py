"""The one background job: long work in a thread that a UI can poll, pause, resume and stop.

``BackgroundJob(fn, *args, **kwargs)`` calls ``fn(*args, progress=..., cancel=..., **kwargs)``
in a daemon thread. ``fn`` reports through ``progress(done, total, *partial)`` and checks
``cancel.is_set()`` between steps; the job keeps the latest progress, the partial values
(e.g. a coarse surface, or a lesson's result so far), the result or the error message.

``cancel`` is a :class:`JobControl`: it answers ``is_set()`` like a ``threading.Event``, and
while the job is paused that call waits until it is resumed or cancelled. So every long
computation that checks for cancellation between steps can be paused too, at no cost to
code that runs without a job (a plain ``threading.Event`` works the same there).

The thread never touches any UI: a page reads ``job.poll()`` on a timer and calls
``cancel()``, ``pause()`` or ``resume()``. Surfaces, Hessian reports, live training and every
lesson run through this one class.

Isolation: torch's thread count is per thread, so a job sets ``threads`` in its own thread
before it computes and never changes it for the process; a server with many tabs passes
each tab's count explicitly (the default, the creator's count, is for the CLI and tests).
With ``queue`` (a :class:`landscape.core.queue.ComputeQueue`) the job first waits for a
slot: it polls as ``"queued"`` with its ``position`` and a cancel while waiting ends it at
once (see :mod:`landscape.core.queue` for the shared queue, dedupe and the result cache).
"""

from __future__ import annotations

import atexit
import threading
import time
import traceback
import weakref
from dataclasses import dataclass, field

from landscape.core.errors import Cancelled, LandscapeError


class JobControl:
    """A cancel flag that also pauses: ``is_set()`` blocks while paused (until resumed or
    cancelled), then tells whether the work should stop."""

    def __init__(self):
        self._cancel = threading.Event()
        self._go = threading.Event()
        self._go.set()

    def is_set(self) -> bool:
        while not self._go.is_set() and not self._cancel.is_set():
            self._go.wait(0.1)
        return self._cancel.is_set()

    def set(self) -> None:
        self._cancel.set()
        self._go.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._cancel.wait(timeout)

    def cancelled(self) -> bool:
        """Whether cancel was asked, without waiting while paused."""
        return self._cancel.is_set()

    def pause(self) -> None:
        if not self._cancel.is_set():
            self._go.clear()

    def resume(self) -> None:
        self._go.set()

    @property
    def paused(self) -> bool:
        return not self._go.is_set() and not self._cancel.is_set()


@dataclass
class JobStatus:
    state: str  # "queued" | "running" | "paused" | "done" | "cancelled" | "error"
    done: int = 0
    total: int = 0
    seconds: float = 0.0
    partial: tuple = field(default_factory=tuple)
    result: object = None
    error: str | None = None
    position: int = 0  # 1 = next in the queue; 0 when not queued
    threads: int = 0  # torch threads the job computes with
    shared: int = 1  # tabs attached to this computation (see landscape.core.queue)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    @property
    def finished(self) -> bool:
        return self.state not in ("queued", "running", "paused")


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


_live_jobs: weakref.WeakSet = weakref.WeakSet()


def stop_all(timeout: float = 10.0) -> None:
    """Cancel every job still running and wait for its thread (at interpreter exit, so no
    thread is killed in the middle of a torch call)."""
    jobs = list(_live_jobs)
    for job in jobs:
        job.cancel()
    for job in jobs:
        job.join(timeout)


atexit.register(stop_all)


def live_jobs() -> int:
    """Jobs whose thread is still alive in this process (queued, running or paused)."""
    return sum(1 for job in list(_live_jobs) if job.running)


class BackgroundJob:
    """``fn(*args, progress=..., cancel=..., **kwargs)`` in a daemon thread; ``threads`` is the
    torch thread count the job computes with (default: its creator's)."""

    def __init__(self, fn, *args, label: str = "", threads: int | None = None, queue=None, **kwargs):
        import torch

        self.label = label
        self._queue = queue
        # The job computes with the torch thread count its creator chose (set again in the
        # job's thread, so a later change elsewhere does not reach a running job).
        self._threads = max(1, int(threads)) if threads else torch.get_num_threads()
        self._cancel = JobControl()
        self._lock = threading.Lock()
        self._status = JobStatus("queued" if queue is not None else "running", threads=self._threads)
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, args=(fn, args, kwargs), daemon=True,
                                        name=f"landscape-job-{label}")
        _live_jobs.add(self)
        self._thread.start()

    def _progress(self, done, total, *partial):
        """Record progress; the partial values, when given, replace the previous ones."""
        with self._lock:
            self._status.done, self._status.total = int(done), int(total)
            if partial:
                self._status.partial = tuple(p.copy() if hasattr(p, "copy") else p for p in partial)

    def _run(self, fn, args, kwargs):
        import torch

        # torch's count is per thread but initialised lazily: a thread's first read takes the
        # count any thread set last, even after this thread set its own. Read once (that
        # initialises it), then set: from here on only this thread changes its count.
        torch.get_num_threads()
        torch.set_num_threads(self._threads)
        if self._queue is not None:
            if not self._queue.acquire(self, self._threads, stop=self._cancel.cancelled):
                with self._lock:  # cancelled while it waited: nothing ran
                    self._status.state = "cancelled"
                    self._status.seconds = time.perf_counter() - self._t0
                return
            with self._lock:
                self._status.state = "running"
                self._t0 = time.perf_counter()  # seconds count the work, not the wait
        try:
            self._work(fn, args, kwargs)
        finally:
            if self._queue is not None:
                self._queue.release(self)

    def _work(self, fn, args, kwargs):
        try:
            result = fn(*args, progress=self._progress, cancel=self._cancel, **kwargs)
            state, err = "done", None
        except Cancelled as e:  # the partial result, if any, stays readable
            result, state, err = getattr(e, "partial", None), "cancelled", None
        except LandscapeError as e:
            result, state, err = None, "error", _first_line(e)
        except Exception as e:  # a bug: keep the message's first line, log the traceback
            traceback.print_exc()
            result, state, err = None, "error", f"{type(e).__name__}: {_first_line(e)}"
        with self._lock:
            self._status.state, self._status.result, self._status.error = state, result, err
            self._status.seconds = time.perf_counter() - self._t0

    def poll(self) -> JobStatus:
        with self._lock:
            s = self._status
            seconds = s.seconds if s.finished else time.perf_counter() - self._t0
            state = "paused" if s.state == "running" and self._cancel.paused else s.state
            position = self._queue.position(self) if state == "queued" else 0
            return JobStatus(state, s.done, s.total, seconds, s.partial, s.result, s.error,
                             position, s.threads)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.cancelled()

    def pause(self) -> None:
        """Hold the work at its next cancellation check; :meth:`resume` goes on from there."""
        self._cancel.pause()

    def resume(self) -> None:
        self._cancel.resume()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> JobStatus:
        self._thread.join(timeout)
        return self.poll()
