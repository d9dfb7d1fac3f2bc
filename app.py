"""landscape: the Streamlit entry point.

Navigation over the pages in ``ui.nav.PAGES``, the sidebar shared by every page (device, CPU
threads, seed, lecture link; ``ui.settings``), start-up warm-up, and the per-tab holders'
lifecycle (a page's live run pauses when the user leaves it; ``ui.state``).

Every tab runs in this one process: heavy jobs share one bounded queue and one result cache
(``landscape.core.queue``); with ``LANDSCAPE_STATS_FILE`` set, the queue's counts are written
there four times a second (``benchmarks/load.py`` reads them).
"""

import os

import streamlit as st

from landscape.core import queue
from landscape.core.device import warm_up
from ui import nav, settings, state

st.set_page_config(page_title="landscape", page_icon="assets/logo.svg", layout="wide")


@st.cache_resource(show_spinner=False)
def startup() -> float:
    return warm_up()


startup()


@st.cache_resource(show_spinner=False)
def stats_writer(path: str):
    return queue.write_stats(path)


if os.environ.get("LANDSCAPE_STATS_FILE"):
    stats_writer(os.environ["LANDSCAPE_STATS_FILE"])
page = nav.navigation()
settings.sidebar()
state.pause_away(page.url_path)  # what a page runs pauses whenever it is not the one shown
page.run()
