"""The sidebar every page shares: device, CPU threads, seed and the lecture link, all bound
to the URL so a copied link reproduces the view; and what a page computes with.

These settings belong to the tab: every tab of a server runs in one process, and torch's
thread count is per thread, so nothing here sets it for the process. A page hands the tab's
threads, device and seed to its jobs (``ui.jobs.keyed_result`` does it for every page that
uses it), and each job sets its thread count in its own thread."""

from __future__ import annotations

import streamlit as st

from landscape.core.device import available_devices, cpu_count
from landscape.core.queue import shared
from landscape.io.uploads import MAX_DATA_MB, MAX_MODEL_MB

# Every page, at a projector's 1280x720: the title close to the top so the main figure under
# it is in view, and metric labels that wrap instead of ending in "...".
APP_CSS = """<style>
    .block-container, [data-testid="stMainBlockContainer"] {padding-top: 3.2rem !important;
        padding-bottom: 2rem !important;}
    h1 {font-size: 2.1rem !important; padding: 0 0 0.2rem 0 !important;}
    [data-testid="stMetricLabel"], [data-testid="stMetricLabel"] * {white-space: normal !important;
        overflow: visible !important; text-overflow: clip !important;}
    [data-testid="stMetricLabel"] p {font-size: 0.95rem !important;}
    [data-testid="stMetricValue"] {font-size: 1.9rem;}
    </style>"""

LECTURE_CSS = """<style>
    section[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"],
    [data-testid="stExpandSidebarButton"] {display: none;}
    h1 {font-size: 2.4rem !important;}
    [data-testid="stMetricValue"] {font-size: 2.3rem;}
    </style>"""


def lecture() -> bool:
    """A lecture link (``?lecture=1``) hides the controls and enlarges titles and metrics."""
    return st.query_params.get("lecture") == "1"


def sidebar() -> None:
    """Draw the shared sidebar and apply the lecture style (the threads, device and seed
    reach this tab's jobs through :func:`compute_settings`; nothing process-wide is set)."""
    found = available_devices()
    with st.sidebar:
        st.selectbox("Device", ["auto", "cuda", "cpu"], key="device", bind="query-params",
                     help="auto picks the GPU when there is one")
        st.caption(f"Found: {', '.join(found)}")
        st.number_input("CPU threads", 1, cpu_count(), 1, key="threads", bind="query-params",
                        help="One thread is fastest for small models on a few cores")
        st.number_input("Seed", 0, 1_000_000, 0, key="seed", bind="query-params",
                        help="Seeds the model, the batch order and the random directions")
        st.toggle("Lecture link (hide the controls)", key="lecture_toggle",
                  value=lecture(), on_change=lambda: st.query_params.update(
                      lecture="1" if st.session_state.lecture_toggle else "0"))
        q = shared().stats()
        st.caption(f"Server queue: {q['slots']} slots, {q['running']} running, {q['queued']} waiting; "
                   f"{q['cache_entries']} results cached ({q['cache_mb']:.0f} of {q['cache_max_mb']:.0f} MB). "
                   f"Uploads up to {MAX_MODEL_MB} MB (model), {MAX_DATA_MB} MB (data).")
    if st.session_state.get("device") == "cuda" and "cuda" not in found:
        st.sidebar.warning("No GPU here: computing on the CPU.")
    st.markdown(APP_CSS, unsafe_allow_html=True)
    if lecture():
        st.markdown(LECTURE_CSS, unsafe_allow_html=True)


def compute_settings() -> tuple[int, str | None]:
    """The sidebar's CPU threads and device for a page's computation: one thread when the
    page runs on its own (small models on a few cores are fastest that way), and no device
    (the preset's own) when the chosen one is not on this machine."""
    threads = int(st.session_state.get("threads", 1))
    device = st.session_state.get("device")
    if device not in ("auto", *available_devices()):  # e.g. "cuda" on a machine without one
        device = None
    return threads, device
