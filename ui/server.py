"""What the web server adds for this app: a clean first load, and a page's own address
(``/live``, ``/spectral-bias``, ``/home``) that opens without a failed request.

A ``pages/`` folder beside the main script makes Streamlit start as a legacy multipage app, whose
sidebar lists the folder's file names until ``st.navigation`` has run once in the process (a
fresh server's first visitor saw them). :func:`use_navigation` tells Streamlit at start-up what
``st.navigation`` would tell it on the first run: this app navigates with ``st.navigation``.

Streamlit's browser code finds its server by trying the page's path first: opened at ``/live``
it asks for ``/live/_stcore/health`` and ``/live/_stcore/host-config`` (both 404, logged as
console errors) before it tries ``/``. Streamlit's hosting setting ``window.__streamlit``
(``BACKEND_BASE_URL``) names the server's address instead, so only the right address is
asked. :func:`page_routes` serves Streamlit's own ``index.html`` at every page's address with
that setting added: the folder above the page (the app's root, or ``server.baseUrlPath``).
The app's root keeps Streamlit's plain ``index.html`` (there the first guess is right).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ui.nav import HOME_ALIAS, PAGES

# Runs before Streamlit's own script: the server is at the folder above the page.
BASE_SCRIPT = ('<script>window.__streamlit = Object.assign({}, window.__streamlit, '
               '{BACKEND_BASE_URL: window.location.origin + '
               'window.location.pathname.replace(/\\/+$/, "").replace(/[^/]*$/, "")});</script>')


def use_navigation() -> None:
    """This app's pages come from ``st.navigation``, never from the ``pages/`` folder (the flag
    ``st.navigation`` itself sets on its first run, set before the first visitor)."""
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False


def index_html() -> str:
    """Streamlit's ``index.html`` with :data:`BASE_SCRIPT` first in its ``<head>``."""
    from streamlit import file_util

    html = (Path(file_util.get_static_dir()) / "index.html").read_text(encoding="utf-8")
    return html.replace("<head>", "<head>" + BASE_SCRIPT, 1)


def page_paths() -> list[str]:
    """Every page's url path (without the base path): those of :data:`ui.nav.PAGES` and the
    Home alias."""
    return [p.url_path for p in PAGES if p.url_path] + [HOME_ALIAS]


def page_routes() -> list:
    """Starlette routes answering ``GET`` (and ``HEAD``) at every page's address with
    :func:`index_html` (never cached, like Streamlit's own)."""
    from starlette.responses import HTMLResponse
    from starlette.routing import Route
    from streamlit import config

    html = index_html()
    base = (config.get_option("server.baseUrlPath") or "").strip("/")
    prefix = f"/{base}" if base else ""

    async def page(request):
        return HTMLResponse(html, headers={"Cache-Control": "no-cache"})

    return [Route(f"{prefix}/{path}", page, methods=["GET", "HEAD"]) for path in page_paths()]


def quiet_access_log() -> None:
    """No line per request in the server's output (as with ``streamlit run`` of a plain
    script): a filter on uvicorn's access logger, which survives uvicorn's logging setup."""
    access = logging.getLogger("uvicorn.access")
    if not any(getattr(f, "landscape_quiet", False) for f in access.filters):
        quiet = logging.Filter()
        quiet.filter = lambda record: record.levelno >= logging.WARNING
        quiet.landscape_quiet = True
        access.addFilter(quiet)
