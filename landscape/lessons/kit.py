"""What the training-dynamics lessons share: config dataclasses (:class:`LessonConfig`, with
the dict round trip and the checks their ``validate`` methods use), running a step generator
to the end with a cancel event, that run as the one background job (:func:`lesson_job`), and
presets as config dataclasses with overrides.

A lesson config is a ``@dataclass`` subclass of :class:`LessonConfig` naming itself in
``what`` (e.g. ``"spectral-bias"``): ``to_dict()`` is JSON-ready (tuples become lists, all
the way down), ``from_dict(d)`` rejects unknown keys in one line and turns lists back into
tuples for the fields typed as tuples. ``validate()`` raises :class:`LandscapeError` with a
one-line message; :func:`check`, :func:`is_int`, :func:`is_pos`, :func:`is_finite` and
:func:`check_choice` keep each rule one line.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import numpy as np

from landscape.core.device import torch_threads  # noqa: F401  (lessons import it from here)
from landscape.core.errors import Cancelled, LandscapeError
from landscape.core.jobs import BackgroundJob
from landscape.io.results import jsonable, read_npz, result_path, write_npz  # noqa: F401


def is_int(v) -> bool:
    """A whole number: an int (not a bool), a numpy integer, or a float with no fraction."""
    return (isinstance(v, (int, np.integer)) and not isinstance(v, bool)) or \
        (isinstance(v, (float, np.floating)) and float(v).is_integer())


def is_finite(v) -> bool:
    """A finite real number (not a bool)."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and \
        math.isfinite(v)


def is_pos(v) -> bool:
    """A finite number > 0."""
    return is_finite(v) and v > 0


def check(cond, message: str) -> None:
    """Raise :class:`LandscapeError` with the one-line ``message`` unless ``cond``."""
    if not cond:
        raise LandscapeError(message)


def check_choice(value, choices, what: str) -> None:
    """``value`` must be one of ``choices``: ``unknown {what} 'x'; choose one of (...)``."""
    check(value in choices, f"unknown {what} {value!r}; choose one of {tuple(choices)}")


def _lists(v):
    """Tuples (and lists) as lists, recursively, so a dict is JSON-ready."""
    if isinstance(v, (tuple, list)):
        return [_lists(x) for x in v]
    if isinstance(v, dict):
        return {k: _lists(x) for k, x in v.items()}
    return v


def _tuples(v):
    if isinstance(v, (tuple, list)):
        return tuple(_tuples(x) for x in v)
    return v


class LessonConfig:
    """Base of the lessons' config dataclasses (subclasses are ``@dataclass``; this class adds
    no fields). ``what`` names the lesson in error messages."""

    what: ClassVar[str] = "lesson"

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (tuples become lists)."""
        return _lists(asdict(self))

    @classmethod
    def from_dict(cls, d: dict):
        """The config from :meth:`to_dict`'s output (or any subset of the fields): unknown keys
        are a one-line :class:`LandscapeError`; lists become tuples for the fields whose type
        names a tuple (``tuple[int, ...]``, ``str | tuple[float, ...]``)."""
        known = {f.name: f for f in fields(cls)}
        unknown = set(d) - set(known)
        if unknown:
            raise LandscapeError(f"unknown {cls.what} options: {sorted(unknown)}")
        d = dict(d)
        for key, value in d.items():
            if isinstance(value, (list, tuple)) and "tuple" in str(known[key].type):
                d[key] = _tuples(value)
        return cls(**d)

    def validate(self) -> None:
        """Raise :class:`LandscapeError` (one line) for any setting that cannot run."""


@dataclass
class StepEvent:
    """What every lesson's training event holds: ``step``, its ``loss`` and ``seconds`` of run
    time so far (each lesson's subclass says which step the loss belongs to and adds fields)."""

    step: int
    loss: float
    seconds: float


def update_times(run, steps: int | None = None, cancel=None) -> Iterator[float]:
    """The lessons' update loop: while ``run.step`` is below ``run.config.steps`` and at most
    ``steps`` more (default: to the end) and ``cancel`` is not set, yield
    ``time.perf_counter()`` before each update (the loop's body advances ``run.step``)."""
    total = run.config.steps
    end = total if steps is None else min(total, run.step + int(steps))
    while run.step < end:
        if cancel is not None and cancel.is_set():
            return
        yield time.perf_counter()


def run_to_end(run, cancel=None, callback=None):
    """Iterate ``run.run(cancel=cancel)``; ``callback(event)`` may return True to stop early.
    A set ``cancel`` event raises :class:`Cancelled` with ``run.result()`` as the partial
    result. Returns ``run``."""
    for ev in run.run(cancel=cancel):
        if callback is not None and callback(ev):
            break
    if cancel is not None and cancel.is_set() and not run.done:
        raise Cancelled(f"stopped at step {run.step}", partial=run.result())
    return run


def lesson_job(make_run, steps: int, publish=None, label: str = "lesson",
               threads: int | None = None) -> BackgroundJob:
    """A lesson run in the one background job (pause, resume, cancel, partial results).

    ``make_run()`` builds the run (an object with ``run(cancel=...)`` yielding events with a
    ``step``, ``result()`` and ``done``) inside the job's thread; progress is the step out of
    ``steps``, and the partial result ``run.result()`` is published after every event for which
    ``publish(event)`` is true (default: every event). The job's result is the final
    ``run.result()``; a cancelled job keeps the partial result as its result."""

    def work(progress, cancel):
        run = make_run()

        def on_event(ev):
            if publish is None or publish(ev):
                progress(ev.step, steps, run.result())
            else:
                progress(ev.step, steps)

        return run_to_end(run, cancel, on_event).result()

    return BackgroundJob(work, label=label, threads=threads)


def preset_with(presets: dict, name: str, what: str, **overrides):
    """A copy of ``presets[name]`` (a config dataclass) with the non-None ``overrides``
    replaced; unknown names and fields are one-line errors naming ``what``."""
    import copy
    from dataclasses import fields, replace

    if name not in presets:
        raise LandscapeError(f"unknown {what} preset {name!r}; choose one of "
                             f"{', '.join(presets)}")
    base = presets[name]
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - {f.name for f in fields(base)}
    if unknown:
        raise LandscapeError(f"unknown {what} options: {sorted(unknown)}")
    return replace(copy.deepcopy(base), **changes)


def preset_maker(presets: dict, what: str):
    """The lesson's ``preset(name, **overrides)``: :func:`preset_with` on ``presets``."""

    def preset(name: str, **overrides):
        """A copy of a preset with some fields replaced (``None`` values are ignored)."""
        return preset_with(presets, name, what, **overrides)

    return preset
