"""The lessons' kit: the config base (dict round trip, unknown keys, checks) and a lesson run
in the one background job (partial results, pause and resume, cancel keeps the partial)."""

import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from landscape.core.errors import LandscapeError
from landscape.lessons import kit


@dataclass
class ToyConfig(kit.LessonConfig):
    what = "toy"

    steps: int = 5
    widths: tuple[int, ...] = (4, 4)
    amplitudes: str | tuple[float, ...] = "equal"
    pair: tuple[int, int] = (3, 8)
    lr: float | None = None
    model: dict = None

    def validate(self) -> None:
        kit.check(kit.is_int(self.steps) and self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        kit.check(self.lr is None or kit.is_pos(self.lr), f"learning rate must be positive, got {self.lr}")


def test_config_dict_round_trip():
    cfg = ToyConfig(steps=7, widths=(8, 16, 8), amplitudes=(1.0, 0.5), lr=0.1,
                    model={"name": "mlp", "args": {"widths": (3, 2)}})
    d = cfg.to_dict()
    assert d["widths"] == [8, 16, 8] and d["amplitudes"] == [1.0, 0.5] and d["pair"] == [3, 8]
    assert d["model"]["args"]["widths"] == [3, 2]  # JSON-ready all the way down
    back = ToyConfig.from_dict(d)
    assert back.widths == (8, 16, 8) and back.amplitudes == (1.0, 0.5) and back.pair == (3, 8)
    assert back.model == {"name": "mlp", "args": {"widths": [3, 2]}}  # a dict field stays as given
    assert back.to_dict() == d
    assert ToyConfig.from_dict({"amplitudes": "rising"}).amplitudes == "rising"
    assert ToyConfig.from_dict({}) == ToyConfig()


def test_config_unknown_keys_are_one_line_errors():
    with pytest.raises(LandscapeError, match=r"unknown toy options: \['bogus', 'zeta'\]") as e:
        ToyConfig.from_dict({"steps": 3, "zeta": 1, "bogus": 2})
    assert "\n" not in str(e.value)


def test_checks():
    assert kit.is_int(3) and kit.is_int(np.int64(3)) and kit.is_int(4.0)
    assert not kit.is_int(True) and not kit.is_int(2.5) and not kit.is_int("3")
    assert kit.is_pos(0.1) and not kit.is_pos(0) and not kit.is_pos(float("inf")) and not kit.is_pos(True)
    assert kit.is_finite(-2) and not kit.is_finite(float("nan")) and not kit.is_finite(None)
    kit.check(True, "never")
    with pytest.raises(LandscapeError, match="steps must be >= 1, got 0"):
        ToyConfig(steps=0).validate()
    with pytest.raises(LandscapeError, match=r"unknown encoding 'x'; choose one of \('a', 'b'\)"):
        kit.check_choice("x", ("a", "b"), "encoding")


class FakeRun:
    """``steps`` events; ``gate`` (if given) must be set before each step goes on (then the
    cancel check, which holds a paused job)."""

    def __init__(self, steps, gate=None):
        self.steps, self.step, self.gate = steps, 0, gate

    @property
    def done(self):
        return self.step >= self.steps

    def run(self, cancel=None):
        while self.step < self.steps:
            if self.gate is not None:
                self.gate.wait(5)
                self.gate.clear()
            if cancel is not None and cancel.is_set():
                return
            self.step += 1
            yield type("Event", (), {"step": self.step, "even": self.step % 2 == 0})()

    def result(self):
        return list(range(self.step))


def _wait(job, cond, timeout=5.0):
    t0 = time.perf_counter()
    while not cond(job.poll()):
        assert time.perf_counter() - t0 < timeout, job.poll()
        time.sleep(0.01)
    return job.poll()


def test_lesson_job_runs_to_the_end():
    job = kit.lesson_job(lambda: FakeRun(6), 6, label="toy")
    st = job.join(5)
    assert st.state == "done" and st.result == list(range(6)) and (st.done, st.total) == (6, 6)
    assert st.partial == (list(range(6)),)


def test_lesson_job_partial_results_pause_resume_and_cancel():
    gate = threading.Event()
    job = kit.lesson_job(lambda: FakeRun(100, gate), 100, publish=lambda ev: ev.even, label="toy")
    gate.set()
    st = _wait(job, lambda s: s.done >= 1)
    gate.set()
    st = _wait(job, lambda s: s.done >= 2)
    assert st.state == "running" and st.partial == ([0, 1],)  # published on even steps only
    gate.set()
    st = _wait(job, lambda s: s.done >= 3)
    assert st.partial == ([0, 1],)
    job.pause()
    gate.set()  # the run would go on, but the job is paused at its cancel check
    time.sleep(0.3)
    st = job.poll()
    assert st.state == "paused" and st.done == 3
    job.resume()
    st = _wait(job, lambda s: s.done >= 4)
    assert st.state == "running" and st.partial == ([0, 1, 2, 3],)
    job.cancel()
    gate.set()
    st = job.join(5)
    assert st.state == "cancelled" and not job.running
    assert st.result == list(range(st.done))  # the partial result is the job's result
    assert st.done < 100


def test_lesson_job_reports_errors_in_one_line():
    def bad():
        raise LandscapeError("the grid needs at least 8 points")

    st = kit.lesson_job(bad, 10).join(5)
    assert st.state == "error" and st.error == "the grid needs at least 8 points" and st.result is None
