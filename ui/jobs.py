"""The one job panel: a long computation in a background job, its progress with Cancel (and
Pause/Resume where allowed) and a live preview of its partial result; finished results kept
per settings for the session.

    result = ui.jobs.keyed_result("surface", key, compute, arg1, arg2)
    if result is None:
        st.stop()   # still running (the progress panel is drawn), failed, or cancelled

``compute(*args, progress=..., cancel=...)`` runs in a :class:`landscape.core.jobs.BackgroundJob`;
a ``st.fragment`` polls it while it runs and reruns the page when it ends. Changing the
settings (a new ``key``) cancels the old job, and so does closing the tab. ``preview(status)``,
if given, draws the partial result inside the panel (e.g. a coarse-to-fine surface);
``what(status)`` is the progress text; ``pausable=True`` adds Pause/Resume (the job holds at
its next cancellation check). A page that runs its own job draws the same panel with
:func:`job_panel`.
"""

from __future__ import annotations

import streamlit as st

from landscape.core.jobs import BackgroundJob, JobStatus
from ui import state


def progress_text(s: JobStatus, what=None) -> str:
    """``what(s)``, else a text partial value, else the percentage done."""
    if what is not None:
        return what(s)
    if s.partial and isinstance(s.partial[0], str):
        return s.partial[0]
    return f"{100 * s.fraction:.0f}%"


def job_panel(job: BackgroundJob, name: str, *, pausable: bool = False, preview=None,
              what=None) -> JobStatus:
    """Draw ``job``'s progress, Cancel (keys ``{name}_cancel``, ``{name}_pause``,
    ``{name}_resume``), Pause/Resume when ``pausable``, and ``preview(status)`` while partial
    values exist; returns the status polled (nothing is drawn once the job has finished)."""
    s = job.poll()
    if s.finished:
        return s
    paused = s.state == "paused"
    text = progress_text(s, what)
    st.progress(min(1.0, s.fraction),
                text=f"{'Paused: ' if paused else ''}{text} ({s.seconds:.1f} s)")
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


def keyed_result(name: str, key: str, fn, *args, preview=None, what=None, pausable: bool = False,
                 **kwargs):
    """The result of ``fn(*args, **kwargs)`` for settings ``key``: computed once per session in
    a job (its panel drawn meanwhile), then kept; None while running, failed or cancelled.
    ``threads`` among ``kwargs`` is the job's torch thread count."""
    results = st.session_state.setdefault(f"{name}_results", {})
    if key in results:
        return results[key]
    stopped = st.session_state.setdefault(f"{name}_stopped", {})  # key -> why it ended without a result
    slot = f"{name}_job"
    job = st.session_state.get(slot)
    if job is not None and job["key"] != key:
        job["job"].cancel()  # the settings changed: the old computation is not wanted
        st.session_state[slot] = job = None
    if job is None and key in stopped:
        # Cancelled or failed for these settings: say so and wait to be asked again, rather than
        # starting the same computation on every rerun.
        st.error(f"{stopped[key]}. Your settings are kept; change one, or run again.")
        if st.button("Run again", key=f"{name}_again", icon=":material/replay:"):
            stopped.pop(key, None)
            st.rerun()
        return None
    if job is None:
        job = {"key": key, "job": BackgroundJob(fn, *args, label=name, **kwargs)}
        st.session_state[slot] = job
        state.holder("jobs")[name] = job["job"]  # cancelled when the tab goes
    _panel(name, preview, what, pausable)
    return results.get(key)


def _panel(name: str, preview, what, pausable: bool):
    slot = f"{name}_job"

    @st.fragment(run_every=0.3)
    def panel():
        j = st.session_state.get(slot)
        if j is None:
            return
        s = job_panel(j["job"], name, pausable=pausable, preview=preview, what=what)
        if not s.finished:
            return
        st.session_state[slot] = None
        if s.state == "done":
            st.session_state[f"{name}_results"][j["key"]] = s.result
        else:
            st.session_state[f"{name}_stopped"][j["key"]] = s.error or "Cancelled"
        st.rerun()

    panel()
