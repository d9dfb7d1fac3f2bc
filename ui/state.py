"""Per-tab holders: objects (jobs, live runs) that live as long as the browser tab's session
and are stopped when it goes.

    h = ui.state.holder("live", page="live")   # a dict, the same one on every rerun of this tab
    h["run"] = LiveRun(...)

Every holder of a tab sits in one ``st.cache_resource(scope="session")`` entry whose release
(the tab closed, or the cache cleared) stops every value that can be stopped: ``close()``,
else ``cancel()``, else ``stop()``. A holder is also ``st.session_state[f"{name}_holder"]``.

A holder given a ``page`` (its url path) belongs to that page: :func:`pause_away`, which the
app calls before it runs a page, pauses the values of every holder whose page is not shown.
"""

from __future__ import annotations

import streamlit as st


def stop(obj) -> None:
    """Stop ``obj`` if it is something that runs (a job, a live run); other values are left."""
    for method in ("close", "cancel", "stop"):
        fn = getattr(obj, method, None)
        if callable(fn):
            try:
                fn()
            except Exception:  # a stopping object must not keep the others running
                pass
            return


def _release(tab: dict) -> None:
    for h in list(tab["holders"].values()):
        for value in list(h.values()):
            stop(value)


@st.cache_resource(scope="session", on_release=_release, show_spinner=False)
def _tab() -> dict:
    """This tab's holders and the pages they belong to."""
    return {"holders": {}, "pages": {}}


def holder(name: str, page: str | None = None) -> dict:
    """This tab's holder ``name`` (created empty on first use); ``page``: the url path of the
    page it belongs to, whose values pause while another page is shown."""
    tab = _tab()
    h = tab["holders"].setdefault(name, {})
    if page is not None:
        tab["pages"][name] = page
    st.session_state[f"{name}_holder"] = h
    return h


def pause_away(shown: str) -> None:
    """Pause what the holders of every page but ``shown`` (a url path) are running."""
    tab = _tab()
    for name, page in tab["pages"].items():
        if page == shown:
            continue
        for value in tab["holders"].get(name, {}).values():
            pause = getattr(value, "pause", None)
            if callable(pause):
                pause()
