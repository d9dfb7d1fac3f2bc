"""Long work in a background thread that a UI can poll and stop.

``BackgroundJob(fn, *args, **kwargs)`` calls ``fn(*args, progress=..., cancel=..., **kwargs)``
in a daemon thread. ``fn`` reports through ``progress(done, total, *partial)`` and checks
``cancel`` (a ``threading.Event``); the job keeps the latest progress, the partial values,
the result or the error message. The thread never touches any UI: a page reads
``job.poll()`` on a timer (``st.fragment(run_every=...)``) and calls ``job.cancel()``.
Swapping the thread for a process later changes nothing for the pages.
"""

from __future__ import annotations

import atexit
import threading
import time
import traceback
import weakref
from dataclasses import dataclass, field

from landscape.core.errors import Cancelled, LandscapeError


@dataclass
class JobStatus:
    state: str  # "running" | "done" | "cancelled" | "error"
    done: int = 0
    total: int = 0
    seconds: float = 0.0
    partial: tuple = field(default_factory=tuple)
    result: object = None
    error: str | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    @property
    def finished(self) -> bool:
        return self.state != "running"


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


class BackgroundJob:
    def __init__(self, fn, *args, label: str = "", **kwargs):
        import torch

        self.label = label
        # The job computes with the torch thread count its creator chose (set again in the
        # job's thread, so a later change elsewhere does not reach a running job).
        self._threads = torch.get_num_threads()
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._status = JobStatus("running")
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, args=(fn, args, kwargs), daemon=True,
                                        name=f"landscape-job-{label}")
        _live_jobs.add(self)
        self._thread.start()

    def _progress(self, done, total, *partial):
        with self._lock:
            self._status.done, self._status.total = int(done), int(total)
            self._status.partial = tuple(p.copy() if hasattr(p, "copy") else p for p in partial)

    def _run(self, fn, args, kwargs):
        import torch

        torch.set_num_threads(self._threads)
        try:
            result = fn(*args, progress=self._progress, cancel=self._cancel, **kwargs)
            state, err = "done", None
        except Cancelled:
            result, state, err = None, "cancelled", None
        except LandscapeError as e:
            result, state, err = None, "error", str(e)
        except Exception as e:  # a bug: keep the message, log the traceback
            traceback.print_exc()
            result, state, err = None, "error", f"{type(e).__name__}: {e}"
        with self._lock:
            self._status.state, self._status.result, self._status.error = state, result, err
            self._status.seconds = time.perf_counter() - self._t0

    def poll(self) -> JobStatus:
        with self._lock:
            s = self._status
            seconds = s.seconds if s.finished else time.perf_counter() - self._t0
            return JobStatus(s.state, s.done, s.total, seconds, s.partial, s.result, s.error)

    def cancel(self) -> None:
        self._cancel.set()

    def join(self, timeout: float | None = None) -> JobStatus:
        self._thread.join(timeout)
        return self.poll()
