"""The sidebar every page shares: device, CPU threads, seed and the lecture link, all bound
to the URL so a copied link reproduces the view; and what a page computes with.

These settings belong to the tab: every tab of a server runs in one process, and torch's
thread count is per thread, so nothing here sets it for the process. A page hands the tab's
threads, device and seed to its jobs (``ui.jobs.keyed_result`` does it for every page that
uses it), and each job sets its thread count in its own thread."""

from __future__ import annotations

import streamlit as st

from landscape.core import style
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


# A full-screen button at the top right, beside the app menu, on every page (and, in the
# presenter view, a way back to the controls). It floats: the page's layout does not move.
SCREEN_CSS = """<style>
    [data-testid="stElementContainer"]:has(.landscape-screen) {position: absolute !important;
        width: 0 !important; height: 0 !important; margin: 0 !important;}
    .landscape-screen {position: fixed; top: 0.65rem; right: 3.6rem; z-index: 1000010;
        display: flex; gap: 0.4rem;}
    .landscape-screen button {display: flex; align-items: center; gap: 0.3rem;
        font: 500 0.85rem "Source Sans", sans-serif; color: #1f2430;
        background: #ffffff; border: 1px solid #c9ccd3; border-radius: 0.5rem;
        padding: 0.25rem 0.7rem; cursor: pointer;}
    .landscape-screen button:hover {border-color: #ff4b4b; color: #ff4b4b;}
    </style>"""
FULLSCREEN_BUTTON = """<button type="button" data-testid="fullscreen-button"
    title="Full screen (Esc leaves it)">&#x2922; Full screen</button>"""
EXIT_BUTTON = """<button type="button" data-testid="exit-presenter-button"
    title="Leave the presenter view: the same page and settings, with the controls">Show controls</button>"""
# One listener for the page's lifetime (the buttons are drawn again on every rerun).
SCREEN_SCRIPT = """<script>
if (!window.__landscapeScreen) {
  window.__landscapeScreen = true;
  document.addEventListener("click", (event) => {
    if (event.target.closest("[data-testid='fullscreen-button']")) {
      if (document.fullscreenElement) document.exitFullscreen();
      else document.documentElement.requestFullscreen();
    } else if (event.target.closest("[data-testid='exit-presenter-button']")) {
      const url = new URL(window.location.href);
      url.searchParams.delete("lecture");
      window.location.assign(url.toString());
    }
  });
}
</script>"""


def one_style(*blocks: str) -> str:
    """One ``<style>`` element holding the rules of every ``<style>`` block given (several
    blocks in one markdown call would end its HTML after the first)."""
    rules = [b.replace("<style>", "").replace("</style>", "").strip() for b in blocks if b]
    return "<style>\n" + "\n".join(rules) + "\n</style>"


def lecture() -> bool:
    """A lecture link (``?lecture=1``) hides the controls and enlarges titles and metrics."""
    return st.query_params.get("lecture") == "1"


def _presenter_now() -> bool:
    """Whether the figure being built belongs to a page shown in the presenter view (False
    outside a page's run, e.g. in a background job's thread)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    return get_script_run_ctx(suppress_warning=True) is not None and lecture()


# Figures built while a page runs in the presenter view get the larger presenter type.
style.set_presenter_source(_presenter_now)


def screen_buttons() -> None:
    """The floating full-screen button (and, in the presenter view, "Show controls")."""
    buttons = FULLSCREEN_BUTTON + (EXIT_BUTTON if lecture() else "")
    st.html(f'{SCREEN_CSS}<div class="landscape-screen">{buttons}</div>{SCREEN_SCRIPT}',
            unsafe_allow_javascript=True)


def sidebar() -> None:
    """Draw the shared sidebar and apply the lecture style (the threads, device and seed
    reach this tab's jobs through :func:`compute_settings`; nothing process-wide is set)."""
    # a lesson's step box (ui.steps) goes first in the sidebar; the page fills it when it runs
    st.session_state["_lesson_slot"] = st.sidebar.container(key="lesson_slot")
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
    from ui.steps import CSS as STEPS_CSS

    st.markdown(one_style(APP_CSS, STEPS_CSS, LECTURE_CSS if lecture() else ""), unsafe_allow_html=True)
    screen_buttons()


def compute_settings() -> tuple[int, str | None]:
    """The sidebar's CPU threads and device for a page's computation: one thread when the
    page runs on its own (small models on a few cores are fastest that way), and no device
    (the preset's own) when the chosen one is not on this machine."""
    threads = int(st.session_state.get("threads", 1))
    device = st.session_state.get("device")
    if device not in ("auto", *available_devices()):  # e.g. "cuda" on a machine without one
        device = None
    return threads, device
