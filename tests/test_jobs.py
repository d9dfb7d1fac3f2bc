"""The one background job: progress, partial values, pause/resume, cancel, errors."""

import threading
import time

import pytest
from helpers import wait_until

from landscape.core.errors import Cancelled, LandscapeError
from landscape.core.jobs import BackgroundJob, JobControl


def counter(n, dt=0.01, *, progress, cancel, fail_at=None, error=LandscapeError):
    """Count to ``n``, one step per ``dt`` seconds, reporting the count as a partial value."""
    done = 0
    for i in range(n):
        if cancel.is_set():
            raise Cancelled(f"stopped at {done}", partial=done)
        if fail_at is not None and i == fail_at:
            raise error("the input is wrong")
        time.sleep(dt)
        done = i + 1
        progress(done, n, done, [done])
    return done


def test_progress_partial_values_and_result():
    job = BackgroundJob(counter, 30, label="count")
    wait_until(lambda: job.poll().done >= 5)
    s = job.poll()
    assert s.state == "running" and s.total == 30 and 0 < s.fraction < 1
    assert s.partial[0] == s.done and s.partial[1] == [s.done]  # partials are copies
    s = job.join(10)
    assert (s.state, s.result, s.done, s.fraction, s.error) == ("done", 30, 30, 1.0, None)
    assert s.finished and not job.running and s.seconds > 0


def test_partial_values_are_copies():
    box = [0]

    def work(*, progress, cancel):
        progress(1, 2, box)
        box.append(1)
        return None

    job = BackgroundJob(work)
    s = job.join(5)
    assert s.partial[0] == [0]


def test_pause_holds_the_work_and_resume_continues():
    job = BackgroundJob(counter, 400, 0.005, label="pausable")
    wait_until(lambda: job.poll().done >= 3)
    job.pause()
    time.sleep(0.1)  # the step under way ends, then the job holds at its next check
    held = job.poll()
    assert held.state == "paused" and not held.finished
    time.sleep(0.4)
    assert job.poll().done == held.done  # no progress while paused
    assert job.running
    job.resume()
    wait_until(lambda: job.poll().done > held.done + 5)
    assert job.poll().state == "running"
    s = job.join(10)
    assert s.state == "done" and s.result == 400


def test_cancel_is_quick_and_keeps_the_partial_result():
    job = BackgroundJob(counter, 10_000, 0.01, label="cancel")
    wait_until(lambda: job.poll().done >= 5)
    t0 = time.perf_counter()
    job.cancel()
    s = job.join(2)
    assert time.perf_counter() - t0 < 1.0 and not job.running
    assert s.state == "cancelled" and s.error is None
    assert 5 <= s.result == s.done < 10_000


def test_cancel_while_paused_ends_the_job():
    job = BackgroundJob(counter, 10_000, 0.01)
    wait_until(lambda: job.poll().done >= 2)
    job.pause()
    time.sleep(0.1)
    t0 = time.perf_counter()
    job.cancel()
    s = job.join(2)
    assert time.perf_counter() - t0 < 1.0
    assert s.state == "cancelled" and s.result == s.done


@pytest.mark.parametrize("error, prefix", [(LandscapeError, ""), (RuntimeError, "RuntimeError: ")])
def test_errors_become_one_line_messages(error, prefix, capsys):
    job = BackgroundJob(counter, 10, 0.001, fail_at=3, error=error)
    s = job.join(5)
    assert s.state == "error" and s.result is None
    assert s.error == prefix + "the input is wrong"  # one line, no traceback


def test_threads_and_the_control_outside_a_job():
    import torch

    seen = []
    job = BackgroundJob(lambda *, progress, cancel: seen.append(torch.get_num_threads()), threads=1)
    job.join(5)
    assert seen == [1]
    # Code that checks cancel.is_set() runs the same with a plain Event or a JobControl.
    c = JobControl()
    assert not c.is_set() and not c.paused
    c.pause()
    assert c.paused
    threading.Timer(0.2, c.resume).start()
    t0 = time.perf_counter()
    assert not c.is_set()  # blocks while paused
    assert time.perf_counter() - t0 >= 0.15
    c.set()
    assert c.is_set() and not c.paused
    assert counter(3, 0, progress=lambda *a: None, cancel=threading.Event()) == 3


def _panel_script():
    import time

    import streamlit as st

    from ui import jobs

    def count(n, *, progress, cancel):
        for i in range(n):
            if cancel.is_set():
                return None
            time.sleep(0.01)
            progress(i + 1, n, f"step {i + 1}")
        return n

    res = jobs.keyed_result("count", "k", count, 500, pausable=True,
                            preview=lambda s: st.caption(f"preview {s.done}"))
    if res is not None:
        st.metric("Result", res)


def test_the_job_panel_pauses_resumes_and_previews():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_panel_script, default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    assert at.button(key="count_cancel") and at.button(key="count_pause")
    time.sleep(0.3)
    at.run()
    assert any(c.value.startswith("preview ") for c in at.caption)
    assert at.get("progress")[0].proto.text.startswith("step ")
    at.button(key="count_pause").click().run()
    time.sleep(0.2)
    at.run()
    assert at.button(key="count_resume") and at.get("progress")[0].proto.text.startswith("Paused")
    held = at.session_state["count_job"]["job"].poll().done
    time.sleep(0.3)
    assert at.session_state["count_job"]["job"].poll().done == held
    at.button(key="count_resume").click().run()
    for _ in range(100):
        time.sleep(0.1)
        at.run()
        if at.metric:
            break
    assert at.metric[0].value == "500" and not at.exception


def _threads_script():
    import time

    import streamlit as st
    import torch

    from ui import jobs

    def work(*, progress, cancel):
        time.sleep(0.3)  # long enough for the other tab's job to run at the same time
        return torch.get_num_threads()

    res = jobs.keyed_result("threads_probe", "same settings", work)
    if res is not None:
        st.metric("Threads", res)


def _until_metric(at, seconds=20):
    for _ in range(int(seconds / 0.1)):
        if at.metric:
            return at.metric[0].value
        time.sleep(0.1)
        at.run()
    raise AssertionError("no result")


def test_two_tabs_compute_with_their_own_threads_and_share_identical_work():
    """A tab's thread setting reaches its own jobs only; a third tab with the same settings
    as the first attaches to its computation or its cached result instead of computing again."""
    from streamlit.testing.v1 import AppTest

    from landscape.core.queue import shared

    tabs = []
    for n in (1, 2, 1):
        at = AppTest.from_function(_threads_script, default_timeout=30)
        at.session_state["threads"] = n
        at.run()
        tabs.append(at)
    assert [_until_metric(at) for at in tabs] == ["1", "2", "1"]
    assert sum(1 for k in shared().cache._items if '"threads_probe"' in k) == 2


def test_a_queued_job_shows_its_place_and_cancels_while_it_waits():
    from streamlit.testing.v1 import AppTest

    from landscape.core.queue import shared

    q = shared().queue
    blockers = [object() for _ in range(q.slots)]
    for b in blockers:  # every slot busy
        assert q.acquire(b, 1)
    try:
        at = AppTest.from_function(_panel_script, default_timeout=30)
        at.session_state["seed"] = 12345  # a fingerprint no other test computes
        at.run()
        text = at.get("progress")[0].proto.text
        assert text.startswith("Queued: number 1 in line"), text
        assert [b.key for b in at.button] == ["count_cancel"]  # no Pause while it waits
        job = at.session_state["count_job"]["job"]
        at.button(key="count_cancel").click().run()
        assert job.join(2).state == "cancelled" and job.poll().done == 0  # it never ran
        assert q.stats()["queued"] == 0
    finally:
        for b in blockers:
            q.release(b)
