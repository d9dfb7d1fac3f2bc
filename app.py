"""landscape: the Streamlit entry point.

Navigation over the pages in ``ui.nav.PAGES``, the sidebar shared by every page (device, CPU
threads, seed, lecture link; ``ui.settings``), start-up warm-up, and the per-tab holders'
lifecycle (a page's live run pauses when the user leaves it; ``ui.state``).

Every tab runs in this one process: heavy jobs share one bounded queue and one result cache
(``landscape.core.queue``); with ``LANDSCAPE_STATS_FILE`` set, the queue's counts are written
there four times a second (``benchmarks/load.py`` reads them).

``streamlit run app.py`` finds the ``st.App`` below and serves this file through it: the server
then also answers at every page's own address (``ui.server``), so a link to ``/live`` opens
without a failed request, and the sidebar never lists the ``pages/`` folder's file names. Inside a
session (and in ``AppTest``) the file is the app's script.
"""

import os

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx


@st.cache_resource(show_spinner=False)
def startup() -> float:
    from landscape.core.device import warm_up

    return warm_up()


@st.cache_resource(show_spinner=False)
def stats_writer(path: str):
    from landscape.core import queue

    return queue.write_stats(path)


def main() -> None:
    from ui import nav

    st.set_page_config(page_title="landscape", page_icon="assets/logo.svg", layout="wide")
    # The navigation first, before torch and the backend are imported.
    page = nav.navigation()
    from ui import settings, state

    startup()
    if os.environ.get("LANDSCAPE_STATS_FILE"):
        stats_writer(os.environ["LANDSCAPE_STATS_FILE"])
    settings.sidebar()
    state.pause_away(page.url_path)  # what a page runs pauses whenever it is not the one shown
    page.run()


if get_script_run_ctx(suppress_warning=True) is None:  # imported by the server: serve this file
    from ui.server import page_routes, quiet_access_log, use_navigation

    use_navigation()
    quiet_access_log()
    app = st.App(__file__, routes=page_routes())
else:
    main()
