"""What the training-dynamics lessons share: running a step generator to the end with a cancel
event, and presets as config dataclasses with overrides."""

from __future__ import annotations

from landscape.core.device import torch_threads  # noqa: F401  (lessons import it from here)
from landscape.core.errors import Cancelled, LandscapeError
from landscape.core.jobs import BackgroundJob
from landscape.io.results import jsonable, read_npz, result_path, write_npz  # noqa: F401


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
