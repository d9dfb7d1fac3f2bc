"""The sidebar every page shares: device, CPU threads, seed and the lecture link, all bound
to the URL so a copied link reproduces the view; and what a page computes with."""

from __future__ import annotations

import streamlit as st
import torch

from landscape.core.device import available_devices, cpu_count

LECTURE_CSS = """<style>
    section[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"],
    [data-testid="stExpandSidebarButton"] {display: none;}
    h1 {font-size: 3rem !important;}
    [data-testid="stMetricValue"] {font-size: 2.6rem;}
    </style>"""


def lecture() -> bool:
    """A lecture link (``?lecture=1``) hides the controls and enlarges titles and metrics."""
    return st.query_params.get("lecture") == "1"


def sidebar() -> None:
    """Draw the shared sidebar and apply it (torch threads; the lecture style)."""
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
    torch.set_num_threads(int(st.session_state.get("threads", 1)))
    if st.session_state.get("device") == "cuda" and "cuda" not in found:
        st.sidebar.warning("No GPU here: computing on the CPU.")
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
