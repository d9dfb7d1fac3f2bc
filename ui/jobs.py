"""The one job panel: a long computation in a background job, its progress with Cancel (and
Pause/Resume where allowed) and a live preview of its partial result; finished results kept
per settings for the session.

    result = ui.jobs.keyed_result("surface", key, compute, arg1, arg2)
    if result is None:
        st.stop()   # still running (the progress panel is drawn), failed, or cancelled

``compute(*args, progress=..., cancel=...)`` runs in a :class:`landscape.core.jobs.BackgroundJob`;
a ``st.fragment`` polls it while it runs (every 0.3 s, less often when many tabs watch:
:func:`landscape.core.queue.poll_seconds`) and reruns the page when it ends. Changing the
settings (a new ``key``) cancels the old job, and so does closing the tab. ``preview(status)``,
if given, draws the partial result inside the panel (e.g. a coarse-to-fine surface);
``what(status)`` is the progress text; ``pausable=True`` adds Pause/Resume (the job holds at
its next cancellation check). A page that runs its own job draws the same panel with
:func:`job_panel`.

Every tab of the server shares one queue and one result cache (:mod:`landscape.core.queue`):
the job is named by a fingerprint (``name``, ``key`` and the tab's threads, device and seed),
waits for a free core in the shared queue (the panel shows its place in line, and Cancel
works while it waits), attaches to the same computation when another tab already runs it,
and is answered at once when a finished result is cached. The job computes with this tab's
CPU threads (``threads`` among ``kwargs`` overrides them), set in the job's own thread. A tab
keeps its last :data:`KEEP` results per ``name``; Cancel, new settings or closing the tab
detach it, and a computation stops when no tab is attached any more.
"""

from __future__ import annotations

import gc
import json
import threading

import streamlit as st

from landscape.core.jobs import BackgroundJob, JobStatus
from landscape.core.queue import Ticket, poll_seconds, shared
from ui import settings, state

KEEP = 4  # results a tab keeps per name (the shared cache keeps more, under its memory bound)
_FROZEN = threading.Event()


def freeze_heap() -> None:
    """Once per process, before the first job: move every object alive now (torch, SciPy,
    Plotly, Streamlit: about 250,000 of them) out of the cyclic garbage collector's reach.
    Streamlit runs a full collection after every script run, and the job panel reruns every
    0.3 s; walking those objects took about 0.1 s each time with the interpreter lock held,
    which slowed a running job two to three times. Objects created later are collected as
    before."""
    if not _FROZEN.is_set():
        _FROZEN.set()
        gc.collect()
        gc.freeze()


def blas_limited(fn, threads: int):
    """``fn`` run with NumPy's and SciPy's BLAS on ``threads`` threads. Torch's thread count is
    set in the job's thread, but OpenBLAS keeps one pool for the whole process (one thread per
    core by default): two BLAS threads spinning beside a busy server on two cores made the
    Lanczos reorthogonalisation 5-10x slower. Every job sets its own count as it starts, so a
    server whose tabs compute on one thread (the default) keeps BLAS on one."""

    def run(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=max(1, int(threads)), user_api="blas")
        return fn(*args, **kwargs)

    return run


def progress_text(s: JobStatus, what=None) -> str:
    """``what(s)``, else a text partial value, else the percentage done."""
    if what is not None:
        return what(s)
    if s.partial and isinstance(s.partial[0], str):
        return s.partial[0]
    return f"{100 * s.fraction:.0f}%"


def job_panel(job: BackgroundJob | Ticket, name: str, *, pausable: bool = False, preview=None,
              what=None) -> JobStatus:
    """Draw ``job``'s progress, Cancel (keys ``{name}_cancel``, ``{name}_pause``,
    ``{name}_resume``), Pause/Resume when ``pausable``, and ``preview(status)`` while partial
    values exist; returns the status polled (nothing is drawn once the job has finished)."""
    s = job.poll()
    if s.finished:
        return s
    paused = s.state == "paused"
    others = f" · shared with {s.shared - 1} other tab{'s' if s.shared > 2 else ''}" if s.shared > 1 else ""
    if s.state == "queued":
        st.progress(0.0, text=f"Queued: number {s.position or 1} in line for a free core "
                              f"({s.seconds:.1f} s){others}")
    else:
        text = progress_text(s, what)
        st.progress(min(1.0, s.fraction),
                    text=f"{'Paused: ' if paused else ''}{text} ({s.seconds:.1f} s){others}")
    pausable = pausable and s.shared <= 1 and s.state != "queued"  # one tab never pauses another's
    cols = st.columns([1, 1, 4]) if pausable else [st]
    if cols[0].button("Cancel", key=f"{name}_cancel", icon=":material/cancel:"):
        job.cancel()
    if pausable:
        if paused:
            if cols[1].button("Resume", key=f"{name}_resume", icon=":material/play_arrow:"):
                job.resume()
        elif cols[1].button("Pause", key=f"{name}_pause", icon=":material/pause:"):
            job.pause()
    if preview is not None and s.partial:
        preview(s)
    return s


def fingerprint(name: str, key: str, threads: int) -> str:
    """What names a computation across tabs: the page's ``key`` (its settings) plus the tab's
    threads, device and seed."""
    return json.dumps({"name": name, "key": key, "threads": int(threads),
                       "device": st.session_state.get("device", "auto"),
                       "seed": st.session_state.get("seed", 0)}, sort_keys=True, default=str)


def _remember(results: dict, fp: str, value) -> None:
    results.pop(fp, None)
    results[fp] = value
    while len(results) > KEEP:
        results.pop(next(iter(results)))


def keyed_result(name: str, key: str, fn, *args, preview=None, what=None, pausable: bool = False,
                 **kwargs):
    """The result of ``fn(*args, **kwargs)`` for settings ``key``: from this tab's results, the
    shared cache, or a job in the shared queue (its panel drawn meanwhile); None while queued,
    running, failed or cancelled. ``threads`` among ``kwargs`` is the job's torch thread count
    (default: this tab's sidebar setting)."""
    threads = kwargs.pop("threads", None) or settings.compute_settings()[0]
    fp = fingerprint(name, key, threads)
    results = st.session_state.setdefault(f"{name}_results", {})
    if fp in results:
        _remember(results, fp, results[fp])
        return results[fp]
    stopped = st.session_state.setdefault(f"{name}_stopped", {})  # key -> why it ended without a result
    slot = f"{name}_job"
    job = st.session_state.get(slot)
    if job is not None and job["key"] != fp:
        job["job"].cancel()  # the settings changed: this tab no longer wants the old computation
        st.session_state[slot] = job = None
    if job is None and fp in stopped:
        # Cancelled or failed for these settings: say so and wait to be asked again, rather than
        # starting the same computation on every rerun.
        st.error(f"{stopped[fp]}. Your settings are kept; change one, or run again.")
        if st.button("Run again", key=f"{name}_again", icon=":material/replay:"):
            stopped.pop(fp, None)
            st.rerun()
        return None
    if job is None:
        freeze_heap()
        ticket = shared().submit(fp, blas_limited(fn, threads), *args, label=name, threads=threads, **kwargs)
        if ticket.cached:  # computed before, by this tab or another
            _remember(results, fp, ticket.poll().result)
            return results[fp]
        job = {"key": fp, "job": ticket}
        st.session_state[slot] = job
        state.holder("jobs")[name] = ticket  # detached (and stopped if alone) when the tab goes
    _panel(name, preview, what, pausable)
    return results.get(fp)
def _panel(name: str, preview, what, pausable: bool):
    slot = f"{name}_job"

    from landscape.core.device import cpu_count

    # 0.3 s while few tabs watch; slower as a lecture hall's tabs pile up (see poll_seconds)
    @st.fragment(run_every=poll_seconds(shared().watchers(), cpu_count()))
    def panel():
        j = st.session_state.get(slot)
        if j is None:
            return
        s = job_panel(j["job"], name, pausable=pausable, preview=preview, what=what)
        if not s.finished:
            return
        st.session_state[slot] = None
        if s.state == "done":
            _remember(st.session_state[f"{name}_results"], j["key"], s.result)
        else:
            st.session_state[f"{name}_stopped"][j["key"]] = s.error or "Cancelled"
        st.rerun()

    panel()
