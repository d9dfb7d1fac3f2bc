"""Run a long computation for the current settings in a background job; show its progress
with Cancel; keep finished results per settings for the session.

    result = ui.jobs.keyed_result("surface", key, compute, arg1, arg2)
    if result is None:
        st.stop()   # still running (the progress panel is drawn), failed, or cancelled

``compute(*args, progress=..., cancel=...)`` runs in a :class:`landscape.core.jobs.BackgroundJob`;
a ``st.fragment`` polls it while it runs and reruns the page when it ends. Changing the
settings (a new ``key``) cancels the old job. ``preview(status)``, if given, draws the
partial result inside the progress panel (e.g. a coarse-to-fine surface).
"""

from __future__ import annotations

import streamlit as st

from landscape.core.jobs import BackgroundJob


def keyed_result(name: str, key: str, fn, *args, preview=None, what=None, **kwargs):
    results = st.session_state.setdefault(f"{name}_results", {})
    if key in results:
        return results[key]
    slot = f"{name}_job"
    job = st.session_state.get(slot)
    if job is not None and job["key"] != key:
        job["job"].cancel()  # the settings changed: the old computation is not wanted
        st.session_state[slot] = job = None
    if job is None:
        job = {"key": key, "job": BackgroundJob(fn, *args, label=name, **kwargs)}
        st.session_state[slot] = job
    _panel(name, preview, what)
    err = st.session_state.pop(f"{name}_error", None)
    if err:
        st.error(f"{err}. Your settings are kept; adjust them and it recomputes.")
    return results.get(key)


def _panel(name: str, preview, what):
    slot = f"{name}_job"

    @st.fragment(run_every=0.3)
    def panel():
        j = st.session_state.get(slot)
        if j is None:
            return
        s = j["job"].poll()
        if s.state == "running":
            text = what(s) if what else (s.partial[0] if s.partial and isinstance(
                s.partial[0], str) else f"{100 * s.fraction:.0f}%")
            st.progress(min(1.0, s.fraction), text=f"{text} ({s.seconds:.1f} s)")
            if st.button("Cancel", key=f"{name}_cancel", icon=":material/cancel:"):
                j["job"].cancel()
            if preview is not None and s.partial:
                preview(s)
            return
        st.session_state[slot] = None
        if s.state == "done":
            st.session_state[f"{name}_results"][j["key"]] = s.result
        else:
            st.session_state[f"{name}_error"] = s.error or "cancelled: change a setting to start again"
        st.rerun()

    panel()
