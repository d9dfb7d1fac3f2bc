"""The app's pages, in one table, and the lessons the Home gallery links to.

:data:`PAGES` lists every page (file, title, icon, url path); ``app.py`` builds its
navigation from it and Home resolves each lesson's page through it. :data:`LESSONS` are the
Home gallery's one-click lessons: a title, the blurb shown under it, the page and the query
parameters that set the page up (values its widgets accept).

Keep every page running inside app.py's navigation: Streamlit treats a ``pages/`` folder
next to the main script as a legacy multipage app until ``st.navigation`` has run once in
the process, so a deep link (or ``AppTest``) can run a page file directly, without app.py's
sidebar and navigation. A page calls :func:`ensure_app` first; in that case it runs app.py in
place (which runs this page through ``st.navigation``) and stops the direct run, so no widget
event is lost to a rerun.
"""

from __future__ import annotations

import runpy
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

APP = Path(__file__).resolve().parents[1] / "app.py"


@dataclass(frozen=True)
class PageSpec:
    key: str
    file: str
    title: str
    icon: str
    url_path: str | None = None  # None: the default page, at the app's root


PAGES = [
    PageSpec("home", "pages/home.py", "Home", ":material/home:"),
    PageSpec("live", "pages/live.py", "Live training", ":material/play_circle:", "live"),
    PageSpec("surface", "pages/surface.py", "Loss surface", ":material/landscape:", "surface"),
    PageSpec("hessian", "pages/hessian.py", "Hessian spectrum", ":material/insights:", "hessian"),
    PageSpec("inspect", "pages/inspect.py", "Inspect a checkpoint", ":material/upload_file:",
             "inspect"),
    PageSpec("show", "pages/show.py", "Open a surface file", ":material/folder_open:", "show"),
    PageSpec("eos", "pages/eos.py", "Edge of stability", ":material/show_chart:", "eos"),
    PageSpec("opposing", "pages/opposing.py", "Opposing signals", ":material/swap_vert:",
             "opposing"),
    PageSpec("spectral", "pages/spectral_bias.py", "Spectral bias", ":material/graphic_eq:",
             "spectral-bias"),
    PageSpec("flatness", "pages/flatness.py", "Flat and sharp minima", ":material/compress:",
             "flatness"),
]
PAGE = {p.key: p for p in PAGES}


# Home is served at the app's root; ``/home`` opens it too (a hidden alias in the navigation),
# so a link to it never lands on "Page not found".
HOME_ALIAS = "home"


def navigation():
    """``st.navigation`` over :data:`PAGES` (Home is the default page, also at ``/home``).

    The app calls this first, before anything heavy is imported: until ``st.navigation`` has run
    once, Streamlit treats the ``pages/`` folder as a legacy multipage app (and its sidebar
    lists the folder's file names). The server says so from the start (:mod:`ui.server`)."""
    pages = []
    for p in PAGES:
        if p.url_path is None:
            pages.append(st.Page(p.file, title=p.title, icon=p.icon, default=True,
                                 url_path=f"{p.key}-root"))
            pages.append(st.Page(p.file, title=p.title, icon=p.icon, url_path=HOME_ALIAS,
                                 visibility="hidden"))
        else:
            pages.append(st.Page(p.file, title=p.title, icon=p.icon, url_path=p.url_path))
    return st.navigation(pages)


def compute_settings() -> tuple[int, str | None]:
    """The sidebar's CPU threads and device for a page's computation (see
    :func:`ui.settings.compute_settings`; imported on first use, so that this module, which the
    app imports first, stays light)."""
    from ui.settings import compute_settings as settings_of_tab

    return settings_of_tab()


@dataclass(frozen=True)
class Lesson:
    title: str
    text: str  # the blurb under the title
    page: str  # a key of PAGE
    params: dict = field(default_factory=dict)

    @property
    def file(self) -> str:
        return PAGE[self.page].file


LESSONS = [
    Lesson("Watch a network train on its landscape",
           "An MLP learns the digits; its path is drawn on the loss surface spanned by the "
           "trajectory's two principal directions.", "live",
           {"preset": "digits-mlp", "live_dirs": "pca"}),
    Lesson("Two moons, step by step",
           "A small tanh network separates two moons: press Step and watch one update at a time.",
           "live", {"preset": "moons-mlp", "live_dirs": "pca", "speed": 20}),
    Lesson("Why random directions miss the path",
           "The same run on a random filter-normalized plane: the trajectory barely moves, "
           "because random directions are nearly orthogonal to it.", "live",
           {"preset": "digits-mlp", "live_dirs": "random"}),
    Lesson("Skip connections smooth the landscape",
           "Li et al.'s headline: the same deep CNN with and without skip connections, side by "
           "side on one colour scale.", "surface",
           {"view": "Compare", "preset": "digits-resnet-skip", "preset_b": "digits-resnet-noskip",
            "grid": 15, "samples": "200", "log": "true"}),
    Lesson("A minimum up close",
           "A filter-normalized 2-D slice around a trained MLP, as a contour and in 3-D.",
           "surface", {"view": "2-D", "preset": "digits-mlp", "grid": 31}),
    Lesson("The edge-of-stability network",
           "A tanh MLP trained by full-batch GD at eta = 0.2 with the squared loss; its PCA "
           "surface.", "surface", {"view": "2-D", "preset": "eos-tanh", "dirs": "pca", "log": "true"}),
    Lesson("Sharpness rises to 2/η and stays there",
           "Full-batch gradient descent on a tanh network: the top Hessian eigenvalue climbs to "
           "the stability limit 2/η and hovers at the edge while the loss keeps falling, "
           "unevenly.", "eos"),
    Lesson("Low frequencies first",
           "A coordinate MLP fits ten sines: the low ones are learned first (spectral bias), "
           "until a Fourier-feature encoding removes the lag.", "spectral"),
    Lesson("Examples that pull against each other",
           "A bright patch planted on some 3s and 8s: at the edge of stability the two groups' "
           "losses swing in anti-phase, found without labels.", "opposing"),
    Lesson("Flat and sharp minima",
           "The same network trained with small and large batches, with SGD and with SAM: the "
           "large-batch minimum is the sharpest (largest top Hessian eigenvalue), side by side "
           "on one colour scale.", "flatness"),
    Lesson("Bring your own model",
           "Upload a torch.export program, a state_dict or a safetensors file and see its "
           "surface, its Hessian spectrum and its worst-fit examples.", "inspect"),
]


def ensure_app() -> None:
    if PagesManager.uses_pages_directory:
        runpy.run_path(str(APP))
        st.stop()


def page_header(title: str, caption: str) -> bool:
    """The app guard, then the page's title and one-paragraph caption; returns whether the
    page is in the presenter view (``?lecture=1``)."""
    ensure_app()  # before anything is drawn
    st.title(title)
    st.caption(caption)
    return st.query_params.get("lecture") == "1"
