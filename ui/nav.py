"""Keep every page running inside app.py's navigation.

Streamlit treats a ``pages/`` folder next to the main script as a legacy multipage app
until ``st.navigation`` has run once in the process: a deep link (or ``AppTest``) can then
run a page file directly, without app.py's sidebar and navigation. A page calls
:func:`ensure_app` first; in that case it runs app.py in place (which runs this page through
``st.navigation``) and stops the direct run, so no widget event is lost to a rerun.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

APP = Path(__file__).resolve().parents[1] / "app.py"


def ensure_app() -> None:
    if PagesManager.uses_pages_directory:
        runpy.run_path(str(APP))
        st.stop()


def compute_settings() -> tuple[int, str | None]:
    """The sidebar's CPU threads and device for a page's computation: one thread when the
    page runs on its own (small models on a few cores are fastest that way), and no device
    (the preset's own) when the chosen one is not on this machine."""
    from landscape.core.device import available_devices

    threads = int(st.session_state.get("threads", 1))
    device = st.session_state.get("device")
    if device not in ("auto", *available_devices()):  # e.g. "cuda" on a machine without one
        device = None
    return threads, device
