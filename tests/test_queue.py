"""The shared compute queue: bounded slots in order, position and cancel while waiting, dedupe
by fingerprint, a memory-bounded LRU result cache, and each job's own thread count."""

import threading
import time

import numpy as np
import torch
from helpers import wait_until

from landscape.core.errors import Cancelled
from landscape.core.jobs import BackgroundJob, live_jobs
from landscape.core.queue import (
    POLL_MAX_SECONDS,
    POLL_SECONDS,
    ComputeQueue,
    ResultCache,
    SharedJobs,
    poll_seconds,
    size_of,
)


def sleeper(seconds, tag=None, log=None, *, progress, cancel):
    if log is not None:
        log.append(tag)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        if cancel.is_set():
            raise Cancelled("stopped", partial=tag)
        time.sleep(0.01)
        progress(1, 2)
    return tag


def test_a_bounded_queue_shows_the_position_and_cancels_while_waiting():
    q = ComputeQueue(1)
    log = []
    first = BackgroundJob(sleeper, 0.6, "a", log, queue=q, threads=1)
    wait_until(lambda: first.poll().state == "running")
    second = BackgroundJob(sleeper, 0.1, "b", log, queue=q, threads=1)
    third = BackgroundJob(sleeper, 0.1, "c", log, queue=q, threads=1)
    wait_until(lambda: third.poll().position == 2)
    s2 = second.poll()
    assert (s2.state, s2.position, s2.finished) == ("queued", 1, False)
    assert q.stats()["queued"] == 2 and q.stats()["running"] == 1
    t0 = time.perf_counter()
    second.cancel()
    s2 = second.join(2)
    assert time.perf_counter() - t0 < 0.5 and s2.state == "cancelled" and s2.result is None
    wait_until(lambda: third.poll().position == 1)  # it moved up
    assert first.join(5).result == "a" and third.join(5).result == "c"
    assert log == ["a", "c"]  # the cancelled one never ran; the others ran in arrival order
    assert q.stats() == {"slots": 1, "queued": 0, "running": 0, "slots_used": 0}


def test_slots_bound_how_many_jobs_run_at_once():
    q = ComputeQueue(2)
    running, peak, lock = [0], [0], threading.Lock()

    def work(*, progress, cancel):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.1)
        with lock:
            running[0] -= 1

    jobs = [BackgroundJob(work, queue=q, threads=1) for _ in range(6)]
    for j in jobs:
        assert j.join(10).state == "done"
    assert peak[0] == 2
    # a job with two threads takes both slots
    two = BackgroundJob(sleeper, 0.4, queue=q, threads=2)
    wait_until(lambda: two.poll().state == "running")
    one = BackgroundJob(sleeper, 0.0, queue=q, threads=1)
    time.sleep(0.15)
    assert one.poll().state == "queued"
    two.join(5)
    assert one.join(5).state == "done"


def test_identical_requests_share_one_computation_and_then_the_cache():
    jobs = SharedJobs(2, cache_mb=16)
    calls = []

    def work(x, *, progress, cancel):
        calls.append(x)
        time.sleep(0.3)
        return np.full(4, x)

    a = jobs.submit("fp-1", work, 1.0, threads=1)
    b = jobs.submit("fp-1", work, 1.0, threads=1)
    assert a.job is b.job and b.shared == 2 and b.poll().shared == 2
    other = jobs.submit("fp-2", work, 2.0, threads=1)
    assert other.job is not a.job
    assert np.array_equal(a.join(5).result, [1, 1, 1, 1]) and b.join(5).result is a.poll().result
    other.join(5)
    c = jobs.submit("fp-1", work, 1.0, threads=1)
    assert c.cached and c.poll().state == "done" and c.poll().result is a.poll().result
    assert sorted(calls) == [1.0, 2.0]  # three requests for fp-1, one computation
    assert jobs.stats()["cache_entries"] == 2 and jobs.stats()["computing"] == 0


def test_panels_refresh_less_often_as_more_tabs_watch():
    """Up to two watching tabs per core refresh every POLL_SECONDS; beyond, the total refresh
    rate (watchers / interval) stays at 2 x cores per POLL_SECONDS until the cap."""
    assert poll_seconds(1, 2) == poll_seconds(4, 2) == POLL_SECONDS
    for n in (8, 12, 16):
        assert abs(n / poll_seconds(n, 2) - 4 / POLL_SECONDS) < 1e-6 * n
    assert poll_seconds(200, 2) == POLL_MAX_SECONDS and poll_seconds(0, 0) == POLL_SECONDS
    jobs = SharedJobs(2, cache_mb=1)
    gate = threading.Event()

    def work(*, progress, cancel):
        gate.wait(5)
        return 1

    tickets = [jobs.submit("same", work) for _ in range(3)] + [jobs.submit("other", work)]
    assert jobs.watchers() == 4
    tickets[0].cancel()
    assert jobs.watchers() == 3
    gate.set()
    for t in tickets[1:]:
        t.join(5)
    assert jobs.watchers() == 0


def test_a_tab_that_cancels_detaches_and_the_last_one_stops_the_job():
    jobs = SharedJobs(2, cache_mb=16)
    a = jobs.submit("fp", sleeper, 0.5, "x", threads=1)
    b = jobs.submit("fp", sleeper, 0.5, "x", threads=1)
    wait_until(lambda: a.poll().state == "running")
    a.cancel()
    assert a.poll().state == "cancelled" and b.poll().state == "running" and b.shared == 1
    assert b.join(5).state == "done" and b.poll().result == "x"
    # both gone: the computation stops, and its partial result is not cached
    c = jobs.submit("fp2", sleeper, 5.0, "y", threads=1)
    d = jobs.submit("fp2", sleeper, 5.0, "y", threads=1)
    wait_until(lambda: c.poll().state == "running")
    t0 = time.perf_counter()
    c.cancel()
    d.cancel()
    assert c.join(2).state == "cancelled" and time.perf_counter() - t0 < 1.0
    assert not jobs.cache.get("fp2")[0]
    e = jobs.submit("fp2", sleeper, 0.0, "y", threads=1)  # asked again: computed again
    assert not e.cached and e.job is not c.job and e.join(5).result == "y"


def test_the_result_cache_is_lru_under_a_memory_bound():
    mb = 2**20
    cache = ResultCache(3 * mb)
    for k in "abc":
        assert cache.put(k, np.zeros(mb // 8))  # 1 MB each
    assert cache.get("a")[0]  # a is now the most recent
    cache.put("d", np.zeros(mb // 8))
    assert [cache.get(k)[0] for k in "abcd"] == [True, False, True, True]  # b was least recent
    assert cache.stats()["entries"] == 3 and cache.stats()["mb"] <= 3
    assert not cache.put("huge", np.zeros(4 * mb // 8))  # over the bound alone: not kept
    assert not cache.get("huge")[0] and cache.stats()["entries"] == 3


def test_size_of_counts_arrays_and_tensors_inside_results():
    class Result:
        def __init__(self):
            self.loss = np.zeros((100, 100))
            self.meta = {"t": torch.zeros(1000, dtype=torch.float64), "again": None}
            self.meta["again"] = self.loss  # counted once

    size = size_of(Result())
    assert 80_000 + 8_000 <= size < 80_000 + 8_000 + 5_000
    assert size_of(torch.nn.Linear(10, 10)) == 110 * 4


def test_each_job_computes_with_its_own_thread_count():
    """torch's thread count is per thread, but read lazily: a thread's first read takes the
    count any thread set last. A job keeps its own count whatever other threads set after it
    started (what a page used to do for the whole process)."""
    go = threading.Event()
    started = {1: threading.Event(), 2: threading.Event()}
    seen = {1: set(), 2: set()}

    def watch(n, *, progress, cancel):
        started[n].set()
        go.wait(5)
        for _ in range(20):
            seen[n].add(torch.get_num_threads())
            time.sleep(0.002)

    before = torch.get_num_threads()
    jobs = [BackgroundJob(watch, n, threads=n) for n in (1, 2)]
    for n in (1, 2):
        started[n].wait(5)
    torch.set_num_threads(2)  # another thread sets a count after both jobs set theirs ...
    torch.set_num_threads(1)
    torch.set_num_threads(2)
    go.set()
    for k in range(10):
        torch.set_num_threads(1 + k % 2)  # ... and keeps changing it while they compute
        time.sleep(0.003)
    for j in jobs:
        j.join(5)
    torch.set_num_threads(before)
    assert seen == {1: {1}, 2: {2}}
    assert jobs[0].poll().threads == 1 and jobs[1].poll().threads == 2


def test_nothing_is_left_after_the_jobs_end():
    jobs = SharedJobs(1, cache_mb=1)
    tickets = [jobs.submit(f"fp{i}", sleeper, 0.05, i, threads=1) for i in range(4)]
    tickets[-1].cancel()
    for t in tickets:
        t.join(5)
    s = jobs.stats()
    assert (s["queued"], s["running"], s["computing"]) == (0, 0, 0)
    wait_until(lambda: live_jobs() == 0)
