"""One compute queue for a server with many tabs: bounded, deduplicating, with a result cache.

Streamlit runs every browser tab in one process. :func:`shared` is that process's one
:class:`SharedJobs`: heavy jobs of every tab wait in one FIFO :class:`ComputeQueue` whose
slots are the cores (plus one per GPU); a job takes as many slots as it has torch threads.
A queued job polls as ``"queued"`` with its position, and cancelling it while it waits ends it
at once.

Dedupe: a request is named by a *fingerprint* (model, data, settings, seed, threads, device:
whatever decides the result, as a string). ``submit(fingerprint, fn, ...)`` answers a
:class:`Ticket`: from the :class:`ResultCache` when the result is there, attached to the
running job when one computes the same fingerprint, else for a new job. Cancelling a ticket
detaches its tab; the job stops only when no tab is attached any more. Results are cached
under a memory bound (``LANDSCAPE_RESULT_CACHE_MB``, default 512) and evicted least recently
used; a result larger than the bound is handed out but not kept.

Nothing here imports Streamlit: the job panel (``ui/jobs.py``) holds one ticket per tab and
page, and the tab's release cancels it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import OrderedDict

from landscape.core.jobs import BackgroundJob, JobStatus, live_jobs

DEFAULT_CACHE_MB = 512
POLL_SECONDS = 0.3  # a job panel's refresh when few tabs watch
POLL_MAX_SECONDS = 1.5


def poll_seconds(watchers: int, cores: int) -> float:
    """How often a tab's job panel refreshes when ``watchers`` tabs watch running jobs on
    ``cores`` cores: :data:`POLL_SECONDS` up to two watchers per core, then longer in
    proportion, so that all panels together cost about the same CPU time however many
    students watch (each refresh reruns a fragment and redraws a preview in its browser);
    at most :data:`POLL_MAX_SECONDS`."""
    per_core = max(1, int(watchers)) / (2 * max(1, int(cores)))
    return round(min(POLL_MAX_SECONDS, POLL_SECONDS * max(1.0, per_core)), 3)


class ComputeQueue:
    """``slots`` units of compute handed out first come, first served; a job holds
    ``min(weight, slots)`` of them while it runs."""

    def __init__(self, slots: int):
        self.slots = max(1, int(slots))
        self._cond = threading.Condition()
        self._waiting: list = []  # owners in arrival order
        self._held: dict = {}  # owner -> slots held

    def acquire(self, owner, weight: int = 1, stop=None, poll: float = 0.05) -> bool:
        """Wait until ``owner`` is first in line and its slots are free; False (and out of the
        line) as soon as ``stop()`` is true."""
        w = min(max(1, int(weight)), self.slots)
        with self._cond:
            self._waiting.append(owner)
            try:
                while True:
                    if stop is not None and stop():
                        return False
                    if self._waiting[0] is owner and sum(self._held.values()) + w <= self.slots:
                        self._held[owner] = w
                        return True
                    self._cond.wait(poll)
            finally:
                self._waiting.remove(owner)
                self._cond.notify_all()

    def release(self, owner) -> None:
        with self._cond:
            self._held.pop(owner, None)
            self._cond.notify_all()

    def position(self, owner) -> int:
        """1 for the next in line, 0 when ``owner`` is not waiting."""
        with self._cond:
            try:
                return self._waiting.index(owner) + 1
            except ValueError:
                return 0

    def stats(self) -> dict:
        with self._cond:
            return {"slots": self.slots, "queued": len(self._waiting), "running": len(self._held),
                    "slots_used": sum(self._held.values())}


def size_of(obj, _seen=None, _depth=0) -> int:
    """Bytes a result holds, roughly: array and tensor buffers exactly, containers and objects
    by walking their items and attributes (each object once)."""
    seen = set() if _seen is None else _seen
    if id(obj) in seen or _depth > 12:
        return 0
    seen.add(id(obj))
    nbytes = getattr(obj, "nbytes", None)
    if isinstance(nbytes, int) and hasattr(obj, "dtype"):  # numpy array (also a view's base)
        return nbytes
    if "torch" in sys.modules:
        import torch

        if isinstance(obj, torch.Tensor):
            return obj.element_size() * obj.nelement()
        if isinstance(obj, torch.nn.Module):
            return sum(size_of(t, seen, _depth + 1) for t in (*obj.parameters(), *obj.buffers()))
    size = sys.getsizeof(obj, 64)
    if isinstance(obj, dict):
        items = [*obj.keys(), *obj.values()]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        items = list(obj)
    elif hasattr(obj, "__dict__"):
        items = list(vars(obj).values())
    elif hasattr(obj, "__slots__"):
        items = [getattr(obj, n, None) for n in obj.__slots__]
    else:
        items = []
    return size + sum(size_of(v, seen, _depth + 1) for v in items)


class ResultCache:
    """Results by fingerprint, least recently used evicted first, at most ``max_bytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max(0, int(max_bytes))
        self._items: OrderedDict = OrderedDict()  # key -> (value, bytes)
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key):
        """``(True, value)`` and the entry becomes the most recent, or ``(False, None)``."""
        with self._lock:
            if key not in self._items:
                return False, None
            self._items.move_to_end(key)
            return True, self._items[key][0]

    def put(self, key, value) -> bool:
        """Keep ``value`` (evicting the least recently used); False when it alone is over the bound."""
        size = size_of(value)
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            if size > self.max_bytes:
                return False
            while self._items and self._bytes + size > self.max_bytes:
                self._bytes -= self._items.popitem(last=False)[1][1]
            self._items[key] = (value, size)
            self._bytes += size
            return True

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def stats(self) -> dict:
        with self._lock:
            return {"entries": len(self._items), "mb": self._bytes / 2**20,
                    "max_mb": self.max_bytes / 2**20}


class _Entry:
    def __init__(self, fingerprint: str):
        self.fingerprint = fingerprint
        self.job: BackgroundJob | None = None
        self.holders = 0


class Ticket:
    """One tab's view of a computation: ``poll``, ``cancel`` (detach), ``pause``/``resume``
    (only while this tab is the only one attached), ``join``."""

    def __init__(self, owner: SharedJobs, fingerprint: str, entry: _Entry | None, result=None):
        self._owner, self.fingerprint, self._entry = owner, fingerprint, entry
        self._result = result
        self._detached = False
        self.cached = entry is None

    @property
    def job(self) -> BackgroundJob | None:
        return None if self._entry is None else self._entry.job

    @property
    def shared(self) -> int:
        """Tabs attached to this computation (1: only this one)."""
        return 1 if self._entry is None else max(1, self._entry.holders)

    def poll(self) -> JobStatus:
        if self._entry is None:
            return JobStatus("done", 1, 1, 0.0, (), self._result)
        s = self._entry.job.poll()
        if self._detached and self._entry.holders > 0 and not s.finished:
            # others still compute it; for this tab it ended
            s.state = "cancelled"
        s.shared = self.shared
        return s

    def cancel(self) -> None:
        if self._entry is not None and not self._detached:
            self._detached = True
            self._owner._detach(self._entry)

    def pause(self) -> None:
        if self._entry is not None and self._entry.holders <= 1:
            self._entry.job.pause()

    def resume(self) -> None:
        if self._entry is not None:
            self._entry.job.resume()

    @property
    def running(self) -> bool:
        return self._entry is not None and self._entry.job.running

    def join(self, timeout: float | None = None) -> JobStatus:
        if self._entry is not None:
            self._entry.job.join(timeout)
        return self.poll()


class SharedJobs:
    """The queue, the running computations by fingerprint and the result cache."""

    def __init__(self, slots: int, cache_mb: float = DEFAULT_CACHE_MB):
        self.queue = ComputeQueue(slots)
        self.cache = ResultCache(int(cache_mb * 2**20))
        self._running: dict = {}  # fingerprint -> _Entry
        self._lock = threading.Lock()

    def submit(self, fingerprint: str, fn, *args, label: str = "", threads: int = 1,
               **kwargs) -> Ticket:
        """A ticket for ``fn(*args, progress=..., cancel=..., **kwargs)`` named ``fingerprint``:
        the cached result, the running job, or a new queued job on ``threads`` torch threads."""
        with self._lock:
            found, value = self.cache.get(fingerprint)
            if found:
                return Ticket(self, fingerprint, None, value)
            entry = self._running.get(fingerprint)
            if entry is None or entry.job.cancel_requested:
                entry = _Entry(fingerprint)
                self._running[fingerprint] = entry
                entry.job = BackgroundJob(self._work, fingerprint, entry, fn, *args, label=label,
                                          threads=threads, queue=self.queue, **kwargs)
            entry.holders += 1
            return Ticket(self, fingerprint, entry)

    def _work(self, fingerprint, entry, fn, *args, progress, cancel, **kwargs):
        try:
            result = fn(*args, progress=progress, cancel=cancel, **kwargs)
            if not cancel.cancelled():  # a cancelled run's partial result is not the result
                self.cache.put(fingerprint, result)
            return result
        finally:
            with self._lock:
                if self._running.get(fingerprint) is entry:
                    del self._running[fingerprint]

    def _detach(self, entry: _Entry) -> None:
        with self._lock:
            entry.holders -= 1
            last = entry.holders <= 0
            if last and self._running.get(entry_fp := entry.fingerprint) is entry:
                del self._running[entry_fp]  # a job cancelled in the queue never runs _work
        if last:
            entry.job.cancel()

    def watchers(self) -> int:
        """Tabs attached to running or queued computations."""
        with self._lock:
            return sum(max(0, e.holders) for e in self._running.values())

    def stats(self) -> dict:
        """Counts for a load test or a status line: the queue, computations, cache, job threads."""
        with self._lock:
            computing = len(self._running)
        cache = self.cache.stats()
        return {**self.queue.stats(), "computing": computing, "cache_entries": cache["entries"],
                "cache_mb": round(cache["mb"], 2), "cache_max_mb": cache["max_mb"],
                "live_jobs": live_jobs(),
                "job_threads": sum(1 for t in threading.enumerate() if t.name.startswith("landscape-job"))}


_shared: SharedJobs | None = None
_shared_lock = threading.Lock()


def default_slots() -> int:
    """The cores this process may use, plus one per GPU."""
    from landscape.core.device import cpu_count

    gpus = 0
    if "torch" in sys.modules:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return cpu_count() + gpus


def cache_mb_setting() -> float:
    raw = os.environ.get("LANDSCAPE_RESULT_CACHE_MB", str(DEFAULT_CACHE_MB))
    try:
        mb = float(raw)
    except ValueError:
        from landscape.core.errors import LandscapeError

        raise LandscapeError(f"LANDSCAPE_RESULT_CACHE_MB must be a number of megabytes, got {raw!r}") from None
    return max(0.0, mb)


def shared() -> SharedJobs:
    """This process's one queue and cache (slots: :func:`default_slots`)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SharedJobs(default_slots(), cache_mb_setting())
        return _shared


def write_stats(path: str, every: float = 0.25, stop: threading.Event | None = None) -> threading.Thread:
    """Write :meth:`SharedJobs.stats` as one JSON object to ``path`` every ``every`` seconds in a
    daemon thread (for ``benchmarks/load.py``, which reads the server from outside)."""

    def loop():
        while stop is None or not stop.is_set():
            tmp = f"{path}.tmp"
            with open(tmp, "w") as f:
                json.dump({**shared().stats(), "time": time.time()}, f)
            os.replace(tmp, path)
            time.sleep(every)

    t = threading.Thread(target=loop, daemon=True, name="landscape-stats")
    t.start()
    return t
